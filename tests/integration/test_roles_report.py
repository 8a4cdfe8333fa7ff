"""report: self-contained HTML with inline SVG charts (checked in headless Chromium, installed when missing), Markdown,
JSON, and a Prometheus textfile whose every sample parses; nothing written in check mode, never "changed"."""

import json
import os
import re
import shutil

import pytest

from tests.integration.test_roles_helpers import load_sample, play, recap, write_inventory
from tests.support import browser

SAMPLE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\} (-?[0-9.e+]+|\+Inf)$')


@pytest.fixture(scope="module")
def report(pg_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    pg_server.create_database("t_report")
    load_sample(pg_server, "t_report", scale=3000, bloat=True)
    inventory = write_inventory(
        tmp / "hosts.yml",
        {"dwh1": (pg_server, "t_report")},
        {
            "dwh_report_dir": str(tmp / "reports"),
            "dwh_report_extra_tables": ["dwh_dim.dim_zone"],
            # node_exporter's folder on the database host (here the same machine)
            "dwh_report_textfile_dir": str(tmp / "node-exporter"),
        },
    )
    (tmp / "node-exporter").mkdir()
    first = play("report.yml", inventory, pg_server.password, check=True)
    assert first.returncode == 0, first.stdout[-5000:]
    # check mode writes no file anywhere: not even the report folder
    assert not (tmp / "reports").exists() and "check mode: no report file written" in first.stdout
    assert os.listdir(tmp / "node-exporter") == []
    second = play("report.yml", inventory, pg_server.password)
    assert second.returncode == 0, second.stdout[-5000:]
    assert recap(second.stdout)["dwh1"]["changed"] == 0
    return tmp / "reports" / "dwh1", second.stdout


def test_json_markdown_and_history(report):
    folder = report[0]
    data = json.loads((folder / "report.json").read_text())
    names = [t["name"] for t in data["tables"]]
    assert names == ["dwh_facts.fait_attributions", "dwh_facts.fait_factures", "dwh_dim.dim_zone"]
    att = data["tables"][0]
    assert att["kind"] == "partitioned" and att["partition_count"] == 8 and att["dead_tuples"] > 0
    assert "commentaire" in att["compression_measured"]
    history = json.loads((folder / "history.json").read_text())
    assert len(history) == 1  # two runs the same day: one entry
    markdown = (folder / "report.md").read_text()
    assert "| dwh_facts.fait_attributions | partitioned |" in markdown


def test_prometheus_textfile_parses_and_has_the_metrics(report):
    folder = report[0]
    # beside the host folders, in the one folder node_exporter's textfile collector reads
    text = (folder.parent / "sigeti_dwh_dwh1.prom").read_text()
    # and the same file on the database host, for its node_exporter
    assert (folder.parent.parent / "node-exporter" / "sigeti_dwh_dwh1.prom").read_text() == text
    names = set()
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        assert SAMPLE.match(line), line
        names.add(line.split("{")[0])
    assert {
        "sigeti_dwh_partition_bytes",
        "sigeti_dwh_periods_ahead",
        "sigeti_dwh_default_partition_rows",
        "sigeti_dwh_dead_tuples",
        "sigeti_dwh_last_vacuum_age_seconds",
        "sigeti_dwh_table_bytes",
    } <= names
    dead = [
        line
        for line in text.splitlines()
        if line.startswith("sigeti_dwh_dead_tuples{") and 'relation="fait_attributions_2026"' in line
    ]
    assert dead and int(dead[0].split()[-1]) > 0


def test_html_is_self_contained_with_charts(report):
    folder = report[0]
    html = (folder / "report.html").read_text()
    assert html.count("<svg") >= 6
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in html and "<link" not in html


def test_html_renders_in_headless_chromium(report, tmp_path):
    chromium = browser.find_chromium()
    if not chromium:
        pytest.skip(browser.MISSING)
    folder = report[0]
    dom = browser.dump_dom(chromium, str(tmp_path / "profile"), str(folder / "report.html"))
    assert dom.count("<rect") > 20 and "fait_attributions_2023" in dom
    shot = tmp_path / "report.png"
    browser.chromium(
        chromium, str(tmp_path / "profile-shot"), "--window-size=1100,1800", "--screenshot=%s" % shot,
        "file://%s" % (folder / "report.html"),
    )  # fmt: skip
    assert shot.exists() and shot.stat().st_size > 20000
    shutil.copy(shot, folder / "report.png")


def test_a_missing_table_and_a_broken_history_do_not_stop_the_report(pg_server, db, conn, tmp_path):
    import glob
    import pathlib
    import time

    load_sample(pg_server, db, scale=300)
    with conn.cursor() as cur:
        cur.execute("DROP TABLE dwh_facts.fait_factures CASCADE")
    folder = tmp_path / "reports" / "dwh1"
    folder.mkdir(parents=True)
    (folder / "history.json").write_text('[{"date": "2026-01-01", "tables": {')  # a truncated write
    inventory = write_inventory(
        tmp_path / "hosts.yml",
        {"dwh1": (pg_server, db)},
        {"dwh_report_dir": str(tmp_path / "reports"), "dwh_report_extra_tables": ["dwh_dim.dim_zone"]},
    )
    started = time.time()
    result = play("report.yml", inventory, pg_server.password)
    assert result.returncode == 0, result.stdout[-5000:]
    assert recap(result.stdout)["dwh1"]["changed"] == 0
    assert "dwh_facts.fait_factures do not exist: reported as missing" in result.stdout
    assert "%s/history.json could not be read" % folder in result.stdout
    broken = glob.glob(str(folder / "history.json.broken-*"))
    assert len(broken) == 1 and pathlib.Path(broken[0]).read_text().startswith('[{"date": "2026-01-01"')
    assert len(json.loads((folder / "history.json").read_text())) == 1
    data = json.loads((folder / "report.json").read_text())
    assert [t["name"] for t in data["tables"]] == ["dwh_facts.fait_attributions", "dwh_dim.dim_zone"]
    assert data["missing"] == ["dwh_facts.fait_factures"] and data["errors"] == []
    samples = {}
    for line in (folder.parent / "sigeti_dwh_dwh1.prom").read_text().splitlines():
        if line and not line.startswith("#"):
            assert SAMPLE.match(line), line
            samples[line.rsplit(" ", 1)[0]] = line.rsplit(" ", 1)[1]
    base = 'host="dwh1",database="%s"' % db
    assert samples["sigeti_dwh_report_success{%s}" % base] == "0"
    assert samples['sigeti_dwh_table_present{%s,table="dwh_facts.fait_factures"}' % base] == "0"
    assert samples['sigeti_dwh_table_present{%s,table="dwh_facts.fait_attributions"}' % base] == "1"
    assert int(samples["sigeti_dwh_report_timestamp_seconds{%s}" % base]) >= int(started) - 1
    assert "**Missing tables** (declared, do not exist): dwh_facts.fait_factures" in (folder / "report.md").read_text()


def test_each_run_is_kept_and_listed_by_index_html_in_binary_units(report):
    folder = report[0]
    runs = sorted(os.listdir(folder / "runs"))
    # The module fixture ran report.yml twice: --check first (nothing written), then for real.
    assert len(runs) == 1 and re.match(r"^\d{8}T\d{6}Z-report$", runs[0]), runs
    assert {"report.html", "report.md", "report.json", "summary.json"} <= set(os.listdir(folder / "runs" / runs[0]))
    index = (folder / "index.html").read_text()
    assert 'href="report.html"' in index and 'href="runs/%s/report.html"' % runs[0] in index
    assert "dwh_facts.fait_attributions: " in index and "on disk: " in index
    for page in (folder / "report.html", folder / "report.md", folder / "index.html"):
        text = page.read_text()
        assert re.search(r"\d (KiB|MiB)\b", text), page
        assert not re.search(r"\d (KB|MB|GB)\b", text), page


def test_compression_figures_say_whether_they_are_sampled(report):
    folder = report[0]
    data = json.loads((folder / "report.json").read_text())
    att = data["tables"][0]["compression_sample"]
    html = (folder / "report.html").read_text()
    markdown = (folder / "report.md").read_text()
    if att["sampled"]:
        assert "Estimate: counts in a TABLESAMPLE of %d rows" % att["rows_read"] in html
        assert "estimate: sample of %d rows" % att["rows_read"] in markdown
    else:
        assert "Exact counts" in html and "exact: every row" in markdown


def test_report_runs_are_rotated_by_dwh_report_keep(pg_server, db, tmp_path):
    load_sample(pg_server, db, scale=300)
    runs = tmp_path / "reports" / "dwh1" / "runs"
    # Two older runs (one without summary.json: left out of the index, still rotated).
    for name, summary in (("20250101T000000Z-setup", True), ("20250201T000000Z-monthly", False)):
        (runs / name).mkdir(parents=True)
        if summary:
            (runs / name / "summary.json").write_text(
                json.dumps(
                    {
                        "playbook": "setup",
                        "check_mode": False,
                        "generated_at": "2025-01-01T00:00:00Z",
                        "folder": name,
                        "changed": ["partitioning dwh_facts.fait_attributions: created x"],
                        "backup": None,
                        "tables": [["dwh_facts.fait_attributions", 4096]],
                        "before": [2048],
                    }
                )
            )
    inventory = write_inventory(
        tmp_path / "hosts.yml", {"dwh1": (pg_server, db)}, {"dwh_report_dir": str(tmp_path / "reports")}
    )
    result = play("report.yml", inventory, pg_server.password, {"dwh_report_keep": 2})
    assert result.returncode == 0, result.stdout[-5000:]
    assert recap(result.stdout)["dwh1"]["changed"] == 0
    kept = sorted(os.listdir(runs))
    assert len(kept) == 2 and kept[0] == "20250201T000000Z-monthly" and kept[1].endswith("-report"), kept
    index = (tmp_path / "reports" / "dwh1" / "index.html").read_text()
    assert "20250101T000000Z-setup" not in index and kept[1] in index and "monthly" not in index


def test_a_report_folder_that_cannot_be_written_fails_naming_it(pg_server, db, tmp_path):
    load_sample(pg_server, db, scale=300)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the report folder should be")
    inventory = write_inventory(
        tmp_path / "hosts.yml", {"dwh1": (pg_server, db)}, {"dwh_report_dir": str(blocker / "reports")}
    )
    result = play("report.yml", inventory, pg_server.password)
    assert result.returncode != 0
    assert "dwh1: the report could not be written in %s/reports/dwh1" % blocker in result.stdout, result.stdout[-3000:]
    assert "set dwh_report_dir to a folder the controller's user can write" in result.stdout
    assert "Traceback" not in result.stdout
