"""Pure logic of the compression planner: declared state, validation, plans, SQL builders, summaries."""

import pytest
from psycopg2 import sql

from ansible_collections.sigeti.dwh.plugins.module_utils.compression import planner as cmp
from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import InvalidInput, UnsupportedServer
from ansible_collections.sigeti.dwh.plugins.module_utils.plan.steps import Batches, ResultOf, Step

SERVER = {"lz4": True, "database": "dwh", "settings": {"default_toast_compression": "pglz", "block_size": "8192"}}


def render(node):
    """Render a psycopg2.sql composable without a connection (identifiers double-quoted, literals quoted)."""
    if isinstance(node, sql.Composed):
        return "".join(render(part) for part in node.seq)
    if isinstance(node, sql.Identifier):
        return ".".join('"%s"' % s.replace('"', '""') for s in node.strings)
    if isinstance(node, sql.Literal):
        value = node.wrapped
        if isinstance(value, str):
            return "'%s'" % value.replace("'", "''")
        return str(value)
    if isinstance(node, sql.SQL):
        return node.string
    if isinstance(node, ResultOf):  # rendered from the step's rows, as the executor renders it
        return render(node.build(node.step.rows)) if node.step.rows is not None else node.placeholder
    raise TypeError(node)


def col(name, type_="text", type_name=None, compression="default", storage="extended", toastable=True):
    return {
        "name": name,
        "type": type_,
        "type_name": type_name or type_,
        "compression": compression,
        "storage": storage,
        "toastable": toastable,
    }


def columns(**overrides):
    base = {
        "id": col("id", "integer", "int4", storage="plain", toastable=False),
        "note": col("note"),
        "doc": col("doc", "jsonb"),
        "bin": col("bin", "bytea"),
        "jour": col("jour", "date", storage="plain", toastable=False),
        "tags": col("tags", "text[]", "_text"),
    }
    for name, changes in overrides.items():
        base[name] = dict(base[name], **changes)
    return list(base.values())


def rel(oid, name, relkind="r", is_partition=False, reloptions=None, reltuples=1000.0, **col_overrides):
    return {
        "oid": oid,
        "schema": "f",
        "name": name,
        "relkind": relkind,
        "is_partition": is_partition,
        "reloptions": reloptions or {},
        "reltuples": reltuples,
        "relpages": 100,
        "columns": columns(**col_overrides),
    }


def plain_table(**col_overrides):
    root = rel(1, "t", **col_overrides)
    return {"schema": "f", "name": "t", "root": root, "partitions": [], "columns": root["columns"]}


def partitioned_table(**col_overrides):
    root = rel(10, "p", relkind="p", **col_overrides)
    parts = [
        rel(11, "p_2024", is_partition=True, **col_overrides),
        rel(12, "p_2025", is_partition=True, **col_overrides),
    ]
    return {"schema": "f", "name": "p", "root": root, "partitions": parts, "columns": root["columns"]}


def declared(**params):
    return cmp.declared_state(params)


def measured(pglz=0, lz4=0, uncompressed=0, sampled=False, rows_read=None, column="note"):
    rows = pglz + lz4 + uncompressed
    return {
        "sampled": sampled,
        "rows_read": rows if rows_read is None else rows_read,
        "columns": {
            column: {
                "pglz": pglz,
                "lz4": lz4,
                "uncompressed": uncompressed,
                "null": 0,
                "avg_bytes": 3000.0,
                "max_bytes": 4000,
            }
        },
    }


def sqls(plan):
    return [render(item.sql) if isinstance(item, Step) else "TASK " + item.targets[0][1] for item in plan.items]


# --- declared state -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params, message",
    [
        ({"columns": {"note": "zstd"}}, "not a compression method"),
        ({"columns": {"note": 4}}, "not a compression method"),
        ({"storage": {"note": "compressed"}}, "not a storage strategy"),
        ({"toast_tuple_target": 127}, "out of range"),
        ({"toast_tuple_target": 8161}, "out of range"),
        ({"toast_tuple_target": True}, "not an integer"),
        ({"recompress": "online"}, "needs columns"),
        ({"recompress": "later", "columns": {"note": "lz4"}}, "use one of none, online, rewrite"),
        ({"database_default": "zstd"}, "use lz4 or pglz"),
        ({"columns": {"note": "lz4"}, "batch_size": 0}, "positive"),
    ],
)
def test_declared_state_rejects_bad_values(params, message):
    with pytest.raises(InvalidInput) as error:
        cmp.declared_state(params)
    assert message in error.value.msg


def test_declared_state_normalizes():
    state = declared(columns={"note": "LZ4"}, storage={"note": "Main"}, toast_tuple_target=128)
    assert state["columns"] == {"note": "lz4"} and state["storage"] == {"note": "main"}
    assert state["recompress"] == "none" and state["batch_size"] == cmp.DEFAULT_BATCH_SIZE
    assert declared(toast_tuple_target=8160)["toast_tuple_target"] == 8160


def test_toast_threshold_follows_block_size():
    assert cmp.toast_threshold(8192) == 2032
    assert cmp.toast_threshold("16384") == 4080
    assert cmp.toast_threshold(None) == 2032


# --- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params, message",
    [
        ({"columns": {"absent": "lz4"}}, "column 'absent' does not exist in table f.t (its columns: id, note"),
        ({"columns": {"id": "lz4"}}, "is of type integer"),
        ({"storage": {"jour": "main"}}, "is of type date"),
        ({"columns": {"tags": "lz4"}, "recompress": "online"}, "cannot rebuild values of f.t.tags (type text[])"),
    ],
)
def test_validate_rejects_what_cannot_apply(params, message):
    with pytest.raises(InvalidInput) as error:
        cmp.validate(declared(**params), plain_table(), SERVER, identities={1: {"columns": ["id"]}})
    assert message in error.value.msg


@pytest.mark.parametrize(
    "params",
    [
        {"columns": {"note": "lz4"}},
        {"database_default": "lz4"},
        {"columns": {"note": "default"}, "database_default": "lz4"},
    ],
)
def test_validate_refuses_lz4_on_a_server_without_it(params):
    server = dict(SERVER, lz4=False)
    with pytest.raises(UnsupportedServer) as error:
        cmp.validate(declared(**params), plain_table(), server)
    assert "without lz4" in error.value.msg and "nothing was changed" in error.value.msg
    cmp.validate(declared(columns={"note": "pglz"}), plain_table(), server)


def test_validate_online_needs_a_row_identity_on_every_leaf():
    table = partitioned_table()
    state = declared(columns={"note": "lz4"}, recompress="online")
    with pytest.raises(InvalidInput) as error:
        cmp.validate(state, table, SERVER, identities={11: {"columns": ["id", "jour"]}})
    assert "primary key" in error.value.msg and "f.p_2025" in error.value.msg and "f.p_2024" not in error.value.msg
    assert "recompress: rewrite" in error.value.msg
    cmp.validate(state, table, SERVER, identities={11: {"columns": ["id"]}, 12: {"columns": ["id"]}})
    cmp.validate(declared(columns={"note": "lz4"}, recompress="rewrite"), table, SERVER)


def test_validate_rewrite_refuses_a_column_read_by_a_view_on_a_plain_table():
    views = [{"table_oid": 1, "column": "note", "schema": "f", "name": "v"}]
    with pytest.raises(InvalidInput) as error:
        cmp.validate(declared(columns={"note": "lz4"}, recompress="rewrite"), plain_table(), SERVER, column_views=views)
    assert "f.v reads note" in error.value.msg and "recompress: online" in error.value.msg
    cmp.validate(declared(columns={"doc": "lz4"}, recompress="rewrite"), plain_table(), SERVER, column_views=views)


# --- SQL builders -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "type_name, expected",
    [
        ("text", "\"c\" || ''"),
        ("varchar", "\"c\" || ''"),
        ("bpchar", "\"c\" || ''"),
        ("bytea", "\"c\" || ''::bytea"),
        ("json", '("c"::text)::json'),
    ],
)
def test_rebuild_expression_builds_a_new_value(type_name, expected):
    assert render(cmp.rebuild_expression("c", type_name)) == expected


def test_rebuild_expression_for_jsonb_keeps_arrays_arrays():
    text = render(cmp.rebuild_expression("doc", "jsonb"))
    assert "WHEN 'object' THEN \"doc\" || '{}'::jsonb" in text
    assert "WHEN 'array' THEN \"doc\" || '[]'::jsonb" in text
    assert 'ELSE ("doc"::text)::jsonb' in text


def test_batch_update_with_composite_key_bounds():
    entry = rel(11, "p_2024", is_partition=True)
    text = render(
        cmp.batch_update_sql(entry, [("note", "text", "lz4")], ["id", "jour"], (5, "2024-01-02"), (9, "2024-03-01"))
    )
    assert text == (
        'UPDATE ONLY "f"."p_2024" SET "note" = CASE WHEN pg_column_compression("note") <> \'lz4\' THEN "note" || \'\' '
        'ELSE "note" END WHERE ("id", "jour") > (5, \'2024-01-02\') AND ("id", "jour") <= (9, \'2024-03-01\') '
        "AND (pg_column_compression(\"note\") <> 'lz4')"
    )
    first = render(cmp.batch_update_sql(entry, [("note", "text", "lz4")], ["id"], None, (100,)))
    assert 'WHERE ("id") <= (100) AND' in first and ">" not in first.split("WHERE")[1].split("AND")[0]
    tail = render(cmp.batch_update_sql(entry, [("note", "text", "lz4")], ["id"], (100,), None))
    assert 'WHERE ("id") > (100) AND (pg_column_compression' in tail


def test_next_bound_reads_the_last_key_of_the_batch():
    entry = rel(1, "t")
    assert (
        render(cmp.next_bound_sql(entry, ["id"], None, 500))
        == 'SELECT "id" FROM ONLY "f"."t" ORDER BY "id" OFFSET 499 LIMIT 1'
    )
    assert (
        render(cmp.next_bound_sql(entry, ["a", "b"], (1, "x"), 10))
        == 'SELECT "a", "b" FROM ONLY "f"."t" WHERE ("a", "b") > (1, \'x\') ORDER BY "a", "b" OFFSET 9 LIMIT 1'
    )


# --- plans --------------------------------------------------------------------------------------


def test_plain_table_already_as_declared_gives_an_empty_plan():
    table = plain_table(note={"compression": "lz4", "storage": "main"})
    state = declared(columns={"note": "lz4"}, storage={"note": "main"}, recompress="online")
    plan = cmp.build_plan(
        state, table, SERVER, {1: measured(lz4=900, uncompressed=100)}, identities={1: {"columns": ["id"]}}
    )
    assert not plan and plan.items == []
    assert plan.to_rewrite == {"note": 0}


def test_partitioned_table_alters_parent_and_each_partition_with_only():
    table = partitioned_table()
    table["partitions"][1]["columns"][1]["compression"] = "lz4"  # p_2025.note already lz4
    state = declared(columns={"note": "lz4"}, storage={"doc": "main"}, toast_tuple_target=4096)
    plan = cmp.build_plan(state, table, SERVER, {})
    assert sqls(plan) == [
        'ALTER TABLE ONLY "f"."p" ALTER COLUMN "note" SET COMPRESSION lz4, ALTER COLUMN "doc" SET STORAGE MAIN',
        'ALTER TABLE ONLY "f"."p_2024" ALTER COLUMN "note" SET COMPRESSION lz4, ALTER COLUMN "doc" SET STORAGE MAIN',
        'ALTER TABLE ONLY "f"."p_2025" ALTER COLUMN "doc" SET STORAGE MAIN',
        'ALTER TABLE "f"."p_2024" SET (toast_tuple_target = 4096)',
        'ALTER TABLE "f"."p_2025" SET (toast_tuple_target = 4096)',
    ]
    assert [i.lock for i in plan.items] == ["ACCESS EXCLUSIVE"] * 3 + ["SHARE UPDATE EXCLUSIVE"] * 2
    assert plan.items[0].targets == (("f", "p"),)
    assert len({i.group for i in plan.items[:3]}) == 3, "one transaction per relation"
    assert plan.diff["after"]["relations"]["f.p_2024"]["toast_tuple_target"] == "4096"


def test_toast_tuple_target_already_set_is_left_alone():
    table = plain_table()
    table["root"]["reloptions"] = {"toast_tuple_target": "4096"}
    assert not cmp.build_plan(declared(toast_tuple_target=4096), table, SERVER, {})


def test_online_plan_batches_then_vacuums_only_leaves_with_values_to_rewrite():
    table = partitioned_table(note={"compression": "lz4"})
    state = declared(columns={"note": "lz4"}, recompress="online", batch_size=1000)
    measurements = {11: measured(pglz=300, lz4=0), 12: measured(lz4=300)}
    ids = {11: {"columns": ["id", "jour"]}, 12: {"columns": ["id", "jour"]}}
    plan = cmp.build_plan(state, table, SERVER, measurements, identities=ids, triggers={11: ["audit"]})
    assert sqls(plan) == ["TASK p_2024", 'VACUUM "f"."p_2024"']
    task = plan.items[0]
    assert isinstance(task, Batches) and task.estimate == 300 and task.targets == (("f", "p_2024"),)
    assert render(task.template[0].sql).startswith('UPDATE ONLY "f"."p_2024" SET "note" = ')
    assert '("id", "jour") > (:lower_1, :lower_2)' in render(task.template[0].sql)
    bound, update = task.next_batch(None)
    assert render(bound.sql) == 'SELECT "id", "jour" FROM ONLY "f"."p_2024" ORDER BY "id", "jour" OFFSET 999 LIMIT 1'
    bound.rows = [(7, 20240105)]  # as the executor leaves them once the read ran
    assert '("id", "jour") <= (7, 20240105)' in render(update.sql) and " > " not in render(update.sql)
    following = task.next_batch([bound, update])
    assert '("id", "jour") > (7, 20240105)' in render(following[0].sql)
    following[0].rows = []  # the last batch: no row 1000 rows further, it takes the rest
    assert " <= " not in render(following[1].sql)
    assert task.next_batch(following) is None
    assert plan.items[1].transactional is False
    assert plan.to_rewrite == {"note": 300}
    assert any("audit" in w for w in plan.warnings)
    assert any("speed choice" in w for w in plan.warnings)


def test_sampled_counts_are_scaled_to_the_relation():
    table = plain_table(note={"compression": "lz4"})
    table["root"]["reltuples"] = 100000.0
    m = measured(pglz=150, lz4=50, sampled=True, rows_read=200)
    plan = cmp.build_plan(
        declared(columns={"note": "lz4"}, recompress="online"),
        table,
        SERVER,
        {1: m},
        identities={1: {"columns": ["id"]}},
    )
    assert plan.to_rewrite == {"note": 75000}


def test_rewrite_plain_table_is_one_alter_with_compression_and_storage():
    table = plain_table(note={"compression": "lz4", "storage": "main"}, doc={"compression": "lz4"})
    m = {
        1: {
            "sampled": False,
            "rows_read": 10,
            "columns": {
                "note": {"pglz": 10, "lz4": 0, "uncompressed": 0},
                "doc": {"pglz": 3, "lz4": 7, "uncompressed": 0},
            },
        }
    }
    state = declared(columns={"note": "lz4", "doc": "lz4"}, recompress="rewrite")
    plan = cmp.build_plan(state, table, SERVER, m)
    assert sqls(plan) == [
        'ALTER TABLE ONLY "f"."t" ALTER COLUMN "note" TYPE text USING "note" || \'\', '
        'ALTER COLUMN "note" SET COMPRESSION lz4, ALTER COLUMN "note" SET STORAGE MAIN, '
        'ALTER COLUMN "doc" TYPE jsonb USING CASE jsonb_typeof("doc") WHEN \'object\' THEN "doc" || \'{}\'::jsonb '
        "WHEN 'array' THEN \"doc\" || '[]'::jsonb ELSE (\"doc\"::text)::jsonb END, "
        'ALTER COLUMN "doc" SET COMPRESSION lz4, ALTER COLUMN "doc" SET STORAGE EXTENDED'
    ]
    assert plan.items[0].lock == "ACCESS EXCLUSIVE"


def test_rewrite_partition_is_update_then_vacuum_full_of_that_partition():
    table = partitioned_table(note={"compression": "lz4"})
    plan = cmp.build_plan(
        declared(columns={"note": "lz4"}, recompress="rewrite"),
        table,
        SERVER,
        {11: measured(pglz=5), 12: measured(lz4=5)},
    )
    assert sqls(plan) == [
        'UPDATE ONLY "f"."p_2024" SET "note" = CASE WHEN pg_column_compression("note") <> \'lz4\' THEN "note" || \'\' '
        'ELSE "note" END WHERE (pg_column_compression("note") <> \'lz4\')',
        'VACUUM (FULL, ANALYZE) "f"."p_2024"',
    ]
    assert plan.items[1].transactional is False and plan.items[1].lock == "ACCESS EXCLUSIVE"


def test_default_method_resolves_to_the_declared_database_default():
    table = plain_table()
    state = declared(columns={"note": "default"}, database_default="lz4", recompress="online")
    plan = cmp.build_plan(
        state, table, SERVER, {1: measured(pglz=4)}, identities={1: {"columns": ["id"]}}, database_default_now="pglz"
    )
    assert sqls(plan) == [
        "ALTER DATABASE \"dwh\" SET default_toast_compression = 'lz4'",
        "SET default_toast_compression = 'lz4'",
        "TASK t",
        'VACUUM "f"."t"',
    ]
    assert "pg_column_compression(\"note\") <> 'lz4'" in render(plan.items[2].template[0].sql)
    assert plan.diff["before"]["database_default"] == "pglz" and plan.diff["after"]["database_default"] == "lz4"


def test_recompress_none_warns_that_existing_values_keep_their_method():
    plan = cmp.build_plan(declared(columns={"note": "lz4"}), plain_table(), SERVER, {1: measured(pglz=40)})
    assert len(plan.items) == 1
    assert any("existing values keep their method" in w and "about 40" in w for w in plan.warnings)


def test_storage_external_warns_that_the_method_has_no_effect():
    plan = cmp.build_plan(declared(columns={"note": "lz4"}, storage={"note": "external"}), plain_table(), SERVER, {})
    assert any("never compresses" in w for w in plan.warnings)


def test_narrow_rows_warn_with_measured_widths():
    table = plain_table()
    widths = {1: {"rows_read": 2000, "avg_bytes": 96.0, "max_bytes": 120, "sampled": False}}
    plan = cmp.build_plan(
        declared(columns={"note": "lz4"}), table, SERVER, {1: measured(uncompressed=2000)}, widths=widths
    )
    warning = [w for w in plan.warnings if "TOAST threshold" in w]
    assert warning == [
        "f.t: no row exceeds the TOAST threshold; this setting changes nothing for this table "
        "(measured over 2000 row(s): widest row 120 bytes, average 96 bytes, threshold 2032 bytes)"
    ]
    wide = {1: {"rows_read": 10, "avg_bytes": 3000.0, "max_bytes": 5000, "sampled": False}}
    assert not [
        w
        for w in cmp.build_plan(declared(columns={"note": "lz4"}), table, SERVER, {}, widths=wide).warnings
        if "TOAST threshold" in w
    ]


def test_summarize_sums_leaves_and_gives_shares_of_non_null_values():
    summary = cmp.summarize({11: measured(pglz=30, lz4=10), 12: measured(lz4=50, uncompressed=10)}, ["note"])
    note = summary["note"]
    assert (note["pglz"], note["lz4"], note["uncompressed"], note["values"]) == (30, 60, 10, 100)
    assert note["shares"] == {"pglz": 0.3, "lz4": 0.6, "uncompressed": 0.1}
    assert cmp.summarize({}, ["note"])["note"]["shares"] == {"pglz": 0.0, "lz4": 0.0, "uncompressed": 0.0}
