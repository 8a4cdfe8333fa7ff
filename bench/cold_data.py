"""Cold data: one year of the sample warehouse's fact table in PostgreSQL against its Parquet archive (issue 31).

Method of bench/common.py (durable server, interleaved repetitions, median and min-max, server-side counts,
``ansible-playbook`` end to end). The sample warehouse (tests/support/warehouse.py, partitioned by year) is loaded at
its default scale; the years before ``--year`` are dropped once (an older archive, taken before), so that the
retention of the module archives exactly that year. PostgreSQL's bytes of the year's partition (heap, TOAST,
indexes) are read once, after VACUUM ANALYZE. Then, interleaved, each method archives the partition and restores it
into the set, and the partition's rows are checked unchanged (count and md5 of every row's text) after each:

* ``module``: ``sigeti.dwh.partitioned_table`` with ``retention: {keep: K, action: parquet, archive_dir}`` (scan,
  COPY into pyarrow, zstd Parquet, read back and checksum compared, fsync and rename, manifest, detach, checksum
  again, drop), then ``sigeti.dwh.archive_restore`` (the file's SHA-256, COPY FROM in batches, checksum compared,
  attach with its bound: the set's indexes built), each through ``ansible-playbook``;
* ``zstd`` and ``gzip``: what a DBA types, through psql: ``psql -c "\\copy (SELECT * FROM ONLY p) to stdout" |
  zstd -3`` (or ``gzip -6``) to a file, then ``ALTER TABLE ... DETACH PARTITION`` and ``DROP TABLE``; restored by
  ``CREATE TABLE p (LIKE parent INCLUDING DEFAULTS INCLUDING CONSTRAINTS)``, ``zstd -dc | psql -c "\\copy p from
  stdin"`` (``gzip -dc``) and ``ALTER TABLE ... ATTACH PARTITION`` (the same indexes built). No verification, no
  fsync of the file.

    .venv/bin/python bench/cold_data.py [--scale 1000000] [--year 2025] [--repeat 5]

Needs pyarrow in the interpreter (requirements-dev.txt) and the ``zstd`` and ``gzip`` programs.
Writes bench/results/cold_data.json.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench import common  # noqa: E402

DEFAULTS = {"scale": 1_000_000, "repeat": 5}
DB = "bench_cold"
PARENT = "dwh_facts.fait_attributions"
HAND = {"zstd": (["zstd", "-3", "-q", "-c"], ["zstd", "-dc"]), "gzip": (["gzip", "-6", "-c"], ["gzip", "-dc"])}


def pg_bytes(conn, partition):
    """{heap_mb, toast_mb, indexes_mb, total_mb, rows} of one partition (main fork, TOAST with its index, indexes)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT pg_relation_size(c.oid), coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0), "
            "pg_indexes_size(c.oid), pg_total_relation_size(c.oid), (SELECT count(*) FROM ONLY %s) "
            "FROM pg_class c WHERE c.oid = '%s'::regclass" % (partition, partition)
        )
        heap, toast, indexes, total, rows = cur.fetchone()
    mb = 1048576.0
    return {
        "heap_mb": heap / mb,
        "toast_mb": toast / mb,
        "indexes_mb": indexes / mb,
        "total_mb": total / mb,
        "rows": rows,
    }


def content(conn, partition):
    """(rows, md5 of every row's text in key order): what every restore must give back."""
    with conn.cursor() as cur:
        cur.execute("SET TimeZone = 'UTC'")
        cur.execute(
            "SELECT count(*), md5(string_agg(md5(ROW(t.*)::text), '' ORDER BY t.attribution_id)) FROM ONLY %s AS t"
            % partition
        )
        return cur.fetchone()


def psql_argv(server, sql_text):
    return [
        os.path.join(server.bin_dir, "psql"),
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        "127.0.0.1",
        "-p",
        str(server.port),
        "-U",
        "postgres",
        "-d",
        DB,
        "-c",
        sql_text,
    ]


def to_file(server, left, compressor, path):
    """``left | compressor > path``; raise on failure of either."""
    env = dict(os.environ, PGPASSWORD=server.password, PGAPPNAME="psql")
    with open(path, "wb") as out:
        first = subprocess.Popen(left, stdout=subprocess.PIPE, env=env)
        second = subprocess.run(compressor, stdin=first.stdout, stdout=out, check=False)
        first.stdout.close()
        if first.wait() != 0 or second.returncode != 0:
            raise RuntimeError("%s | %s failed" % (left[0], compressor[0]))


def year_bound(year):
    return "FOR VALUES FROM (%d) TO (%d)" % (year * 10000 + 101, (year + 1) * 10000 + 101)


def hand_method(server, name, partition, year, workdir):
    """A DBA's archive through psql: COPY out piped to the compressor, detach, drop; and its restore."""
    compress, decompress = HAND[name]
    path = os.path.join(workdir, "%s.copy.%s" % (partition, "zst" if name == "zstd" else "gz"))
    copy_out = psql_argv(server, "\\copy (SELECT * FROM ONLY %s) to stdout" % partition)
    drop = "ALTER TABLE %s DETACH PARTITION %s; DROP TABLE %s" % (PARENT, partition, partition)
    create = "CREATE TABLE %s (LIKE %s INCLUDING DEFAULTS INCLUDING CONSTRAINTS)" % (partition, PARENT)
    attach = "ALTER TABLE %s ATTACH PARTITION %s %s" % (PARENT, partition, year_bound(year))

    def export():
        to_file(server, copy_out, compress, path)
        common.psql(server, DB, drop)

    def restore():
        common.psql(server, DB, create)
        common.pipe(server, decompress + [path], psql_argv(server, "\\copy %s from stdin" % partition))
        common.psql(server, DB, attach)

    def run(_rep):
        if os.path.exists(path):
            os.unlink(path)
        exported = common.measured(server, export)[1]
        size = os.path.getsize(path)
        restored = common.measured(server, restore)[1]
        return exported, restored, size

    return run


def module_method(server, partition, keep, archive_dir):
    """retention: parquet through partitioned_table, then archive_restore; both through ansible-playbook."""
    retention = dict(server.params(DB), name=PARENT, key="date_demandee_key", key_format="yyyymmdd", interval="year")
    retention.update(premake=2, retention={"keep": keep, "action": "parquet", "archive_dir": archive_dir})
    restore = dict(server.params(DB), table=PARENT, periods=[partition.split(".")[1]], archive_dir=archive_dir)

    def run(_rep):
        shutil.rmtree(archive_dir, ignore_errors=True)  # else the export finds its archive there and reuses it
        os.makedirs(archive_dir)
        result, exported = common.run_module(server, "partitioned_table", retention)
        if result.get("archived") != [partition.split(".")[1]]:
            raise RuntimeError("the retention archived %s, not %s" % (result.get("archived"), partition))
        size = sum(os.path.getsize(os.path.join(top, n)) for top, _d, names in os.walk(archive_dir) for n in names)
        restored = common.run_module(server, "archive_restore", restore)[1]
        return exported, restored, size

    return run


def measure(server, conn, partition, year, keep, workdir, repeat):
    reference = content(conn, partition)
    pg = pg_bytes(conn, partition)
    print("%s: %d rows, heap %.1f MB, TOAST %.1f MB, indexes %.1f MB" % (partition, *pg_summary(pg)))
    methods = {"module": module_method(server, partition, keep, os.path.join(workdir, "archive"))}
    methods.update({name: hand_method(server, name, partition, year, workdir) for name in HAND})

    def numbers(name):
        def run(rep):
            exported, restored, size = methods[name](rep)
            if content(conn, partition) != reference:
                raise RuntimeError("%s did not give the partition's rows back" % name)
            rows = reference[0]
            return {
                "export_s": exported["wall_s"],
                "export_db_s": exported["db_s"],
                "export_rows_per_s": rows / exported["wall_s"],
                "restore_s": restored["wall_s"],
                "restore_db_s": restored["db_s"],
                "restore_rows_per_s": rows / restored["wall_s"],
                "statements": exported["statements"] + restored["statements"],
                "archive_mb": size / 1048576.0,
                "pg_mb": pg["total_mb"],
                "pg_heap_mb": pg["heap_mb"],
                "pg_toast_mb": pg["toast_mb"],
                "pg_indexes_mb": pg["indexes_mb"],
                "disk_change": size / 1048576.0 / pg["total_mb"] - 1.0,
                # an archive needs no index: against the rows alone too
                "data_change": size / 1048576.0 / (pg["heap_mb"] + pg["toast_mb"]) - 1.0,
                "restored_pg_mb": pg_bytes(conn, partition)["total_mb"],
            }

        return run

    def prepare(_name, _rep):
        common.run_sql(conn, "VACUUM ANALYZE %s" % partition, "CHECKPOINT")

    runs = common.run_interleaved({name: numbers(name) for name in methods}, repeat, prepare=prepare)
    return runs, pg


def pg_summary(pg):
    return pg["rows"], pg["heap_mb"], pg["toast_mb"], pg["indexes_mb"]


def setup(conn, year, scale):
    """Load the sample warehouse; drop the years before ``year``; return (load summary, keep for that year)."""
    from tests.support.warehouse import PARTITION_YEARS, load_warehouse

    loaded = load_warehouse(conn, scale=scale, partitioned=True)
    for older in PARTITION_YEARS:
        if older < year:
            common.run_sql(conn, "DROP TABLE dwh_facts.fait_attributions_%d" % older)
    common.run_sql(conn, "VACUUM ANALYZE %s" % PARENT)
    current = common.one(conn, "SELECT extract(year FROM current_date)::int")
    if year >= current:
        raise SystemExit(
            "--year %d is not over yet (the server's date is in %d): retention cannot archive it" % (year, current)
        )
    return loaded, current - year - 1


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=DEFAULTS["scale"], help="fact rows of the sample warehouse")
    parser.add_argument("--year", type=int, default=2025, help="the year of fait_attributions archived")
    parser.add_argument("--repeat", type=int, default=DEFAULTS["repeat"])
    options = parser.parse_args(argv)
    for program in ("zstd", "gzip"):
        if not shutil.which(program):
            parser.error("this benchmark needs the %s program (apt-get install %s)" % (program, program))
    if subprocess.run([sys.executable, "-c", "import pyarrow"], check=False).returncode:
        parser.error("this benchmark needs pyarrow: %s -m pip install 'pyarrow>=14'" % sys.executable)
    server = common.durable_server()
    # on the disk, beside the data directory's file system (not a tmpfs /tmp)
    workdir = tempfile.mkdtemp(prefix="bench-cold-", dir=os.path.join(common.ROOT, ".venv"))
    partition = "dwh_facts.fait_attributions_%d" % options.year
    try:
        server.create_database(DB)
        conn = common.connect(server, DB)
        loaded, keep = setup(conn, options.year, options.scale)
        # the first run creates the periods ahead (premake): not part of any measurement
        common.run_module(
            server,
            "partitioned_table",
            dict(
                server.params(DB),
                name=PARENT,
                key="date_demandee_key",
                key_format="yyyymmdd",
                interval="year",
                premake=2,
            ),
        )
        runs, pg = measure(server, conn, partition, options.year, keep, workdir, options.repeat)
        info = common.server_facts(server, DB)
        conn.close()
    finally:
        server.destroy()
        shutil.rmtree(workdir, ignore_errors=True)
    write(options, info, runs, pg, loaded, partition, keep)
    return 0


def write(options, info, runs, pg, loaded, partition, keep):
    specs = []
    for baseline in HAND:
        for metric in ("export_s", "restore_s", "archive_mb"):
            specs.append(
                {"name": "%s_vs_%s" % (metric, baseline), "method": "module", "baseline": baseline, "metric": metric}
            )
    common.print_table(
        common.summarize(runs),
        metrics=("export_s", "export_rows_per_s", "restore_s", "restore_rows_per_s", "archive_mb"),
    )
    year = partition.rsplit("_", 1)[1]
    rows = [
        {
            "claim": "the guide's \"−65%% disk\", on one year of the sample's fact table (%s)" % partition,
            "measured": "PostgreSQL {mb:module.pg_mb} (heap {mb:module.pg_heap_mb}, TOAST {mb:module.pg_toast_mb}, "
            "indexes {mb:module.pg_indexes_mb}); its archive by `retention: parquet` {mb:module.archive_mb} "
            "(file and manifest): {pct:module.disk_change} disk ({pct:module.data_change} against heap and TOAST "
            "alone); `\\copy | zstd -3` {mb:zstd.archive_mb} ({pct:zstd.disk_change}), "
            "`| gzip` {mb:gzip.archive_mb} ({pct:gzip.disk_change}); Parquet ÷ zstd {ratio:archive_mb_vs_zstd}",
        },
        {
            "claim": "archiving and restoring that year (%s rows): module vs a DBA's `\\copy` piped to zstd / gzip"
            % format(pg["rows"], ","),
            "measured": "export, verified, detach and drop, through `ansible-playbook`: {time:module.export_s} "
            "({num:module.export_rows_per_s} rows/s; database time {time:module.export_db_s}) vs zstd "
            "{time:zstd.export_s} ({ratio:export_s_vs_zstd}), "
            "gzip {time:gzip.export_s} ({ratio:export_s_vs_gzip}); restore and attach, verified: "
            "{time:module.restore_s} ({num:module.restore_rows_per_s} rows/s; database time "
            "{time:module.restore_db_s}) vs zstd {time:zstd.restore_s} "
            "({ratio:restore_s_vs_zstd}), gzip {time:gzip.restore_s} ({ratio:restore_s_vs_gzip})",
        },
    ]
    common.write_results(
        "cold_data",
        "bench/cold_data.py",
        info,
        vars(options),
        DEFAULTS,
        runs,
        specs,
        rows,
        size="sample warehouse at scale %s, fait_attributions %s: %s rows (retention keep %d)"
        % (format(options.scale, ","), year, format(pg["rows"], ","), keep),
        extra={
            "partition": dict(pg, name=partition),
            "warehouse": {"rows": loaded["rows"], "bytes": loaded["bytes"]},
        },
    )


if __name__ == "__main__":
    sys.exit(main())
