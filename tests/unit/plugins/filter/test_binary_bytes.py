"""The roles' byte filter writes what the modules and the report write; no role falls back to "KB" for KiB."""

import pathlib

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.sigeti.dwh.plugins.filter.binary_bytes import FilterModule, binary_bytes

ROOT = pathlib.Path(__file__).resolve().parents[4]


@pytest.mark.parametrize(
    ("value", "text"),
    [(0, "0 bytes"), (1023, "1023 bytes"), (1024, "1.0 KiB"), ("557056", "544.0 KiB"), (3 * 1024**3, "3.00 GiB")],
)
def test_binary_units(value, text):
    assert binary_bytes(value) == text


def test_not_a_number_is_named():
    with pytest.raises(AnsibleFilterError, match="'lots' is not a number of bytes"):
        binary_bytes("lots")


def test_registered_under_its_name():
    assert FilterModule().filters()["binary_bytes"] is binary_bytes


def test_no_role_writes_decimal_unit_names_for_binary_sizes():
    users = [str(p.relative_to(ROOT)) for p in (ROOT / "roles").rglob("*.yml") if "human_readable" in p.read_text()]
    assert users == []
