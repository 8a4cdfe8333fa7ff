"""The preflight role's decisions (module_utils/backup/preflight.py, backup/rewrites.py) on plain values."""

import pytest

from ansible_collections.sigeti.dwh.plugins.module_utils.backup import preflight
from ansible_collections.sigeti.dwh.plugins.module_utils.backup import rewrites as backup_rewrites
from ansible_collections.sigeti.dwh.plugins.module_utils.backup.preflight import BackupPolicy

T1, T2, NEW = "dwh_facts.a", "dwh_facts.b", "dwh_facts.new"
TABLES = [{"name": T1}, {"name": T2}, {"name": NEW, "columns": ["id int"]}]
AUTO = BackupPolicy("auto", "tables", "list", 3)


def results(*entries):
    return {"results": [dict(item={"name": name}, **result) for name, result in entries]}


def test_the_modules_say_what_they_rewrite():
    assert backup_rewrites.partitioning({"migration": {"phases": []}}) == ["migrate"]
    assert backup_rewrites.partitioning({"migration": {"abandoned": ["x"]}}) == []
    assert backup_rewrites.partitioning({"detached": ["p1", "p2"], "dropped": ["p1"]}) == ["detach", "drop"]
    assert backup_rewrites.partitioning({"detached": ["p1"], "archived": ["p1"], "created": ["p9"]}) == ["archive"]
    assert backup_rewrites.partitioning({"created": ["p9"]}) == []
    undo = {"direction": "plain", "table": "s.f", "kept": "f_partitioned"}
    assert backup_rewrites.partitioning({"migration": dict(undo, mode="online"), "queries": ["q"]}) == ["migrate"]
    assert backup_rewrites.partitioning({"migration": dict(undo, mode="abandon", abandoned=[]), "queries": []}) == []
    # a table already plain: nothing to do, or only the kept set to drop
    assert backup_rewrites.partitioning({"migration": undo, "queries": []}) == []
    assert backup_rewrites.partitioning({"migration": dict(undo, kept=None), "queries": ["DROP"]}) == ["drop"]
    recompress = {"recompress": {"mode": "online"}, "queries": ["UPDATE"], "columns": {"c": {"values_to_rewrite": 3}}}
    assert backup_rewrites.compression(recompress) == ["recompress"]
    assert backup_rewrites.compression(dict(recompress, recompress={"mode": "none"})) == []
    assert backup_rewrites.compression(dict(recompress, columns={"c": {"values_to_rewrite": 0}})) == []
    full = {"tables": [{"relations": [{"actions": [{"action": "vacuum"}, {"action": "full"}]}]}]}
    assert backup_rewrites.vacuum(full) == ["full"]
    assert backup_rewrites.vacuum({"tables": [{"relations": [{"actions": [{"action": "analyze"}]}]}]}) == []
    marked = backup_rewrites.mark(
        {"results": [{"created": ["x"]}, {"dropped": ["y"], "detached": ["y"]}]}, backup_rewrites.partitioning
    )
    assert [r["rewrites"] for r in marked["results"]] == [[], ["drop"]] and marked["rewrites"] == ["drop"]


def test_auto_backs_up_only_the_rewritten_tables_and_checks_disk_only_for_new_copies():
    plan = preflight.probe_plan(
        TABLES,
        AUTO,
        True,
        partitioning=results(
            (T1, {"queries": ["CREATE"], "rewrites": []}), (T2, {"queries": ["DROP"], "rewrites": ["drop"]})
        ),
        vacuum={"results": [{"name": T1, "rewrites": ["full"]}]},
        backup_dir="/b",
    )
    assert plan["planned"] == ["partitioning: %s" % T1, "partitioning: %s" % T2] and plan["changes_planned"]
    assert plan["rewrites"] == {T2: ["drop"], T1: ["full"]} and plan["backup_needed"]
    assert plan["backup_tables"] == [T1, T2] and plan["disk_tables"] == {T1: ["full"]}
    assert plan["announce"] == "A backup (pg_dump -Fc of %s, %s, verified) will be taken into /b first." % (T1, T2)
    assert "free disk: checked for %s" % T1 in plan["summary"]


def test_additive_changes_take_no_backup_under_auto_but_one_under_always():
    partitioning = results((T1, {"queries": ["CREATE"], "rewrites": []}))
    plan = preflight.probe_plan(TABLES, AUTO, True, partitioning=partitioning)
    assert plan["changes_planned"] and not plan["backup_needed"] and plan["disk_tables"] == {}
    assert plan["announce"] == "NO BACKUP will be taken (dwh_backup: auto: nothing is rewritten or removed)."
    assert plan["summary"].endswith(
        "backup: no (dwh_backup: auto); free disk: no new copy of any table: nothing to check"
    )
    always = preflight.probe_plan(TABLES, BackupPolicy("always", "tables", "list", 3), True, partitioning=partitioning)
    assert always["backup_needed"] and always["backup_tables"] == [T1, T2]
    nothing = preflight.probe_plan(TABLES, BackupPolicy("always", "tables", "list", 3), True, partitioning=results())
    assert not nothing["changes_planned"] and not nothing["backup_needed"]
    never = preflight.probe_plan(TABLES, BackupPolicy("never", "database", "list", 3), True, partitioning=partitioning)
    assert not never["backup_needed"]


def test_without_a_probe_every_existing_table_counts():
    plan = preflight.probe_plan(TABLES, AUTO, False)
    assert plan["changes_planned"] and plan["backup_needed"] and plan["backup_tables"] == [T1, T2]
    assert plan["disk_tables"] == {T1: ["unknown"], T2: ["unknown"]}


def test_entry_errors_use_the_modules_rules():
    assert preflight.entry_errors([], "h", True)[0].startswith("h: dwh_tables is empty")
    assert "dwh_table is set" in preflight.entry_errors([], "h", True)[0]
    assert "more than once" in preflight.entry_errors([{"name": T1}, {"name": T1}], "h")[0]
    errors = preflight.entry_errors(
        [
            {"name": T1, "retention": {"keep": 3, "action": "archive"}},
            {"name": T2, "retention": {"keep": -1}},
            {"name": NEW, "compression": {"columns": {"c": "zstd"}}},
        ],
        "h",
    )
    assert errors[0].startswith("dwh_tables entry %s: retention.action archive for %s needs archive_schema" % (T1, T1))
    assert errors[1].startswith("dwh_tables entry %s: retention.keep=-1 for %s is negative" % (T2, T2))
    assert errors[2].startswith("dwh_tables entry %s: columns.c='zstd' is not a compression method" % NEW)
    assert preflight.entry_errors([{"name": T1, "retention": {"keep": 1}}], "h") == []


@pytest.mark.parametrize("given,policy", [(True, "always"), ("no", "never"), ("AUTO", "auto"), (1, "always")])
def test_backup_policy_words(given, policy):
    assert preflight.backup_policy(given, "tables", "list", 3, "h")[0].policy == policy


def test_backup_policy_names_every_bad_value():
    settings, message = preflight.backup_policy("sometimes", "all", "list", -1, "h")
    assert settings is None and "dwh_backup is 'sometimes'" in message and "dwh_backup_keep -1" in message


def test_entry_errors_check_tiers_as_the_module_does():
    errors = preflight.entry_errors([{"name": T1, "tiers": [{"after": -1, "tablespace": "cold"}]}], "h")
    assert len(errors) == 1 and errors[0].startswith("dwh_tables entry %s: tiers.after=-1" % T1)
    assert preflight.entry_errors([{"name": T1, "tiers": [{"after": 2, "tablespace": "cold"}]}], "h") == []
