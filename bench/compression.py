"""Compression: recompressing pglz values to lz4, the module against what a DBA types, and lz4 on 3 data shapes.

Method of bench/common.py (durable server, interleaved repetitions, server-side counts, ansible-playbook end to
end beside database time).

1. ``recompress``: a table of N rows, each ~10 kB of text and ~6 kB of jsonb stored pglz, copied afresh before
   each measurement (CREATE TABLE AS keeps the compressed values as they are), then brought to lz4 by:
   * the ``compression`` module, ``recompress: rewrite`` and ``recompress: online``, through ansible-playbook;
   * the same ``ALTER TABLE ... ALTER COLUMN ... TYPE ... USING ..., ALTER COLUMN ... SET COMPRESSION lz4``
     typed by hand in psql;
   * ``pg_dump -Fc -Z0 | pg_restore`` into another database with ``default_toast_compression = lz4``.
   Content is checked unchanged (md5 of every value) after each.
2. ``shapes``: lz4 against pglz on three data shapes (short text, long repetitive text, jsonb): time to write
   the same rows, stored size of the values, whole table size.

    .venv/bin/python bench/compression.py [--rows 50000] [--shape-rows 200000] [--batch-size 5000] [--repeat 3]

Writes bench/results/compression.json.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench import common  # noqa: E402

DEFAULTS = {"rows": 50000, "shape_rows": 200000, "repeat": 3}

# ~10 kB of text from 40 distinct 16-char tokens per row, ~6 kB of jsonb: pglz compresses both ~3-4x.
NOTE = (
    "(SELECT string_agg(substr(md5((g % 40 + i)::text), 1, 16) || ' lot ' || (g % 7), ' ') "
    "FROM generate_series(1, 440) g)"
)
DOC = (
    "(SELECT jsonb_agg(jsonb_build_object('k', substr(md5((g % 25 + i)::text), 1, 12), 'n', g % 9)) "
    "FROM generate_series(1, 190) g)"
)
HAND_ALTER = (
    "ALTER TABLE b.work ALTER COLUMN note TYPE text USING note || '', ALTER COLUMN note SET COMPRESSION lz4, "
    "ALTER COLUMN doc TYPE jsonb USING doc || '[]'::jsonb, ALTER COLUMN doc SET COMPRESSION lz4"  # doc holds arrays
)
# Three shapes a warehouse holds: short comments (most never reach the TOAST threshold), long repetitive
# text (generated reports, logs), and jsonb documents.
SHAPES = {
    "short_text": ("text", "'dossier ' || i || ' ' || repeat(substr(md5(i::text), 1, 8), 1 + i % 12)"),
    "long_text": (
        "text",
        "(SELECT string_agg('ligne ' || g || ' statut ' || (ARRAY['OK','EN_COURS','REJET'])[1 + (i + g) % 3] "
        "|| ' montant ' || ((i * g) % 100000), E'\\n') FROM generate_series(1, 150) g)",
    ),
    "jsonb": (
        "jsonb",
        "(SELECT jsonb_agg(jsonb_build_object('ligne', g, 'article', 'ART-' || ((i + g) % 500), "
        "'quantite', (i * g) % 40, 'prix', round(((i * g) % 9999) / 7.0, 2))) FROM generate_series(1, 60) g)",
    ),
}


def checksum(conn, table):
    return common.one(conn, "SELECT md5(string_agg(md5(note) || md5(doc::text), ',' ORDER BY id)) FROM %s" % table)


def methods_of(conn, table):
    with conn.cursor() as cur:
        cur.execute(
            "SELECT coalesce(pg_column_compression(note), 'none') || '/' || "
            "coalesce(pg_column_compression(doc), 'none'), count(*) FROM %s GROUP BY 1" % table
        )
        return dict(cur.fetchall())


def size_mb(conn, table):
    return common.one(conn, "SELECT pg_total_relation_size('%s')" % table) / 1048576.0


def recompress(server, conn, restored, options):
    common.run_sql(conn, "CREATE SCHEMA b")
    common.run_sql(restored, "CREATE SCHEMA b")  # pg_restore of one table does not create its schema
    common.run_sql(
        conn,
        "CREATE TABLE b.base (id int PRIMARY KEY, note text COMPRESSION pglz, doc jsonb COMPRESSION pglz)",
        "INSERT INTO b.base SELECT i, %s, %s FROM generate_series(1, %d) i" % (NOTE, DOC, options.rows),
        "VACUUM ANALYZE b.base",
    )
    reference = checksum(conn, "b.base")
    base_mb = size_mb(conn, "b.base")
    print("base: %d rows, %.0f MB stored pglz" % (options.rows, base_mb))

    def prepare(_name, _rep):
        common.run_sql(
            conn,
            "DROP TABLE IF EXISTS b.work",
            "CREATE TABLE b.work AS SELECT * FROM b.base",
            "ALTER TABLE b.work ADD PRIMARY KEY (id)",
            "VACUUM ANALYZE b.work",
            "CHECKPOINT",
        )
        common.run_sql(restored, "DROP TABLE IF EXISTS b.work")
        assert methods_of(conn, "b.work") == {"pglz/pglz": options.rows}, "CREATE TABLE AS keeps the values"

    def verified(counts, target=conn):
        assert checksum(target, "b.work") == reference, "content changed"
        assert methods_of(target, "b.work") == {"lz4/lz4": options.rows}, methods_of(target, "b.work")
        return dict(counts, size_mb=size_mb(target, "b.work"))

    def module(mode):
        def run(_rep):
            args = dict(server.params("bench"), name="b.work", columns={"note": "lz4", "doc": "lz4"}, recompress=mode)
            if mode == "online":
                args["batch_size"] = options.batch_size
            return verified(common.run_module(server, "compression", args)[1])

        return run

    def by_hand(_rep):
        return verified(common.measured(server, lambda: common.psql(server, "bench", HAND_ALTER))[1])

    def dump_restore(_rep):
        connection = ["-h", "127.0.0.1", "-p", str(server.port), "-U", "postgres"]
        dump = [os.path.join(server.bin_dir, "pg_dump"), "-Fc", "-Z0", "-t", "b.work", *connection, "bench"]
        restore = [os.path.join(server.bin_dir, "pg_restore"), "--no-owner", "--exit-on-error", "-d", "restored"]
        common.run_sql(conn, "ALTER TABLE b.work ALTER COLUMN note SET COMPRESSION lz4, ALTER doc SET COMPRESSION lz4")
        counts = common.measured(
            server,
            lambda: common.pipe(
                server, dump, restore + connection, env={"PGOPTIONS": "-c default_toast_compression=lz4"}
            ),
        )[1]
        return verified(counts, restored)

    print("== recompression pglz -> lz4 of %d rows ==" % options.rows)
    runs = common.run_interleaved(
        {"rewrite": module("rewrite"), "online": module("online"), "by_hand": by_hand, "dump_restore": dump_restore},
        options.repeat,
        prepare=prepare,
    )
    return runs, base_mb


def shapes(server, conn, options):
    def method(shape, compression):
        column_type, expression = SHAPES[shape]
        table = "b.%s_%s" % (shape, compression)

        def run(_rep):
            common.run_sql(
                conn,
                "DROP TABLE IF EXISTS %s" % table,
                "CREATE TABLE %s (id int, v %s COMPRESSION %s)" % (table, column_type, compression),
                "CHECKPOINT",
            )
            insert = "INSERT INTO %s SELECT i, %s FROM generate_series(1, %d) i" % (
                table,
                expression,
                options.shape_rows,
            )
            counts = common.measured(server, lambda: common.psql(server, "bench", insert))[1]
            common.run_sql(conn, "VACUUM ANALYZE %s" % table)
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT sum(pg_column_size(v)), sum(octet_length(v::text)), count(pg_column_compression(v)) "
                    "FROM %s" % table
                )
                stored, raw, compressed = cur.fetchone()
            return dict(
                counts,
                values_mb=stored / 1048576.0,
                raw_mb=raw / 1048576.0,
                compressed_share=compressed / float(options.shape_rows),
                table_mb=size_mb(conn, table),
            )

        return run

    print("== lz4 vs pglz on %d rows of three shapes ==" % options.shape_rows)
    methods = {"%s_%s" % (s, c): method(s, c) for s in SHAPES for c in ("pglz", "lz4")}
    return common.run_interleaved(methods, options.repeat)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", "--scale", type=int, default=DEFAULTS["rows"], help="rows of the recompressed table")
    parser.add_argument("--shape-rows", type=int, default=DEFAULTS["shape_rows"], help="rows per data shape")
    parser.add_argument("--batch-size", type=int, default=5000, help="rows per batch of recompress: online")
    parser.add_argument("--repeat", type=int, default=DEFAULTS["repeat"])
    options = parser.parse_args(argv)
    server = common.durable_server()
    try:
        server.create_database("bench")
        server.create_database("restored")
        conn = common.connect(server, "bench")
        restored = common.connect(server, "restored")
        runs, base_mb = recompress(server, conn, restored, options)
        runs.update(shapes(server, conn, options))
        info = common.server_facts(server, "bench")
        conn.close()
        restored.close()
    finally:
        server.destroy()

    specs = [
        {"name": "rewrite_vs_hand", "method": "rewrite", "baseline": "by_hand"},
        {"name": "rewrite_vs_dump", "method": "rewrite", "baseline": "dump_restore"},
        {"name": "online_vs_hand", "method": "online", "baseline": "by_hand"},
        {"name": "rewrite_size", "method": "rewrite", "baseline": "dump_restore", "metric": "size_mb"},
        {"name": "online_size", "method": "online", "baseline": "dump_restore", "metric": "size_mb"},
        {"name": "hand_size", "method": "by_hand", "baseline": "dump_restore", "metric": "size_mb"},
    ]
    for shape in SHAPES:
        pair = {"method": "%s_lz4" % shape, "baseline": "%s_pglz" % shape}
        specs.append(dict(pair, name="%s_values" % shape, metric="values_mb"))
        specs.append(dict(pair, name="%s_table" % shape, metric="table_mb"))
        specs.append(dict(pair, name="%s_write" % shape, metric="db_s"))
    common.print_table(common.summarize(runs), metrics=("wall_s", "db_s", "size_mb", "values_mb", "table_mb"))
    rows = [
        {
            "claim": "recompressing %s large values pglz → lz4" % format(options.rows, ","),
            "measured": "`rewrite` through `ansible-playbook` {time:rewrite.wall_s}, the same ALTER ... USING typed "
            "in psql {time:by_hand.wall_s} ({ratio:rewrite_vs_hand}), `pg_dump -Z0 | pg_restore` "
            "{time:dump_restore.wall_s} ({ratio:rewrite_vs_dump}); `online` {time:online.wall_s} "
            "({ratio:online_vs_hand} of by hand); size ÷ the restored copy: rewrite {ratio:rewrite_size}, "
            "by hand {ratio:hand_size}, online {ratio:online_size}",
        },
        {
            "claim": "lz4 ÷ pglz on three data shapes (%s rows each)" % format(options.shape_rows, ","),
            "measured": "stored values / whole table / write time: short text {ratio:short_text_values} / "
            "{ratio:short_text_table} / {ratio:short_text_write} (share compressed {pct:short_text_pglz.compressed_share}); "
            "long repetitive text {ratio:long_text_values} / {ratio:long_text_table} / {ratio:long_text_write}; "
            "jsonb {ratio:jsonb_values} / {ratio:jsonb_table} / {ratio:jsonb_write}",
        },
    ]
    common.write_results(
        "compression",
        "bench/compression.py",
        info,
        vars(options),
        DEFAULTS,
        runs,
        specs,
        rows,
        size="%s rows of ~16 kB (%.0f MB stored pglz); %s rows per shape"
        % (format(options.rows, ","), base_mb, format(options.shape_rows, ",")),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
