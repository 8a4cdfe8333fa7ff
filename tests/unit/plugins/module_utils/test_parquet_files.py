"""The archive's file side without a database: the missing library's message, Parquet types, array literals,
PostgreSQL's CSV read by pyarrow with the overridden defaults (issue 31)."""

import io
import subprocess
import sys

import pytest

from ansible_collections.sigeti.dwh.plugins.module_utils.archive import parquet as pq
from ansible_collections.sigeti.dwh.plugins.module_utils.archive import types as at


def test_a_host_without_pyarrow_gets_the_package_and_the_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now raises ImportError
    with pytest.raises(pq.ArchiveLibraryMissing) as raised:
        pq.require_pyarrow()
    message = raised.value.msg
    assert "pyarrow" in message and "pip install 'pyarrow>=14'" in message
    assert sys.executable in message and "Nothing was changed" in message


def test_the_collection_imports_without_pyarrow(collections_path):
    """Every archive file imports with pyarrow absent (a fresh interpreter): only require_pyarrow() needs it."""
    code = (
        "import sys; sys.path.insert(0, %r); sys.modules['pyarrow'] = None\n"
        "from ansible_collections.sigeti.dwh.plugins.module_utils.archive import run as archive_run\n"
        "from ansible_collections.sigeti.dwh.plugins.module_utils.archive import parquet as parquet_archive\n"
        "try:\n    parquet_archive.require_pyarrow()\nexcept parquet_archive.ArchiveLibraryMissing:\n    print('ok')"
        % collections_path
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.stdout.strip() == "ok", done.stderr


PARQUET_TYPES = [
    "bool",
    "int16",
    "int32",
    "int64",
    "float",
    "double",
    "string",
    "binary",
    "date32[day]",
    "timestamp[us]",
    "timestamp[us, tz=UTC]",
    "decimal128(14, 2)",
    "decimal256(40, 20)",
    "list<item: int32>",
    "list<item: string>",
]


@pytest.mark.parametrize("text", PARQUET_TYPES)
def test_parquet_type_texts_are_what_pyarrow_prints(text):
    pytest.importorskip("pyarrow")
    assert str(pq.arrow_type(pq.require_pyarrow(), text)) == text


def test_array_literals_keep_nulls_quotes_and_special_floats():
    assert pq.array_literal(None) is None
    assert pq.array_literal([]) == "{}"
    assert pq.array_literal([1, None, -3]) == "{1,NULL,-3}"
    assert pq.array_literal(["a b", None, "", 'c,"d"', "NULL", "x\\y"]) == '{"a b",NULL,"","c,\\"d\\"","NULL","x\\\\y"}'
    assert (
        pq.array_literal([float("nan"), float("inf"), float("-inf"), -0.0, 0.1]) == "{NaN,Infinity,-Infinity,-0.0,0.1}"
    )
    assert pq.array_literal([True, False]) == "{t,f}"


def test_postgresql_csv_reads_back_exactly_where_pyarrow_defaults_would_not():
    """NaN, null and a quoted empty string are values; only an unquoted empty field is NULL; t/f are booleans."""
    arrow = pytest.importorskip("pyarrow") and pq.require_pyarrow()
    specs = [
        at.ColumnSpec("s", "text", "text", (), False, "string", "text", False),
        at.ColumnSpec("f", "real", "real", (), False, "float", "text", False),
        at.ColumnSpec("b", "boolean", "boolean", (), False, "bool", "text", False),
        at.ColumnSpec("x", "bytea", "bytea", (), False, "binary", "hex", False),
        at.ColumnSpec("a", "double precision[]", "double precision", (), True, "list<item: double>", "json", False),
    ]
    text = b'NaN,NaN,t,\\x00ff,"[""NaN"",""-Infinity"",-0,1.5,null]"\nnull,,f,\\x,[]\n"",-0,,,\n,,,,\n'
    schema = pq.arrow_schema(arrow, specs)
    batches = [pq.parquet_batch(arrow, b, specs, schema) for b in pq.csv_reader(arrow, io.BytesIO(text), specs)]
    table = arrow.pa.Table.from_batches(batches, schema).to_pydict()
    assert table["s"] == ["NaN", "null", "", None]
    assert str(table["f"][0]) == "nan" and table["f"][1] is None and str(table["f"][2]) == "-0.0"
    assert table["b"] == [True, False, None, None]
    assert table["x"] == [b"\x00\xff", b"", None, None]
    assert [str(v) for v in table["a"][0]] == ["nan", "-inf", "-0.0", "1.5", "None"]
    assert table["a"][1] == [] and table["a"][2] is None
    assert schema.metadata[b"sigeti.dwh.columns"].startswith(b'[{"name": "s"')
