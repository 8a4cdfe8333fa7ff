"""The archive's type rules (pure): which columns travel how, which are refused and why, and the SQL a restore
composes from a manifest (issue 31)."""

import dataclasses

import pytest

from ansible_collections.sigeti.dwh.plugins.module_utils.archive import types as at


def column(name, pg_type, type_name, typmod=-1, kind="b", schema="pg_catalog", is_array=False, **extra):
    return at.ColumnFacts(
        name=name,
        pg_type=pg_type,
        type_schema=schema,
        type_name=type_name,
        type_kind=kind,
        typmod=typmod,
        is_array=is_array,
        not_null=extra.get("not_null", False),
        generated=extra.get("generated", False),
        collation=extra.get("collation"),
    )


def numeric_typmod(precision, scale):
    return ((precision << 16) | (scale & 0x7FF)) + 4


@pytest.mark.parametrize(
    "modifiers, parquet",
    [
        ((14, 2), "decimal128(14, 2)"),
        ((38, 0), "decimal128(38, 0)"),
        ((39, 10), "decimal256(39, 10)"),
        ((76, 76), "decimal256(76, 76)"),
        ((77, 2), "string"),
        ((), "string"),  # unconstrained: one scale per value
        ((5, -2), "string"),  # negative scale (PostgreSQL 15+): Parquet decimals have none
        ((2, 5), "string"),  # scale above precision (PostgreSQL 15+)
    ],
)
def test_numeric_becomes_a_decimal_only_when_one_fixed_scale_fits(modifiers, parquet):
    assert at.numeric_parquet(modifiers) == parquet


def test_typmods_decode_as_postgresql_encodes_them():
    assert at.numeric_modifiers(numeric_typmod(14, 2)) == (14, 2)
    assert at.numeric_modifiers(numeric_typmod(5, -2)) == (5, -2)
    assert at.numeric_modifiers(-1) == ()
    assert at.type_modifiers("varchar", 24) == (20,)
    assert at.type_modifiers("bpchar", -1) == ()
    assert at.type_modifiers("timestamptz", 3) == (3,)
    assert at.type_modifiers("timestamp", -1) == ()
    assert at.type_modifiers("int4", -1) == ()


def test_every_listed_type_has_its_parquet_type_and_transfer():
    columns = [
        column("n", "numeric(14,2)", "numeric", numeric_typmod(14, 2)),
        column("free", "numeric", "numeric"),
        column("d", "date", "date"),
        column("ts", "timestamp(3) without time zone", "timestamp", 3),
        column("tz", "timestamp with time zone", "timestamptz"),
        column("t", "text", "text"),
        column("j", "jsonb", "jsonb"),
        column("b", "bytea", "bytea"),
        column("ai", "integer[]", "int4", is_array=True),
        column("at", "text[]", "text", is_array=True),
        column("status", "statut", "statut", kind="e", schema="dwh"),
    ]
    specs = {s.name: s for s in at.column_specs("public", "t", columns)}
    assert specs["n"].parquet == "decimal128(14, 2)"
    assert specs["free"].parquet == "string"
    assert specs["d"].parquet == "date32[day]"
    assert (specs["ts"].parquet, specs["ts"].modifiers) == ("timestamp[us]", (3,))
    assert specs["tz"].parquet == "timestamp[us, tz=UTC]"
    assert (specs["b"].parquet, specs["b"].transfer) == ("binary", at.TRANSFER_HEX)
    assert (specs["ai"].parquet, specs["ai"].transfer) == ("list<item: int32>", at.TRANSFER_JSON)
    assert specs["at"].parquet == "list<item: string>"
    assert (specs["status"].base, specs["status"].enum_type) == ("enum", ("dwh", "statut"))


def test_refusal_names_every_column_and_its_type_before_anything_is_read():
    columns = [
        column("ok", "integer", "int4"),
        column("duree", "interval", "interval"),
        column("montants", "numeric[]", "numeric", is_array=True),
        column("mine", "int4", "int4", schema="public"),  # a user type shadowing a built-in name
        column("dom", "positive_int", "positive_int", kind="d", schema="public"),
        column("total", "integer", "int4", generated=True),
        column("etats", "statut[]", "statut", kind="e", schema="dwh", is_array=True),
    ]
    with pytest.raises(at.ArchiveRefused) as raised:
        at.column_specs("dwh_facts", "fait_2019", columns)
    message = raised.value.msg
    assert "dwh_facts.fait_2019" in message
    for name, pg_type in [
        ("duree", "interval"),
        ("montants", "numeric[]"),
        ("mine", "int4"),
        ("dom", "positive_int"),
        ("total", "integer"),
        ("etats", "statut[]"),
    ]:
        assert "column %s of type %s" % (name, pg_type) in message
    assert "column ok" not in message
    assert raised.value.details["columns"] == ["duree", "montants", "mine", "dom", "total", "etats"]
    assert "What to do" in message


def test_value_checks_cover_what_parquet_cannot_hold():
    specs = at.column_specs(
        "s",
        "t",
        [
            column("n", "numeric(14,2)", "numeric", numeric_typmod(14, 2)),
            column("free", "numeric", "numeric"),
            column("d", "date", "date"),
            column("tz", "timestamp with time zone", "timestamptz"),
            column("ai", "integer[]", "int4", is_array=True),
            column("f", "double precision", "float8"),
        ],
    )
    checks = at.value_checks(specs)
    assert [(c.column, c.problem.split(" ")[0]) for c in checks] == [
        ("n", "NaN"),
        ("d", "infinity"),
        ("tz", "infinity"),
        ("ai", "a"),
    ]
    at.value_refusal("s", "t", checks, [0, 0, 0, 0])
    with pytest.raises(at.ArchiveRefused) as raised:
        at.value_refusal("s", "t", checks, [3, 0, 1, 0])
    assert "column n: 3 row(s) hold NaN" in raised.value.msg
    assert "column tz: 1 row(s) hold infinity" in raised.value.msg
    assert raised.value.details["columns"] == ["n", "tz"]


def test_restore_sql_is_composed_from_the_spec_parts_only():
    spec = at.column_specs(
        "s", "t", [column("n", "numeric(14,2)", "numeric", numeric_typmod(14, 2), not_null=True, collation=None)]
    )[0]
    assert at.sql_type(spec).as_string(None) == "numeric(14, 2)"
    array = at.column_specs("s", "t", [column("v", "character varying(20)[]", "varchar", 24, is_array=True)])[0]
    assert at.sql_type(array).as_string(None) == "varchar(20)[]"
    forged = dataclasses.replace(spec, base="integer; DROP TABLE x")
    with pytest.raises(at.InvalidInput, match="unknown type"):
        at.sql_type(forged)
