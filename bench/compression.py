"""Benchmark: recompressing pglz values to lz4 online, by rewrite, and by pg_dump | pg_restore.

Claims checked (issue 5), as ratios measured in this run, never as pass/fail timings:
- after ``recompress: rewrite`` the table is at most ~1.05x the size of a pg_dump | pg_restore copy (the floor);
- ``recompress: online`` rewrites values at >= 50% of the rewrite's throughput;
- and, on the same data, how much larger lz4 is than pglz (a speed choice, not a space choice).

One table of N rows, each with ~10 kB of text and ~6 kB of jsonb that pglz compresses ~3.5x, is created with
pglz and copied three times (CREATE TABLE AS copies the compressed values as they are). Each copy is then brought
to lz4 by one path: the compression module online (batches by primary key, then VACUUM), the compression
module rewrite (one ALTER TABLE ... TYPE ... USING statement), and pg_dump -Fc | pg_restore into another
database (the binaries beside the server's) with default_toast_compression = lz4.

    .venv/bin/python bench/compression.py [--rows 50000] [--batch-size 5000]
"""

import argparse
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
# conftest makes the collection importable: import path for ansible_collections.sigeti.dwh
import conftest  # noqa: E402,F401  # pylint: disable=unused-import
from tests.support.modules import run_module  # noqa: E402
from tests.support.pgserver import PostgresServer  # noqa: E402

# ~10 kB of text from 40 distinct 16-char tokens per row, ~6 kB of jsonb: pglz compresses both ~3-4x.
NOTE = (
    "(SELECT string_agg(substr(md5((g % 40 + i)::text), 1, 16) || ' lot ' || (g % 7), ' ') "
    "FROM generate_series(1, 440) g)"
)
DOC = (
    "(SELECT jsonb_agg(jsonb_build_object('k', substr(md5((g % 25 + i)::text), 1, 12), 'n', g % 9)) "
    "FROM generate_series(1, 190) g)"
)


def sh(conn, statement, fetch=False):
    with conn.cursor() as cur:
        cur.execute(statement)
        return cur.fetchall() if fetch else None


def one(conn, statement):
    return sh(conn, statement, fetch=True)[0][0]


def total_size(conn, table):
    return one(conn, "SELECT pg_total_relation_size('%s')" % table)


def breakdown(conn, table):
    return "heap %s + TOAST %s + indexes %s" % tuple(
        mb(v)
        for v in sh(
            conn,
            (
                "SELECT pg_relation_size(c.oid), pg_total_relation_size(c.reltoastrelid), pg_indexes_size(c.oid) "
                "FROM pg_class c WHERE c.oid = '%s'::regclass"
            )
            % table,
            True,
        )[0]
    )


def methods(conn, table):
    return dict(
        sh(
            conn,
            "SELECT coalesce(pg_column_compression(note), 'none') || '/' || "
            "coalesce(pg_column_compression(doc), 'none'), count(*) FROM %s GROUP BY 1" % table,
            True,
        )
    )


def checksum(conn, table):
    return one(conn, "SELECT md5(string_agg(md5(note) || md5(doc::text), ',' ORDER BY id)) FROM %s" % table)


def mb(n):
    return "%.1f MB" % (n / 1048576.0)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", "--scale", type=int, default=50000, help="rows in the table (default 50000)")
    parser.add_argument("--batch-size", type=int, default=5000, help="rows per batch of recompress: online")
    args = parser.parse_args(argv)

    server = PostgresServer(settings={"shared_buffers": "256MB", "max_wal_size": "4GB", "checkpoint_timeout": "30min"})
    server.start()
    server.wait_ready()
    try:
        server.create_database("bench")
        server.create_database("restored")
        restored = server.connect("restored")
        sh(restored, "CREATE SCHEMA b")  # pg_dump -t dumps the table, not its schema
        conn = server.connect("bench")
        print(
            "PostgreSQL %s, %d rows of ~10 kB text + ~6 kB jsonb, stored pglz"
            % (one(conn, "SHOW server_version"), args.rows)
        )
        started = time.perf_counter()
        sh(conn, "CREATE SCHEMA b")
        sh(conn, "CREATE TABLE b.base (id int PRIMARY KEY, note text COMPRESSION pglz, doc jsonb COMPRESSION pglz)")
        sh(conn, "INSERT INTO b.base SELECT i, %s, %s FROM generate_series(1, %d) i" % (NOTE, DOC, args.rows))
        sh(conn, "VACUUM ANALYZE b.base")
        raw = one(conn, "SELECT sum(octet_length(note)) + sum(octet_length(doc::text)) FROM b.base")
        print(
            "generated in %.1f s: raw %s, stored pglz %s (%s)"
            % (time.perf_counter() - started, mb(raw), mb(total_size(conn, "b.base")), methods(conn, "b.base"))
        )
        reference = checksum(conn, "b.base")
        for name in ("online", "rewrite", "dumped"):
            sh(conn, "CREATE TABLE b.%s AS SELECT * FROM b.base" % name)
            sh(conn, "ALTER TABLE b.%s ADD PRIMARY KEY (id)" % name)
            sh(conn, "VACUUM ANALYZE b.%s" % name)
            assert methods(conn, "b.%s" % name) == {"pglz/pglz": args.rows}, "CTAS keeps the compressed values"
        before = total_size(conn, "b.online")

        params = server.params("bench")
        params.update(columns={"note": "lz4", "doc": "lz4"}, lock_timeout="5s")
        timings, sizes = {}, {}
        for mode in ("online", "rewrite"):
            extra = {"batch_size": args.batch_size} if mode == "online" else {}
            t0 = time.perf_counter()
            result = run_module("compression", dict(params, name="b.%s" % mode, recompress=mode, **extra))
            timings[mode] = time.perf_counter() - t0
            if result.get("failed"):
                raise SystemExit("compression %s failed: %s" % (mode, result["msg"]))
            sizes[mode] = total_size(conn, "b.%s" % mode)
            assert checksum(conn, "b.%s" % mode) == reference, "content changed"
            print(
                "%-8s %6.1f s  %s -> %s  methods %s  (module reported after: %s)"
                % (
                    mode,
                    timings[mode],
                    mb(before),
                    mb(sizes[mode]),
                    methods(conn, "b.%s" % mode),
                    mb(result["sizes"]["after"]["total_bytes"]),
                )
            )

        # pg_dump | pg_restore of the same table, restored with lz4 (the declared method set on the source).
        sh(conn, "ALTER TABLE b.dumped ALTER COLUMN note SET COMPRESSION lz4, ALTER COLUMN doc SET COMPRESSION lz4")
        env = dict(os.environ, PGPASSWORD=server.password, PGOPTIONS="-c default_toast_compression=lz4")
        common = ["-h", "127.0.0.1", "-p", str(server.port), "-U", "postgres"]
        t0 = time.perf_counter()
        dump = subprocess.Popen(
            [os.path.join(server.bin_dir, "pg_dump"), "-Fc", "-t", "b.dumped"] + common + ["bench"],
            stdout=subprocess.PIPE,
            env=env,
        )
        restore = subprocess.run(
            [os.path.join(server.bin_dir, "pg_restore"), "--no-owner", "--exit-on-error", "-d", "restored"] + common,
            stdin=dump.stdout,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            check=False,
        )
        dump.stdout.close()
        if dump.wait() != 0 or restore.returncode != 0:
            raise SystemExit("pg_dump | pg_restore failed: %s" % restore.stdout)
        timings["dump_restore"] = time.perf_counter() - t0
        sh(restored, "VACUUM ANALYZE b.dumped")
        sizes["dump_restore"] = total_size(restored, "b.dumped")
        assert checksum(restored, "b.dumped") == reference, "content changed"
        print(
            "%-8s %6.1f s  %s -> %s  methods %s"
            % (
                "dump|restore",
                timings["dump_restore"],
                mb(before),
                mb(sizes["dump_restore"]),
                methods(restored, "b.dumped"),
            )
        )

        pglz_values = one(conn, "SELECT sum(pg_column_size(note)) + sum(pg_column_size(doc)) FROM b.base")
        lz4_values = one(conn, "SELECT sum(pg_column_size(note)) + sum(pg_column_size(doc)) FROM b.rewrite")
        floor = float(sizes["dump_restore"])
        print()
        print("ratios (same run):")
        print(
            "  final size / restored copy: rewrite %.3f, online %.3f, restored 1.000"
            % (sizes["rewrite"] / floor, sizes["online"] / floor)
        )
        print(
            "  time / dump|restore:        rewrite %.2f, online %.2f"
            % (timings["rewrite"] / timings["dump_restore"], timings["online"] / timings["dump_restore"])
        )
        print(
            "  online throughput / rewrite throughput: %.2f (values per second, same values)"
            % (timings["rewrite"] / timings["online"])
        )
        print(
            "  lz4 / pglz on this data: values %.3f (%s vs %s), whole table %.3f (%s vs %s)"
            % (
                lz4_values / float(pglz_values),
                mb(lz4_values),
                mb(pglz_values),
                sizes["rewrite"] / float(total_size(conn, "b.base")),
                mb(sizes["rewrite"]),
                mb(total_size(conn, "b.base")),
            )
        )
        print("  pglz table: %s; lz4 table (rewrite): %s" % (breakdown(conn, "b.base"), breakdown(conn, "b.rewrite")))
        print(
            "  online before -> after (old versions kept, reusable not returned): %.3f"
            % (sizes["online"] / float(before))
        )
        restored.close()
        conn.close()
    finally:
        server.destroy()


if __name__ == "__main__":
    main()
