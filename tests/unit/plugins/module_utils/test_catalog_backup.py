"""The closure behind a table-scoped dump (catalog_backup.dump_set), on plain values."""

from ansible_collections.sigeti.dwh.plugins.module_utils.catalog.backup import Link, Relation, dump_set

FACT = Relation(1, "f", "fact", "p")
FACT_2024 = Relation(2, "f", "fact_2024", "r")
DIM = Relation(3, "d", "dim", "p")
DIM_A = Relation(4, "d", "dim_a", "r")
OTHER = Relation(5, "d", "other", "r")
VIEW = Relation(6, "m", "v", "v")
MV = Relation(7, "m", "mv", "m")
DIM_VIEW = Relation(8, "m", "dim_view", "v")
NOTES = Relation(9, "f", "notes", "r")
SEQ = Relation(10, "f", "fact_id_seq", "S")

LINKS = [
    Link("partition", FACT, FACT_2024, ""),
    Link("partition", DIM, DIM_A, ""),
    Link("reads", VIEW, FACT_2024, ""),  # a view over one partition
    Link("reads", MV, VIEW, ""),  # over that view
    Link("reads", MV, OTHER, ""),  # and a table nothing else needs
    Link("reads", DIM_VIEW, DIM, ""),  # over a dimension only: not the run's
    Link("references", FACT, DIM, "fact_dim_fk"),
    Link("references", DIM, FACT, "dim_fact_fk"),  # a cycle ends
    Link("references", NOTES, FACT, "notes_fact_fk"),  # points at the fact: not needed by its restore
    Link("sequence", FACT, SEQ, "id"),
]


def test_dependents_then_what_their_restore_needs_each_with_why():
    got = [(m.relation.name, m.reason) for m in dump_set([FACT], LINKS)]
    assert got == [
        ("fact", "touched by this run"),
        ("fact_2024", "partition of f.fact"),
        ("v", "view over f.fact_2024"),
        ("mv", "materialized view over m.v"),
        ("dim", "referenced by foreign key fact_dim_fk of f.fact"),
        ("fact_id_seq", "sequence of f.fact.id"),
        ("other", "read by materialized view m.mv"),
        ("dim_a", "partition of d.dim"),
    ]


def test_a_partition_reached_by_a_need_brings_its_parent_and_siblings():
    sibling = Relation(11, "f", "fact_2025", "r")
    view = Relation(12, "m", "v2", "v")
    links = LINKS + [Link("partition", FACT, sibling, ""), Link("reads", view, sibling, "")]
    got = {m.relation.name: m.reason for m in dump_set([view], links)}
    assert got["fact"] == "parent of f.fact_2025" and got["fact_2024"] == "partition of f.fact"
    assert "notes" not in got and "dim_view" not in got


def test_nothing_touched_nothing_dumped():
    assert dump_set([], LINKS) == []


def test_uses_and_what_definitions_every_dump_holds_need_join_the_closure():
    from ansible_collections.sigeti.dwh.plugins.module_utils.catalog.backup import DumpFacts, Use, relation_links

    meta = Relation(13, "d", "zone_meta", "r")
    counter = Relation(14, "f", "counter", "r")
    note = Relation(15, "f", "note", "r")
    facts = DumpFacts(
        touched=(FACT,),
        links=tuple(LINKS),
        uses=(
            Use(FACT_2024, meta, None, "column meta of table f.fact_2024"),  # a column of a table's row type
            Use(SEQ, counter, None, "sequence f.fact_id_seq"),  # the sequence's owner
            Use(FACT, DIM, None, "constraint fact_dim_fk on table f.fact"),  # already a named link: not repeated
            Use(None, note, None, "function f(f.note)"),  # a function every dump holds
            Use(None, None, "pg_trgm", "operator class"),
        ),
        relations=(),
    )
    links, needed = relation_links(facts)
    assert [link.kind for link in links[len(LINKS) :]] == ["uses", "uses"]
    got = {m.relation.name: m.reason for m in dump_set([FACT], links, needed)}
    assert got["zone_meta"] == "needed by column meta of table f.fact_2024"
    assert got["counter"] == "needed by sequence f.fact_id_seq" and got["note"] == "needed by function f(f.note)"
    assert got["dim"] == "referenced by foreign key fact_dim_fk of f.fact"
    assert dump_set([], links, needed) == []
