"""The report's files from its document: escaping for each format, the Prometheus text, and a page of 3,650 daily
partitions that stays small (summed by year, then month, every partition on demand)."""

import datetime
import pathlib
import re

import pytest

from ansible_collections.sigeti.dwh.plugins.module_utils.report.data import ReportContext, build_report
from ansible_collections.sigeti.dwh.plugins.plugin_utils import report_render
from tests.unit.plugins.module_utils.test_report_data import NOW, daily, read, table

ROOT = pathlib.Path(__file__).resolve().parents[4]
TEMPLATES = str(ROOT / "roles" / "report" / "templates")


def document(reads, **kwargs):
    base = {"title": "SIGETI", "host": "wh1", "database": "sigeti", "now": NOW}
    base.update(kwargs)
    return build_report(reads, ReportContext(**base))


@pytest.mark.parametrize(
    ("value", "escaped"),
    [
        ("fait_attributions_2024", "fait_attributions_2024"),  # intraword underscores left as written
        ("_tmp_", "\\_tmp\\_"),
        ("<script>x</script>", "\\<script\\>x\\</script\\>"),
        ("a|b", "a\\|b"),
        ("*bold* `code` [l](u) ~s~ !#", "\\*bold\\* \\`code\\` \\[l\\](u) \\~s\\~ \\!\\#"),
        ("a\\b &amp;", "a\\\\b \\&amp;"),
        ("two\nlines\r\n", "two lines  "),
        (None, ""),
        (12, "12"),
    ],
)
def test_markdown_escaping(value, escaped):
    assert report_render.md_escape(value) == escaped


def test_prometheus_label_values_are_escaped_and_ages_are_inf_when_never_vacuumed():
    assert report_render.label_value('a"b\\c\nd') == 'a\\"b\\\\c\\nd'
    entry = table(
        "dwh_weird", 'a"b\\c', kind="plain", vacuum=[{"name": 'a"b\\c', "n_dead_tup": 3, "vacuum_trigger": 50}]
    )
    doc = document(
        [read("declared", 'dwh_weird."a""b\\c"', result={"tables": [entry]})],
        declared=[{"name": 'dwh_weird."a""b\\c"'}],
    )
    text = report_render.prometheus_text(doc)
    base = 'host="wh1",database="sigeti",table="dwh_weird.a\\"b\\\\c"'
    assert "sigeti_dwh_table_present{%s} 1" % base in text  # the declared spelling resolved: one label per table
    assert "sigeti_dwh_table_bytes{%s} 1000" % base in text
    assert 'sigeti_dwh_last_vacuum_age_seconds{%s,relation="a\\"b\\\\c"} +Inf' % base in text
    assert 'sigeti_dwh_vacuum_trigger_tuples{%s,relation="a\\"b\\\\c"} 50' % base in text
    for name, _help in report_render.METRICS:
        assert "# TYPE %s gauge" % name in text


def test_names_of_files_and_folders():
    doc = document([], playbook="Set up partitioning, compression and vacuum!")
    assert report_render.run_folder(doc) == "20260615T120000Z-set-up-partitioning-compression-and-vacu"
    assert report_render.textfile_name("db/1.example:5432") == "sigeti_dwh_db_1.example_5432.prom"


def test_a_kept_summary_of_any_version_is_read_with_every_key():
    old = {"playbook": "setup", "generated_at": "2025-01-01T00:00:00Z", "tables": [["a", 1], ["b", 2]], "before": [5]}
    shown = report_render.kept_summary(old)
    assert (
        shown["before"] == [5, None] and shown["changed"] == [] and shown["kept"] == [] and shown["all_bytes"] is None
    )
    index = report_render.render_index(document([]), [old, {"folder": "x", "tables": "junk"}], 30, TEMPLATES)
    assert "a: 5 bytes &rarr; 1 bytes" in index and "b: 2 bytes" in index


def test_a_page_of_3650_daily_partitions_is_summed_by_period_and_stays_under_500_kb():
    doc = document(
        [read("declared", "dwh_facts.fait_events", result={"tables": [daily(3650)]})],
        declared=[{"name": "dwh_facts.fait_events"}],
    )
    pages = report_render.render_pages(doc, TEMPLATES)
    html = pages["report.html"]
    assert len(html.encode("utf-8")) < 500 * 1024, len(html)
    # one bar per year (and the default), one per month behind each year, each partition once in a <details> table
    assert html.count('id="partitions-1"') == 1 and html.count('id="partitions-1-2020"') == 1
    assert len(re.findall(r"<tr(?: class=\"warn\")?><td>fait_events_p\d{8}<td>", html)) == 3650
    # 11 years (2016-09-01 .. 2026-08-29) and the default partition, the 120 months behind the years
    assert html.count("<details>") == 11 + 1 + 120
    assert html.count("<svg") < 30
    heights = [int(h) for h in re.findall(r'<svg class="chart"[^>]* height="(\d+)"', html)]
    assert max(heights) < 400, heights  # no chart 80,000 px tall
    markdown = pages["report.md"]
    assert (
        "### dwh\\_facts.fait\\_events by period" not in markdown and "### dwh_facts.fait_events by period" in markdown
    )
    assert markdown.count("\n| 20") == 11 and len(markdown) < 20000


def test_the_page_scales_linearly_with_partitions():
    def size(count):
        doc = document([read("declared", "s.t", result={"tables": [daily(count)]})], declared=[{"name": "s.t"}])
        return len(report_render.render_pages(doc, TEMPLATES)["report.html"])

    small, large = size(365), size(3650)
    assert large < 10 * small * 1.1  # bytes per partition do not grow with the count


def test_an_unknown_comment_or_size_shows_a_dash_and_a_date_key():
    entry = table(kind="plain", size=None, comment="line one\nline two <b>")
    entry["sizes"] = {}
    doc = document([read("declared", "dwh_facts.t", result={"tables": [entry]})])
    html = report_render.render_pages(doc, TEMPLATES)["report.html"]
    assert '<div class="comment">line one\nline two &lt;b&gt;</div>' in html
    assert datetime.date.today() is not None


def test_tablespaces_and_their_tiers_are_shown_on_both_pages_only_when_there_is_something_to_say():
    entry = table("dwh_facts", "fait")
    entry["tablespaces"] = {"pg_default": 4096, "cold_ssd": 1 << 20}
    declared = [
        {
            "name": "dwh_facts.fait",
            "tiers": [{"after": 12, "tablespace": "cold_ssd"}, {"after": 36, "tablespace": "archive_hdd"}],
        }
    ]
    doc = document([read("declared", "dwh_facts.fait", result={"tables": [entry]})], declared=declared)
    rows = doc["tables"][0]["tablespaces"]
    assert rows == [
        {"tablespace": "pg_default", "bytes": 4096, "tier_after": None},
        {"tablespace": "cold_ssd", "bytes": 1 << 20, "tier_after": 12},
        {"tablespace": "archive_hdd", "bytes": 0, "tier_after": 36},  # a tier nothing lives in yet
    ]
    pages = report_render.render_pages(doc, TEMPLATES)
    html = pages["report.html"]
    assert "<h2>Storage by tablespace</h2>" in html
    assert "<td>cold_ssd</td><td>periods ended more than 12 ago</td>" in html
    assert "<td>archive_hdd</td><td>periods ended more than 36 ago</td>" in html
    assert "| dwh_facts.fait | cold_ssd | periods ended more than 12 ago |" in pages["report.md"]

    plain = table("dwh_facts", "fait")
    plain["tablespaces"] = {"pg_default": 4096}
    quiet = document(
        [read("declared", "dwh_facts.fait", result={"tables": [plain]})], declared=[{"name": "dwh_facts.fait"}]
    )
    assert "Storage by tablespace" not in report_render.render_pages(quiet, TEMPLATES)["report.html"]
