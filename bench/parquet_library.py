"""Parquet archives: pyarrow against duckdb for one partition of a fact table, measured (issue 31).

Method of bench/common.py (durable server, interleaved repetitions, median and min-max, provenance). Each
measurement runs in a fresh Python process (its peak RSS is its own, one library imported) reading from the server
what the archive engine reads:

* export, one partition (``dwh_facts.fait_attributions_<year>`` of the sample warehouse, partitioned) and a table
  holding every type the archive keeps (``bench.all_types``, NULLs in every column, NaN, -0, infinities, empty
  strings, unicode, NULL array elements, timestamps across DST with the session TimeZone ``America/St_Johns``):
  * ``pyarrow_copy``: ``COPY (FORMAT csv)`` streamed into pyarrow's CSV reader, zstd Parquet (the engine's path,
    plugins/module_utils/archive/parquet.py, not its scan or verification);
  * ``pyarrow_cursor``: a server-side cursor, ``fetchmany``, Python values into Arrow arrays, zstd Parquet;
  * ``duckdb_copy``: the same COPY into a FIFO read by DuckDB's ``read_csv``, ``COPY ... TO`` zstd Parquet
    (DuckDB's postgres extension is downloaded at run time: not an option on a database host without internet);
  * ``copy_zstd``: the DBA's baseline, ``psql -c "COPY ... TO STDOUT" | zstd -3``.
* read back into a new PostgreSQL table: ``pyarrow_restore`` (batches to CSV, ``COPY FROM``), ``duckdb_restore``
  (``read_parquet`` to a CSV FIFO, ``COPY FROM``), ``zstd_restore`` (``zstd -dc | psql COPY FROM``);
* the engine's checksum: ``scan`` (one pass over the partition: rows, checksum, refusal counts) and ``verify``
  (the file read back into a temporary table in batches and hashed the same way).

Fidelity, once per library: every column of ``bench.all_types`` exported, read back, and compared by key with the
original on its PostgreSQL text (settings pinned); plus each library's CSV reader with its default options.

    .venv/bin/python bench/parquet_library.py [--scale 5000000] [--types-rows 200000] [--year 2026] [--repeat 3]

Needs pyarrow and duckdb in the interpreter (``pip install pyarrow duckdb``; pyarrow is in requirements-dev.txt).
Writes bench/results/parquet_library.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench import common  # noqa: E402

DEFAULTS = {"scale": 5_000_000, "types_rows": 200_000, "repeat": 3}
DB = "bench_parquet"
SESSION_TZ = "America/St_Johns"
EXPORTS = ("pyarrow_copy", "pyarrow_cursor", "duckdb_copy", "copy_zstd")
ERRORS = []
RESTORES = {"pyarrow_copy": "pyarrow_restore", "duckdb_copy": "duckdb_restore", "copy_zstd": "zstd_restore"}

ALL_TYPES = """
DROP SCHEMA IF EXISTS bench CASCADE;
CREATE SCHEMA bench;
SET TimeZone = '{tz}';
CREATE TABLE bench.all_types (
    id bigint PRIMARY KEY, n_free numeric, n_wide numeric(40,20), n_money numeric(14,2), d date, ts timestamp,
    tstz timestamptz, t text, vc varchar(30), j jsonb, b bytea, ai integer[], at text[], bo boolean, i2 smallint,
    i4 integer, i8 bigint, f8 double precision, f4 real);
INSERT INTO bench.all_types
SELECT g,
  CASE g % 6 WHEN 0 THEN NULL WHEN 1 THEN 'NaN' WHEN 2 THEN (g * 1.50)::numeric
       WHEN 3 THEN ('1e-30'::numeric * g) ELSE (g::numeric * 123456789.123456789012345) END,
  CASE WHEN g % 7 = 0 THEN NULL ELSE (g::numeric * 1234567890123.12345678901234567890) END,
  CASE WHEN g % 8 = 0 THEN NULL ELSE round((g % 100000) * 3.07, 2) END,
  CASE WHEN g % 9 = 0 THEN NULL ELSE '0099-12-31'::date + (g * 37 % 3000000) END,
  CASE WHEN g % 10 = 0 THEN NULL ELSE '2000-01-01'::timestamp + g * interval '1 minute 0.000001 second' END,
  CASE WHEN g % 11 = 0 THEN NULL ELSE '2024-03-10 00:00:00-03:30'::timestamptz + g * interval '97 seconds' END,
  CASE g % 12 WHEN 0 THEN NULL WHEN 1 THEN '' WHEN 2 THEN E'é€😀 "q", \\n\\\\' || g
       ELSE repeat(md5(g::text), 1 + g % 4) END,
  CASE WHEN g % 13 = 0 THEN NULL ELSE 'LOT-' || g END,
  CASE g % 5 WHEN 0 THEN NULL WHEN 1 THEN 'null'::jsonb
       ELSE jsonb_build_object('n', g, 'x', g * 2.50, 'tags', jsonb_build_array('a', g % 3, NULL)) END,
  CASE WHEN g % 14 = 0 THEN NULL WHEN g % 14 = 1 THEN ''::bytea ELSE decode('00' || md5(g::text), 'hex') END,
  CASE WHEN g % 15 = 0 THEN NULL WHEN g % 15 = 1 THEN '{{}}'::int[] ELSE ARRAY[g, NULL, -g] END,
  CASE WHEN g % 16 = 0 THEN NULL ELSE ARRAY['a b', NULL, '', 'c,"d"', 'NULL', g::text] END,
  CASE WHEN g % 17 = 0 THEN NULL ELSE g % 2 = 0 END,
  CASE WHEN g % 18 = 0 THEN NULL ELSE (g % 65536 - 32768)::smallint END,
  CASE WHEN g % 19 = 0 THEN NULL ELSE ((g::bigint * 7919) % 2147483647)::int END,
  CASE WHEN g % 20 = 0 THEN NULL WHEN g % 20 = 1 THEN 9223372036854775807 ELSE g::bigint * 1000003 END,
  CASE g % 21 WHEN 0 THEN NULL WHEN 1 THEN '-0'::float8 WHEN 2 THEN 'Infinity' WHEN 3 THEN '-Infinity'
       WHEN 4 THEN 'NaN' ELSE g / 7.0::float8 END,
  CASE g % 22 WHEN 0 THEN NULL WHEN 1 THEN '-0'::real WHEN 2 THEN 'NaN' ELSE (g / 3.0)::real END
FROM generate_series(1, {rows}) AS g;
ANALYZE bench.all_types;
"""


# -- workers: one measurement in a fresh process ------------------------------------------------------------------


def worker_connect(job):
    import psycopg2

    conn = psycopg2.connect(application_name="bench-worker", **job["params"])
    with conn.cursor() as cur:
        cur.execute("SET TimeZone = %s", (SESSION_TZ,))
    conn.commit()
    return conn


def worker_specs(conn, schema, table):
    from ansible_collections.sigeti.dwh.plugins.module_utils.archive import types as archive_types
    from ansible_collections.sigeti.dwh.plugins.module_utils.catalog import archive as catalog_archive

    facts = catalog_archive.read_table(conn, schema, table)
    return archive_types.column_specs(schema, table, catalog_archive.read_columns(conn, facts))


def begin_export(conn):
    """The engine's session for a COPY out: one transaction, canonical settings, UTF-8."""
    from ansible_collections.sigeti.dwh.plugins.module_utils.catalog import archive as catalog_archive

    conn.rollback()
    conn.set_client_encoding("UTF8")
    catalog_archive.pin_settings(conn)


def export_pyarrow_copy(conn, job, specs, defaults=False):
    from ansible_collections.sigeti.dwh.plugins.module_utils.archive import copy as archive_copy
    from ansible_collections.sigeti.dwh.plugins.module_utils.archive import parquet as parquet_archive

    arrow = parquet_archive.require_pyarrow()
    begin_export(conn)
    query = archive_copy.export_query(job["schema"], job["table"], specs)
    if defaults:  # pyarrow's own CSV defaults, to show what they lose
        original = arrow.csv.ConvertOptions

        def plain(**kwargs):
            return original(column_types=kwargs["column_types"])

        arrow.csv.ConvertOptions = plain
    return archive_copy.copy_out(conn, query, lambda s: parquet_archive.write_parquet(arrow, s, job["file"], specs))


def cursor_array(pa, spec, values, target):
    """One column of fetched Python values as an Arrow array (text for what Parquet keeps as a string)."""
    if spec.base == "bytea":
        values = [None if v is None else bytes(v) for v in values]
    elif target == pa.string():
        values = [v if v is None or isinstance(v, str) else str(v) for v in values]
    return pa.array(values, target)


def export_pyarrow_cursor(conn, job, specs):
    """Server-side cursor: psycopg2 builds Python values, pa.array converts each column of a batch."""
    import psycopg2.extras
    from psycopg2 import sql

    from ansible_collections.sigeti.dwh.plugins.module_utils.archive import parquet as parquet_archive

    arrow = parquet_archive.require_pyarrow()
    pa = arrow.pa
    schema = parquet_archive.arrow_schema(arrow, specs)
    psycopg2.extras.register_default_jsonb(conn, loads=lambda text: text)  # keep PostgreSQL's text
    begin_export(conn)
    rows = 0
    with conn.cursor(name="bench_export") as cur, open(job["file"], "xb") as handle:
        cur.itersize = 50000
        cur.execute(sql.SQL("SELECT * FROM ONLY {}").format(sql.Identifier(job["schema"], job["table"])))
        writer = arrow.parquet.ParquetWriter(handle, schema, compression="zstd")
        while True:
            batch = cur.fetchmany(50000)
            if not batch:
                break
            columns = list(zip(*batch))
            arrays = [
                cursor_array(pa, spec, column, schema.field(i).type)
                for i, (spec, column) in enumerate(zip(specs, columns))
            ]
            writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=schema))
            rows += len(batch)
        writer.close()
        handle.flush()
        os.fsync(handle.fileno())
    conn.rollback()
    return rows


DUCK_TYPES = {
    "boolean": "BOOLEAN",
    "smallint": "SMALLINT",
    "integer": "INTEGER",
    "bigint": "BIGINT",
    "real": "FLOAT",
    "double precision": "DOUBLE",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
    "timestamptz": "TIMESTAMPTZ",
    "jsonb": "JSON",
    "json": "JSON",
}


def duck_type(spec):
    """DuckDB's best exact type: DECIMAL up to 38 digits (its limit), text for the rest."""
    if spec.is_array:
        return duck_type(spec.__class__(**dict(spec.__dict__, is_array=False))) + "[]"
    if spec.base == "numeric" and spec.parquet.startswith("decimal128"):
        return "DECIMAL(%d,%d)" % spec.modifiers
    if spec.base == "bytea":
        return "BLOB"
    return DUCK_TYPES.get(spec.base, "VARCHAR")


def duck_select(spec):
    """What DuckDB selects from the CSV text of a column (read as VARCHAR) to get its value."""
    column = '"%s"' % spec.name.replace('"', '""')
    if spec.base == "bytea":
        return "from_hex(substr(%s, 3)) AS %s" % (column, column)
    if spec.is_array:
        return "CAST(CAST(%s AS JSON) AS %s) AS %s" % (column, duck_type(spec), column)
    return "CAST(%s AS %s) AS %s" % (column, duck_type(spec), column)


def fifo_pump(path, produce):
    """Run ``produce(handle)`` writing into the FIFO ``path`` in a thread; return the thread and its errors."""
    errors = []

    def run():
        try:
            with open(path, "wb") as handle:
                produce(handle)
        except BaseException as error:  # reported by the caller
            errors.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


def export_duckdb_copy(conn, job, specs, defaults=False):
    import duckdb

    from ansible_collections.sigeti.dwh.plugins.module_utils.archive import copy as archive_copy

    begin_export(conn)
    fifo = job["file"] + ".fifo"
    os.mkfifo(fifo)
    query = archive_copy.export_query(job["schema"], job["table"], specs).as_string(conn)
    thread, errors = fifo_pump(fifo, lambda handle: conn.cursor().copy_expert(query, handle, size=1 << 20))
    columns = "{%s}" % ", ".join("'%s': 'VARCHAR'" % s.name for s in specs)
    quoted = "" if defaults else ", allow_quoted_nulls = false"
    duck = duckdb.connect(config={"threads": 2})
    duck.execute("SET TimeZone = 'UTC'")
    duck.execute(
        "COPY (SELECT %s FROM read_csv('%s', header = false, auto_detect = false, columns = %s, nullstr = ''%s)) "
        "TO '%s' (FORMAT parquet, COMPRESSION zstd)"
        % (", ".join(duck_select(s) for s in specs), fifo, columns, quoted, job["file"])
    )
    thread.join()
    os.unlink(fifo)
    conn.rollback()
    if errors:
        raise errors[0]
    rows = duck.execute("SELECT count(*) FROM read_parquet('%s')" % job["file"]).fetchone()[0]
    with open(job["file"], "rb") as handle:
        os.fsync(handle.fileno())
    return rows


def psql_command(job, sql_text):
    params = job["params"]
    return [
        os.path.join(job["bin_dir"], "psql"),
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        params["host"],
        "-p",
        str(params["port"]),
        "-U",
        params["user"],
        "-d",
        params["dbname"],
        "-c",
        sql_text,
    ]


def export_copy_zstd(conn, job, specs):
    env = dict(os.environ, PGPASSWORD=job["params"]["password"], PGAPPNAME="psql", PGTZ="UTC")
    copy = "COPY (SELECT * FROM ONLY %s.%s) TO STDOUT (FORMAT csv)" % (job["schema"], job["table"])
    with open(job["file"], "wb") as out:
        first = subprocess.Popen(psql_command(job, copy), stdout=subprocess.PIPE, env=env)
        second = subprocess.run(["zstd", "-3", "-q", "-c"], stdin=first.stdout, stdout=out, check=True)
        first.stdout.close()
        if first.wait() != 0 or second.returncode != 0:
            raise RuntimeError("psql | zstd failed")
        os.fsync(out.fileno())
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM ONLY %s.%s" % (job["schema"], job["table"]))
        return cur.fetchone()[0]


def restore_into(conn, job, specs):
    from ansible_collections.sigeti.dwh.plugins.module_utils.archive import copy as archive_copy

    conn.rollback()
    conn.set_client_encoding("UTF8")
    with conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS bench.%s" % job["target"])
    archive_copy.create_table(conn, "bench", job["target"], specs)


def restore_pyarrow(conn, job, specs):
    from ansible_collections.sigeti.dwh.plugins.module_utils.archive import copy as archive_copy
    from ansible_collections.sigeti.dwh.plugins.module_utils.archive import parquet as parquet_archive

    arrow = parquet_archive.require_pyarrow()
    restore_into(conn, job, specs)
    rows = archive_copy.copy_in(
        conn, "bench", job["target"], parquet_archive.csv_chunks(arrow, job["file"], specs), freeze=True
    )
    conn.commit()
    return rows


def duck_output(spec):
    """What DuckDB writes for a column so that PostgreSQL's COPY reads the same value back."""
    column = '"%s"' % spec.name.replace('"', '""')
    if spec.base == "bytea":
        return "'\\x' || lower(hex(%s))" % column
    if spec.is_array and spec.base in ("text", "varchar", "char"):
        item = (
            "CASE WHEN x IS NULL THEN 'NULL' ELSE '\"' || replace(replace(x, '\\', '\\\\'), '\"', '\\\"') || '\"' END"
        )
        return "'{' || array_to_string(list_transform(%s, lambda x: %s), ',') || '}'" % (column, item)
    if spec.is_array:
        return (
            "'{' || array_to_string(list_transform(%s, lambda x: coalesce(CAST(x AS VARCHAR), 'NULL')), ',') || '}'"
            % (column)
        )
    return column


def restore_duckdb(conn, job, specs):
    """DuckDB writes to a path, not a Python file: it writes CSV into a FIFO whose other end feeds COPY FROM."""
    import duckdb

    from ansible_collections.sigeti.dwh.plugins.module_utils.archive import copy as archive_copy

    restore_into(conn, job, specs)
    fifo = job["file"] + ".fifo"
    os.mkfifo(fifo)
    duck = duckdb.connect(config={"threads": 2})
    duck.execute("SET TimeZone = 'UTC'")
    select = ", ".join("%s AS c%d" % (duck_output(s), i) for i, s in enumerate(specs))
    loaded, errors = [], []

    def load():
        try:
            with open(fifo, "rb") as handle:
                chunks = iter(lambda: handle.read(1 << 20), b"")
                loaded.append(archive_copy.copy_in(conn, "bench", job["target"], chunks))
        except BaseException as error:  # reported below
            errors.append(error)

    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    duck.execute(
        "COPY (SELECT %s FROM read_parquet('%s')) TO '%s' (FORMAT csv, HEADER false, FORCE_QUOTE *)"
        % (select, job["file"], fifo)
    )
    loader.join()
    os.unlink(fifo)
    if errors:
        raise errors[0]
    conn.commit()
    return loaded[0]


def restore_zstd(conn, job, specs):
    restore_into(conn, job, specs)
    conn.commit()
    env = dict(os.environ, PGPASSWORD=job["params"]["password"], PGAPPNAME="psql", PGTZ="UTC")
    copy = "COPY bench.%s FROM STDIN (FORMAT csv)" % job["target"]
    first = subprocess.Popen(["zstd", "-dc", job["file"]], stdout=subprocess.PIPE)
    second = subprocess.run(psql_command(job, copy), stdin=first.stdout, env=env, capture_output=True, check=False)
    first.stdout.close()
    if first.wait() != 0 or second.returncode != 0:
        raise RuntimeError("zstd -dc | psql failed: %s" % second.stderr.decode())
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM bench.%s" % job["target"])
        return cur.fetchone()[0]


def engine_scan(conn, job, specs):
    from ansible_collections.sigeti.dwh.plugins.module_utils.archive import types as archive_types
    from ansible_collections.sigeti.dwh.plugins.module_utils.catalog import archive as catalog_archive

    conn.rollback()
    scan = catalog_archive.scan_table(conn, job["schema"], job["table"], archive_types.value_checks(specs))
    conn.rollback()
    return scan.checksum.rows


def engine_verify(conn, job, specs):
    from ansible_collections.sigeti.dwh.plugins.module_utils.archive import parquet as parquet_archive
    from ansible_collections.sigeti.dwh.plugins.module_utils.archive import run as archive_run

    return archive_run.checksum_parquet(conn, parquet_archive.require_pyarrow(), job["file"], specs).rows


WORKERS = {
    "pyarrow_copy": export_pyarrow_copy,
    "pyarrow_copy_defaults": lambda c, j, s: export_pyarrow_copy(c, j, s, defaults=True),
    "pyarrow_cursor": export_pyarrow_cursor,
    "duckdb_copy": export_duckdb_copy,
    "duckdb_copy_defaults": lambda c, j, s: export_duckdb_copy(c, j, s, defaults=True),
    "copy_zstd": export_copy_zstd,
    "pyarrow_restore": restore_pyarrow,
    "duckdb_restore": restore_duckdb,
    "zstd_restore": restore_zstd,
    "scan": engine_scan,
    "verify": engine_verify,
}


def worker(job):
    """Run one measurement; print {rows, seconds, rss_mb, base_rss_mb}."""
    import conftest  # noqa: F401  # the collection importable as ansible_collections.sigeti.dwh

    conn = worker_connect(job)
    specs = worker_specs(conn, job["schema"], job["table"])
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    started = time.perf_counter()
    rows = WORKERS[job["method"]](conn, job, specs)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    conn.close()
    print(json.dumps({"rows": rows, "seconds": seconds, "rss_mb": peak, "base_rss_mb": base}))


def run_worker(server, method, schema, table, path, target="restored"):
    job = {
        "method": method,
        "schema": schema,
        "table": table,
        "file": path,
        "target": target,
        "bin_dir": server.bin_dir,
        "params": {
            "host": "127.0.0.1",
            "port": server.port,
            "user": "postgres",
            "password": server.password,
            "dbname": DB,
        },
    }
    done = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(job)],
        capture_output=True,
        text=True,
        check=False,
        cwd=common.ROOT,
    )
    if done.returncode != 0:
        raise RuntimeError("%s failed:\n%s" % (method, done.stderr[-3000:]))
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- the harness ------------------------------------------------------------------------------------------------


def measure(server, schema, table, workdir, repeat):
    """Interleaved repetitions of every export, each followed by its restore; the engine's scan and verify."""
    conn = common.connect(server, DB)
    size = {}

    def exporter(method):
        def run(rep):
            path = os.path.join(
                workdir, "%s-%s-%d.%s" % (table, method, rep, "zst" if method == "copy_zstd" else "parquet")
            )
            common.run_sql(conn, "CHECKPOINT")
            out = run_worker(server, method, schema, table, path)
            numbers = {
                "wall_s": out["seconds"],
                "rows": out["rows"],
                "rows_per_s": out["rows"] / out["seconds"],
                "rss_mb": out["rss_mb"],
                "rss_growth_mb": out["rss_mb"] - out["base_rss_mb"],
                "file_mb": os.path.getsize(path) / 1048576.0,
            }
            restore = RESTORES.get(method)
            if restore:
                try:
                    back = run_worker(server, restore, schema, table, path, target="r_%s" % method)
                except RuntimeError as error:  # recorded: a library that cannot read its own file back
                    ERRORS.append({"table": table, "method": restore, "error": str(error).strip().splitlines()[-1]})
                    back = None
                if back:
                    numbers.update(
                        restore_s=back["seconds"],
                        restore_rows_per_s=back["rows"] / back["seconds"],
                        restore_rss_mb=back["rss_mb"],
                        restore_ok=int(back["rows"] == out["rows"]),
                    )
                else:
                    numbers["restore_ok"] = 0
            if method == "pyarrow_copy":
                verify = run_worker(server, "verify", schema, table, path)
                numbers["verify_s"] = verify["seconds"]
                numbers["scan_s"] = run_worker(server, "scan", schema, table, path)["seconds"]
            size[method] = numbers["file_mb"]
            os.unlink(path)
            return numbers

        return run

    runs = common.run_interleaved({m: exporter(m) for m in EXPORTS}, repeat)
    with conn.cursor() as cur:
        cur.execute("SELECT pg_relation_size(%s), pg_total_relation_size(%s)", ("%s.%s" % (schema, table),) * 2)
        heap, total = cur.fetchone()
    conn.close()
    return runs, {"heap_mb": heap / 1048576.0, "total_mb": total / 1048576.0}


FIDELITY_METHODS = (
    ("pyarrow_copy", "pyarrow_restore"),
    ("duckdb_copy", "duckdb_restore"),
    ("pyarrow_copy_defaults", "pyarrow_restore"),
    ("duckdb_copy_defaults", "duckdb_restore"),
)


def column_differences(conn, specs, target):
    """{column: "exact" | "N rows differ, e.g. a -> b"} comparing bench.all_types with bench.<target> by id."""
    out = {}
    with conn.cursor() as cur:
        cur.execute("SET TimeZone = 'UTC'; SET extra_float_digits = 1")
        for spec in specs:
            column = '"%s"' % spec.name
            cur.execute(
                "SELECT count(*), min(a.%s::text || ' -> ' || coalesce(b.%s::text, 'NULL')) FILTER (WHERE a.%s IS NOT NULL) "
                "FROM bench.all_types a LEFT JOIN bench.%s b USING (id) "
                "WHERE a.%s::text IS DISTINCT FROM b.%s::text" % (column, column, column, target, column, column)
            )
            count, example = cur.fetchone()
            out[spec.name] = (
                "exact" if not count else "%d rows differ, e.g. %s" % (count, (example or "NULL -> value")[:120])
            )
    return out


def fidelity(server, workdir):
    """Each library's export and read back of every type, compared column by column."""
    conn = common.connect(server, DB)
    import conftest  # noqa: F401

    specs = worker_specs(conn, "bench", "all_types")
    report = {
        "parquet_types_engine": {s.name: "%s -> %s" % (s.pg_type, s.parquet) for s in specs},
        "duckdb_types": {s.name: duck_type(s) for s in specs},
    }
    for export, restore in FIDELITY_METHODS:
        path = os.path.join(workdir, "fidelity-%s.parquet" % export)
        try:
            run_worker(server, export, "bench", "all_types", path)
            run_worker(server, restore, "bench", "all_types", path, target="f_%s" % export)
            report[export] = column_differences(conn, specs, "f_%s" % export)
        except RuntimeError as error:
            report[export] = {"error": str(error).strip().splitlines()[-1][:300]}
        print("  fidelity %-24s %s" % (export, json.dumps(report[export], ensure_ascii=False)[:600]))
        if os.path.exists(path):
            os.unlink(path)
    conn.close()
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=DEFAULTS["scale"], help="fact rows of the sample warehouse")
    parser.add_argument("--types-rows", type=int, default=DEFAULTS["types_rows"], help="rows of bench.all_types")
    parser.add_argument("--year", type=int, default=2026, help="the partition of fait_attributions exported")
    parser.add_argument("--repeat", type=int, default=DEFAULTS["repeat"])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.worker:
        return worker(json.loads(options.worker))
    for module in ("pyarrow", "duckdb"):
        if subprocess.run([sys.executable, "-c", "import %s" % module], check=False).returncode:
            parser.error("this benchmark needs %s: %s -m pip install pyarrow duckdb" % (module, sys.executable))
    server = common.durable_server()
    workdir = tempfile.mkdtemp(prefix="bench-parquet-", dir=os.path.join(common.ROOT, ".venv"))
    try:
        server.create_database(DB)
        conn = common.connect(server, DB)
        from tests.support.warehouse import load_warehouse

        loaded = load_warehouse(conn, scale=options.scale, partitioned=True)
        common.run_sql(conn, ALL_TYPES.format(tz=SESSION_TZ, rows=int(options.types_rows)), "VACUUM ANALYZE")
        conn.close()
        table = "fait_attributions_%d" % options.year
        runs, sizes = measure(server, "dwh_facts", table, workdir, options.repeat)
        types_runs, types_sizes = measure(server, "bench", "all_types", workdir, options.repeat)
        runs.update({"types_%s" % k: v for k, v in types_runs.items()})
        report = fidelity(server, workdir)
        info = common.server_facts(server, DB)
    finally:
        server.destroy()
        shutil.rmtree(workdir, ignore_errors=True)
    write(options, info, runs, report, loaded, sizes, types_sizes, table)
    return 0


def write(options, info, runs, report, loaded, sizes, types_sizes, table):
    specs = []
    for prefix in ("", "types_"):
        for metric in ("wall_s", "file_mb", "rss_mb", "restore_s"):
            specs.append(
                {
                    "name": "%sduckdb_vs_pyarrow_%s" % (prefix, metric),
                    "method": prefix + "duckdb_copy",
                    "baseline": prefix + "pyarrow_copy",
                    "metric": metric,
                }
            )
        specs.append(
            {
                "name": "%scursor_vs_copy" % prefix,
                "method": prefix + "pyarrow_cursor",
                "baseline": prefix + "pyarrow_copy",
            }
        )
        specs.append(
            {
                "name": "%spyarrow_vs_zstd_size" % prefix,
                "method": prefix + "pyarrow_copy",
                "baseline": prefix + "copy_zstd",
                "metric": "file_mb",
            }
        )
        specs.append(
            {
                "name": "%spyarrow_vs_zstd_time" % prefix,
                "method": prefix + "pyarrow_copy",
                "baseline": prefix + "copy_zstd",
            }
        )
    common.print_table(common.summarize(runs), metrics=("wall_s", "rows_per_s", "file_mb", "rss_mb", "restore_s"))
    rows = [
        {
            "claim": "Parquet archive library: pyarrow vs duckdb, one partition (%s)" % table,
            "measured": "export {time:pyarrow_copy.wall_s} pyarrow vs {time:duckdb_copy.wall_s} duckdb "
            "({ratio:duckdb_vs_pyarrow_wall_s}); file {ratio:duckdb_vs_pyarrow_file_mb}; peak RSS "
            "{ratio:duckdb_vs_pyarrow_rss_mb}; read back {ratio:duckdb_vs_pyarrow_restore_s}; cursor ÷ COPY "
            "{ratio:cursor_vs_copy}; Parquet ÷ COPY|zstd size {ratio:pyarrow_vs_zstd_size}",
        }
    ]
    common.write_results(
        "parquet_library",
        "bench/parquet_library.py",
        info,
        {k: v for k, v in vars(options).items() if k != "worker"},
        DEFAULTS,
        runs,
        specs,
        rows,
        size="%s of the sample warehouse at scale %s (heap %.0f MB, with indexes and TOAST %.0f MB); bench.all_types "
        "%s rows (%.0f MB)"
        % (
            table,
            format(options.scale, ","),
            sizes["heap_mb"],
            sizes["total_mb"],
            format(options.types_rows, ","),
            types_sizes["total_mb"],
        ),
        extra={"fidelity": report, "errors": ERRORS, "warehouse": {"rows": loaded["rows"], "bytes": loaded["bytes"]}},
    )


if __name__ == "__main__":
    sys.exit(main())
