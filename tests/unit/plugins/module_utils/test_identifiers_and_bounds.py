"""Pure logic: name splitting and partition bound parsing."""

import datetime

import pytest

from ansible_collections.sigeti.dwh.plugins.module_utils.catalog import tables as catalog
from ansible_collections.sigeti.dwh.plugins.module_utils.core.identifiers import (
    InvalidName,
    display_name,
    split_name,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.report.table import bound_as_date, periods_ahead


@pytest.mark.parametrize(
    "text, expected",
    [
        ("dwh_facts.fait_attributions", ("dwh_facts", "fait_attributions")),
        ("Fait", ("public", "fait")),
        ('"Ventes.EU"."Fait ""Q"""', ("Ventes.EU", 'Fait "Q"')),
        (' dwh . "My Table" ', ("dwh", "My Table")),
        ('"x""; DROP TABLE y; --"', ("public", 'x"; DROP TABLE y; --')),
        ("ÉTÉ.données", ("été", "données")),
    ],
)
def test_split_name(text, expected):
    assert split_name(text) == expected


@pytest.mark.parametrize("text", ["", "a.b.c", '"open', 'a.""', "a..b", "a b", "a.", 'x"; DROP TABLE y; --'])
def test_split_name_rejects(text):
    with pytest.raises(InvalidName):
        split_name(text)


def test_display_name_round_trips():
    for schema, name in [("dwh", "t"), ("Ventes.EU", 'Fait "Q"'), ("a b", "c")]:
        assert split_name(display_name(schema, name)) == (schema, name)


@pytest.mark.parametrize(
    "expr, expected",
    [
        ("DEFAULT", {"kind": "default"}),
        ("FOR VALUES FROM (20230101) TO (20240101)", {"kind": "range", "low": [20230101], "high": [20240101]}),
        (
            "FOR VALUES FROM ('2023-01-01') TO ('2024-01-01')",
            {"kind": "range", "low": ["2023-01-01"], "high": ["2024-01-01"]},
        ),
        ("FOR VALUES FROM (MINVALUE) TO (-5)", {"kind": "range", "low": ["MINVALUE"], "high": [-5]}),
        ("FOR VALUES FROM (1, 'a''b') TO (2, MAXVALUE)", {"kind": "range", "low": [1, "a'b"], "high": [2, "MAXVALUE"]}),
        ("FOR VALUES IN ('nord', NULL)", {"kind": "list", "values": ["nord", None]}),
        ("FOR VALUES WITH (modulus 4, remainder 1)", {"kind": "hash", "modulus": 4, "remainder": 1}),
    ],
)
def test_parse_partition_bound(expr, expected):
    assert catalog.parse_partition_bound(expr) == expected


def test_typed_values():
    assert catalog.typed_value("2024-02-29", "date") == datetime.date(2024, 2, 29)
    assert catalog.typed_value("2024-01-01 00:00:00+00", "timestamp with time zone").utcoffset() == datetime.timedelta(
        0
    )
    assert catalog.typed_value("2024-01-01 00:00:00", "timestamp without time zone") == datetime.datetime(2024, 1, 1)
    assert catalog.typed_value(20240101, "integer") == 20240101
    assert catalog.typed_value("MINVALUE", "date") == "MINVALUE"


def test_coverage_finds_gaps_and_overlaps():
    gaps, overlaps = catalog.coverage([(1, 5, "a"), (5, 10, "b"), (12, 20, "c"), (18, 25, "d")])
    assert gaps == [{"from": 10, "to": 12}]
    assert overlaps == [{"partitions": ["c", "d"], "from": 18, "to": 20}]


def test_parse_options():
    assert catalog.parse_options(["fillfactor=90", "autovacuum_enabled=false"]) == {
        "fillfactor": "90",
        "autovacuum_enabled": "false",
    }
    assert catalog.parse_options(None) == {}


def test_sample_percent():
    assert catalog.sample_percent(100) is None
    assert catalog.sample_percent(200000) == 1.0
    assert catalog.sample_percent(200000, exact=True) is None


def test_bound_as_date_and_periods_ahead():
    assert bound_as_date(20240229) == datetime.date(2024, 2, 29)
    assert bound_as_date(202402) == datetime.date(2024, 2, 1)
    assert bound_as_date(20241350) is None
    ranges = [
        (20250101, 20260101, "y2025"),
        (20260101, 20270101, "y2026"),
        (20270101, 20280101, "y2027"),
        (20290101, 20300101, "y2029"),
    ]
    assert periods_ahead(ranges, datetime.date(2025, 6, 1)) == ("y2025", 2, "2028-01-01")
    assert periods_ahead(ranges, datetime.date(2028, 6, 1)) == (None, 0, None)
