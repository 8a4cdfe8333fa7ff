#!/usr/bin/python
# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# An action plugin (plugins/action/report_write.py) runs on the controller: this file holds its documentation.

from __future__ import annotations

DOCUMENTATION = r"""
module: report_write
short_description: Write the health report (HTML, Markdown, JSON, Prometheus textfile) on the controller
version_added: 0.2.0
description:
  - Builds the report's document from what C(sigeti.dwh.table_info) read (O(reads)) and this run's results (O(run)),
    and writes, in O(dir)/<O(host)>/, C(report.html) (self-contained, inline SVG, no script), C(report.md),
    C(report.json), C(history.json), C(index.html) and this run's copy under C(runs/<UTC time>-<playbook>/); and
    O(dir)/C(sigeti_dwh_<host>.prom) (Prometheus text format), one flat folder for node_exporter's textfile collector.
  - Every value is escaped for where it goes (HTML autoescaping, Markdown escaping, Prometheus label escaping).
  - A table with many partitions is summed by period on the page (years, then months), its partitions on demand.
  - A migration of this run is named as such (partitions created, rows moved, the original kept, its size and how
    to drop it); the kept originals and archive schemas that were read count in the sizes.
  - Writes nothing in check mode, and never reports C(changed) (the files are the run's output, not a change).
  - An action plugin, run on the controller; the sigeti.dwh.report role calls it.
author:
  - SIGETI data platform team (@sigeti)
options:
  dir:
    description: Controller folder receiving the reports (one sub-folder per host, the textfiles beside them).
    type: path
    required: true
  host:
    description: The inventory host the report is about.
    type: str
    required: true
  reads:
    description:
      - The registered results of the C(sigeti.dwh.table_info) loop over C(sigeti.dwh.report_reads)' items, each with
        its C(item) (what the read was for).
    type: list
    elements: raw
    default: []
  title:
    description: Title of the pages.
    type: str
    default: SIGETI warehouse health
  database:
    description: The database's name, as shown and in the metrics' C(database) label.
    type: str
    default: postgres
  tables:
    description: The declared tables (C(dwh_tables)).
    type: list
    elements: raw
    default: []
  extra_tables:
    description: Other tables reported (C(dwh_report_extra_tables)).
    type: list
    elements: str
    default: []
  sizes_before:
    description: Total bytes of each table before the run (C(schema.table) -> bytes), recorded by the preflight role.
    type: dict
    default: {}
  history_days:
    description: Days of size history kept (0 = all).
    type: int
    default: 400
  keep:
    description: Runs kept under C(runs/), the newest (0 = all).
    type: int
    default: 30
  playbook:
    description: The playbook's name in the run folder's name.
    type: str
    default: ''
  run:
    description:
      - This run's results - C(partitioning), C(compression), C(vacuum) (each a list of per-table results with
        C(item.name)), C(range_queries) (the verify role's plans), C(backup) (the dump file) and C(planned).
    type: dict
    default: {}
  templates:
    description: The folder holding report.html.j2, report.md.j2 and index.html.j2 (default the calling role's templates).
    type: path
attributes:
  check_mode:
    description: Builds the report and writes nothing.
    support: full
  diff_mode:
    description: Returns no diff.
    support: none
seealso:
  - module: sigeti.dwh.table_info
"""

EXAMPLES = r"""
- name: Read the declared tables
  sigeti.dwh.table_info:
    tables: "{{ item.tables }}"
    schemas: "{{ item.schemas }}"
    compression: "{{ item.compression }}"
  loop: "{{ dwh_tables | sigeti.dwh.report_reads }}"
  register: reads
  failed_when: false

- name: Write the report
  sigeti.dwh.report_write:
    dir: "{{ playbook_dir }}/reports"
    host: "{{ inventory_hostname }}"
    reads: "{{ reads.results }}"
    tables: "{{ dwh_tables }}"
"""

RETURN = r"""
summary:
  description: What this run changed (or would change, in check mode), one line each; a migration is named as such.
  type: list
  elements: str
  returned: always
missing:
  description: Requested tables that do not exist (C(schema.table) as the catalog spells it).
  type: list
  elements: str
  returned: always
errors:
  description: Tables that could not be read for another reason, with the reason.
  type: list
  elements: str
  returned: always
folder:
  description: The host's report folder.
  type: str
  returned: always
textfile:
  description: The Prometheus textfile of the host (in O(dir)).
  type: str
  returned: always
files:
  description: Every file written.
  type: list
  elements: str
  returned: unless in check mode
run_folder:
  description: This run's folder under C(runs/).
  type: str
  returned: unless in check mode
msg:
  description: Where the report is (or, in check mode, that nothing was written and what the run would do).
  type: str
  returned: always
"""
