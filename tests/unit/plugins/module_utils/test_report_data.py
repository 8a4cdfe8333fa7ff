"""The report's document and page view (pure): reads sorted, one spelling per table, a migration named as such from
results shaped as the helpers' contract says (and as partitioned_table returns them today), kept originals and
archive schemas counted, the history cut to totals, partitions summed by year then month."""

import datetime

from ansible_collections.sigeti.dwh.plugins.module_utils.report import data as report_data
from ansible_collections.sigeti.dwh.plugins.module_utils.report import view as report_view
from ansible_collections.sigeti.dwh.plugins.module_utils.report.data import ReportContext, RunResults, build_report

NOW = datetime.datetime(2026, 6, 15, 12, 0, tzinfo=datetime.timezone.utc)


def table(schema="dwh_facts", name="t", partitions=(), vacuum=None, kind="partitioned", size=1000, comment=None):
    """A table_info table entry, as table_report returns it."""
    return {
        "schema": schema,
        "name": name,
        "kind": kind,
        "comment": comment,
        "sizes": {"total_bytes": size},
        "rows_estimate": 10,
        "partitions": list(partitions),
        "partition_count": len(partitions) or None,
        "periods_ahead": 1,
        "default_partition": None,
        "default_rows": None,
        "vacuum": vacuum if vacuum is not None else [],
        "columns": [{"name": "c", "compression": "lz4", "toastable": True}],
        "compression_measured": None,
    }


def partition(name, low, high, oid, parent_oid=-1, rows=10, size=100, default=False):
    return {
        "schema": "dwh_facts",
        "name": name,
        "oid": oid,
        "parent_oid": parent_oid,
        "level": 1,
        "is_default": default,
        "low": low,
        "high": high,
        "rows": rows,
        "sizes": {"total_bytes": size},
    }


def vacuum(name, dead=0, trigger=50, last=None, auto=None):
    return {
        "name": name,
        "n_live_tup": 10,
        "n_dead_tup": dead,
        "vacuum_trigger": trigger,
        "last_vacuum": last,
        "last_autovacuum": auto,
        "last_analyze": None,
        "last_autoanalyze": None,
    }


def read(role, label, tables=None, of=None, result=None):
    item = {"label": label, "role": role, "of": of, "tables": [label] if tables is None else tables, "schemas": []}
    return dict(result or {}, item=item)


def context(**kwargs):
    base = {"title": "t", "host": "h", "database": "db", "now": NOW}
    base.update(kwargs)
    return ReportContext(**base)


def test_reads_sorted_absent_and_unreadable_named_as_the_catalog_spells_them():
    results = [
        read("declared", 'dwh_weird."a""b\\c"', result={"tables": [table("dwh_weird", 'a"b\\c')], "server": {"v": 1}}),
        read("declared", "dwh_facts.gone", result={"failed": True, "msg": "table(s) dwh_facts.gone do not exist in x"}),
        read("extra", '"Dim"."Zone"', result={"failed": True, "msg": "permission denied for table Zone"}),
        read("kept", "dwh_facts.t_unpartitioned", of="dwh_facts.t", result={"failed": True, "msg": "do not exist"}),
        {"skipped": True, "item": {"label": "x"}},
    ]
    declared = [{"name": 'dwh_weird."a""b\\c"'}, {"name": "dwh_facts.gone"}]
    document = build_report(results, context(declared=declared, extra_tables=['"Dim"."Zone"']))
    assert [t["name"] for t in document["tables"]] == ['dwh_weird.a"b\\c']
    assert document["requested"] == ['dwh_weird.a"b\\c', "dwh_facts.gone", "Dim.Zone"]
    assert document["missing"] == ["dwh_facts.gone"]  # an absent kept original is no missing table
    assert document["errors"] == ["Dim.Zone: permission denied for table Zone"]
    assert document["unreadable"] == ["Dim.Zone"] and document["server"] == {"v": 1}


def test_a_relation_needs_vacuum_when_its_dead_tuples_reach_autovacuum_s_trigger():
    rows = [
        report_data.vacuum_row(vacuum("never_clean")),
        report_data.vacuum_row(vacuum("never_dirty", dead=60)),
        report_data.vacuum_row(vacuum("vacuumed", dead=10, last="2026-06-01 10:00:00+00:00", auto="2026-06-10 10:00:00+00:00")),
    ]  # fmt: skip
    assert [r["vacuum_due"] for r in rows] == [False, True, False]
    assert rows[0]["last_vacuum_epoch"] is None
    assert rows[2]["last_vacuum"] == "2026-06-10 10:00:00+00:00"
    assert rows[2]["last_vacuum_epoch"] == int(
        datetime.datetime(2026, 6, 10, 10, tzinfo=datetime.timezone.utc).timestamp()
    )


def partitioning(name, **result):
    return dict({"item": {"name": name}, "changed": True}, **result)


def test_a_migration_is_named_with_the_contract_s_keys():
    result = partitioning(
        "dwh_facts.fait_attributions",
        created=["fait_attributions_2024", "fait_attributions_2025", "fait_attributions_default"],
        migration={
            "mode": "online",
            "rows_moved": 300000,
            "rows_copied": 1,  # the contract's key wins
            "kept_original": {"name": "dwh_facts.fait_attributions_unpartitioned", "bytes": 36700160},
            "drop_hint": "set drop_source: true on the next run, or DROP TABLE dwh_facts.fait_attributions_unpartitioned",
        },
    )
    document = build_report([], context(run=RunResults(partitioning=[result])))
    migration = document["run"]["partitioning"][0]["migration"]
    assert migration["rows_moved"] == 300000 and migration["kept_original"]["bytes"] == 36700160
    assert document["summary"] == [
        "dwh_facts.fait_attributions: migrated a plain table (online) into 3 partitions: fait_attributions_2024, "
        "fait_attributions_2025, fait_attributions_default; 300,000 rows moved; the original is kept as "
        "dwh_facts.fait_attributions_unpartitioned (35.0 MiB): set drop_source: true on the next run, or DROP TABLE "
        "dwh_facts.fait_attributions_unpartitioned"
    ]


def test_a_migration_as_partitioned_table_returns_it_today_and_its_original_s_size_read_by_the_report():
    result = partitioning(
        "dwh_facts.t",
        created=[],
        partitions=[{"name": "t_%d" % y, "low": y, "high": y + 1, "default": False} for y in range(2016, 2026)],
        migration={"mode": "offline", "rows_copied": 42, "renamed_source": "dwh_facts.t_unpartitioned"},
    )
    kept = read("kept", "dwh_facts.t_unpartitioned", of="dwh_facts.t")
    kept["tables"] = [table(name="t_unpartitioned", kind="plain", size=5 * 1024**2)]
    document = build_report([kept], context(run=RunResults(partitioning=[result])))
    [line] = document["summary"]
    assert line.startswith(
        "dwh_facts.t: migrated a plain table (offline) into 10 partitions: 10 (t_2016, t_2017, t_2018 … t_2025); 42 rows moved"
    )
    assert "kept as dwh_facts.t_unpartitioned (5.0 MiB): set drop_source: true for dwh_facts.t in dwh_tables" in line
    assert document["kept"] == [
        {"name": "dwh_facts.t_unpartitioned", "of": "dwh_facts.t", "total_bytes": 5242880, "rows_estimate": 10, "kind": "plain"}
    ]  # fmt: skip
    assert document["totals"]["kept_bytes"] == 5242880 and document["totals"]["all_bytes"] == 5242880


def test_a_migration_in_check_mode_an_attach_and_a_dropped_original():
    planned = partitioning(
        "s.a", created=["a_1"], migration={"mode": "online", "rows_moved": None, "kept_original": None}
    )
    attach = partitioning(
        "s.b", created=["b_2"], migration={"mode": "attach", "rows_moved": 0, "attached_partition": "s.b_unpartitioned"}
    )
    document = build_report([], context(check_mode=True, run=RunResults(partitioning=[planned, attach])))
    assert document["summary"] == [
        "s.a: would migrate a plain table (online) into 1 partitions: a_1; ? rows moved",
        "s.b: would migrate a plain table (attach) into 1 partitions: b_2; 0 rows moved; the original became the "
        "partition s.b_unpartitioned",
    ]


def test_other_changes_summarise_long_lists_and_failures_are_named():
    created = ["p_%04d" % n for n in range(3650)]
    results = [
        partitioning("s.daily", created=created, moved_rows=12),
        partitioning("s.same", changed=False),
        {"item": {"name": "s.bad"}, "failed": True, "msg": "lock not granted"},
    ]
    vacuumed = [{"item": {"name": "s.daily"}, "changed": True}]
    document = build_report([], context(run=RunResults(partitioning=results, vacuum=vacuumed)))
    assert document["summary"] == [
        "partitioning s.daily: created 3,650 (p_0000, p_0001, p_0002 … p_3649); detached none; dropped none; "
        "12 rows moved out of the default partition",
        "partitioning s.bad failed: lock not granted",
        "vacuum s.daily: work was due and ran",
    ]


def test_archive_schemas_are_summed_and_attributed():
    reads = [read("archive", "schema arch", tables=[], of=["s.a", "s.b"])]
    reads[0]["tables"] = [table("arch", "a_2019", kind="plain", size=10), table("arch", "b_2019", kind="plain", size=5)]
    document = build_report(reads, context())
    assert document["archives"] == [{"schema": "arch", "of": ["s.a", "s.b"], "tables": 2, "total_bytes": 15}]
    assert document["tables"] == [] and document["totals"]["all_bytes"] == 15


def test_history_keeps_totals_one_entry_a_day_and_the_newest_days():
    old = [
        {"date": "2026-06-13", "tables": {"s.t": {"total_bytes": 1, "partitions": {"p": 1}}}},
        {"date": "2026-06-15", "tables": {"s.t": {"total_bytes": 2}}},
        "junk",
        {"date": 7},
    ]
    history = report_data.updated_history(old, {"tables": {"s.t": {"total_bytes": 3}}, "all_bytes": 3}, "2026-06-15", 2)
    assert history == [
        {"date": "2026-06-13", "tables": {"s.t": {"total_bytes": 1}}, "all_bytes": None},
        {"date": "2026-06-15", "tables": {"s.t": {"total_bytes": 3}}, "all_bytes": 3},
    ]
    assert len(report_data.updated_history(old, {"tables": {}}, "2026-06-16", 0)) == 3


def daily(count, start=datetime.date(2016, 9, 1)):
    """A daily-partitioned table of ``count`` partitions on an integer YYYYMMDD key, a default, every 10th dirty."""
    parts, vac = [], []
    for n in range(count):
        day = start + datetime.timedelta(days=n)
        name = "fait_events_p%s" % day.strftime("%Y%m%d")
        low, high = int(day.strftime("%Y%m%d")), int((day + datetime.timedelta(days=1)).strftime("%Y%m%d"))
        parts.append(partition(name, low, high, oid=1000 + n, size=8192 * (1 + n % 7)))
        vac.append(
            vacuum(name, dead=100 if n % 10 == 0 else 0, last="2026-06-01 00:00:00+00:00" if n % 7 == 0 else None)
        )
    parts.append(partition("fait_events_default", None, None, oid=999, default=True))
    vac.append(vacuum("fait_events_default"))
    return table(name="fait_events", partitions=parts, vacuum=vac)


def test_thousands_of_partitions_are_summed_by_year_then_month_each_one_on_demand():
    entry = report_data.table_entry(daily(3650), None, {})
    view = report_view.table_view(entry)
    assert view.flat == () and view.leaf_count == 3651
    keys = [p.key for p in view.periods]
    assert keys == [str(y) for y in range(2016, 2027)] + ["default"]
    first = view.periods[0]  # 2016-09-01 .. 2016-12-31
    assert first.count == 122 and [m.key for m in first.months] == ["2016-09", "2016-10", "2016-11", "2016-12"]
    assert first.leaves == () and first.months[0].count == 30 and len(first.months[0].leaves) == 30
    assert sum(p.count for p in view.periods) == 3651
    assert sum(p.bytes for p in view.periods) == sum(p["total_bytes"] for p in entry["partitions"])
    assert sum(p.due for p in view.periods) == 365 and len(view.due) == 365
    assert len(view.top_dead) == report_view.TOP_DEAD


def test_few_partitions_one_bar_each_and_a_year_of_few_partitions_lists_them():
    yearly = table(
        partitions=[partition("t_%d" % y, y * 10000 + 101, (y + 1) * 10000 + 101, oid=y) for y in range(2016, 2026)]
    )
    view = report_view.table_view(report_data.table_entry(yearly, None, {}))
    assert [x.name for x in view.flat] == ["t_%d" % y for y in range(2016, 2026)] and view.periods == ()
    months = table(
        partitions=[
            partition("m_%d" % n, "20%02d-%02d-01" % (10 + n // 12, 1 + n % 12), None, oid=n + 1) for n in range(60)
        ]
    )
    view = report_view.table_view(report_data.table_entry(months, None, {}))
    assert [p.key for p in view.periods] == ["2010", "2011", "2012", "2013", "2014"]
    assert view.periods[0].months == () and len(view.periods[0].leaves) == 12


def test_a_sub_partition_without_a_date_takes_its_parent_s_and_only_leaves_are_summed():
    parts = [
        partition("t_2024", 20240101, 20250101, oid=10, size=0, rows=None),
        partition("t_2024_north", None, None, oid=11, parent_oid=10, size=30),
        partition("t_2024_south", None, None, oid=12, parent_oid=10, size=12),
    ]
    entry = report_data.table_entry(table(partitions=parts), None, {})
    assert [p["leaf"] for p in entry["partitions"]] == [False, True, True]
    leaves = report_view.leaves_of(entry)
    assert [(x.name, x.period) for x in leaves] == [
        ("t_2024_north", datetime.date(2024, 1, 1)),
        ("t_2024_south", datetime.date(2024, 1, 1)),
    ]


def test_partitions_without_a_date_are_listed_in_blocks():
    parts = [partition("p_%d" % n, n * 10, n * 10 + 10, oid=n + 1) for n in range(250)]
    view = report_view.table_view(report_data.table_entry(table(partitions=parts), None, {}))
    assert [p.key for p in view.periods] == ["other 1–100", "other 101–200", "other 201–250"]


def test_labels_are_cut_in_the_middle():
    assert report_view.short_label("fait_attributions_2024") == "fait_attributions_2024"
    long = "a_very_long_partition_name_of_a_fact_table_p20240101"
    cut = report_view.short_label(long)
    assert len(cut) == report_view.LABEL_LIMIT and cut.startswith("a_very_lo") and cut.endswith("table_p20240101")
    assert "…" in cut and report_view.short_label("two\nlines") == "two lines"
    assert report_view.bound_date("2024-03-01 00:00:00+00") == datetime.date(2024, 3, 1)
    assert report_view.bound_date(202403) == datetime.date(2024, 3, 1) and report_view.bound_date("MINVALUE") is None
