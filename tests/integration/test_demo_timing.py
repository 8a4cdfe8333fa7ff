"""scripts/demo.py: after the run, the summary shows the range query's time the verify role measured (the figure on
the report page), read from the newest kept run that verified, not a second measurement. Here, not in tests/unit:
it imports the demo, which needs the checkout (conftest), not an ansible-test copy."""

import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import demo  # noqa: E402

ATT = "dwh_facts.fait_attributions"


def kept_run(reports, folder, queries):
    path = reports / "demo" / "runs" / folder
    path.mkdir(parents=True)
    (path / "report.json").write_text(json.dumps({"run": {"range_queries": queries}}))


def test_the_newest_run_that_verified_gives_the_figure(tmp_path):
    kept_run(tmp_path, "20261129T100000Z-setup", [{"name": ATT, "execution_ms": 26.9}])
    kept_run(tmp_path, "20261129T110000Z-setup", [{"name": ATT, "execution_ms": 7.934}])
    # Later runs that did not verify (weekly, monthly) hold no range query.
    kept_run(tmp_path, "20261129T120000Z-monthly", [])
    assert demo.verified_timing(str(tmp_path)) == (7.934, "20261129T110000Z-setup")


def test_no_run_verified(tmp_path):
    assert demo.verified_timing(str(tmp_path)) == (None, None)
    kept_run(tmp_path, "20261129T120000Z-monthly", [{"name": ATT, "execution_ms": None}])
    assert demo.verified_timing(str(tmp_path)) == (None, None)
