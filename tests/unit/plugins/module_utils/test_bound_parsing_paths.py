"""The one-match reading of a single-column range bound gives what the tokenizer gives (pure)."""

import pytest

from ansible_collections.sigeti.dwh.plugins.module_utils.core import bounds


@pytest.mark.parametrize(
    "expr",
    [
        "FOR VALUES FROM (20230101) TO (20240101)",
        "FOR VALUES FROM (-5) TO (0)",
        "FOR VALUES FROM ('2023-01-01') TO ('2024-01-01')",
        "FOR VALUES FROM ('2024-03-31 02:00:00+02') TO ('2024-04-01 00:00:00+02')",
        "FOR VALUES FROM (MINVALUE) TO ('2020-01-01')",
        "FOR VALUES FROM ('2030-01-01') TO (MAXVALUE)",
        "FOR VALUES FROM ('it''s') TO ('z''''')",
        "FOR VALUES FROM ('') TO ('a')",
    ],
)
def test_simple_range_reads_as_the_tokenizer_does(expr):
    fast = bounds.parse_partition_bound(expr)
    # an extra space after "FROM (" is not the shape pg_get_expr prints: it goes through the tokenizer
    slow = bounds.parse_partition_bound(expr.replace("FROM (", "FROM ( ", 1))
    assert bounds.SIMPLE_RANGE.match(expr) and not bounds.SIMPLE_RANGE.match(expr.replace("FROM (", "FROM ( ", 1))
    assert fast == slow
    assert fast["kind"] == "range" and len(fast["low"]) == len(fast["high"]) == 1


@pytest.mark.parametrize(
    "expr",
    ["FOR VALUES FROM (1.5) TO (2.5)", "FOR VALUES FROM (1, 'a') TO (2, 'b')", "FOR VALUES FROM (NULL) TO (1)"],
)
def test_other_shapes_go_through_the_tokenizer(expr):
    assert not bounds.SIMPLE_RANGE.match(expr)
    assert bounds.parse_partition_bound(expr)["kind"] == "range"
