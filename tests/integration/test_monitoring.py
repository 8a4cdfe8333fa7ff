"""The Grafana dashboard and the Prometheus alert rules shipped in extensions/monitoring: promtool accepts the rules
and their unit tests pass, and every metric they query is one the report role writes."""

import json
import os
import re
import shutil
import subprocess

import pytest
import yaml

from tests.support.modules import ROOT

MONITORING = os.path.join(ROOT, "extensions", "monitoring")
TEMPLATE = os.path.join(ROOT, "roles", "report", "templates", "metrics.prom.j2")
METRIC = re.compile(r"\b(sigeti_dwh_[a-z_]+)\b")


@pytest.fixture(scope="module")
def promtool():
    """promtool from Debian's prometheus package, installed when missing and this runs as root (as CI does)."""
    found = shutil.which("promtool")
    if not found and os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "prometheus"], env=env, check=False
        )
        found = shutil.which("promtool")
    if not found:
        pytest.fail(
            "promtool is needed to check the alert rules: apt-get install prometheus (Debian) or put promtool on PATH"
        )
    return found


def written_metrics():
    with open(TEMPLATE) as handle:
        return set(re.findall(r"^# TYPE (sigeti_dwh_[a-z_]+) ", handle.read(), re.M))


def test_promtool_accepts_the_rules_and_their_unit_tests_pass(promtool):
    for command in (["check", "rules", "sigeti-dwh.rules.yml"], ["test", "rules", "sigeti-dwh.rules.test.yml"]):
        done = subprocess.run([promtool] + command, cwd=MONITORING, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stdout + done.stderr


def test_the_rules_cover_what_the_issue_asks_and_query_only_written_metrics():
    with open(os.path.join(MONITORING, "sigeti-dwh.rules.yml")) as handle:
        rules = yaml.safe_load(handle)["groups"][0]["rules"]
    names = {r["alert"] for r in rules}
    assert {
        "SigetiDwhNoPartitionAhead",
        "SigetiDwhRowsInDefaultPartition",
        "SigetiDwhNoVacuumFor8Days",
        "SigetiDwhReportFailed",
        "SigetiDwhScheduledRunMissing",
    } <= names
    queried = {m for r in rules for m in METRIC.findall(r["expr"])}
    assert queried and queried <= written_metrics(), queried - written_metrics()


def test_every_metric_the_dashboard_queries_is_written_by_the_report_role():
    with open(os.path.join(MONITORING, "sigeti-dwh.grafana.json")) as handle:
        dashboard = json.load(handle)
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if v.get("definition")]
    queried = {m for e in exprs for m in METRIC.findall(e)}
    expected = {
        "sigeti_dwh_partition_bytes",
        "sigeti_dwh_periods_ahead",
        "sigeti_dwh_default_partition_rows",
        "sigeti_dwh_dead_tuples",
        "sigeti_dwh_last_vacuum_age_seconds",
        "sigeti_dwh_report_success",
    }
    assert expected <= queried, expected - queried
    assert queried <= written_metrics(), queried - written_metrics()
    panel_ids = [p["id"] for p in dashboard["panels"]]
    assert len(panel_ids) == len(set(panel_ids))
