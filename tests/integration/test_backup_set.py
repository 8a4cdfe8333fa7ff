"""table_info's backup_set against the sample warehouse: what a table-scoped dump of a fact table must hold to restore
into an empty database (partitions, views and materialized views over it, the tables its foreign keys point at and
theirs, the relations those views read, sequences), and what it leaves out."""

from tests.integration.test_roles_helpers import load_sample
from tests.support.modules import run_module

ATT = "dwh_facts.fait_attributions"


def dump_set(pg_server, db, tables):
    args = pg_server.params(db)
    args.update(tables=tables, compression="none", backup_set=True)
    result = run_module("table_info", args)
    assert not result.get("failed"), result
    return {"%s.%s" % (m["schema"], m["name"]): m for m in result["backup_set"]}


def test_a_fact_tables_dump_holds_its_partitions_views_referenced_dimensions_and_sequences(pg_server, db, conn):
    load_sample(pg_server, db, scale=500)
    with conn.cursor() as cur:
        cur.execute("CREATE VIEW dwh_marts.v_over_view AS SELECT attribution_id FROM dwh_marts.v_attributions_detail")
        # Depends on nothing the run touches: a view over a dimension, a table pointing at the fact.
        cur.execute("CREATE VIEW dwh_marts.v_zones AS SELECT * FROM dwh_dim.dim_zone")
        cur.execute(
            "CREATE TABLE dwh_facts.notes (attribution_id bigint, date_demandee_key integer, FOREIGN KEY "
            "(attribution_id, date_demandee_key) REFERENCES dwh_facts.fait_attributions)"
        )
        # A dimension only a dimension's foreign key reaches.
        cur.execute("CREATE TABLE dwh_dim.dim_region (region text PRIMARY KEY)")
        cur.execute("INSERT INTO dwh_dim.dim_region SELECT DISTINCT region FROM dwh_dim.dim_zone")
        cur.execute(
            "ALTER TABLE dwh_dim.dim_zone ADD CONSTRAINT zone_region_fk FOREIGN KEY (region) REFERENCES dwh_dim.dim_region"
        )
        # A sequence a default calls without owning it.
        cur.execute("CREATE SEQUENCE dwh_dim.zone_numbers")
        cur.execute("ALTER TABLE dwh_dim.dim_zone ADD COLUMN numero bigint DEFAULT nextval('dwh_dim.zone_numbers')")
    found = dump_set(pg_server, db, [ATT])
    partitions = ["dwh_facts.fait_attributions_%s" % y for y in list(range(2020, 2027)) + ["default"]]
    expected = {
        ATT: ("partitioned table", "touched by this run"),
        "dwh_marts.mv_attributions_par_annee": ("materialized view", "materialized view over " + ATT),
        "dwh_marts.mv_occupation_par_zone": ("materialized view", "materialized view over " + ATT),
        "dwh_marts.v_attributions_detail": ("view", "view over " + ATT),
        "dwh_marts.v_over_view": ("view", "view over dwh_marts.v_attributions_detail"),
        "dwh_dim.dim_entreprise": (
            "table",
            "referenced by foreign key fait_attributions_entreprise_id_fkey of " + ATT,
        ),
        "dwh_dim.dim_lot": ("table", "referenced by foreign key fait_attributions_lot_id_fkey of " + ATT),
        "dwh_dim.dim_zone": ("table", "read by materialized view dwh_marts.mv_occupation_par_zone"),
        "dwh_dim.dim_region": ("table", "referenced by foreign key zone_region_fk of dwh_dim.dim_zone"),
        "dwh_dim.dim_date": ("table", "read by materialized view dwh_marts.mv_attributions_par_annee"),
        "dwh_facts.fait_attributions_attribution_id_seq": ("sequence", "sequence of %s.attribution_id" % ATT),
        "dwh_dim.zone_numbers": ("sequence", "sequence of dwh_dim.dim_zone.numero"),
    }
    expected.update(dict.fromkeys(partitions, ("table", "partition of " + ATT)))
    got = {name: (m["kind"], m["reason"]) for name, m in found.items()}
    # Sequences owned by the dimensions (serial keys) come too; nothing else.
    extra = {name: value for name, value in got.items() if name not in expected}
    assert all(kind == "sequence" and name.startswith("dwh_dim.") for name, (kind, _r) in extra.items()), extra
    assert {name: got.get(name) for name in expected} == expected
    assert "dwh_facts.notes" not in found and "dwh_marts.v_zones" not in found
    assert "dwh_facts.fait_factures" not in found and "dwh_marts.mv_factures_par_entreprise" not in found
    assert found["dwh_facts.fait_attributions_2023"]["bytes"] > 0 and found[ATT]["bytes"] == 0
    assert found["dwh_marts.v_attributions_detail"]["bytes"] == 0


def test_without_the_option_nothing_is_read(pg_server, db):
    load_sample(pg_server, db, scale=200)
    args = pg_server.params(db)
    args.update(tables=[ATT], compression="none")
    assert "backup_set" not in run_module("table_info", args)
