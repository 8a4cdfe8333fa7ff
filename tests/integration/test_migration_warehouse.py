"""The issue's 'done when': the SIGETI fact tables, with their materialized views, grants and a concurrent writer,
migrate online to yearly partitions 2020-2030 with nothing lost.

The writer applies every change to the fact table and, in the same transaction, to a mirror table that is not
migrated: at the end both must hold exactly the same rows (content checksum)."""

import random
import threading
import time

from tests.integration.test_migration import NOTHING_LEFT, _one, leftovers
from tests.support.migration_driver import migrate
from tests.support.warehouse import content_checksums, load_warehouse

TABLES = {
    "fait_attributions": (
        "attribution_id",
        "date_demandee_key",
        "montant",
        "INSERT INTO dwh_facts.fait_attributions (date_demandee_key, statut, montant, entreprise_id) "
        "VALUES (%s, 'DEMANDEE', %s, 1) RETURNING *",
    ),
    "fait_factures": (
        "facture_id",
        "date_facture_key",
        "montant_ht",
        "INSERT INTO dwh_facts.fait_factures (date_facture_key, montant_ht, statut_paiement, entreprise_id) "
        "VALUES (%s, %s, 'EMISE', 1) RETURNING *",
    ),
}


class Writer(threading.Thread):
    """Inserts, updates (also moving rows across years) and deletes, each mirrored in the same transaction."""

    def __init__(self, pg_server, db, table, seed):
        super().__init__(daemon=True)
        self.conn = pg_server.connect(db, autocommit=False)
        self.table = table
        self.random = random.Random(seed)
        self.stop = threading.Event()
        self.ops = {"insert": 0, "update": 0, "move": 0, "delete": 0}
        self.errors = []
        self.longest = 0.0

    def run(self):
        key, date_col, amount, insert = TABLES[self.table]
        fact = "dwh_facts.%s" % self.table
        mirror = "public.mirror_%s" % self.table
        with self.conn.cursor() as cur:
            cur.execute("SELECT max(%s) FROM %s" % (key, fact))
            top = cur.fetchone()[0]
        self.conn.commit()
        while not self.stop.is_set():
            op = self.random.choice(["insert", "update", "move", "delete"])
            row_id = self.random.randint(1, top)
            day = self.random.choice([20200315, 20231130, 20260701, 20290101])
            started = time.monotonic()
            try:
                with self.conn.cursor() as cur:
                    if op == "insert":
                        cur.execute(
                            "WITH x AS (%s) INSERT INTO %s SELECT * FROM x" % (insert, mirror),
                            (day, self.random.randint(1, 10**6)),
                        )
                    elif op in ("update", "move"):
                        column, value = (amount, "%s + 1" % amount) if op == "update" else (date_col, str(day))
                        cur.execute(
                            f"WITH x AS (UPDATE {fact} SET {column} = {value} WHERE {key} = %s RETURNING *) "
                            f"UPDATE {mirror} m SET {column} = x.{column} FROM x WHERE m.{key} = x.{key}",
                            (row_id,),
                        )
                    else:
                        cur.execute(
                            f"WITH x AS (DELETE FROM {fact} WHERE {key} = %s RETURNING {key}) "
                            f"DELETE FROM {mirror} m USING x WHERE m.{key} = x.{key}",
                            (row_id,),
                        )
                self.conn.commit()
                self.ops[op] += 1
            except Exception as error:  # a writer must never fail: the test reports it
                self.conn.rollback()
                self.errors.append(repr(error))
            self.longest = max(self.longest, time.monotonic() - started)
            time.sleep(0.002)
        self.conn.close()


def _table_checksum(conn, relation, key):
    return _one(conn, "SELECT count(*), md5(string_agg(md5(t::text), '' ORDER BY t.%s)) FROM %s t" % (key, relation))


def test_sigeti_facts_online_with_concurrent_writer(pg_server, db, conn):
    load_warehouse(conn, scale=20000)
    dims = {k: v for k, v in content_checksums(conn).items() if k.startswith("dwh_dim")}
    with conn.cursor() as cur:
        for table in TABLES:
            cur.execute("CREATE TABLE public.mirror_%s AS SELECT * FROM dwh_facts.%s" % (table, table))
    for seed, table in enumerate(TABLES):
        key, date_col = TABLES[table][0], TABLES[table][1]
        writer = Writer(pg_server, db, table, seed)
        writer.start()
        try:
            while sum(writer.ops.values()) < 20 and not writer.errors:
                time.sleep(0.01)  # the writer is running before the migration starts
            result = migrate(conn, "dwh_facts.%s" % table, date_col, extend_primary_key=True, batch_rows=2000)
            while sum(writer.ops.values()) < 40 and not writer.errors:
                time.sleep(0.01)  # and goes on writing into the partitioned table after the swap
        finally:
            writer.stop.set()
            writer.join(30)
        assert writer.errors == [], writer.errors
        assert result["phases_run"] == ["prepare", "copy", "build", "catchup", "swap", "post"]
        assert result["batches"] > 2
        assert _one(conn, "SELECT relkind FROM pg_class WHERE oid = %s::regclass", ("dwh_facts." + table,))[0] == "p"
        assert _table_checksum(conn, "dwh_facts." + table, key) == _table_checksum(conn, "public.mirror_" + table, key)
        assert (
            _one(conn, "SELECT count(*) FROM pg_inherits WHERE inhparent = %s::regclass", ("dwh_facts." + table,))[0]
            == 12
        )
        assert _one(conn, "SELECT has_table_privilege('dwh_reporting', %s, 'SELECT')", ("dwh_facts." + table,))[0]
    # materialized views rebuilt on the partitioned tables, populated, with their unique indexes and grants
    for mv in ("mv_attributions_par_annee", "mv_factures_par_entreprise", "mv_occupation_par_zone"):
        name = "dwh_marts." + mv
        assert _one(conn, "SELECT relispopulated FROM pg_class WHERE oid = %s::regclass", (name,))[0] is True
        assert _one(conn, "SELECT has_table_privilege('dwh_reporting', %s, 'SELECT')", (name,))[0]
        assert (
            _one(conn, "SELECT count(*) FROM pg_index WHERE indrelid = %s::regclass AND indisunique", (name,))[0] == 1
        )
        with conn.cursor() as cur:
            cur.execute("REFRESH MATERIALIZED VIEW CONCURRENTLY %s" % name)
    assert (
        _one(conn, "SELECT sum(nb_attributions) FROM dwh_marts.mv_attributions_par_annee")[0]
        == _one(conn, "SELECT count(*) FROM dwh_facts.fait_attributions")[0]
    )
    assert (
        _one(conn, "SELECT count(*) FROM dwh_marts.v_attributions_detail")[0]
        == _one(conn, "SELECT count(*) FROM dwh_facts.fait_attributions")[0]
    )
    assert {k: v for k, v in content_checksums(conn).items() if k.startswith("dwh_dim")} == dims
    assert leftovers(conn) == NOTHING_LEFT
