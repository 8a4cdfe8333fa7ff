"""missing_partition_indexes walks the partitions of a sub-partitioned partition, nested by table_info (pure)."""

from ansible_collections.sigeti.dwh.plugins.filter.partition_indexes import missing_partition_indexes


def test_months_nested_in_their_year_are_checked_too():
    table = {
        "kind": "partitioned",
        "name": "f",
        "partitions": [
            {"name": "f_2023"},
            {"name": "f_2024", "partitions": [{"name": "f_2024_01"}, {"name": "f_2024_02"}]},
        ],
        "indexes": [
            {"table": "f", "name": "f_k", "definition": "CREATE INDEX f_k ON ONLY s.f USING btree (k)"},
            {"table": "f_2023", "name": "a", "definition": "CREATE INDEX a ON s.f_2023 USING btree (k)"},
            {"table": "f_2024", "name": "b", "definition": "CREATE INDEX b ON ONLY s.f_2024 USING btree (k)"},
            {"table": "f_2024_01", "name": "c", "definition": "CREATE INDEX c ON s.f_2024_01 USING btree (k)"},
        ],
    }
    assert missing_partition_indexes(table) == [{"index": "f_k", "partition": "f_2024_02"}]
