"""What the report role reads follows dwh_tables: each declared and extra table, the original a migration keeps, the
archive schema retention moves partitions to (one read each, so an absent one stops nothing)."""

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.sigeti.dwh.plugins.filter.report_reads import FilterModule, report_reads


def test_reads_follow_the_declared_tables():
    declared = [
        {"name": "dwh_facts.a", "migrate": "online"},
        {"name": '"Sales"."Q1"', "migrate": "offline", "retention": {"action": "archive", "archive_schema": "arch"}},
        {"name": "dwh_facts.c", "migrate": "online", "drop_source": True},  # dropped once verified: nothing kept
        {"name": "dwh_facts.d", "migrate": "attach", "retention": {"action": "archive", "archive_schema": "arch"}},
        {"name": "dwh_facts.e"},
    ]
    reads = report_reads(declared, ["dwh_dim.z"], "exact")
    assert [(r["role"], r["label"]) for r in reads] == [
        ("declared", "dwh_facts.a"),
        ("declared", '"Sales"."Q1"'),
        ("declared", "dwh_facts.c"),
        ("declared", "dwh_facts.d"),
        ("declared", "dwh_facts.e"),
        ("extra", "dwh_dim.z"),
        ("kept", "dwh_facts.a_unpartitioned"),
        ("kept", '"Sales"."Q1_unpartitioned"'),
        ("archive", "schema arch"),
    ]
    assert reads[0]["compression"] == "exact" and reads[0]["count_default_rows"] is True
    kept, archive = reads[-2], reads[-1]
    assert kept["tables"] == ['"Sales"."Q1_unpartitioned"'] and kept["of"] == '"Sales"."Q1"'
    assert kept["compression"] == "none" and kept["count_default_rows"] is False
    assert (
        archive["schemas"] == ["arch"] and archive["tables"] == [] and archive["of"] == ['"Sales"."Q1"', "dwh_facts.d"]
    )


def test_a_63_byte_name_keeps_the_migration_s_derived_name():
    name = "t" * 60
    [_declared, kept] = report_reads([{"name": "s." + name, "migrate": "online"}])
    assert len(kept["tables"][0].split(".")[1]) == 63 and kept["tables"][0].endswith("_unpartitioned")


def test_bad_input_is_named():
    with pytest.raises(AnsibleFilterError, match="dwh_tables must be a list"):
        report_reads({"name": "x"})
    assert FilterModule().filters()["report_reads"] is report_reads
