# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""TOAST compression of columns: declared settings + catalog facts -> a plan, and recompression batches.

Pure functions (no I/O): the run executes the plan through the shared Executor, online recompression as batched
work (``online_batches``). What the planner relies on (measured, see docs/compression.md):

- ``SET COMPRESSION`` changes future writes only; existing values keep their method. On a partitioned parent
  it sets the parent only (partitions created later inherit it), so every relation of the tree is altered
  one by one, each with ``ONLY`` and in its own short transaction.
- Only a statement that builds a *new* value recompresses it: ``c || ''`` (text), a jsonb concatenation with
  an empty container of the same kind, ``(c::text)::json``, ``c || ''::bytea``. ``SET c = c``, VACUUM FULL,
  CLUSTER and CTAS copy the compressed datum as it is.
- ``ALTER COLUMN ... TYPE`` resets compression and storage (so both are re-applied in the same statement)
  and is refused on a partition ("cannot alter inherited column"): a partition is rewritten by one UPDATE
  of the values to recompress followed by ``VACUUM (FULL, ANALYZE)`` of that partition alone.
- ``pg_column_compression`` is NULL for a value stored without compression; such values are never rewritten
  (they are too small or incompressible and would stay as they are).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Iterable, Sequence, Tuple, TypedDict

from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import InvalidInput, UnsupportedServer
from ansible_collections.sigeti.dwh.plugins.module_utils.core.identifiers import display_name
from ansible_collections.sigeti.dwh.plugins.module_utils.plan import steps as planlib

try:
    from psycopg2 import sql
except ImportError:  # reported by the connection layer
    sql = None

if TYPE_CHECKING:  # names used in annotations only
    from psycopg2.sql import Composed

    from ansible_collections.sigeti.dwh.plugins.module_utils.session.connection import Connection, ServerFacts

METHODS = ("lz4", "pglz", "default")
STORAGES = ("plain", "main", "external", "extended")
RECOMPRESS_MODES = ("none", "online", "rewrite")
TOAST_TUPLE_TARGET_MIN = 128
TOAST_TUPLE_TARGET_MAX = 8160
DEFAULT_BATCH_SIZE = 5000
SPACE_NOTE = (
    "recompress online wrote new row versions: the space of the old versions is reusable by later writes "
    "after VACUUM but is not returned to the operating system; only a rewrite (recompress: rewrite, "
    "VACUUM FULL, pg_repack) gives it back"
)

# Base types (pg_type.typname) whose value we can rebuild without changing its content.
RECOMPRESSIBLE_TYPES = ("text", "varchar", "bpchar", "bytea", "jsonb", "json")
_TYPE_TEXT = re.compile(r"^[a-z][a-z ]*(\(\d+\))?$")


class DeclaredCompression(TypedDict):
    """The declared state ``declared_state`` returns (validated module options); the planner's input."""

    columns: dict[str, str]  # column -> lz4 | pglz | default
    storage: dict[str, str]  # column -> plain | main | external | extended
    toast_tuple_target: int | None
    recompress: str  # none | online | rewrite
    database_default: str | None  # lz4 | pglz
    batch_size: int


# ``(column, type_name, target method)`` of a column to recompress (``typing.Tuple``: evaluated on Python 3.8 too).
ColumnSpec = Tuple[str, str, str]


def toast_threshold(block_size: int | str | None = 8192) -> int:
    """Return the row width above which PostgreSQL tries to compress (TOAST_TUPLE_THRESHOLD): 2032 for 8 kB pages."""
    block_size = int(block_size or 8192)
    usable = block_size - _maxalign(24 + 4 * 4)  # page header + 4 line pointers
    return (usable // 4) // 8 * 8


def _maxalign(n):
    return (n + 7) // 8 * 8


# ---------------------------------------------------------------------------------------------
# Declared state
# ---------------------------------------------------------------------------------------------


def declared_state(params: dict[str, Any]) -> DeclaredCompression:
    """Validate the options that need no catalog facts and return the declared state as a dict.

    Raises InvalidInput naming the option, the value and the accepted values.
    """
    columns = {str(k): v for k, v in (params.get("columns") or {}).items()}
    for column, method in columns.items():
        if not isinstance(method, str) or method.lower() not in METHODS:
            raise InvalidInput(
                "columns.%s=%r is not a compression method: use one of %s (default = the writing session's "
                "default_toast_compression)" % (column, method, ", ".join(METHODS))
            )
        columns[column] = method.lower()
    storage = {str(k): v for k, v in (params.get("storage") or {}).items()}
    for column, value in storage.items():
        if not isinstance(value, str) or value.lower() not in STORAGES:
            raise InvalidInput(
                "storage.%s=%r is not a storage strategy: use one of %s" % (column, value, ", ".join(STORAGES))
            )
        storage[column] = value.lower()
    target = params.get("toast_tuple_target")
    if target is not None:
        if isinstance(target, bool) or not isinstance(target, int):
            raise InvalidInput("toast_tuple_target=%r is not an integer number of bytes" % (target,))
        if not TOAST_TUPLE_TARGET_MIN <= target <= TOAST_TUPLE_TARGET_MAX:
            raise InvalidInput(
                "toast_tuple_target=%d is out of range: PostgreSQL accepts %d to %d bytes (default 2032 with "
                "8 kB pages)" % (target, TOAST_TUPLE_TARGET_MIN, TOAST_TUPLE_TARGET_MAX)
            )
    recompress = (params.get("recompress") or "none").lower()
    if recompress not in RECOMPRESS_MODES:
        raise InvalidInput("recompress=%r: use one of %s" % (recompress, ", ".join(RECOMPRESS_MODES)))
    if recompress != "none" and not columns:
        raise InvalidInput(
            "recompress=%s needs columns: name the columns and their target method (columns: {col: lz4})" % recompress
        )
    database_default = params.get("database_default")
    if database_default is not None and database_default not in ("lz4", "pglz"):
        raise InvalidInput("database_default=%r: use lz4 or pglz" % (database_default,))
    batch_size = params.get("batch_size")
    if batch_size is None:
        batch_size = DEFAULT_BATCH_SIZE
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidInput("batch_size=%r must be a positive number of rows" % (batch_size,))
    return {
        "columns": columns,
        "storage": storage,
        "toast_tuple_target": target,
        "recompress": recompress,
        "database_default": database_default,
        "batch_size": int(batch_size),
    }


def effective_default(declared: DeclaredCompression, server: ServerFacts) -> str:
    """Return the method a column set to ``default`` gets when we write it: the declared database default, else
    the server's."""
    return declared.get("database_default") or (server.get("settings") or {}).get("default_toast_compression") or "pglz"


def target_method(method: str, default_method: str) -> str:
    """Return the method values of a column must be stored with: ``default`` resolves to ``default_method``."""
    return default_method if method == "default" else method


# ---------------------------------------------------------------------------------------------
# Validation against facts
# ---------------------------------------------------------------------------------------------


def leaves(table: dict[str, Any]) -> list[dict[str, Any]]:
    """Return every relation of the tree that stores rows (relkind r), in tree order."""
    return [e for e in [table["root"]] + list(table["partitions"]) if e["relkind"] == "r"]


def tree(table: dict[str, Any]) -> list[dict[str, Any]]:
    """Return every relation of the tree, root first, in level order."""
    return [table["root"]] + list(table["partitions"])


def _column(entry, name):
    for col in entry["columns"]:
        if col["name"] == name:
            return col
    return None


def validate(
    declared: DeclaredCompression,
    table: dict[str, Any],
    server: ServerFacts,
    identities: dict[int, dict[str, Any]] | None = None,
    column_views: list[dict[str, Any]] | None = None,
) -> None:
    """Return nothing; raise a clear error for a declared setting that cannot be applied to ``table`` (no change).

    ``identities`` is ``catalog.row_identities`` for the leaves (needed by recompress online),
    ``column_views`` is ``catalog.column_dependent_views`` (ALTER COLUMN TYPE is refused under a view).
    """
    name = display_name(table["schema"], table["name"])
    root = table["root"]
    names = [c["name"] for c in root["columns"]]
    for option in ("columns", "storage"):
        for column in declared[option]:
            col = _column(root, column)
            if col is None:
                raise InvalidInput(
                    "%s: column %r does not exist in table %s (its columns: %s)"
                    % (option, column, name, ", ".join(names))
                )
            if not col["toastable"]:
                raise InvalidInput(
                    "%s: column %s.%s is of type %s, which is stored inline and never compressed or moved "
                    "out of line: only variable-length types (text, varchar, bytea, json, jsonb, arrays, ...) "
                    "take a compression method or storage strategy" % (option, name, column, col["type"])
                )
    wants_lz4 = "lz4" in declared["columns"].values() or declared["database_default"] == "lz4"
    if declared["columns"] and "default" in declared["columns"].values():
        wants_lz4 = wants_lz4 or effective_default(declared, server) == "lz4"
    if wants_lz4 and not server.get("lz4"):
        raise UnsupportedServer(
            "this PostgreSQL server was built without lz4 (default_toast_compression accepts only pglz): "
            "nothing was changed. Use pglz, or a server built --with-lz4."
        )
    if declared["recompress"] == "none":
        return
    for column in declared["columns"]:
        col = _column(root, column)
        if col["type_name"] not in RECOMPRESSIBLE_TYPES or not _TYPE_TEXT.match(col["type"]):
            raise InvalidInput(
                "recompress=%s: cannot rebuild values of %s.%s (type %s) without risking their content; "
                "recompression supports %s. Set the method with recompress: none (new writes use it), "
                "or rewrite that column yourself."
                % (declared["recompress"], name, column, col["type"], ", ".join(RECOMPRESSIBLE_TYPES))
            )
    if declared["recompress"] == "online":
        identities = identities or {}
        missing = [e for e in leaves(table) if e["oid"] not in identities]
        if missing:
            raise InvalidInput(
                "recompress=online on %s needs a row identity to walk the table in batches: a primary key, or "
                "a unique btree index without predicate or expression over NOT NULL columns. %s has none. "
                "Add one, or use recompress: rewrite (one statement per table, ACCESS EXCLUSIVE while it runs)."
                % (name, ", ".join(display_name(e["schema"], e["name"]) for e in missing))
            )
    if declared["recompress"] == "rewrite":
        oids = {e["oid"] for e in leaves(table) if not e["is_partition"]}
        blocking = [v for v in (column_views or []) if v["table_oid"] in oids and v["column"] in declared["columns"]]
        if blocking:
            raise InvalidInput(
                "recompress=rewrite on %s: PostgreSQL refuses ALTER COLUMN ... TYPE on a column a view reads "
                "(%s). Use recompress: online, which updates values in batches and keeps the views."
                % (
                    name,
                    ", ".join("%s reads %s" % (display_name(v["schema"], v["name"]), v["column"]) for v in blocking),
                )
            )


# ---------------------------------------------------------------------------------------------
# SQL builders
# ---------------------------------------------------------------------------------------------


def rebuild_expression(column: str, type_name: str) -> Composed:
    """Return an expression that builds a NEW value equal to ``column``'s, so that writing it recompresses.

    ``SET c = c`` copies the compressed datum; these force a fresh value. For jsonb, ``c || '{}'`` would turn
    an array ``[1,2]`` into ``[1,2,{}]``: the empty container must match the value's kind.
    """
    c = sql.Identifier(column)
    if type_name in ("text", "varchar", "bpchar"):
        return sql.SQL("{} || ''").format(c)
    if type_name == "bytea":
        return sql.SQL("{} || ''::bytea").format(c)
    if type_name == "jsonb":
        return sql.SQL(
            "CASE jsonb_typeof({c}) WHEN 'object' THEN {c} || '{{}}'::jsonb WHEN 'array' THEN {c} || '[]'::jsonb "
            "ELSE ({c}::text)::jsonb END"
        ).format(c=c)
    if type_name == "json":
        return sql.SQL("({}::text)::json").format(c)
    raise InvalidInput("cannot rebuild values of type %s" % type_name)


def needs_rewrite(column: str, method: str) -> Composed:
    """Return the predicate: the value is compressed with another method than ``method`` (NULL/uncompressed: no)."""
    return sql.SQL("pg_column_compression({}) <> {}").format(sql.Identifier(column), sql.Literal(method))


def _method_sql(method):
    return sql.SQL({"lz4": "lz4", "pglz": "pglz", "default": "default"}[method])


def _storage_sql(storage):
    return sql.SQL({"plain": "PLAIN", "main": "MAIN", "external": "EXTERNAL", "extended": "EXTENDED"}[storage])


def alter_columns_sql(entry: dict[str, Any], changes: Sequence[tuple[str, str, str]]) -> Composed:
    """Return ``ALTER TABLE ONLY rel ALTER COLUMN c SET COMPRESSION m, ALTER COLUMN c SET STORAGE s`` for ``changes``.

    ``changes`` is a list of ``(column, "compression"|"storage", value)``.
    """
    clauses = []
    for column, kind, value in changes:
        if kind == "compression":
            clauses.append(
                sql.SQL("ALTER COLUMN {} SET COMPRESSION {}").format(sql.Identifier(column), _method_sql(value))
            )
        else:
            clauses.append(
                sql.SQL("ALTER COLUMN {} SET STORAGE {}").format(sql.Identifier(column), _storage_sql(value))
            )
    return sql.SQL("ALTER TABLE ONLY {} {}").format(
        sql.Identifier(entry["schema"], entry["name"]), sql.SQL(", ").join(clauses)
    )


def update_set_sql(columns: Sequence[ColumnSpec]) -> Composed:
    """Return the SET list rebuilding each column whose value is compressed with another method, keeping the others."""
    parts = []
    for column, type_name, method in columns:
        parts.append(
            sql.SQL("{c} = CASE WHEN {needs} THEN {expr} ELSE {c} END").format(
                c=sql.Identifier(column),
                needs=needs_rewrite(column, method),
                expr=rebuild_expression(column, type_name),
            )
        )
    return sql.SQL(", ").join(parts)


def any_needs_sql(columns: Sequence[ColumnSpec]) -> Composed:
    """Return ``(needs(c1) OR needs(c2) ...)`` over ``columns`` (list of (column, type_name, method))."""
    return sql.SQL("({})").format(sql.SQL(" OR ").join(needs_rewrite(c, m) for c, _type, m in columns))


def _key_tuple(key):
    return sql.SQL("({})").format(sql.SQL(", ").join(sql.Identifier(k) for k in key))


def _literals(values):
    return sql.SQL("({})").format(sql.SQL(", ").join(sql.Literal(v) for v in values))


def batch_update_sql(
    entry: dict[str, Any],
    columns: Sequence[ColumnSpec],
    key: Sequence[str],
    lower: Sequence[Any] | None = None,
    upper: Sequence[Any] | None = None,
) -> Composed:
    """Return one batch of ``recompress: online``: rows whose key lies in (lower, upper], only values to recompress.

    ``lower``/``upper`` are key tuples or None (open end). Bounds are literals, compared as a row so that a
    composite key walks its btree index in order.
    """
    where = []
    if lower is not None:
        where.append(sql.SQL("{} > {}").format(_key_tuple(key), _literals(lower)))
    if upper is not None:
        where.append(sql.SQL("{} <= {}").format(_key_tuple(key), _literals(upper)))
    where.append(any_needs_sql(columns))
    return sql.SQL("UPDATE ONLY {} SET {} WHERE {}").format(
        sql.Identifier(entry["schema"], entry["name"]), update_set_sql(columns), sql.SQL(" AND ").join(where)
    )


def batch_template_sql(entry: dict[str, Any], columns: Sequence[ColumnSpec], key: Sequence[str]) -> Composed:
    """Return the batch statement as shown in check mode, ``:lower_N``/``:upper_N`` standing for the key bounds."""
    lower = sql.SQL("({})").format(sql.SQL(", ").join(sql.SQL(":lower_%d" % (i + 1)) for i in range(len(key))))
    upper = sql.SQL("({})").format(sql.SQL(", ").join(sql.SQL(":upper_%d" % (i + 1)) for i in range(len(key))))
    return sql.SQL("UPDATE ONLY {} SET {} WHERE {} > {} AND {} <= {} AND {}").format(
        sql.Identifier(entry["schema"], entry["name"]),
        update_set_sql(columns),
        _key_tuple(key),
        lower,
        _key_tuple(key),
        upper,
        any_needs_sql(columns),
    )


def next_bound_sql(entry: dict[str, Any], key: Sequence[str], lower: Sequence[Any] | None, batch_size: int) -> Composed:
    """Return the query reading the key of the next batch's last row: ``OFFSET batch_size - 1`` past ``lower``."""
    where = sql.SQL("")
    if lower is not None:
        where = sql.SQL(" WHERE {} > {}").format(_key_tuple(key), _literals(lower))
    return sql.SQL("SELECT {} FROM ONLY {}{} ORDER BY {} OFFSET {} LIMIT 1").format(
        sql.SQL(", ").join(sql.Identifier(k) for k in key),
        sql.Identifier(entry["schema"], entry["name"]),
        where,
        sql.SQL(", ").join(sql.Identifier(k) for k in key),
        sql.Literal(int(batch_size) - 1),
    )


def rewrite_table_sql(
    entry: dict[str, Any], columns: Sequence[tuple[str, str, str, str]], storages: dict[str, str]
) -> Composed:
    """Return ``ALTER TABLE t ALTER COLUMN c TYPE <same> USING <new value>, SET COMPRESSION m, SET STORAGE s``.

    ``columns`` is a list of ``(column, type_text, type_name, declared_method)``; ``storages`` maps column ->
    storage to keep (ALTER COLUMN TYPE resets both compression and storage, so they go in the same statement).
    """
    clauses = []
    for column, type_text, type_name, method in columns:
        ident = sql.Identifier(column)
        # type_text comes from format_type() and was checked against _TYPE_TEXT (e.g. "character varying(200)").
        clauses.append(
            sql.SQL("ALTER COLUMN {} TYPE {} USING {}").format(
                ident, sql.SQL(type_text), rebuild_expression(column, type_name)
            )
        )
        clauses.append(sql.SQL("ALTER COLUMN {} SET COMPRESSION {}").format(ident, _method_sql(method)))
        clauses.append(sql.SQL("ALTER COLUMN {} SET STORAGE {}").format(ident, _storage_sql(storages[column])))
    return sql.SQL("ALTER TABLE ONLY {} {}").format(
        sql.Identifier(entry["schema"], entry["name"]), sql.SQL(", ").join(clauses)
    )


def rewrite_partition_sql(entry: dict[str, Any], columns: Sequence[ColumnSpec]) -> Composed:
    """Return one UPDATE of every value to recompress (a partition cannot ALTER COLUMN TYPE; VACUUM FULL follows)."""
    return sql.SQL("UPDATE ONLY {} SET {} WHERE {}").format(
        sql.Identifier(entry["schema"], entry["name"]), update_set_sql(columns), any_needs_sql(columns)
    )


# ---------------------------------------------------------------------------------------------
# Measurements -> what must be rewritten
# ---------------------------------------------------------------------------------------------


def values_to_rewrite(measured: dict[str, Any] | None, method: str) -> int:
    """Return how many values of one measured column are compressed with another method than ``method`` (in the rows
    read)."""
    if not measured:
        return 0
    return (measured.get("pglz") or 0) + (measured.get("lz4") or 0) - (measured.get(method) or 0)


def scale_factor(entry: dict[str, Any], measurement: dict[str, Any] | None) -> float:
    """Return the factor turning sampled counts into the whole relation's (1 when every row was read)."""
    if not measurement or not measurement.get("sampled"):
        return 1.0
    rows_read = measurement.get("rows_read") or 0
    reltuples = max(entry.get("reltuples") or 0, 0)
    if rows_read <= 0:
        return 1.0
    return max(reltuples / float(rows_read), 1.0)


def summarize(measurements: dict[int, dict[str, Any]], columns: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Return per-leaf measurements summed into per-column counts and shares of pglz / lz4 / uncompressed values.

    ``measurements`` maps leaf oid -> ``catalog.column_compression`` result. Shares are of non-NULL values.
    """
    out = {}
    sampled = any(m.get("sampled") for m in measurements.values())
    for column in columns:
        counts = {"pglz": 0, "lz4": 0, "uncompressed": 0, "null": 0}
        max_bytes, width_sum, width_n = 0, 0.0, 0
        for m in measurements.values():
            col = (m.get("columns") or {}).get(column)
            if not col:
                continue
            for k in counts:
                counts[k] += col.get(k) or 0
            non_null = (col.get("pglz") or 0) + (col.get("lz4") or 0) + (col.get("uncompressed") or 0)
            width_sum += (col.get("avg_bytes") or 0) * non_null
            width_n += non_null
            max_bytes = max(max_bytes, col.get("max_bytes") or 0)
        total = counts["pglz"] + counts["lz4"] + counts["uncompressed"]
        shares = {k: round(counts[k] / float(total), 4) if total else 0.0 for k in ("pglz", "lz4", "uncompressed")}
        out[column] = dict(
            counts,
            values=total,
            shares=shares,
            sampled=sampled,
            avg_bytes=round(width_sum / width_n, 1) if width_n else 0.0,
            max_bytes=max_bytes,
        )
    return out


# ---------------------------------------------------------------------------------------------
# The plan
# ---------------------------------------------------------------------------------------------


def online_batches(
    entry: dict[str, Any], columns: list[ColumnSpec], key: Sequence[str], batch_size: int, estimated: int
) -> planlib.Batches:
    """``recompress: online`` of one leaf: batched UPDATEs by row identity, a commit per batch.

    Each batch reads the key of its last row (``next_bound_sql``, ``batch_size`` rows past the previous batch's) and
    rewrites the values still stored with another method in (lower, upper]; the batch whose read finds no row takes
    the rest and ends the work. Resumable by construction: a value already stored with the target method is never
    rewritten, so a run interrupted after N committed batches continues where values are still to do.
    """
    name = display_name(entry["schema"], entry["name"])
    targets = [(entry["schema"], entry["name"])]
    reason = (
        "recompress online %s: about %d value(s) stored with another method, in batches of %d rows by %s, "
        "a commit per batch" % (name, estimated, batch_size, ", ".join(key))
    )

    def batch(lower):
        bound = planlib.Step(next_bound_sql(entry, key, lower, batch_size), reason, targets=targets)
        update = planlib.Step(
            planlib.ResultOf(
                bound,
                lambda rows: batch_update_sql(entry, columns, key, lower, tuple(rows[0]) if rows else None),
                "/* the batch's update */",
            ),
            reason,
            lock=planlib.ROW_EXCLUSIVE,
            targets=targets,
        )
        return [bound, update]

    def next_batch(previous):
        if previous is None:
            return batch(None)
        rows = previous[0].rows
        return batch(tuple(rows[0])) if rows else None

    template = planlib.Step(
        batch_template_sql(entry, columns, key), reason, lock=planlib.ROW_EXCLUSIVE, targets=targets
    )
    return planlib.Batches(
        [template],
        next_batch,
        "recompression of %s" % name,
        "run the task again to continue: values already stored with the target method are skipped.",
        estimate=estimated,
        targets=targets,
    )


class CompressionPlan:
    """The plan (steps, and online recompression as batched work), what would be rewritten, and warnings."""

    def __init__(self) -> None:
        self.plan = planlib.Plan()
        self.to_rewrite: dict[str, int] = {}  # column -> values estimated to rewrite
        self.warnings: list[str] = []
        self.diff: dict[str, dict[str, Any]] = {"before": {}, "after": {}}

    @property
    def items(self) -> list[planlib.Item]:
        """The plan's steps and batched work, in order."""
        return self.plan.steps

    def __bool__(self) -> bool:
        return bool(self.plan)

    def queries(self, conn: Connection) -> list[str]:
        """Return every statement in order (batched work as its template)."""
        return self.plan.queries(conn)

    def explain(self, conn: Connection) -> list[dict[str, str | None]]:
        """Return every item with its reason and lock."""
        return self.plan.explain(conn)


def _settings_changes(entry, declared):
    changes = []
    for column, method in declared["columns"].items():
        col = _column(entry, column)
        if col is not None and col["compression"] != method:
            changes.append((column, "compression", method))
    for column, storage in declared["storage"].items():
        col = _column(entry, column)
        if col is not None and col["storage"] != storage:
            changes.append((column, "storage", storage))
    return changes


def _database_default_steps(declared, server, database_default_now):
    if not declared["database_default"] or declared["database_default"] == database_default_now:
        return []
    return [
        planlib.Step(
            sql.SQL("ALTER DATABASE {} SET default_toast_compression = {}").format(
                sql.Identifier(server["database"]), sql.Literal(declared["database_default"])
            ),
            "database default_toast_compression is %s, declared %s (sessions opened from now on; columns set to "
            "default use it for new writes)" % (database_default_now or "not set", declared["database_default"]),
            lock=None,
        )
    ]


def _settings_steps(table, declared):
    """Column method/storage on the parent and every partition, then toast_tuple_target on every leaf."""
    steps = []
    for entry in tree(table):
        changes = _settings_changes(entry, declared)
        if changes:
            said = "; ".join("%s %s %s -> %s" % (c, k, (_column(entry, c) or {}).get(k), v) for c, k, v in changes)
            steps.append(
                planlib.Step(
                    alter_columns_sql(entry, changes),
                    "%s: %s" % (display_name(entry["schema"], entry["name"]), said),
                    lock=planlib.ACCESS_EXCLUSIVE,
                    targets=[(entry["schema"], entry["name"])],
                    group="settings:%s" % entry["oid"],
                )
            )
    target = declared["toast_tuple_target"]
    for entry in leaves(table) if target is not None else []:
        current = entry["reloptions"].get("toast_tuple_target")
        if current is None or int(current) != target:
            steps.append(
                planlib.Step(
                    sql.SQL("ALTER TABLE {} SET (toast_tuple_target = {})").format(
                        sql.Identifier(entry["schema"], entry["name"]), sql.Literal(target)
                    ),
                    "%s: toast_tuple_target %s -> %d"
                    % (display_name(entry["schema"], entry["name"]), current or "default (2032)", target),
                    lock=planlib.SHARE_UPDATE_EXCLUSIVE,
                    targets=[(entry["schema"], entry["name"])],
                )
            )
    return steps


def _leaf_recompress_items(entry, declared, columns, estimated, identities):
    """How one leaf's stored values are converted: online batches + VACUUM, UPDATE + VACUUM FULL on a partition,
    or one ALTER ... TYPE ... USING on a plain table."""
    ident = display_name(entry["schema"], entry["name"])
    target = [(entry["schema"], entry["name"])]
    spec = [(c, t, g) for c, t, g, _col in columns]
    if declared["recompress"] == "online":
        key = identities[entry["oid"]]["columns"]
        return [
            online_batches(entry, spec, key, declared["batch_size"], estimated),
            planlib.Step(
                sql.SQL("VACUUM {}").format(sql.Identifier(*target[0])),
                "%s: mark the old row versions reusable (plain VACUUM: the file does not shrink)" % ident,
                lock=planlib.SHARE_UPDATE_EXCLUSIVE,
                targets=target,
                transactional=False,
            ),
        ]
    if entry["is_partition"]:
        return [
            planlib.Step(
                rewrite_partition_sql(entry, spec),
                "%s: about %d value(s) to recompress; a partition refuses ALTER COLUMN TYPE, so one UPDATE "
                "rewrites them, then VACUUM FULL compacts the partition" % (ident, estimated),
                lock=planlib.ROW_EXCLUSIVE,
                targets=target,
            ),
            planlib.Step(
                sql.SQL("VACUUM (FULL, ANALYZE) {}").format(sql.Identifier(*target[0])),
                "%s: compact after the rewrite (ACCESS EXCLUSIVE on this partition only while it runs)" % ident,
                lock=planlib.ACCESS_EXCLUSIVE,
                targets=target,
                transactional=False,
            ),
        ]
    storages = {column: declared["storage"].get(column) or col["storage"] for column, _t, _m, col in columns}
    return [
        planlib.Step(
            rewrite_table_sql(
                entry, [(c, col["type"], t, declared["columns"][c]) for c, t, _method, col in columns], storages
            ),
            "%s: about %d value(s) to recompress; one ALTER rewrites the table compactly (ACCESS EXCLUSIVE "
            "for the whole rewrite; compression and storage re-applied in the same statement)" % (ident, estimated),
            lock=planlib.ACCESS_EXCLUSIVE,
            targets=target,
        )
    ]


def _recompress_items(table, declared, measurements, identities, triggers, default_method, result):
    """Count the values stored with another method per column (into ``result.to_rewrite``) and return the items
    converting them, leaf by leaf (none with ``recompress: none``)."""
    result.to_rewrite = dict.fromkeys(declared["columns"], 0)
    items: list[planlib.Item] = []
    for entry in leaves(table):
        measurement = measurements.get(entry["oid"]) or {}
        factor = scale_factor(entry, measurement)
        columns, estimated = [], 0
        for column, method in declared["columns"].items():
            col = _column(entry, column)
            goal = target_method(method, default_method)
            count = values_to_rewrite((measurement.get("columns") or {}).get(column), goal)
            estimate = int(round(count * factor))
            result.to_rewrite[column] += estimate
            if count > 0:
                columns.append((column, col["type_name"], goal, col))
                estimated += estimate
        if not columns or declared["recompress"] == "none":
            continue
        fired = triggers.get(entry["oid"])
        if fired and (declared["recompress"] == "online" or entry["is_partition"]):
            result.warnings.append(
                "%s: UPDATE triggers %s fire for every row rewritten by the recompression"
                % (display_name(entry["schema"], entry["name"]), ", ".join(fired))
            )
        items.extend(_leaf_recompress_items(entry, declared, columns, estimated, identities))
    return items


def _recompress_warnings_and_session(declared, default_method, items, result):
    if items:
        goals = {target_method(m, default_method) for m in declared["columns"].values()}
        if "default" in declared["columns"].values():
            # Values of a column set to 'default' take the writing session's setting: make ours the target.
            result.items.append(
                planlib.Step(
                    sql.SQL("SET default_toast_compression = {}").format(sql.Literal(default_method)),
                    "columns set to default are written with this session's default_toast_compression",
                    transactional=False,
                )
            )
        result.items.extend(items)
        if "lz4" in goals:
            result.warnings.append(
                "lz4 is a speed choice, not a space choice: on large values it is usually larger than pglz; "
                "compare sizes.before and sizes.after (measured), not an expectation"
            )
    elif declared["recompress"] == "none" and any(result.to_rewrite.values()):
        result.warnings.append(
            "existing values keep their method (%s): only new writes use the declared one. Set recompress: online "
            "or rewrite to convert them"
            % ", ".join("%s: about %d value(s)" % (c, n) for c, n in sorted(result.to_rewrite.items()) if n)
        )


def _storage_warnings(table, declared):
    name = display_name(table["schema"], table["name"])
    warnings = []
    for column in declared["columns"]:
        storage = declared["storage"].get(column) or (_column(table["root"], column) or {}).get("storage")
        if storage in ("plain", "external"):
            warnings.append(
                "%s.%s: storage %s never compresses values, so its compression method has no effect (use main or "
                "extended to compress)" % (name, column, storage)
            )
    return warnings


def build_plan(
    declared: DeclaredCompression,
    table: dict[str, Any],
    server: ServerFacts,
    measurements: dict[int, dict[str, Any]],
    identities: dict[int, dict[str, Any]] | None = None,
    widths: dict[int, dict[str, Any]] | None = None,
    triggers: dict[int, list[str]] | None = None,
    database_default_now: str | None = None,
) -> CompressionPlan:
    """Compare the declared state with the facts and return a CompressionPlan (pure).

    ``measurements`` maps leaf oid -> ``catalog.column_compression`` of the declared columns (before);
    ``identities`` -> ``catalog.row_identities``; ``widths`` leaf oid -> ``catalog.row_widths``;
    ``triggers`` -> ``catalog.update_triggers``; ``database_default_now`` is the current database-level
    ``default_toast_compression`` (None when not set).
    """
    result = CompressionPlan()
    result.diff["before"] = describe_state(table, declared, database_default_now)
    result.items.extend(_database_default_steps(declared, server, database_default_now))
    result.items.extend(_settings_steps(table, declared))
    default_method = effective_default(declared, server)
    items = _recompress_items(table, declared, measurements, identities or {}, triggers or {}, default_method, result)
    _recompress_warnings_and_session(declared, default_method, items, result)
    result.warnings.extend(_storage_warnings(table, declared))
    result.warnings.extend(narrow_warnings(table, declared, measurements, widths or {}, server))
    result.diff["after"] = predicted_state(result.diff["before"], declared)
    return result


def narrow_warnings(
    table: dict[str, Any],
    declared: DeclaredCompression,
    measurements: dict[int, dict[str, Any]],
    widths: dict[int, dict[str, Any]],
    server: ServerFacts,
) -> list[str]:
    """Return a warning when no measured row reaches the TOAST threshold and nothing is compressed (the settings change
    nothing), else no warning."""
    if not declared["columns"] and not declared["storage"] and declared["toast_tuple_target"] is None:
        return []
    rows = sum((w.get("rows_read") or 0) for w in widths.values())
    if not rows:
        return []
    compressed = 0
    for m in measurements.values():
        for col in (m.get("columns") or {}).values():
            compressed += (col.get("pglz") or 0) + (col.get("lz4") or 0)
    threshold = toast_threshold((server.get("settings") or {}).get("block_size"))
    max_row = max((w.get("max_bytes") or 0) for w in widths.values())
    if compressed or max_row >= threshold:
        return []
    avg_row = sum((w.get("avg_bytes") or 0) * (w.get("rows_read") or 0) for w in widths.values()) / float(rows)
    return [
        "%s: no row exceeds the TOAST threshold; this setting changes nothing for this table "
        "(measured over %d row(s)%s: widest row %d bytes, average %.0f bytes, threshold %d bytes)"
        % (
            display_name(table["schema"], table["name"]),
            rows,
            " sampled" if any(w.get("sampled") for w in widths.values()) else "",
            max_row,
            avg_row,
            threshold,
        )
    ]


def describe_state(
    table: dict[str, Any], declared: DeclaredCompression, database_default_now: str | None
) -> dict[str, Any]:
    """Return the settings the module manages, per relation, as they are (for diff)."""
    state = {"database_default": database_default_now, "relations": {}}
    for entry in tree(table):
        rel = {}
        for column in set(declared["columns"]) | set(declared["storage"]):
            col = _column(entry, column)
            if col is not None:
                rel[column] = {"compression": col["compression"], "storage": col["storage"]}
        if entry["relkind"] == "r":
            rel["toast_tuple_target"] = entry["reloptions"].get("toast_tuple_target")
        state["relations"][display_name(entry["schema"], entry["name"])] = rel
    return state


def predicted_state(before: dict[str, Any], declared: DeclaredCompression) -> dict[str, Any]:
    """Return the settings after the plan (for diff): declared values on every relation of the tree."""
    after = {"database_default": declared["database_default"] or before["database_default"], "relations": {}}
    for rel_name, rel in before["relations"].items():
        new = {}
        for key, value in rel.items():
            if key == "toast_tuple_target":
                target = declared["toast_tuple_target"]
                new[key] = str(target) if target is not None else value
            else:
                new[key] = {
                    "compression": declared["columns"].get(key, value["compression"]),
                    "storage": declared["storage"].get(key, value["storage"]),
                }
        after["relations"][rel_name] = new
    return after
