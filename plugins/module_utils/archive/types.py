# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which PostgreSQL column types a Parquet archive holds exactly, and how each one travels (pure: no I/O, no pyarrow).

A column is archived only when every value comes back identical (same text in PostgreSQL, so the same checksum).
The rules, per column type (the element type for arrays):

- ``boolean``, ``smallint``, ``integer``, ``bigint``, ``real``, ``double precision`` (NaN, -0 and infinities
  included): Parquet's own types.
- ``numeric(p,s)`` with 0 <= s <= p: a Parquet decimal (decimal128 up to 38 digits, decimal256 up to 76). A decimal
  cannot hold NaN: a partition whose column holds one is refused (:func:`value_problems`). Any other ``numeric``
  (unconstrained, more than 76 digits, negative scale) is kept as its exact PostgreSQL text: a decimal has one scale
  per column, an unconstrained numeric one per value (``1.5`` and ``1.50`` are different texts).
- ``date``, ``timestamp``, ``timestamp with time zone``: Parquet dates and microsecond timestamps (UTC-adjusted for
  ``timestamptz``). Infinities and years outside 1..9999 are refused: they have no ISO form both sides read.
- ``text``, ``varchar(n)``, ``char(n)``, ``json``, ``jsonb``, ``uuid`` and enums: UTF-8 strings (PostgreSQL holds
  no NUL in text); ``bytea``: binary.
- one-dimensional arrays (lower bound 1) of ``boolean``, integers, ``real``, ``double precision``, ``text``,
  ``varchar`` and ``char``: Parquet lists, NULL elements kept. Other arrays are refused.

Everything else (interval, time, money, inet, ranges, composites, domains, generated columns, ...) is refused by
:func:`column_specs` before anything is read, naming the column and its type.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import InvalidInput
from ansible_collections.sigeti.dwh.plugins.module_utils.core.identifiers import display_name, quote_ident

try:
    from psycopg2 import sql
except ImportError:  # reported by the connection layer
    sql = None

# pg_catalog type name -> (SQL name, Parquet type). The Parquet type is written the way pyarrow prints it.
SCALARS = {
    "bool": ("boolean", "bool"),
    "int2": ("smallint", "int16"),
    "int4": ("integer", "int32"),
    "int8": ("bigint", "int64"),
    "float4": ("real", "float"),
    "float8": ("double precision", "double"),
    "numeric": ("numeric", "string"),
    "date": ("date", "date32[day]"),
    "timestamp": ("timestamp", "timestamp[us]"),
    "timestamptz": ("timestamptz", "timestamp[us, tz=UTC]"),
    "text": ("text", "string"),
    "varchar": ("varchar", "string"),
    "bpchar": ("char", "string"),
    "json": ("json", "string"),
    "jsonb": ("jsonb", "string"),
    "uuid": ("uuid", "string"),
    "bytea": ("bytea", "binary"),
}
ARRAY_ELEMENTS = ("bool", "int2", "int4", "int8", "float4", "float8", "text", "varchar", "bpchar")
ENUM = "enum"
DECIMAL128_DIGITS = 38
DECIMAL256_DIGITS = 76
VARHDRSZ = 4

# How a column's values travel in the COPY stream: PostgreSQL's CSV text, bytea's hex text, an array's JSON text.
TRANSFER_TEXT = "text"
TRANSFER_HEX = "hex"
TRANSFER_JSON = "json"


class ArchiveRefused(InvalidInput):
    """A column or its values cannot come back from Parquet exactly; nothing was read or written."""


@dataclasses.dataclass(frozen=True)
class ColumnFacts:
    """One live column of a table as the catalog reads it (``catalog_archive.read_columns``).

    ``type_name``/``type_schema``/``type_kind`` describe the element type for an array (``is_array``), else the
    column's own type; ``type_kind`` is ``pg_type.typtype`` (b base, e enum, d domain, c composite, r range...).
    """

    name: str
    pg_type: str
    type_schema: str
    type_name: str
    type_kind: str
    typmod: int
    is_array: bool
    not_null: bool
    generated: bool
    collation: tuple[str, str] | None = None


@dataclasses.dataclass(frozen=True)
class ColumnSpec:
    """How one column is archived and recreated; the manifest records it as it is.

    ``base`` is the SQL name of the (element) type (``numeric``, ``timestamptz``, ``enum`` ...); ``modifiers`` its
    typmod arguments (precision and scale, length, fractional digits); ``enum_type`` the enum's (schema, name).
    """

    name: str
    pg_type: str
    base: str
    modifiers: tuple[int, ...]
    is_array: bool
    parquet: str
    transfer: str
    not_null: bool
    collation: tuple[str, str] | None = None
    enum_type: tuple[str, str] | None = None


@dataclasses.dataclass(frozen=True)
class ValueCheck:
    """A per-column count the partition scan makes: rows whose value the column's Parquet type cannot hold."""

    column: str
    problem: str
    predicate: str  # a boolean SQL template over the column, ``{c}`` standing for the quoted column


def numeric_modifiers(typmod: int) -> tuple[int, ...]:
    """Return ``(precision, scale)`` of a ``numeric`` typmod, or ``()`` when unconstrained (scale may be negative)."""
    if typmod < VARHDRSZ:
        return ()
    packed = typmod - VARHDRSZ
    scale = ((packed & 0x7FF) ^ 1024) - 1024  # 11 signed bits since PostgreSQL 15; the same value before
    return ((packed >> 16) & 0xFFFF, scale)


def type_modifiers(type_name: str, typmod: int) -> tuple[int, ...]:
    """Return a type's typmod arguments: numeric (p, s), varchar/char (length,), timestamps (digits,), else ()."""
    if type_name == "numeric":
        return numeric_modifiers(typmod)
    if type_name in ("varchar", "bpchar"):
        return (typmod - VARHDRSZ,) if typmod >= VARHDRSZ else ()
    if type_name in ("timestamp", "timestamptz"):
        return (typmod,) if typmod >= 0 else ()
    return ()


def numeric_parquet(modifiers: tuple[int, ...]) -> str:
    """The Parquet type of a numeric column: a decimal when it has one fixed scale that fits, else its text."""
    if len(modifiers) != 2:
        return "string"
    precision, scale = modifiers
    if scale < 0 or scale > precision:
        return "string"
    if precision <= DECIMAL128_DIGITS:
        return "decimal128(%d, %d)" % (precision, scale)
    if precision <= DECIMAL256_DIGITS:
        return "decimal256(%d, %d)" % (precision, scale)
    return "string"


def refusal(column: ColumnFacts) -> str | None:
    """Why ``column`` cannot be archived exactly, or None when it can."""
    if column.generated:
        return "a generated column (its values would come back as plain data)"
    if column.type_kind == "d":
        return "a domain: archive the base type or drop the domain first"
    if column.type_kind == "e":
        return "an array of an enum (enums alone are archived)" if column.is_array else None
    if column.type_schema != "pg_catalog" or column.type_name not in SCALARS:
        return "a type Parquet cannot hold exactly"
    if column.is_array and column.type_name not in ARRAY_ELEMENTS:
        return "an array of %s (arrays of booleans, integers, floats and text only)" % column.type_name
    return None


def column_spec(column: ColumnFacts) -> ColumnSpec:
    """The archive spec of one column that :func:`refusal` accepts."""
    if column.type_kind == "e":
        base, parquet, modifiers = ENUM, "string", ()
        enum_type = (column.type_schema, column.type_name)
    else:
        base, parquet = SCALARS[column.type_name]
        modifiers = type_modifiers(column.type_name, column.typmod)
        enum_type = None
        if column.type_name == "numeric":
            parquet = numeric_parquet(modifiers)
    transfer = TRANSFER_HEX if base == "bytea" else TRANSFER_TEXT
    if column.is_array:
        parquet, transfer = "list<item: %s>" % parquet, TRANSFER_JSON
    return ColumnSpec(
        name=column.name,
        pg_type=column.pg_type,
        base=base,
        modifiers=modifiers,
        is_array=column.is_array,
        parquet=parquet,
        transfer=transfer,
        not_null=column.not_null,
        collation=column.collation,
        enum_type=enum_type,
    )


def column_specs(schema: str, table: str, columns: Sequence[ColumnFacts]) -> tuple[ColumnSpec, ...]:
    """Return the spec of every column, or raise :class:`ArchiveRefused` naming every column that cannot round-trip."""
    if not columns:
        raise ArchiveRefused("table %s has no columns to archive" % display_name(schema, table))
    refused = [(c, refusal(c)) for c in columns]
    refused = [(c, why) for c, why in refused if why]
    if refused:
        listed = "; ".join("column %s of type %s: %s" % (quote_ident(c.name), c.pg_type, why) for c, why in refused)
        raise ArchiveRefused(
            "table %s cannot be archived to Parquet exactly: %s. Nothing was read or written. What to do: change "
            "those columns to a supported type (ALTER TABLE ... ALTER COLUMN ... TYPE), or keep this table's old "
            "partitions with retention action detach or drop instead of parquet."
            % (display_name(schema, table), listed),
            table=display_name(schema, table),
            columns=[c.name for c, _why in refused],
        )
    return tuple(column_spec(c) for c in columns)


def value_checks(specs: Sequence[ColumnSpec]) -> tuple[ValueCheck, ...]:
    """The counts the partition scan makes: values a column's Parquet type cannot hold (see the module's rules)."""
    checks = []
    for spec in specs:
        if spec.is_array:
            checks.append(
                ValueCheck(
                    spec.name,
                    "a multi-dimensional array or one not starting at 1",
                    "array_ndims({c}) > 1 OR array_lower({c}, 1) <> 1",
                )
            )
        elif spec.base == "numeric" and spec.parquet.startswith("decimal"):
            checks.append(ValueCheck(spec.name, "NaN (a Parquet decimal has none)", "{c} = 'NaN'"))
        elif spec.base == "date":
            checks.append(
                ValueCheck(
                    spec.name,
                    "infinity or a year outside 1..9999",
                    "NOT isfinite({c}) OR {c} < '0001-01-01' OR {c} > '9999-12-31'",
                )
            )
        elif spec.base in ("timestamp", "timestamptz"):
            low, high = ("'0001-01-01 00:00:00+00'", "'9999-12-31 23:59:59.999999+00'")
            if spec.base == "timestamp":
                low, high = ("'0001-01-01 00:00:00'", "'9999-12-31 23:59:59.999999'")
            checks.append(
                ValueCheck(
                    spec.name,
                    "infinity or a year outside 1..9999",
                    "NOT isfinite({c}) OR {c} < %s OR {c} > %s" % (low, high),
                )
            )
    return tuple(checks)


def value_refusal(schema: str, table: str, checks: Sequence[ValueCheck], counts: Sequence[int]) -> None:
    """Raise :class:`ArchiveRefused` when any check counted rows (``counts`` in the order of ``checks``)."""
    found = [(check, count) for check, count in zip(checks, counts) if count]
    if not found:
        return
    listed = "; ".join(
        "column %s: %d row(s) hold %s" % (quote_ident(check.column), count, check.problem) for check, count in found
    )
    raise ArchiveRefused(
        "table %s cannot be archived to Parquet exactly: %s. Nothing was written. What to do: correct those values "
        "(e.g. UPDATE ... SET col = NULL WHERE ...), change the column's type (an unconstrained numeric keeps NaN as "
        "text), or keep this partition with retention action detach or drop." % (display_name(schema, table), listed),
        table=display_name(schema, table),
        columns=[check.column for check, _count in found],
    )


def sql_type(spec: ColumnSpec) -> sql.Composable:
    """The column's type as SQL, composed from the spec's parts only (a manifest never brings SQL text of its own)."""
    if spec.base == ENUM:
        if not spec.enum_type:
            raise InvalidInput("column %s is an enum without its type name" % quote_ident(spec.name))
        rendered = sql.Identifier(*spec.enum_type)
    else:
        known = {name for name, _parquet in SCALARS.values()}
        if spec.base not in known:
            raise InvalidInput("column %s has an unknown type %r" % (quote_ident(spec.name), spec.base))
        rendered = sql.SQL(spec.base)
        if spec.modifiers:
            rendered = sql.SQL("{}({})").format(
                rendered, sql.SQL(", ").join(sql.SQL(str(int(m))) for m in spec.modifiers)
            )
    if spec.is_array:
        rendered = sql.SQL("{}[]").format(rendered)
    return rendered


def column_definition(spec: ColumnSpec) -> sql.Composable:
    """``name type [COLLATE c] [NOT NULL]`` for a CREATE TABLE recreating the archived table."""
    parts = [sql.Identifier(spec.name), sql_type(spec)]
    if spec.collation:
        parts.append(sql.SQL("COLLATE {}").format(sql.Identifier(*spec.collation)))
    if spec.not_null:
        parts.append(sql.SQL("NOT NULL"))
    return sql.SQL(" ").join(parts)


def transfer_expression(spec: ColumnSpec) -> sql.Composable:
    """The select-list expression that sends the column in the export's COPY (arrays as JSON, the rest as is)."""
    column = sql.Identifier(spec.name)
    if spec.transfer == TRANSFER_JSON:
        return sql.SQL("to_json({})::text").format(column)
    return column
