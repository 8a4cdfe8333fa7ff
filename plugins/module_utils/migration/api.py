# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Turn a live plain table into a range-partitioned one: online, offline or by attaching it; resumable, verified.

This module is the facade: callers import ``migration`` and use the names below; the engine lives in
``migration_*.py`` beside it, one concern per file.

Call order (the ``partitioned_table`` module does this when ``name`` is an existing plain table)::

    table = catalog.read_table(conn, schema, name)
    facts = migration.read_facts(conn, table, layout, options, server)      # catalog reads only
    plan = migration.plan_migration(table, layout, options, server, facts=facts)   # pure, validates everything
    # check mode: migration.render_plan(conn, plan) / migration.plan_queries(conn, plan), then exit
    result = migration.run_migration(conn, executor, table, layout, options, server, facts=facts)

Where things are:

==========================  =========================================================================================
``migration/facts.py``      ``read_state``, ``read_facts`` (catalog reads), ``validate_layout`` and every refusal
                            (``_refuse_*``), raised before any change, in the order ``plan_migration`` meets them.
``migration/planner.py``       ``plan_migration``: the checks, the ``MigrationContext`` built once, the mode's phases;
                            ``render_plan`` / ``plan_queries`` for check mode.
``migration/online.py``     the phases of ``online`` (``online_phases``) and its capture triggers; the copy batch
                            (``copy_batch_steps``) and its cutting (``copy_batches``), shared by check mode and run.
``migration/offline.py``    the phases of ``offline`` (``offline_phases``): the empty shadow committed, then one
                            transaction with writes blocked (the copy's second half on a second connection).
``migration/attach.py``     the phases of ``attach`` (``attach_phases``): range CHECK, validation, ATTACH PARTITION.
``migration/build.py``      what every mode builds: ``MigrationContext``, the partitioned shadow (``shadow_steps``),
                            its keys and indexes (``build_units``), the post-swap units (``post_units``).
``migration/swap.py``       **the swap**: ``swap_steps`` renames the original and the shadow (``_rename_steps``),
                            carries sequences, grants, policies, triggers, rules (``_carry_steps``) and re-points
                            incoming foreign keys, views and other tables' rules (``_repoint_steps``). Each mode
                            wraps it in its lock: ``migration_online._online_swap``, ``migration_offline``,
                            ``migration_attach._attach_swap``.
``migration/sql.py``        small SQL builders: names (``migration_names``), checksums, the copy batch
                            (``copy_statement``), the replay, state-row updates, the effect marks ``COPIED`` and
                            ``REPLAYED`` the runner counts rows by.
``migration/run.py``        the runner: ``run_migration`` / ``_run_migration``; **resume** below; ``_run_online``
                            (``_online_copy``: **the batch loop**, ``_online_build``, ``_online_catchup``,
                            ``_online_swap``),
                            ``_run_in_one_swap`` (offline, attach), ``_run_post``.
``migration/abandon.py``    ``read_leftovers``, ``plan_abandon``, ``describe_leftovers``, ``abandon_migration``.
``migration/locks.py``      which relations each strong-lock transaction locks (referenced tables, dependents);
``plan/locks.py``           **the lock order** (shared with the partition maintenance): every strong-lock
                            transaction locks, first thing, the tables the foreign keys reference, the table, then
                            what depends on it; every lock after the first through ``safe_lock`` (no wait into a
                            deadlock, at most half of deadlock_timeout).
``migration/catchup.py``    the online catch-up: bounded replay batches (``catch_up``), their sizing and the verdict
                            (done, not converging: warn, stalled: give up, the migration kept).
``plan/side.py``       ``ConcurrentStep`` / ``side_read``: steps on a second connection while the main
                            transaction goes on (online: the verification's read of the original; offline: half the
                            copy, then the original's checksum), in parts that ``Step.before`` hooks start and join.
==========================  =========================================================================================

Online mode, phase by phase (each phase commits its progress in ``sigeti_dwh.migration_state``):

``prepare``  one transaction: the partitioned shadow ``<table>_sgt_new`` and its partitions (no indexes), a
             change log ``sigeti_dwh.mig_log_<oid>``, statement-level capture triggers on the original (a short
             SHARE ROW EXCLUSIVE lock, through the Executor) and the state row with the page count to copy.
``copy``     batches of heap pages (TID range scans, no index needed), each batch and its progress (rows copied,
             next page) in one transaction: a killed run loses at most the batch in flight. ``table_info`` shows
             that progress (``inflight.describe``).
``build``    indexes, primary key and unique constraints on the filled shadow (loading first and indexing after
             is ~3x faster than loading into indexed partitions), one transaction each, then ANALYZE. No foreign
             key: a replayed row would be checked against the referenced table one by one (hot rows: a collapse).
``catchup``  replay the logged keys (delete them from the shadow, copy them again from the original) in bounded
             batches until at most one batch is left, then verify in one REPEATABLE READ snapshot: row count and
             content checksum of the
             whole original (read on a second connection importing that snapshot) and of the shadow must be
             equal, else abort with the original untouched (the per-partition detail, computed only then, names
             where).
``swap``     one short transaction under lock_timeout, retried by the Executor: lock (``migration_locks``), replay
             the last changes, verify them, add the foreign keys to each partition NOT VALID, rename the original
             to ``<table>_unpartitioned`` and the shadow to ``<table>``, move sequences, grants, policies, triggers,
             incoming foreign keys and dependent views.
``post``     validate the foreign keys per partition and add them to the parent (which adopts them), rebuild
             dependent materialized views beside the old ones then swap their names, validate incoming
             foreign keys, ANALYZE the new parent, drop the log (and the source with ``drop_source``), forget
             the state row. The statements of this phase are stored in the state row by the swap, so a run killed
             here resumes exactly.

What happens on resume (``migration_run._run_migration``): the state row is read first. Phase ``post``: the
stored statements are run from ``step_done`` on (``_finish_post``, ``_run_post``), nothing is planned again. A
state row of another table oid, or of another mode, abandons the half-done run (``_drop_stale_run``, after the
new plan validated), and so does an ``offline`` state row (a run killed between its ``prepare`` and its swap:
the shadow is dropped and the run starts again). Otherwise the plan is made again and ``_run_online`` continues at the phase: ``copy`` from
``next_page``, ``build`` from ``step_done``, ``catchup``/``swap`` replay and verify again. A run that fails before its swap for a cause that
will repeat is abandoned (``_abandon_after_failure``); a transient failure keeps its progress.

Every statement (batches, replays and verification included) runs through ``plan.Executor``: one
``lock_timeout`` and retry policy, one message naming the blocker (the read on the second connection through an
Executor of its own).

A run killed at any moment leaves the original in use: before the swap it is only read (plus the capture
triggers), and the swap is one transaction.
"""

from __future__ import annotations

from ansible_collections.sigeti.dwh.plugins.module_utils.migration.abandon import (
    abandon_migration,
    describe_leftovers,
    plan_abandon,
    read_leftovers,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.migration.facts import (
    assigns_column,
    free_disk_bytes,
    read_facts,
    read_state,
    validate_layout,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.migration.planner import (
    MigrationPlan,
    plan_migration,
    plan_queries,
    planned_partitions,
    render_plan,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.migration.run import run_migration
from ansible_collections.sigeti.dwh.plugins.module_utils.migration.sql import (
    CAPTURE_TRIGGERS,
    DEFAULT_OPTIONS,
    MODES,
    PRE_SWAP_PHASES,
    STATE_SCHEMA,
    STATE_TABLE,
    checksum_compare_sql,
    copy_statement,
    derived_name,
    key_definition,
    migration_names,
    normalize_options,
)

__all__ = [
    "CAPTURE_TRIGGERS",
    "DEFAULT_OPTIONS",
    "MODES",
    "PRE_SWAP_PHASES",
    "STATE_SCHEMA",
    "STATE_TABLE",
    "MigrationPlan",
    "assigns_column",
    "abandon_migration",
    "checksum_compare_sql",
    "copy_statement",
    "derived_name",
    "describe_leftovers",
    "free_disk_bytes",
    "key_definition",
    "migration_names",
    "normalize_options",
    "plan_abandon",
    "plan_migration",
    "plan_queries",
    "planned_partitions",
    "read_facts",
    "read_leftovers",
    "read_state",
    "render_plan",
    "run_migration",
    "validate_layout",
]
