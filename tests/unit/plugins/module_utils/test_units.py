"""Exact tests of the byte units shared by every module's options and messages."""

import pytest

from ansible_collections.sigeti.dwh.plugins.module_utils.core import units
from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import InvalidInput


@pytest.mark.parametrize(
    "value, text",
    [
        (None, "unknown"),
        (0, "0 bytes"),
        (1, "1 bytes"),
        (1023, "1023 bytes"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (1024**2 - 1, "1024.0 KiB"),  # rounded, still counted in the unit it is below
        (1024**2, "1.0 MiB"),
        (100 * 1024**2, "100.0 MiB"),
        (1024**3, "1.00 GiB"),
        (int(1.5 * 1024**3), "1.50 GiB"),
        (1024**4, "1.00 TiB"),
        (1000 * 1024**4, "1000.00 TiB"),  # TiB is the largest unit
        (2.5 * 1024**2, "2.5 MiB"),  # floats (sums of sizes) too
        (-2048, "-2.0 KiB"),  # a shrink
    ],
)
def test_format_bytes(value, text):
    assert units.format_bytes(value) == text


@pytest.mark.parametrize(
    "text, expected",
    [
        ("100MB", 100 * 1024**2),
        ("100 mb", 100 * 1024**2),
        ("1.5GB", int(1.5 * 1024**3)),
        ("512kB", 512 * 1024),
        ("0", 0),
        (0, 0),
        (4096, 4096),
        ("10 bytes", 10),
        ("2TB", 2 * 1024**4),
        ("1PB", 1024**5),
        ("7b", 7),
    ],
)
def test_parse_size(text, expected):
    assert units.parse_size(text, "min_size") == expected


@pytest.mark.parametrize("text", ["", "abc", "-1MB", "10 XB", None, True, "1e3MB", "1 MiB"])
def test_parse_size_rejects_naming_the_option(text):
    with pytest.raises(InvalidInput, match="min_size=.* is not a size: write bytes"):
        units.parse_size(text, "min_size")


def test_parse_and_format_agree_on_the_unit():
    assert units.format_bytes(units.parse_size("100MB", "min_size")) == "100.0 MiB"
