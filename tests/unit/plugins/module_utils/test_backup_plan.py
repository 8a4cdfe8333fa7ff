"""The backup's pure decisions (backup_plan): names that cannot collide, manifests, rotation, pg_dump's arguments."""

import datetime
import json

import pytest

from ansible_collections.sigeti.dwh.plugins.module_utils.backup import planner as backup_plan
from ansible_collections.sigeti.dwh.plugins.module_utils.backup.planner import Identity, Manifest
from ansible_collections.sigeti.dwh.plugins.module_utils.catalog.backup import DumpFacts, Link, Relation, Use
from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import InvalidInput

WHEN = datetime.datetime(2026, 3, 29, 1, 30, 5, tzinfo=datetime.timezone.utc)


def test_the_two_hosts_of_issue_27_get_different_names():
    first = backup_plan.dump_name("sigeti_staging", "wh1", WHEN, 0xABC)
    second = backup_plan.dump_name("sigeti", "staging_wh1", WHEN, 0xABC)
    assert first == "sigeti_staging@wh1_20260329T013005Z_000abc.dump"
    assert second == "sigeti@staging_wh1_20260329T013005Z_000abc.dump"
    assert backup_plan.NAME_TAIL.search(first) and backup_plan.NAME_TAIL.search(second)


@pytest.mark.parametrize(
    "database,host",
    [("a@b", "c"), ("a", "b@c"), ("a/b", "c"), (".hidden", "h"), ("é", "h"), ("e%C3%A9", "h"), ("x" * 63, "y" * 200)],
)
def test_a_part_never_holds_the_separator_a_slash_or_a_leading_dot(database, host):
    name = backup_plan.dump_name(database, host, WHEN, 1)
    head = name[: backup_plan.NAME_TAIL.search(name).start()]
    assert head.count("@") == 1 and "/" not in name and not name.startswith(".") and len(name) < 255


def test_encoding_is_injective_on_hostile_pairs():
    pairs = [
        ("a@b", "c"),
        ("a", "b@c"),
        ("a%40b", "c"),
        ("e%C3%A9", "h"),
        ("é", "h"),
        ("sigeti_staging", "wh1"),
        ("sigeti", "staging_wh1"),
        ("sigeti_", "staging_wh1"),
        ("sigeti", "_staging_wh1"),
    ]
    names = {backup_plan.dump_name(d, h, WHEN, 1) for d, h in pairs}
    assert len(names) == len(pairs)


def manifest(host="wh1", database="sigeti", sequence=1, started="2026-01-01T00:00:00Z", system="7", name=None):
    return Manifest(Identity(host, database, system), sequence, started, name or "%s-%d.dump" % (host, sequence), 10)


def test_rotation_keeps_this_run_and_the_newest_by_sequence_never_another_identity():
    current = manifest(sequence=5, started="2026-01-01T00:00:00Z")  # the clock stepped back: its time is oldest
    ours = [manifest(sequence=n, started="2999-01-0%dT00:00:00Z" % n) for n in (1, 2, 3, 4)]
    others = [manifest(host="wh10", sequence=9), manifest(database="other"), manifest(system="8", sequence=1)]
    assert backup_plan.rotation(ours + others + [current], current, 2) == [ours[2], ours[1], ours[0]]
    assert backup_plan.rotation(ours + [current], current, 1) == sorted(ours, key=lambda m: -m.sequence)
    assert backup_plan.rotation(ours + [current], current, 0) == []
    assert backup_plan.next_sequence(ours + others, current.identity) == 5


def test_a_manifest_is_read_only_when_it_is_ours_and_names_the_dump_beside_it():
    body = manifest(name="db@wh1_20260101T000000Z_000001.dump").to_json({"scope": "tables"})
    assert json.loads(body)["scope"] == "tables"
    assert backup_plan.parse_manifest(body, "db@wh1_20260101T000000Z_000001.dump.json").sequence == 1
    assert backup_plan.parse_manifest(body, "other.dump.json") is None
    assert backup_plan.parse_manifest("{}", "x.dump.json") is None
    assert backup_plan.parse_manifest("not json", "x.dump.json") is None
    sneaky = json.loads(body)
    sneaky["file"] = "../etc/x"
    assert backup_plan.parse_manifest(json.dumps(sneaky), "../etc/x.json") is None


def test_pgpass_escapes_and_refuses_a_line_break():
    assert backup_plan.pgpass_line("a:b\\c d'e") == "*:*:*:*:a\\:b\\\\c d'e\n"
    with pytest.raises(InvalidInput, match="line break"):
        backup_plan.pgpass_line("a\nb")


FACT = Relation(20000, "f", "fact", "p")
PART = Relation(20001, "f", "fact_2024", "r")
OTHER = Relation(20002, "f", "other", "r")
ODD = Relation(20003, "f", 'Odd "x" *', "r")
NOTE = Relation(20004, "f", "notes", "r")


def test_select_dump_keeps_what_is_needed_and_only_the_extensions_used():
    facts = DumpFacts(
        touched=(FACT,),
        links=(Link("partition", FACT, PART, ""),),
        uses=(
            Use(None, NOTE, None, "function f(f.notes)"),
            Use(PART, None, "pg_trgm", "index f.fact_2024_trgm"),
            Use(OTHER, None, "hstore", "column h of table f.other"),
        ),
        relations=(FACT, PART, OTHER, ODD, NOTE),
    )
    chosen = backup_plan.select_dump(facts)
    assert [m.relation.name for m in chosen.members] == ["fact", "fact_2024", "notes"]
    assert chosen.excluded == (OTHER, ODD) and chosen.extensions == ("pg_trgm",)
    assert chosen.contents() == "partitioned table 1, table 2" and chosen.tables() == [
        ("f", "fact_2024"),
        ("f", "notes"),
    ]
    argv = backup_plan.dump_argv("pg_dump", "/b/x.partial", "dbname='w'", 5000, chosen, "snap", "owner")
    assert argv == [
        "pg_dump",
        "-Fc",
        "--no-password",
        "--lock-wait-timeout=5000ms",
        "-f",
        "/b/x.partial",
        "--role=owner",
        "--snapshot=snap",
        "-B",
        '--extension="pg_trgm"',
        '--exclude-table="f"."other"',
        '--exclude-table="f"."Odd ""x"" *"',
        "-d",
        "dbname='w'",
    ]


def test_no_extension_needed_still_keeps_every_extension_out():
    chosen = backup_plan.select_dump(DumpFacts((FACT,), (), (), (FACT,)))
    assert '--extension="plpgsql"' in backup_plan.dump_argv("pg_dump", "t", "d", 1, chosen, None)
    assert backup_plan.dump_argv("pg_dump", "t", "d", 1, None, None) == [
        "pg_dump",
        "-Fc",
        "--no-password",
        "--lock-wait-timeout=1ms",
        "-f",
        "t",
        "-d",
        "d",
    ]


def test_archive_header_and_listing():
    text = ";\n; Archive created at 2026-01-01 00:00:00 UTC\n;     dbname: my db\n;\n1; 2615 1 SCHEMA - s o\n2; 0 0 ACL - x\n"
    assert backup_plan.archive_database(text) == "my db" and backup_plan.listed_objects(text) == 2


def test_space_and_counts_messages():
    assert backup_plan.space_check(100, 100, 1.0, "/b", "t") is None
    message = backup_plan.space_check(99, 100, 1.0, "/b", "t")
    assert message.startswith("99 bytes free in /b, but the dump of t may need 100 bytes")
    assert backup_plan.count_differences({"a": 1, "b": 2}, {"a": 1, "c": 3}) == [
        "b source 2 restored missing",
        "c source missing restored 3",
    ]
