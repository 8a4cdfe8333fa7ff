"""The Grafana dashboard and the Prometheus alert rules shipped in extensions/monitoring: promtool accepts the rules
and their unit tests pass, and every metric they query is one the report role writes. The alerts are quiet on the
textfiles the report role really wrote after setup (a migration) and weekly, +Inf ages included, and fire on a real
problem made in the database; node_exporter, pointed at dwh_report_dir as the README says, serves every sample."""

import json
import os
import re
import subprocess
import time
import urllib.request

import pytest
import yaml

from ansible_collections.sigeti.dwh.plugins.plugin_utils.report_render import METRICS
from tests.integration.test_roles_helpers import load_sample, play, write_inventory
from tests.support.browser import debian_tool
from tests.support.modules import ROOT
from tests.support.pgserver import free_port

MONITORING = os.path.join(ROOT, "extensions", "monitoring")
RULES = os.path.join(MONITORING, "sigeti-dwh.rules.yml")
METRIC = re.compile(r"\b(sigeti_dwh_[a-z_]+)\b")
TEXTFILE = "sigeti_dwh_dwh1.prom"


@pytest.fixture(scope="module")
def promtool():
    """promtool from Debian's prometheus package, installed when missing and this runs as root (as CI does)."""
    found = debian_tool("promtool", "prometheus")
    if not found:
        pytest.fail(
            "promtool is needed to check the alert rules: apt-get install prometheus (Debian) or put promtool on PATH"
        )
    return found


def written_metrics():
    return {name for name, _help in METRICS}


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


# -- the alerts on what the report role really wrote ----------------------------------------------------------------

STEP = "2m"  # one sample every 2 minutes, under Prometheus's 5-minute look-back
HORIZON = 9 * 24 * 30  # samples: 9 days


@pytest.fixture(scope="module")
def textfiles(pg_server, tmp_path_factory):
    """The textfile the report role wrote after setup.yml (migrating the sample's plain tables), after weekly.yml (and
    report.yml), and after a real problem: a premade partition, never vacuumed, with autovacuum off, where 1,000 rows
    were inserted and deleted (dead tuples far over its trigger)."""
    tmp = tmp_path_factory.mktemp("alerts")
    db = pg_server.create_database("t_alerts")
    load_sample(pg_server, db, scale=2000, partitioned=False)
    reports = tmp / "reports"
    inventory = write_inventory(
        tmp / "hosts.yml",
        {"dwh1": (pg_server, db)},
        {"dwh_report_dir": str(reports), "dwh_backup_dir": str(tmp / "backups"), "dwh_confirm": True},
    )
    found = {}
    for name, playbooks in (("setup", ["setup.yml"]), ("weekly", ["weekly.yml", "report.yml"])):
        for playbook in playbooks:
            done = play(playbook, inventory, pg_server.password)
            assert done.returncode == 0, done.stdout[-6000:]
        found[name] = (reports / TEXTFILE).read_text()
    ahead = "fait_attributions_%d" % (time.gmtime().tm_year + 1)
    conn = pg_server.connect(db)
    with conn.cursor() as cur:
        cur.execute("ALTER TABLE dwh_facts.%s SET (autovacuum_enabled = false)" % ahead)
        cur.execute("CREATE TEMP TABLE moved AS SELECT * FROM dwh_facts.fait_attributions LIMIT 1000")
        cur.execute("UPDATE moved SET date_demandee_key = %d0615" % (time.gmtime().tm_year + 1))
        cur.execute("INSERT INTO dwh_facts.fait_attributions SELECT * FROM moved")
        cur.execute("DELETE FROM dwh_facts.%s" % ahead)
        cur.execute("SELECT pg_stat_force_next_flush()")
    conn.close()
    done = play("report.yml", inventory, pg_server.password)
    assert done.returncode == 0, done.stdout[-6000:]
    found["problem"] = (reports / TEXTFILE).read_text()
    found["ahead"] = ahead
    found["reports"] = reports
    found["inventory"] = inventory
    return found


def input_series(text):
    """The textfile's samples as promtool input series: each held for the whole test, the report written at t=0
    (its timestamp sample becomes 0: ages are counted from it), +Inf as promtool spells it."""
    series = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        selector, value = line.rsplit(" ", 1)
        if selector.startswith("sigeti_dwh_report_timestamp_seconds{"):
            value = "0"
        series.append({"series": selector, "values": "%s+0x%d" % (value, HORIZON)})
    return series


def rules():
    with open(RULES) as handle:
        return {r["alert"]: r for r in yaml.safe_load(handle)["groups"][0]["rules"]}


def expected(alert, labels):
    """The alert promtool must see: the rule's labels and its annotations rendered for ``labels``."""
    rule = rules()[alert]

    def render(text):
        return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], text)

    return {
        "exp_labels": dict(labels, **rule.get("labels", {})),
        "exp_annotations": {k: render(v) for k, v in rule.get("annotations", {}).items()},
    }


def run_rule_test(promtool, tmp_path, text, firing):
    """promtool test rules over ``text``'s samples: at each eval time, exactly the alerts ``firing(time)`` gives."""
    tests = []
    for at in ("30m", "2h", "1d", "7d", "9d"):
        for alert in rules():
            tests.append({"eval_time": at, "alertname": alert, "exp_alerts": firing(at, alert)})
    document = {
        "rule_files": [RULES],
        "evaluation_interval": "1m",
        "tests": [{"interval": STEP, "input_series": input_series(text), "alert_rule_test": tests}],
    }
    path = tmp_path / "real.test.yml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    done = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]


def base_labels(text):
    match = re.search(r'^sigeti_dwh_report_timestamp_seconds\{host="([^"]*)",database="([^"]*)"\}', text, re.M)
    return {"host": match.group(1), "database": match.group(2)}


@pytest.mark.parametrize("after", ["setup", "weekly"])
def test_the_alerts_stay_quiet_on_the_healthy_warehouse_the_report_wrote(promtool, textfiles, tmp_path, after):
    text = textfiles[after]
    # never-vacuumed relations (migrated, premade, default partitions) are there, with an age of +Inf
    assert re.search(r"^sigeti_dwh_last_vacuum_age_seconds\{.*\} \+Inf$", text, re.M), text[-3000:]
    labels = base_labels(text)

    def firing(at, alert):
        # nothing, but the schedule once 8 days passed without a report
        return [expected(alert, labels)] if alert == "SigetiDwhScheduledRunMissing" and at == "9d" else []

    run_rule_test(promtool, tmp_path, text, firing)


def test_no_vacuum_fires_on_a_real_problem_and_only_there(promtool, textfiles, tmp_path):
    text = textfiles["problem"]
    ahead = textfiles["ahead"]
    assert re.search(r'relation="%s"\} \+Inf$' % ahead, text, re.M), "the partition ahead was never vacuumed"
    labels = base_labels(text)
    problem = dict(labels, table="dwh_facts.fait_attributions", relation=ahead)

    def firing(at, alert):
        found = []
        if alert == "SigetiDwhNoVacuumFor8Days" and at != "30m":  # for: 1h
            found.append(expected(alert, problem))
        if alert == "SigetiDwhScheduledRunMissing" and at == "9d":
            found.append(expected(alert, labels))
        return found

    run_rule_test(promtool, tmp_path, text, firing)


def test_every_metric_is_written_and_one_label_spells_each_table(textfiles):
    text = textfiles["weekly"]
    written = {line.split("{")[0] for line in text.splitlines() if line and not line.startswith("#")}
    # every metric written (no table of the sample archives), none that is not documented
    assert written <= written_metrics() and written_metrics() - written == {"sigeti_dwh_archive_bytes"}, written
    # setup kept the originals (_unpartitioned): their size is reported, under the declared table's spelling
    assert re.search(
        r'^sigeti_dwh_kept_original_bytes\{host="dwh1",database="t_alerts",table="dwh_facts.fait_attributions",'
        r'original="dwh_facts.fait_attributions_unpartitioned"\} [1-9]\d*$',
        text,
        re.M,
    ), text[:3000]
    tables = set(re.findall(r'table="([^"]*)"', text))
    assert tables == {"dwh_facts.fait_attributions", "dwh_facts.fait_factures"}, tables


# -- node_exporter reading the folder, as the README says -----------------------------------------------------------


@pytest.fixture
def node_exporter():
    found = debian_tool("prometheus-node-exporter", "prometheus-node-exporter")
    if not found:
        pytest.fail(
            "node_exporter is needed to check the textfile instruction: apt-get install prometheus-node-exporter "
            "(Debian) or put prometheus-node-exporter on PATH"
        )
    return found


def scrape(node_exporter, folder):
    """Start node_exporter on a free loopback port with the textfile collector on ``folder``; return /metrics."""
    port = free_port()
    command = [
        node_exporter,
        "--web.listen-address=127.0.0.1:%d" % port,
        "--collector.disable-defaults",
        "--collector.textfile",
        "--collector.textfile.directory=%s" % folder,
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as response:
                    return response.read().decode("utf-8")
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("node_exporter did not serve: %s" % process.stderr.read()[-2000:])
                time.sleep(0.5)
    finally:
        process.terminate()
        process.wait(timeout=30)


LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def samples(text):
    """{(metric, sorted labels): value} of the sigeti_dwh_ samples (node_exporter sorts the labels it serves)."""
    found = {}
    for line in text.splitlines():
        if line.startswith("sigeti_dwh_"):
            selector, value = line.rsplit(" ", 1)
            name, _brace, labels = selector.partition("{")
            found[(name, tuple(sorted(LABEL.findall(labels))))] = float(value)
    return found


def test_node_exporter_on_dwh_report_dir_serves_every_host_s_samples(node_exporter, textfiles, pg_server):
    reports = textfiles["reports"]
    # a second host of the inventory, reported into the same folder
    with open(textfiles["inventory"]) as handle:
        inventory = yaml.safe_load(handle)
    hosts = inventory["all"]["children"]["dwh_servers"]["hosts"]
    hosts["dwh2"] = dict(hosts["dwh1"])
    with open(textfiles["inventory"], "w") as handle:
        yaml.safe_dump(inventory, handle)
    done = play("report.yml", textfiles["inventory"], pg_server.password, args=["--limit", "dwh2"])
    assert done.returncode == 0, done.stdout[-4000:]
    served = scrape(node_exporter, reports)
    assert re.search(r"^node_textfile_scrape_error 0$", served, re.M), served[-3000:]
    got = samples(served)
    for host in ("dwh1", "dwh2"):
        wrote = samples((reports / ("sigeti_dwh_%s.prom" % host)).read_text())
        assert wrote and {k: got.get(k) for k in wrote} == wrote, host
