"""Crash campaign: kill -9 of the process running a module, pg_terminate_backend of its session, and a server
crash (pg_ctl stop -m immediate), at seeded random statements of a recompression, a VACUUM FULL pass, partition
maintenance, a roll-up of old partitions and a live migration. After each crash: the table answers and holds the source rows; a re-run
converges to exactly the state of an uninterrupted run (catalog + content fingerprint), with nothing left over.

Retention action parquet is one of the scenarios: its content is the set's rows and its archives read back, so a
published manifest whose file does not hold its rows counts as lost rows.

Fast subset: 1 kill -9 point and 1 terminate point per scenario, 1 server crash. Full campaign (slow):
20 points per scenario and action, 5 server crashes per scenario (SIGETI_CAMPAIGN_POINTS overrides 20).
"""

import os
import random

import pytest

from tests.reliability.harness import (
    MODULE_MIGRATION,
    SCENARIOS,
    SEED,
    Campaign,
    crash_server,
    kill_process,
    terminate_backend,
)

FULL_POINTS = int(os.environ.get("SIGETI_CAMPAIGN_POINTS", "20"))
ACTIONS = {"kill -9": kill_process, "pg_terminate_backend": terminate_backend}


@pytest.fixture(scope="module")
def campaigns(pg_server):
    """One prepared campaign (template + reference run) per scenario, shared by the tests of this file."""
    prepared = {}

    def get(name):
        if name not in prepared:
            scenario = {MODULE_MIGRATION.name: MODULE_MIGRATION}.get(name) or SCENARIOS[name]
            prepared[name] = Campaign(pg_server, scenario, "").prepare()
        return prepared[name]

    yield get


def _run(campaign, label, points, action):
    campaign.label = label
    figures, failed = campaign.run(points, action, random.Random(SEED))
    assert not failed, failed
    assert figures["rows_lost"] == 0
    assert figures["crashed"] == figures["points"], "every run must have reached its crash point"
    # "not queued indefinitely": a generous bound, the measured figure is what matters (printed, recorded)
    assert figures["max_reader_stall_ms"] < 10000, figures
    return figures


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_fast_crash_points_converge(campaigns, scenario):
    campaign = campaigns(scenario)
    rng = random.Random("%s-%s" % (SEED, scenario))
    points = campaign.points(2, rng)
    _run(campaign, "kill -9", points[:1], kill_process)
    _run(campaign, "pg_terminate_backend", points[1:], terminate_backend)


@pytest.mark.slow
@pytest.mark.parametrize("action", sorted(ACTIONS))
@pytest.mark.parametrize("scenario", sorted(SCENARIOS) + [MODULE_MIGRATION.name])
def test_full_crash_campaign(campaigns, scenario, action):
    campaign = campaigns(scenario)
    rng = random.Random("%s-%s-%s" % (SEED, scenario, action))
    _run(campaign, action, campaign.points(FULL_POINTS, rng), ACTIONS[action])


def _server_crash(scenario, points):
    from tests.support.pgserver import PostgresServer

    server = PostgresServer().start()
    try:
        server.wait_ready()
        campaign = Campaign(server, SCENARIOS[scenario], "server crash (pg_ctl stop -m immediate)").prepare()
        rng = random.Random("%s-crash-%s" % (SEED, scenario))
        figures, failed = campaign.run(campaign.points(points, rng), crash_server, rng, tolerate_probe_errors=True)
        assert not failed, failed
        assert figures["rows_lost"] == 0
    finally:
        server.destroy()


def test_fast_server_crash_during_online_recompression():
    _server_crash("recompression", 1)


@pytest.mark.slow
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_full_server_crash_campaign(scenario):
    _server_crash(scenario, 5)
