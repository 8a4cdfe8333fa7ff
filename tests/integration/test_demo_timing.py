"""scripts/demo.py's summary: the guide's range query timed one way before and after the set-up (the verify role's
own statement, EXPLAIN ANALYZE with TIMING OFF, median of several runs), the commands it prints can be pasted into a
shell as they are, and it points at index.html and the setup's page, not at the latest report.html (a no-op
monthly). Here, not in tests/unit: it imports the demo, which needs the checkout (conftest), not an ansible-test
copy."""

import os
import shlex
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import demo  # noqa: E402


def page(reports, folder):
    path = reports / "demo" / "runs" / folder
    path.mkdir(parents=True)
    (path / "report.html").write_text("<html></html>")
    return str(path / "report.html")


def test_the_summary_points_at_the_index_and_the_newest_setup_page(tmp_path):
    assert demo.report_pages(str(tmp_path)) == (None, None)
    page(tmp_path, "20261129T100000Z-setup")
    newest = page(tmp_path, "20261129T110000Z-setup")
    # later runs (weekly does not report, monthly does) and a check-mode setup are not the setup's page
    page(tmp_path, "20261129T120000Z-monthly")
    page(tmp_path, "20261129T130000Z-setup-check")
    (tmp_path / "demo" / "index.html").write_text("<html></html>")
    assert demo.report_pages(str(tmp_path)) == (str(tmp_path / "demo" / "index.html"), newest)


def test_printed_commands_paste_as_they_are():
    command = demo.playbook_command("setup.yml", {"dwh_compression_enabled": False, "dwh_tables": ["a b"]})
    line = shlex.join(command)
    assert '-e \'{"dwh_compression_enabled": false, "dwh_tables": ["a b"]}\'' in line
    assert shlex.split(line) == command
    assert command[1:4] == ["-i", "inventories/demo", "playbooks/setup.yml"]
    assert demo.playbook_command("info.yml") == command[:1] + ["-i", "inventories/demo", "playbooks/info.yml"]


def test_the_range_query_is_timed_by_the_verify_roles_statement_before_and_after(pg_server, db, conn):
    with conn.cursor() as cur:
        cur.execute("CREATE SCHEMA dwh_facts")
        cur.execute("CREATE TABLE dwh_facts.fait_attributions (date_demandee_key int NOT NULL, v text)")
        cur.execute(
            "INSERT INTO dwh_facts.fait_attributions SELECT 20230101 + i % 300, 'x' FROM generate_series(1, 5000) i"
        )
    statements = []

    class Recording:
        """The connection, keeping the text of every statement it runs."""

        def __init__(self, connection):
            self.connection = connection

        def __getattr__(self, name):
            return getattr(self.connection, name)

        def __setattr__(self, name, value):
            if name == "connection":
                object.__setattr__(self, name, value)
            else:
                setattr(self.connection, name, value)

        def cursor(self):
            cursor = self.connection.cursor()
            execute = cursor.execute

            class Cursor:
                def __enter__(self):
                    return self

                def __exit__(self, *exc):
                    cursor.close()

                def execute(self, query, *args):
                    statements.append(cursor.mogrify(query, *args).decode())
                    return execute(query, *args)

                def __getattr__(self, name):
                    return getattr(cursor, name)

            return Cursor()

    timed = Recording(pg_server.connect(db))
    median, low, high = demo.time_range_query(timed, runs=3)
    timed.connection.close()
    assert low <= median <= high
    explains = [s for s in statements if s.startswith("EXPLAIN")]
    assert len(explains) == 3 and len(set(explains)) == 1
    assert "ANALYZE, TIMING OFF" in explains[0] and "BETWEEN 20230101 AND 20231231" in explains[0]
    assert "TIMING OFF" in demo.TIMING_METHOD and "median of 5" in demo.TIMING_METHOD
