"""The undo planner (``migration.undo``, pure): names, refusals, what the plain table takes, the step order."""

from psycopg2 import sql

from ansible_collections.sigeti.dwh.plugins.module_utils.migration import undo, undo_online
from ansible_collections.sigeti.dwh.plugins.module_utils.plan.steps import ACCESS_EXCLUSIVE


def render(node):
    """Render a psycopg2.sql composable without a connection; parts it cannot render show as ``<...>``."""
    if isinstance(node, sql.Composed):
        return "".join(render(part) for part in node.seq)
    if isinstance(node, sql.Identifier):
        return ".".join('"%s"' % s.replace('"', '""') for s in node.strings)
    if isinstance(node, sql.Literal):
        return "'%s'" % node.wrapped.replace("'", "''") if isinstance(node.wrapped, str) else str(node.wrapped)
    if isinstance(node, sql.SQL):
        return node.string
    if isinstance(node, str):
        return node
    return "<...>"


NAMES = undo.undo_names("s", "fait")


def _facts(**extra):
    facts = {
        "constraints": [
            {
                "name": "fait_dim_fkey",
                "type": "f",
                "definition": "FOREIGN KEY (dim_id) REFERENCES s.dim(dim_id)",
                "references": {"schema": "s", "name": "dim"},
                "comment": None,
            },
            {
                "name": "fait_pkey",
                "type": "p",
                "definition": "PRIMARY KEY (id, k)",
                "references": None,
                "comment": "la clé",
            },
        ],
        "foreign_keys_in": [],
        "grants": [{"grantee": "reader", "privilege": "SELECT", "grantable": False}],
        "column_grants": [],
        "triggers": [
            {
                "name": "t1",
                "definition": "CREATE TRIGGER t1 BEFORE INSERT ON s.fait FOR EACH ROW EXECUTE FUNCTION s.f()",
                "enabled": "O",
                "comment": None,
            }
        ],
        "policies": [],
        "sequences": [
            {"schema": "s", "name": "fait_id_seq", "column": "id", "kind": "identity"},
            {"schema": "s", "name": "fait_n_seq", "column": "n", "kind": "serial"},
        ],
        "views": [{"schema": "s", "name": "v", "kind": "view", "definition": " SELECT id FROM s.fait;"}],
        "flags": {},
        "column_options": [],
    }
    facts.update(extra)
    return facts


def _undo(**extra):
    found = {
        "owner": "owner_role",
        "comment": "les faits",
        "reloptions": None,
        "replica_identity": "d",
        "columns": [
            {"name": "id", "type": "bigint", "type_name": "int8", "identity": "a", "generated": ""},
            {"name": "k", "type": "date", "type_name": "date", "identity": "", "generated": ""},
            {"name": "twice", "type": "integer", "type_name": "int4", "identity": "", "generated": "s"},
        ],
        "partitions": [
            {"schema": "s", "name": "fait_2026_01", "leaf": True, "reloptions": ["fillfactor=90", "a=1"]},
            {"schema": "s", "name": "fait_default", "leaf": True, "reloptions": ["fillfactor=90"]},
        ],
        "indexes": [
            {
                "name": "fait_pkey",
                "unique": True,
                "valid": True,
                "constraint": "fait_pkey",
                "constraint_type": "p",
                "constraint_definition": "PRIMARY KEY (id, k)",
                "columns": ["id", "k"],
                "reloptions": ["fillfactor=80"],
                "definition": "CREATE UNIQUE INDEX fait_pkey ON ONLY s.fait USING btree (id, k)",
                "prefix": "CREATE UNIQUE INDEX fait_pkey ON ONLY s.fait ",
                "comment": None,
            },
            {
                "name": "fait_k_idx",
                "unique": False,
                "valid": True,
                "constraint": None,
                "constraint_type": None,
                "constraint_definition": None,
                "definition": "CREATE INDEX fait_k_idx ON ONLY s.fait USING btree (k)",
                "prefix": "CREATE INDEX fait_k_idx ON ONLY s.fait ",
                "comment": "par mois",
            },
        ],
        "publications": [],
        "partition_views": [],
        "partition_foreign_keys": [],
    }
    found.update(extra)
    return found


def test_names_keep_within_postgres_limit():
    assert NAMES["shadow"] == "fait_sgt_plain" and NAMES["kept"] == "fait_partitioned"
    long = undo.undo_names("s", "x" * 63)
    assert len(long["kept"]) <= 63 and long["kept"].endswith("_partitioned")
    assert long["shadow"] != long["kept"]


def test_nothing_to_refuse_on_a_plain_set():
    assert undo.refusals(NAMES, _facts(), {}, _undo(), []) == []


def test_each_refusal_names_the_property_and_what_to_do():
    facts = _facts(
        foreign_keys_in=[{"name": "det_fk", "schema": "s", "table": "detail"}],
        views=[{"schema": "s", "name": "mv", "kind": "materialized view", "definition": "x"}],
    )
    hazards = {"rules": [{"name": "r1"}], "rowtype_columns": ["s.other.c"]}
    found = _undo(
        publications=["pub"],
        partition_views=["s.v_jan"],
        partition_foreign_keys=[{"name": "p_fk", "table": "s.t", "partition": "s.fait_2026_01"}],
        replica_identity="i",
    )
    assert "det_fk" not in " | ".join(undo.refusals(NAMES, facts, hazards, found, [])), "re-pointed"
    found["partition_key"] = ["k"]
    facts["foreign_keys_in"][0]["columns"] = ["id", "k"]
    refused = " | ".join(undo.refusals(NAMES, facts, hazards, found, ["fait_partitioned"], narrow=True))
    for expected in (
        "s.fait_partitioned already exists",
        "det_fk of s.detail",
        "which extend_primary_key takes out",
        "p_fk of s.t references its partition s.fait_2026_01",
        "publication pub",
        "ALTER PUBLICATION pub DROP TABLE",
        "materialized view s.mv",
        "view s.v_jan reads a partition",
        "rule r1",
        "s.other.c is typed by its row type",
        "replica identity is an index",
    ):
        assert expected in refused, expected


def test_exclusion_constraints_and_unreadable_indexes_are_refused():
    weird = dict(_undo()["indexes"][1], definition="CREATE INDEX odd ON s.fait USING btree (k)")
    excl = dict(_undo()["indexes"][1], name="ex", constraint="ex", constraint_type="x")
    refused = undo.refusals(NAMES, _facts(), {}, _undo(indexes=[weird, excl]), [])
    assert any("exclusion constraint ex" in r for r in refused)
    assert any("cannot read" in r for r in refused)


def test_the_plain_table_takes_the_options_every_leaf_shares():
    assert undo.common_reloptions(_undo()["partitions"]) == ["fillfactor=90"]
    assert undo.common_reloptions([]) == []
    assert undo.common_reloptions([{"leaf": True, "reloptions": None}, {"leaf": True, "reloptions": ["a=1"]}]) == []


def test_generated_columns_are_not_copied_and_identity_always_is_overridden():
    assert undo.insert_columns(_undo()["columns"]) == (["id", "k"], True)
    assert undo.insert_columns([{"name": "a", "identity": "d", "generated": ""}]) == (["a"], False)


def test_one_transaction_locks_first_copies_indexes_verifies_then_swaps():
    steps = undo.plan_undo(NAMES, _facts(), _undo())
    assert {s.group for s in steps} == {undo.GROUP}, "all or nothing"
    texts = [render(s.sql) for s in steps]
    reasons = [s.reason for s in steps]
    assert "s.dim (SHARE ROW EXCLUSIVE), s.fait (EXCLUSIVE)" in reasons[0]

    def first(fragment):
        return next(i for i, t in enumerate(texts) if fragment in t)

    create = first('CREATE TABLE "s"."fait_sgt_plain" (LIKE "s"."fait"')
    copy = first('INSERT INTO "s"."fait_sgt_plain" ("id", "k") OVERRIDING SYSTEM VALUE SELECT "id", "k" FROM')
    index = first('CREATE INDEX "fait_k_idx_sgt_plain" ON "s"."fait_sgt_plain" USING btree (k)')
    pkey = first('ADD CONSTRAINT "fait_pkey_sgt_plain" PRIMARY KEY ("id", "k") WITH (fillfactor = \'80\')')
    fkey = first('ADD CONSTRAINT "fait_dim_fkey" FOREIGN KEY')
    verify = next(i for i, s in enumerate(steps) if s.reason.startswith("verify before the swap"))
    exclusive = next(i for i, s in enumerate(steps) if s.lock == ACCESS_EXCLUSIVE and "swap" in s.reason)
    kept = first('ALTER TABLE "s"."fait" RENAME TO "fait_partitioned"')
    named = first('ALTER TABLE "s"."fait_sgt_plain" RENAME TO "fait"')
    assert create < copy < min(index, pkey) and max(index, pkey) < fkey < verify < exclusive < kept < named
    assert first('ALTER INDEX "s"."fait_pkey" RENAME TO "fait_pkey_partitioned"') < kept
    assert first('ALTER INDEX "s"."fait_k_idx_sgt_plain" RENAME TO "fait_k_idx"') > named
    assert texts.index('ALTER TABLE "s"."fait_sgt_plain" SET (fillfactor=90)') < copy
    assert 'ALTER TABLE "s"."fait_sgt_plain" OWNER TO "owner_role"' in texts
    assert 'ALTER SEQUENCE "s"."fait_n_seq" OWNED BY "s"."fait"."n"' in texts
    assert first('ALTER SEQUENCE "s"."fait_id_seq" RENAME TO "fait_id_seq_partitioned"') > named
    assert 'COMMENT ON TABLE "s"."fait" IS \'les faits\'' in texts
    assert 'COMMENT ON INDEX "s"."fait_k_idx" IS \'par mois\'' in texts
    assert 'COMMENT ON CONSTRAINT "fait_pkey" ON "s"."fait" IS \'la clé\'' in texts
    assert 'GRANT SELECT ON TABLE "s"."fait" TO "reader"' in texts
    assert first("CREATE TRIGGER t1") > named
    assert first('CREATE OR REPLACE VIEW "s"."v" AS SELECT id FROM s.fait') > named
    assert not any(t.startswith('DROP TABLE "s"."fait_partitioned"') for t in texts)


def test_drop_source_drops_the_kept_set_last():
    steps = undo.plan_undo(NAMES, _facts(), _undo(), drop_source=True)
    assert render(steps[-1].sql) == 'DROP TABLE "s"."fait_partitioned"'
    assert steps[-1].group == undo.GROUP


def _online_names():
    return undo_online.capture_names(NAMES, 4242)


def test_the_replay_key_is_the_primary_key_else_a_full_unique_index_on_not_null_columns():
    columns = [
        {"name": "id", "type": "bigint", "not_null": True},
        {"name": "k", "type": "date", "not_null": True},
        {"name": "code", "type": "text", "not_null": False},
    ]
    pk = {"name": "z_pkey", "unique": True, "partial": False, "columns": ["id", "k"], "constraint_type": "p"}
    uk = {"name": "a_uk", "unique": True, "partial": False, "columns": ["k"], "constraint_type": "u"}
    nullable = {"name": "b_uk", "unique": True, "partial": False, "columns": ["code", "k"], "constraint_type": None}
    partial = {"name": "c_uk", "unique": True, "partial": True, "columns": ["k"], "constraint_type": None}
    assert undo_online.replay_key({"columns": columns, "indexes": [uk, pk]}) == [
        {"name": "id", "type": "bigint"},
        {"name": "k", "type": "date"},
    ]
    assert undo_online.replay_key({"columns": columns, "indexes": [uk]}) == [{"name": "k", "type": "date"}]
    assert undo_online.replay_key({"columns": columns, "indexes": [nullable, partial]}) is None
    refused = undo_online.online_refusals({"columns": columns, "indexes": [partial]})
    assert refused and "migrate: offline" in refused[0]


def _online_undo():
    found = _undo()
    for column in found["columns"]:
        column["not_null"] = column["name"] in ("id", "k")
    return found


def test_capture_is_one_row_trigger_on_the_parent_so_writes_into_partitions_are_logged():
    steps = undo_online.prepare_steps(_online_names(), _online_undo())
    texts = [render(s.sql) for s in steps]
    trigger = next(t for t in texts if t.startswith("CREATE TRIGGER"))
    assert trigger == (
        'CREATE TRIGGER "sigeti_undo_capture_4242" AFTER INSERT OR UPDATE OR DELETE ON "s"."fait" FOR EACH ROW '
        'EXECUTE FUNCTION "s"."sigeti_undo_capture_4242"()'
    )
    assert 'CREATE TABLE "s"."fait_sgt_plog" (seq bigserial PRIMARY KEY, "id" bigint, "k" date)' in texts
    assert any("SECURITY DEFINER" in t for t in texts)
    assert {s.group for s in steps} == {"sigeti-undo-prepare"}, "one short transaction"


def test_abandon_drops_the_trigger_on_the_parent_its_function_the_log_and_the_shadow():
    names = _online_names()
    assert undo_online.abandon_steps(names, []) == []
    texts = [render(s.sql) for s in undo_online.abandon_steps(names, ["fait_sgt_plog"])]
    assert texts == [
        'DROP TRIGGER IF EXISTS "sigeti_undo_capture_4242" ON "s"."fait"',
        'DROP FUNCTION IF EXISTS "s"."sigeti_undo_capture_4242"()',
        'DROP TABLE IF EXISTS "s"."fait_sgt_plog"',
        'DROP TABLE IF EXISTS "s"."fait_sgt_plain"',
    ]


def test_the_online_swap_replays_verifies_renames_then_drops_the_capture_from_the_kept_set():
    names = _online_names()
    steps = undo_online.online_swap_steps(names, _facts(), _online_undo(), drop_source=False)
    texts = [render(s.sql) for s in steps]
    assert steps[0].lock == ACCESS_EXCLUSIVE and {s.group for s in steps} == {"sigeti-undo-swap"}
    assert texts[1].startswith('CREATE TEMPORARY TABLE "sigeti_undo_keys" ON COMMIT DROP')
    verify = next(i for i, s in enumerate(steps) if s.reason.startswith("verify"))
    kept = texts.index('ALTER TABLE "s"."fait" RENAME TO "fait_partitioned"')
    drop = texts.index('DROP TRIGGER IF EXISTS "sigeti_undo_capture_4242" ON "s"."fait_partitioned"')
    assert verify < kept < drop
    assert not any("sigeti_undo_capture" in t and t.startswith("CREATE TRIGGER") for t in texts)


def test_the_capture_trigger_is_never_carried_to_the_plain_table():
    facts = _facts(triggers=[{"name": "sigeti_undo_capture_1", "definition": "CREATE TRIGGER x", "enabled": "O"}])
    texts = [render(s.sql) for s in undo.plan_undo(NAMES, facts, _undo())]
    assert "CREATE TRIGGER x" not in texts


def test_extend_primary_key_narrows_the_keys_back_without_the_partition_key():
    found = _undo(partition_key=["k"])
    index = found["indexes"][0]
    assert undo.constraint_columns(index, ["k"], narrow=False) == ["id", "k"]
    assert undo.constraint_columns(index, ["k"], narrow=True) == ["id"]
    assert undo.constraint_columns(dict(index, columns=["k"]), ["k"], narrow=True) == ["k"], "never empty"
    texts = [render(s.sql) for s in undo.index_steps(NAMES, found, narrow=True)]
    assert any('PRIMARY KEY ("id") WITH' in t for t in texts)
    assert any("USING btree (k)" in t for t in texts), "other indexes are kept as they are"


def test_foreign_keys_in_are_re_pointed_in_the_swap_and_their_tables_locked_first():
    fk = {
        "name": "det_fk",
        "schema": "s",
        "table": "detail",
        "definition": "FOREIGN KEY (fait_id, fait_k) REFERENCES s.fait(id, k)",
        "validated": True,
        "columns": ["id", "k"],
    }
    steps = undo.plan_undo(NAMES, _facts(foreign_keys_in=[fk]), _undo())
    texts = [render(s.sql) for s in steps]
    assert "s.detail (SHARE ROW EXCLUSIVE)" in steps[0].reason
    named = texts.index('ALTER TABLE "s"."fait_sgt_plain" RENAME TO "fait"')
    drop = texts.index('ALTER TABLE "s"."detail" DROP CONSTRAINT "det_fk"')
    add = texts.index(
        'ALTER TABLE "s"."detail" ADD CONSTRAINT "det_fk" FOREIGN KEY (fait_id, fait_k) REFERENCES s.fait(id, k)'
    )
    assert named < drop < add, "added once the plain table has the name, validated in the offline transaction"
    online = undo_online.online_swap_steps(_online_names(), _facts(foreign_keys_in=[fk]), _online_undo(), False)
    assert any(render(s.sql).endswith("REFERENCES s.fait(id, k) NOT VALID") for s in online)
    post = [render(s.sql) for s in undo_online.post_steps(NAMES, _facts(foreign_keys_in=[fk]))]
    assert 'ALTER TABLE "s"."detail" VALIDATE CONSTRAINT "det_fk"' in post


def test_the_swap_stores_what_is_left_after_it_so_a_killed_run_is_finished_by_the_next():
    names = _online_names()
    swap = undo_online.online_swap_steps(names, _facts(), _online_undo(), drop_source=False)
    marked = undo_online.with_post_mark(swap, names, ['ALTER TABLE "s"."fait" VALIDATE CONSTRAINT "f"', "ANALYZE x"])
    assert marked[-1].group == swap[-1].group == "sigeti-undo-swap", "in the swap's transaction"
    comment = marked[-1].sql.seq[-1].wrapped
    assert undo_online.pending_post(comment) == ['ALTER TABLE "s"."fait" VALIDATE CONSTRAINT "f"', "ANALYZE x"]
    assert undo_online.pending_post(undo_online.BUILT) is None
    assert undo_online.pending_post(None) is None and undo_online.pending_post('{"other": 1}') is None
    texts = [render(s.sql) for s in undo_online.post_run_steps(names, ["ANALYZE x"])]
    assert texts == ["ANALYZE x", 'DROP TABLE IF EXISTS "s"."fait_sgt_plog"'], "the log goes last"
    assert 'DROP TABLE IF EXISTS "s"."fait_sgt_plog"' not in [render(s.sql) for s in swap], "kept until the post"
