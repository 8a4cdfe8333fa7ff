"""The message of a list of tables stopped at its first failure: one sentence per part, nothing said twice."""

from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import DwhError
from ansible_collections.sigeti.dwh.plugins.module_utils.plan.tables import failure_message, table_failure

CAUSE = (
    "table dwh_facts.fait_attributions has primary key (attribution_id) without the partition key "
    "date_demandee_key: set extend_primary_key: true; nothing was changed"
)


def test_a_list_of_one_table_says_the_cause_only_as_a_sentence():
    msg = failure_message("dwh_facts.fait_attributions", CAUSE, [], [])
    assert msg == "table dwh_facts.fait_attributions failed: " + CAUSE + "."
    assert "The list stopped there" not in msg and "none" not in msg


def test_a_longer_list_names_what_was_done_and_not_run_after_a_full_stop():
    msg = failure_message("b", CAUSE + " ", ["a"], ["c", "d"])
    assert msg == "table b failed: %s. The list stopped there: done before it: a; not run: c, d." % CAUSE
    # a cause that already ends a sentence gets no second full stop
    assert failure_message("b", "it failed.", [], ["c"]) == (
        "table b failed: it failed. The list stopped there: done before it: none; not run: c."
    )


def test_table_failure_keeps_the_details_and_the_results_so_far():
    error = table_failure(DwhError(CAUSE, sqlstate="42P16"), "b", [{"name": "a", "changed": True}], [])
    assert error.msg == "table b failed: %s. The list stopped there: done before it: a; not run: none." % CAUSE
    assert error.details["changed"] is True and error.details["failed_table"] == "b"
    assert [r["name"] for r in error.details["results"]] == ["a", "b"]
