"""The archive's records (pure): the content checksum's canonical form, the manifest's JSON, the file names
(issue 31)."""

import dataclasses
import hashlib
import os

import pytest
import yaml

from ansible_collections.sigeti.dwh.plugins.module_utils.archive import manifest as am
from ansible_collections.sigeti.dwh.plugins.module_utils.archive import types as at

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))


def signed_halves(text):
    """What PostgreSQL computes per row: ('x' || substr(md5, 1, 16))::bit(64)::bigint and the second half."""
    digest = hashlib.md5(text.encode("utf-8")).hexdigest()
    halves = [int(digest[:16], 16), int(digest[16:], 16)]
    return [h - (1 << 64) if h >= 1 << 63 else h for h in halves]


def python_checksum(texts):
    """The checksum as its definition says, from row texts: summed signed halves, modulo 2**64."""
    high = sum(signed_halves(t)[0] for t in texts)
    low = sum(signed_halves(t)[1] for t in texts)
    return am.checksum_of(len(texts), high, low)


def test_checksum_is_order_independent_counts_duplicates_and_adds_across_batches():
    rows = ["(1,a)", "(2,b)", "(3,)", "(2,b)"]
    whole = python_checksum(rows)
    assert python_checksum(list(reversed(rows))) == whole
    assert python_checksum(rows[:3]) != whole  # a duplicate row is a row
    assert python_checksum(rows[:1]) + python_checksum(rows[1:]) == whole
    assert am.Checksum(0, 0, 0) + whole == whole


def test_checksum_canonical_form_round_trips_and_rejects_anything_else():
    value = am.checksum_of(12, -5, (1 << 70) + 3)
    assert value.high == (1 << 64) - 5 and value.low == 3
    text = value.text()
    assert text == "md5-rowsum-v1:12:fffffffffffffffb0000000000000003"
    assert am.parse_checksum(text) == value
    assert am.checksum_of(0, None, None).text() == "md5-rowsum-v1:0:" + "0" * 32
    for bad in ("", "md5:1:00", "md5-rowsum-v1:x:" + "0" * 32, "md5-rowsum-v1:1:" + "0" * 31, None):
        with pytest.raises(am.InvalidInput):
            am.parse_checksum(bad)


def manifest():
    spec = at.ColumnSpec(
        "montant",
        "numeric(14,2)",
        "numeric",
        (14, 2),
        False,
        "decimal128(14, 2)",
        "text",
        True,
        ("pg_catalog", "C"),
        None,
    )
    return am.Manifest(
        schema="dwh_facts",
        table="fait_2019",
        parent=("dwh_facts", "fait"),
        bound="FOR VALUES FROM (1) TO (2)",
        columns=(spec,),
        rows=3,
        checksum=am.checksum_of(3, 1, 2).text(),
        parquet_file="fait_2019.parquet",
        file_bytes=10,
        file_sha256="ab" * 32,
        server=am.ServerIdentity("17.2", "7716577583133347111", "sigeti", "", "127.0.0.1", 5432),
        created_at="2026-01-01T00:00:00+00:00",
        library="pyarrow 26.0.1",
    )


def test_manifest_json_round_trips_and_names_the_collection_version():
    original = manifest()
    data = am.manifest_to_json(original)
    assert data["collection_version"] == am.COLLECTION_VERSION
    assert data["columns"][0]["pg_type"] == "numeric(14,2)"
    assert data["compression"] == "zstd"
    assert am.manifest_from_json(data, "m.json") == original


def test_the_table_oid_round_trips_and_a_manifest_without_one_reads_as_none():
    original = dataclasses.replace(manifest(), table_oid=16384)
    data = am.manifest_to_json(original)
    assert data["table_oid"] == 16384 and am.manifest_from_json(data, "m.json") == original
    del data["table_oid"]  # as written before the field existed
    assert am.manifest_from_json(data, "m.json").table_oid is None


@pytest.mark.parametrize("damage", ["format", "checksum", "columns", "rows"])
def test_a_damaged_manifest_is_refused_naming_its_file(damage):
    data = am.manifest_to_json(manifest())
    if damage == "format":
        data["format"] = 99
    elif damage == "checksum":
        data["checksum"] = "md5:abc"
    elif damage == "columns":
        data["columns"] = [{"name": "x"}]
    else:
        data["rows"] = "many"
    with pytest.raises(am.InvalidInput, match="/archive/x.manifest.json is not a readable archive manifest"):
        am.manifest_from_json(data, "/archive/x.manifest.json")


def test_collection_version_is_galaxy_yml_s():
    with open(os.path.join(ROOT, "galaxy.yml")) as handle:
        assert yaml.safe_load(handle)["version"] == am.COLLECTION_VERSION


@pytest.mark.parametrize(
    "name, part",
    [
        ("fait_2019", "fait_2019"),
        ("../etc", "%2E.%2Fetc"),
        ("a/b", "a%2Fb"),
        ("Été 2019", "%C3%89t%C3%A9%202019"),
        ("50%", "50%25"),
        ("x.y$z-1", "x.y$z-1"),
        (".hidden", "%2Ehidden"),
    ],
)
def test_names_become_one_safe_file_name_part(name, part):
    assert am.file_part(name) == part
    assert "/" not in am.file_part(name)


def test_archive_paths_and_temporary_names():
    paths = am.archive_paths("/srv/archive", "dwh_facts", "fait", "fait_2019")
    assert paths.parquet == "/srv/archive/dwh_facts.fait/fait_2019.parquet"
    assert paths.manifest == "/srv/archive/dwh_facts.fait/fait_2019.manifest.json"
    assert am.temp_pid(paths.temp_prefix + "123-parquet", paths) == 123
    assert am.temp_pid(paths.temp_prefix + "x-parquet", paths) is None
    other = am.archive_paths("/srv/archive", "dwh_facts", "fait", "fait_2019_b")
    assert am.temp_pid(other.temp_prefix + "123-parquet", paths) is None
    assert not os.path.basename(paths.temp_prefix).endswith(".parquet")  # *.parquet globs never see a temp file


def test_the_pure_files_import_neither_pyarrow_nor_do_io():
    for name in ("types", "manifest"):
        with open(os.path.join(ROOT, "plugins", "module_utils", "archive", name + ".py")) as handle:
            source = handle.read()
        assert "import pyarrow" not in source
        assert "open(" not in source and "cursor(" not in source
