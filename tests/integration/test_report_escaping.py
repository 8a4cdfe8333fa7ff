"""Every value on every page escaped: a warehouse whose schema, tables, partitions, columns and comment are named
like markup (script, img onerror, attribute break-outs, quotes, backslashes, ``&amp;``, newlines, ``{{ }}``) goes
through setup.yml (which creates partitions with those names: the setup page's "This run" lists them), and every
page it wrote - report.html, index.html, the run's copy, report.md rendered as GitLab/GitHub would (raw HTML
allowed) - is loaded in headless Chromium: no element or attribute was injected, no script ran, every hostile
name is shown as text. Chart labels stay inside their SVG (measured by Chromium), long ones cut with a tooltip."""

import json
import os
import re
import subprocess

import pytest

from ansible_collections.sigeti.dwh.plugins.module_utils.report import view as report_view
from tests.integration.test_roles_helpers import play, write_inventory
from tests.support import browser

PWN = "document.title='PWNED'"
SCHEMA = 'dwh_"><svg onload=%s>' % PWN  # an attribute break-out
TABLE = "<script>%s</script>" % PWN
PARTITION = '<img src=x onerror="%s">' % PWN
COLUMN = "<b>note</b>&amp;\"'\\"
PLAIN = 'a"b\\c\n&amp;<i>x</i>'  # quotes, a backslash, a newline, an entity, markup
COMMENT = "</td></tr></table><script>%s</script>\nsecond line & {{ 7*7 }} | *not bold* [link](javascript:x)" % PWN
TITLE = '<script>%s</script> & "health"' % PWN
# The tags the pages are made of (the DOM adds tbody; markdown-it writes thead/strong/em for the Markdown).
PAGE_TAGS = {
    "html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "div", "b", "p", "ul", "li", "table",
    "tbody", "thead", "tr", "th", "td", "svg", "rect", "text", "details", "summary", "span", "a", "br", "strong",
}  # fmt: skip


def ident(*parts):
    return ".".join('"%s"' % p.replace('"', '""') for p in parts)


@pytest.fixture(scope="module")
def chromium():
    found = browser.find_chromium()
    if not found:
        pytest.skip(browser.MISSING)
    return found


@pytest.fixture(scope="module")
def hostile(pg_server, tmp_path_factory):
    """setup.yml then report.yml on the hostile warehouse; returns the reports folder."""
    tmp = tmp_path_factory.mktemp("hostile")
    db = pg_server.create_database("t_hostile")
    conn = pg_server.connect(db)
    with conn.cursor() as cur:
        cur.execute("CREATE SCHEMA %s" % ident(SCHEMA))
        cur.execute(
            "CREATE TABLE %s (id bigint NOT NULL, d integer NOT NULL, %s text) PARTITION BY RANGE (d)"
            % (ident(SCHEMA, TABLE), ident(COLUMN))
        )
        cur.execute("COMMENT ON TABLE %s IS %%s" % ident(SCHEMA, TABLE), (COMMENT,))
        # a partition the DBA made by hand, named like markup; the run creates the others (named after the table)
        cur.execute(
            "CREATE TABLE %s PARTITION OF %s FOR VALUES FROM (20230101) TO (20240101)"
            % (ident(SCHEMA, PARTITION), ident(SCHEMA, TABLE))
        )
        cur.execute(
            "INSERT INTO %s SELECT i, 20230101 + (i %% 28), repeat(md5(i::text), 100) FROM generate_series(1, 300) i"
            % ident(SCHEMA, TABLE)
        )
        cur.execute("UPDATE %s SET id = id WHERE id %% 2 = 0" % ident(SCHEMA, TABLE))
        cur.execute("CREATE TABLE %s (v int)" % ident(SCHEMA, PLAIN))
        cur.execute("ANALYZE")
    conn.close()
    declared = {
        "name": ident(SCHEMA, TABLE),
        "key": "d",
        "key_format": "yyyymmdd",
        "interval": "year",
        "start": "2023-01-01",
        "premake": 1,
        "default_partition": True,
        "compression": {"columns": {COLUMN: "lz4"}},
    }
    inventory = write_inventory(
        tmp / "hosts.yml",
        {"dwh1": (pg_server, db)},
        {
            "dwh_tables": [declared],
            "dwh_report_extra_tables": [ident(SCHEMA, PLAIN)],
            "dwh_report_dir": str(tmp / "reports"),
            "dwh_report_title": TITLE,
            "dwh_backup": "never",
        },
    )
    setup = play("setup.yml", inventory, pg_server.password, {"dwh_confirm": True})
    assert setup.returncode == 0, setup.stdout[-6000:]
    report = play("report.yml", inventory, pg_server.password)
    assert report.returncode == 0, report.stdout[-6000:]
    return tmp / "reports"


def pages(reports):
    folder = reports / "dwh1"
    runs = sorted((folder / "runs").iterdir())
    assert [r.name.split("-", 1)[1] for r in runs] == ["setup", "report"], runs
    return {
        "report.html": folder / "report.html",
        "index.html": folder / "index.html",
        "setup's report.html": runs[0] / "report.html",
    }


def assert_nothing_injected(dom, where):
    parsed = browser.elements(dom)
    assert parsed.title != "PWNED", where  # what every payload's script would set
    assert set(parsed.tags) <= PAGE_TAGS, (where, set(parsed.tags) - PAGE_TAGS)
    handlers = [(tag, name) for tag, name, _value in parsed.attributes if name.lower().startswith("on")]
    assert handlers == [], (where, handlers)
    links = [value for tag, name, value in parsed.attributes if name in ("href", "src")]
    assert not [v for v in links if v and v.strip().lower().startswith("javascript:")], (where, links)
    return parsed


def test_no_page_runs_a_script_or_gets_an_element_from_a_name(hostile, chromium, tmp_path):
    for where, path in pages(hostile).items():
        dom = browser.dump_dom(chromium, str(tmp_path / ("profile-" + where.replace(" ", "_"))), str(path))
        parsed = assert_nothing_injected(dom, where)
        text = "".join(parsed.text)
        assert parsed.title.startswith(TITLE), (where, parsed.title)
        assert TABLE in text, where  # shown, as text
        if where != "index.html":
            assert SCHEMA in text and PARTITION in text and COMMENT.split("\n", maxsplit=1)[0] in text, where
            assert "{{ 7*7 }}" in text and " | *not bold* " in text, where
        else:
            # the setup run's line names the partitions it created, after the table
            assert "%s_2024" % TABLE in text, text[:3000]


def test_the_setup_page_names_the_partitions_it_created_as_text(hostile, chromium, tmp_path):
    setup = pages(hostile)["setup's report.html"]
    dom = browser.dump_dom(chromium, str(tmp_path / "profile"), str(setup))
    parsed = assert_nothing_injected(dom, "setup")
    run = "".join(parsed.text)
    created = re.search(r"partitioning (.*?): created (.*?); detached", run, re.S)
    assert created, run[:4000]
    assert created.group(1) == "%s.%s" % (SCHEMA, TABLE) and "%s_2024" % TABLE in created.group(2)


def test_markdown_rendered_with_raw_html_injects_nothing(hostile, chromium, tmp_path):
    markdown_it = pytest.importorskip("markdown_it")
    source = (hostile / "dwh1" / "report.md").read_text()
    body = markdown_it.MarkdownIt("commonmark", {"html": True}).enable("table").enable("strikethrough").render(source)
    page = tmp_path / "report.md.html"
    page.write_text(
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>md</title></head><body>%s</body></html>' % body
    )
    dom = browser.dump_dom(chromium, str(tmp_path / "profile"), str(page))
    parsed = assert_nothing_injected(dom, "report.md")
    assert parsed.title == "md"
    text = "".join(parsed.text)
    assert TABLE in text and "%s.%s" % (SCHEMA, TABLE) in text
    assert COMMENT.replace("\n", " ") in text  # the comment in its cell, on one line
    # each table row of the Markdown stays one row: the hostile plain table's cells did not split it
    plain = re.search(r"^\| (.*) \| plain \|", source, re.M)
    assert plain, source
    assert "%s.%s" % (SCHEMA, PLAIN.replace("\n", " ")) in text


def test_json_and_textfile_keep_every_name_exactly(hostile):
    data = json.loads((hostile / "dwh1" / "report.json").read_text())
    names = [t["name"] for t in data["tables"]]
    assert names == ["%s.%s" % (SCHEMA, TABLE), "%s.%s" % (SCHEMA, PLAIN)]
    assert data["tables"][0]["comment"] == COMMENT
    assert PARTITION in [p["name"] for p in data["tables"][0]["partitions"]]
    text = (hostile / "sigeti_dwh_dwh1.prom").read_text()
    label = "%s.%s" % (SCHEMA, PLAIN)
    escaped = label.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    assert 'sigeti_dwh_table_bytes{host="dwh1",database="t_hostile",table="%s"}' % escaped in text
    assert 'sigeti_dwh_table_present{host="dwh1",database="t_hostile",table="%s"} 1' % escaped in text
    promtool = browser.debian_tool("promtool", "prometheus")
    if promtool:
        done = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stdout + done.stderr


LAYOUT_PROBE = """<script>
document.querySelectorAll('details').forEach(function (d) { d.open = true; });
var cut = [], over = [], longest = 0;
document.querySelectorAll('svg.chart text.label').forEach(function (t) {
  var shown = t.firstChild.nodeValue;
  longest = Math.max(longest, shown.length);
  if (t.getBBox().x < 0) { over.push(shown); }
  if (shown.indexOf('\\u2026') >= 0 && !t.querySelector('title')) { cut.push(shown); }
});
document.title = 'LAYOUT ' + JSON.stringify({labels: document.querySelectorAll('svg.chart text.label').length,
  over: over, cut_without_title: cut, longest: longest});
</script>"""


def test_chart_labels_stay_inside_their_chart_long_ones_cut_with_a_tooltip(hostile, chromium, tmp_path):
    page = tmp_path / "probe.html"
    html = pages(hostile)["setup's report.html"].read_text()
    # the probe is the test's, added to a copy: the page itself has no script
    assert "<script" not in html
    page.write_text(html.replace("</body>", LAYOUT_PROBE + "</body>"))
    dom = browser.dump_dom(chromium, str(tmp_path / "profile"), str(page))
    title = browser.elements(dom).title
    assert title.startswith("LAYOUT "), title
    measured = json.loads(title[len("LAYOUT ") :])
    assert measured["labels"] > 5 and measured["over"] == [] and measured["cut_without_title"] == [], measured
    # the default partition's name (<script>...</script>_default, 47 characters) was cut: the whole is its title
    assert measured["longest"] <= report_view.LABEL_LIMIT < len("%s_default" % TABLE), measured


def test_a_name_is_never_templated_by_ansible(hostile):
    # the comment holds {{ 7*7 }}: read from the database, it is data, shown as written in every file
    for name in ("report.json", "report.html"):
        text = (hostile / "dwh1" / name).read_text()
        assert "{{ 7*7 }}" in text and "second line & 49" not in text, name
    assert "{{ 7\\*7 }}" in (hostile / "dwh1" / "report.md").read_text()  # escaped for Markdown, not evaluated
    assert os.path.exists(hostile / "sigeti_dwh_dwh1.prom")
