"""One timing per query per run: the verify role's explain_info result is the only measurement of the guide's range
query; the report's page, Markdown and JSON (and this run's kept copy) show that same figure."""

import glob
import json
import re

import yaml

from tests.integration.test_roles_helpers import load_sample, play, sigeti_tables, write_inventory

SHOWN = re.compile(r"(dwh_facts\.\w+): .*range query reads .* in ([0-9.]+) ms")


def test_the_report_shows_the_range_query_time_the_verify_role_measured(pg_server, db, tmp_path):
    load_sample(pg_server, db, scale=500)
    reports = tmp_path / "reports"
    # The sample holds partitions up to this year: nothing ahead is asked for, so verify passes.
    tables = [dict(t, premake=0) for t in sigeti_tables()]
    inventory = write_inventory(
        tmp_path / "hosts.yml", {"dwh1": (pg_server, db)}, {"dwh_report_dir": str(reports), "dwh_tables": tables}
    )
    playbook = tmp_path / "verify_report.yml"
    roles = [{"role": "sigeti.dwh.verify"}, {"role": "sigeti.dwh.report"}]
    playbook.write_text(yaml.safe_dump([{"hosts": "dwh_servers", "gather_facts": False, "roles": roles}]))
    result = play(str(playbook), inventory, pg_server.password)
    assert result.returncode == 0, result.stdout[-5000:]
    measured = dict(SHOWN.findall(result.stdout))
    assert set(measured) == {"dwh_facts.fait_attributions", "dwh_facts.fait_factures"}, result.stdout[-5000:]

    data = json.loads((reports / "dwh1" / "report.json").read_text())
    reported = {q["name"]: q["execution_ms"] for q in data["run"]["range_queries"]}
    assert {name: float(ms) for name, ms in measured.items()} == reported
    [kept] = glob.glob(str(reports / "dwh1" / "runs" / "*" / "report.json"))
    with open(kept) as handle:
        assert {q["name"]: q["execution_ms"] for q in json.load(handle)["run"]["range_queries"]} == reported
    markdown = (reports / "dwh1" / "report.md").read_text()
    html = (reports / "dwh1" / "report.html").read_text()
    for name, ms in measured.items():
        assert re.search(r"%s: reads .* in %s ms" % (re.escape(name), re.escape(ms)), markdown), markdown
        assert "<td>%s ms</td>" % ms in html
    # No other figure for these queries anywhere on the page or in the Markdown.
    assert len(re.findall(r"<td>[0-9.]+ ms</td>", html)) == len(measured)
    assert len(re.findall(r" in [0-9.]+ ms", markdown)) == len(measured)
