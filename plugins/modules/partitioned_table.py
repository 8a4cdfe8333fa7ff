#!/usr/bin/python
# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: partitioned_table
short_description: Keep a RANGE-partitioned table's set of partitions exactly as declared
version_added: 0.1.0
description:
  - Declares the partitions of a table partitioned by RANGE on one date, timestamp, timestamptz or integer key
    (integer keys holding dates as C(YYYYMMDD) or months as C(YYYYMM) included), by calendar interval, and keeps
    them so on every run. Periods from O(start) to O(premake) periods after the current one exist; a default
    partition exists when O(default_partition); periods older than O(retention.keep) are detached, dropped or
    archived.
  - Partitions are created the weak-lock way, C(CREATE TABLE ... (LIKE parent)) then C(ATTACH PARTITION), which
    takes SHARE UPDATE EXCLUSIVE on the parent, not the ACCESS EXCLUSIVE of C(CREATE TABLE ... PARTITION OF).
  - Rows of a new period sitting in the default partition are moved into the new partition in the same
    transaction (PostgreSQL refuses the new partition otherwise).
  - Existing partitions with the right bounds are adopted whatever their names. Indexes of the parent missing on
    a partition are built (concurrently) and attached; an INVALID index (a cancelled concurrent build) counts as
    missing, is dropped and built again, never attached. Names longer than 63 bytes end with a short hash, so each
    partition gets its own. O(partition_options) are applied to every leaf.
  - With a default partition, writers are held at the parent and rows moved for every new period, so rows arriving
    during the run cannot make the ATTACH fail. A partition left pending detach by an interrupted
    C(DETACH ... CONCURRENTLY) is finished with C(DETACH ... FINALIZE) before retention goes on.
  - A run that fails after committing something reports C(changed=true) and what was done.
  - A second run with the same arguments changes nothing and runs no DDL. Check mode only reads the catalog.
  - When O(name) is an existing plain (not partitioned) table, O(migrate) decides how it becomes partitioned,
    online (copy beside it in batches, capture and replay concurrent changes, verify counts and checksums,
    swap names in one short transaction), offline, attach (zero copy) or never. The swap carries keys, indexes,
    sequences, grants, comments, triggers, policies, views and materialized views; a killed run resumes.
author:
  - SIGETI data platform team (@sigeti)
extends_documentation_fragment:
  - sigeti.dwh.connection
options:
  name:
    description:
      - The partitioned table, as C(schema.table). Quote mixed-case parts (C('"Ventes"."Fait"')).
      - Required unless O(tables) is given (then it must not be).
    type: str
  key:
    description: The partition key column. Required with O(name) and in each O(tables) entry, unless O(state=plain).
    type: str
  key_format:
    description:
      - How the key holds its values. V(auto) detects date, timestamp and timestamptz columns and refuses integer
        columns (set V(yyyymmdd), V(yyyymm), V(epoch), V(epoch_ms) or V(integer) for them); it never guesses an
        epoch.
      - V(timestamptz) bounds are midnight in the session's C(TimeZone).
      - V(epoch) (seconds since 1970-01-01 UTC, on an C(integer) or C(bigint) column) and V(epoch_ms)
        (milliseconds, C(bigint) only) take every calendar interval. Their bounds are the instants of midnight in the
        session's C(TimeZone), exactly as timestamptz bounds (a day across a DST change is 23 or 25 hours long);
        partitions are named by date as for a date key (C(fait_20240331)). Keys that are clearly not epochs
        (YYYYMMDD numbers, seconds declared as milliseconds; the smallest and largest keys of a table being
        migrated, or the bounds of the existing partitions) are refused before any change, naming the key format
        that reads them.
      - An C(integer) column holds epoch seconds until 2038-01-19 03:14:07 UTC. Once the declared periods come
        within a year of it, a warning says to change the column to C(bigint); a partition past it is refused.
    type: str
    choices: [auto, date, timestamp, timestamptz, yyyymmdd, yyyymm, integer, epoch, epoch_ms]
    default: auto
  interval:
    description:
      - V(year), V(quarter), V(month), V(week) (ISO weeks, Monday to Monday) or V(day); V(yyyymm) keys take
        year, quarter or month. For V(key_format=integer), a positive whole number, the width of each partition.
      - Required with O(name) and in each O(tables) entry, unless O(state=plain).
    type: str
  start:
    description:
      - First lower bound of the set (C(2020-01-01), C(20200101), or a number for integer keys; a date for
        epoch keys, its local midnight). It must be the start of a period; the error says what the aligned value
        would be. Defaults to the current period.
      - Older existing partitions are kept as they are (retention aside).
    type: str
  premake:
    description:
      - Periods created ahead of the current one.
      - The current period is the one holding the server's C(current_date) for calendar keys (V(yyyymmdd),
        V(yyyymm), V(epoch) and V(epoch_ms) included). For V(key_format=integer) it is the period of the largest
        key of the newest partition holding rows; rows of the default partition never count, and a partition
        holding rows more than O(premake) periods beyond the next partition holding rows is taken as stray keys (a
        warning names it, its row count and keys). Keys past the last partition that sit in the default partition
        are reported the same way and left alone.
    type: int
    default: 2
  max_new_partitions:
    description:
      - The most partitions one run may create (the default partition aside). A run that would create more fails
        before any change, naming the table, the count and the range; raise it when a long range is intended
        (a first run from an old O(start) with daily partitions).
    type: int
    default: 100
  default_partition:
    description:
      - Whether a default partition (C(<table>_default)) must exist. When false an existing one is kept, with a warning.
    type: bool
    default: true
  retention:
    description: Optional retention of old periods. Partitions only partly older than the cutoff are never touched.
    type: dict
    suboptions:
      keep:
        description: Periods kept behind the current one (0 keeps only the current one).
        type: int
        required: true
      action:
        description:
          - V(detach) keeps the table outside the set, V(drop) drops it, V(archive) moves it to O(retention.archive_schema).
          - V(parquet) exports it to O(retention.archive_dir) as a verified zstd Parquet file with its manifest
            (C(<archive_dir>/<schema>.<table>/<partition>.parquet), see C(docs/archive.md)), then detaches it, checks the
            detached table still has the manifest's content checksum and drops it. A refused or failed export
            (pyarrow missing, a column type Parquet cannot hold exactly, the folder not writable, a lock not granted)
            stops before the detach and names the partition and the cause; the partition stays attached. Rows written
            into it between the export and the detach fail the check; the table is then kept, detached, not dropped.
            M(sigeti.dwh.archive_restore) brings archived partitions back.
          - Detaching uses C(DETACH PARTITION ... CONCURRENTLY) when the table has no default partition (PostgreSQL
            refuses it otherwise); else a plain DETACH under C(lock_timeout) with retries.
        type: str
        choices: [detach, drop, archive, parquet]
        default: detach
      archive_schema:
        description: Schema receiving archived partitions (created when absent).
        type: str
      archive_dir:
        description:
          - With O(retention.action=parquet) (required then, refused otherwise), the absolute path of the folder
            receiving the Parquet files. It is a folder of the host that runs the module (the database host in this
            collection's playbooks), written by the user the module runs as; it must exist.
          - The Python package C(pyarrow) (>= 14) must be installed for the module's interpreter on that host.
        type: path
      max_per_run:
        description:
          - The most partitions one run detaches, drops or archives, oldest first. The others wait for the next
            runs; a warning and RV(retention_remaining) say how many.
        type: int
        default: 3
  partition_options:
    description:
      - Storage parameters applied to every leaf partition, new and existing (C(fillfactor), C(autovacuum_*),
        C(toast.autovacuum_*) ...). Only the declared ones are compared; others are left alone.
    type: dict
    default: {}
  tiers:
    description:
      - Storage tiers. A partition whose period ended more than O(tiers[].after) declared periods before the
        current one lives, with its indexes, in tablespace O(tiers[].tablespace); of the tiers that apply, the one
        with the largest O(tiers[].after) wins. Partitions no tier applies to (the current one, those ahead, recent
        ones) and the default partition are left where they are.
      - A partition elsewhere (its table or one of its indexes, C(pg_class.reltablespace), 0 being the database's
        default) is moved in one transaction - C(LOCK TABLE) then C(ALTER TABLE ... SET TABLESPACE) and C(ALTER INDEX
        ... SET TABLESPACE) for each index - under O(lock_timeout) with O(lock_retries); PostgreSQL copies the files
        holding ACCESS EXCLUSIVE on that partition only (its readers and writers wait for the copy, other partitions
        and the parent do not). The time it was locked is reported in RV(tiers.moved). When the C(pg_repack)
        extension is installed in the database and a matching C(pg_repack) program is found (O(pg_repack_path), PATH,
        then C(/usr/lib/postgresql/<major>/bin); superuser
        connection), C(pg_repack --tablespace --moveidx) moves a partition having a primary key online instead
        (not to a tablespace whose name needs quoting, which pg_repack 1.4 cannot pass; those move by ALTER, with a
        warning).
      - New partitions (O(premake), O(start)) are created directly in their tier, their indexes too.
      - Refused before any change, naming the table and the tablespace - a tablespace that does not exist; the
        table's owner or the connecting role without CREATE on it (the database's default tablespace needs none); a
        tablespace whose filesystem this host sees (C(pg_tablespace_location), statvfs) without room for the
        partitions this run moves there.
    type: list
    elements: dict
    suboptions:
      after:
        description: Periods (0 or more; each tier its own) that must have passed since a partition's period ended.
        type: int
        required: true
      tablespace:
        description: The tablespace those partitions and their indexes live in (an existing one, its exact name).
        type: str
        required: true
  tiers_max_per_run:
    description:
      - The most partitions one run moves between tiers, oldest first (each move copies a whole partition). The
        others wait for the next runs; a warning and RV(tiers.remaining) say how many.
    type: int
    default: 3
  repartition:
    description:
      - What to do when O(name) is a partition set whose partitions are of another interval than O(interval) (none of
        them is exactly one declared period, some are one period of another interval).
      - Unset (the default), the run is refused before any change, naming both intervals; attaching the first
        partition of the new interval by hand makes the run adopt the older partitions as they are (the interval
        changes from that date on).
      - V(online) or V(offline) rebuilds the whole set under O(interval) in one run, through the two verified
        migrations, both in that mode and each checked by its whole-row checksum - back to a plain table
        (O(state=plain); the old set is dropped once the plain table holds exactly its rows, its partitions' names
        being the new set's), then into the declared partitions (the plain table kept as C(<name>_unpartitioned)
        until O(drop_source), as after any migration). A run killed between the two leaves a plain table with every
        row, which the next run migrates in the same mode. Check mode shows the way back only.
      - Everything the way back refuses (see O(state)) is refused here too, before any change.
    type: str
    choices: [online, offline]
  pg_repack_path:
    description:
      - The C(pg_repack) program O(tiers) moves partitions with; default searches PATH and
        C(/usr/lib/postgresql/<major>/bin). A program of another version than the database's extension is not run.
    type: path
  rollup:
    description:
      - Roll-up of old partitions. The partitions of every complete period of O(rollup.interval) that ended more than
        O(rollup.after) declared periods before the current one are merged into one partition of that period, named
        as the set names partitions of that interval (C(<table>_202501), C(<table>_2025q1), C(<table>_2025)) - daily
        partitions older than 90 days into months with O(rollup.after=90) and O(rollup.interval=month). Oldest first,
        at most O(rollup.max_per_run) periods per run; a period already one partition is left as it is, so a second
        run changes nothing. The default partition is never merged.
      - One transaction per period, under O(lock_timeout) with O(lock_retries) - SHARE on the period's partitions
        (their readers go on, their writers wait until the commit); a new table built beside them (C(<target>_sgt_rollup),
        like the newest of them, in its tablespace, with its access method and storage parameters, and a CHECK of the
        period's bounds so that its ATTACH needs no scan), filled by C(INSERT ... SELECT), given the parent's primary
        key, unique constraints and indexes; row count and the sum of whole-row digests compared with the partitions
        (any difference rolls it all back); then ACCESS EXCLUSIVE on the parent, the partitions and the default
        partition, each waiting at most half of C(deadlock_timeout) (none at all when that would be a deadlock); the
        partitions detached, the new one attached with the period's bounds, the old ones dropped, the new one renamed.
        Readers of the parent wait only for that swap. A killed run leaves nothing (the next run does the period
        again, dropping a leftover C(*_sgt_rollup) table).
      - Refused before any change, naming the table and the period - an interval not coarser than O(interval) (or
        made of no whole declared periods - weeks straddle months), a period with a gap, a partition straddling a
        period's bound, a partition partitioned itself, foreign or pending detach, foreign keys in or out of the set
        (not carried yet), a name a merge takes held by another relation.
      - O(premake), O(retention), O(tiers) and the indexes keep working on a set that mixes intervals (a merged
        period's partition is adopted as covering whole declared periods).
    type: dict
    suboptions:
      after:
        description: Declared periods (0 or more) that must have passed since a coarser period ended.
        type: int
        required: true
      interval:
        description: The coarser interval partitions are merged into.
        type: str
        required: true
        choices: [month, quarter, year]
      max_per_run:
        description: The most periods one run merges (each copies its rows while its writers wait); the others wait
          for the next runs, RV(rollup.remaining) says how many.
        type: int
        default: 1
  columns:
    description:
      - Columns of the table, used only when it does not exist (the module then creates it partitioned by RANGE
        on O(key)). Each is C({name, type, not_null, default}) or a string C("name type").
    type: list
    elements: raw
  primary_key:
    description: Primary key columns of a table the module creates (must include O(key)).
    type: list
    elements: str
    default: []
  state:
    description:
      - V(partitioned) (V(present) is its alias) keeps O(name) a partition set as declared (a plain table is migrated
        into one first, see O(migrate)).
      - V(plain) turns an existing partition set (default partition included) back into one plain table of the same
        name. O(migrate=offline) does it in one transaction (writers wait for the whole copy, readers go on).
        O(migrate=online) captures the changes with a row trigger on the parent (cloned to every partition, so
        writes straight into a partition are captured too), copies, replays and verifies while writers go on, then
        swaps in one short transaction; it needs a primary key or a unique index on NOT NULL columns. An online run
        stopped by a lock after its copy resumes at the catch-up; O(migrate=abandon) drops what an online run left
        before its swap.
      - Every row is verified by the whole-row checksum. Indexes (a primary key that had to include the key keeps
        it, see O(extend_primary_key)), grants, owner, comments, defaults, identity and serial sequences, NOT NULL
        and CHECK constraints, triggers, reloptions every partition shares, column compression, foreign keys out and
        dependent views are carried, and other tables' foreign keys are re-pointed at the plain table. Foreign keys
        into a partition, publications, materialized views, rules and views on a partition are refused before any
        change. The set is kept as C(<name>_partitioned) until O(drop_source).
        O(key) and O(interval) are not needed. See C(docs/migration.md).
    type: str
    choices: [partitioned, present, plain]
    default: partitioned
  skip_on_standby:
    description: On a standby (in recovery) return ok and unchanged instead of failing.
    type: bool
    default: false
  migrate:
    description:
      - What to do when O(name) is a plain table (see C(docs/migration.md)).
      - V(online) builds the partitioned table beside it, copies rows in batches without indexes, builds the
        indexes, captures and replays the changes writers make meanwhile, verifies the row count and content
        checksum of every row (per partition only when they differ, to name where), then swaps names in one short
        transaction under O(lock_timeout) with retries.
      - V(offline) does the same in one transaction with writes blocked (maintenance windows), copying on two
        connections (the empty shadow is committed first; a run killed before its swap leaves it to the next run,
        which drops it and starts again).
      - V(attach) copies nothing; the table becomes one partition covering its key range (a CHECK constraint is
        validated first, online, so ATTACH does not scan it), partitions are created for the periods after it.
      - V(never) fails when the table is not partitioned yet (naming a half-done migration if there is one).
      - V(abandon) removes what an unfinished migration left (capture triggers, change log, shadow table and its
        partitions, the attach range check and prebuilt index, the state row), leaves the original table's rows
        untouched, reports what it removed in C(migration.abandoned) and does nothing else. It refuses once the
        swap has committed (rerun with the migration's mode to finish it).
      - The original is kept as C(<table>_unpartitioned) until O(drop_source). Progress is kept in
        C(sigeti_dwh.migration_state); a killed run leaves the original in use and the next run resumes.
      - A run that fails before its swap for a reason that would repeat (data breaking a constraint, a definition
        PostgreSQL refuses) is abandoned at once, so the original is left exactly as it was for its writers.
    type: str
    choices: [online, offline, attach, never, abandon]
    default: online
  batch_rows:
    description: Rows copied per batch (and per transaction) by an online migration.
    type: int
    default: 100000
  extend_primary_key:
    description:
      - PostgreSQL requires a partitioned table's primary key and unique constraints to include the partition key.
        With V(true) a migration appends O(key) to them; with V(false) it refuses, naming the key, before any change.
      - With O(state=plain), V(true) takes the partition key's columns back out of the primary key and unique
        constraints of the plain table (V(false) keeps them as they are).
    type: bool
    default: false
  drop_source:
    description:
      - Drop the original table (C(<table>_unpartitioned)) once the migration is verified and swapped.
      - With O(state=plain), drop the kept partition set (C(<table>_partitioned)) and its partitions, in the undo's
        transaction or, on a table an earlier undo made plain, on its own.
    type: bool
    default: false
  tables:
    description:
      - Several tables in one call, each entry with the options of one table (as O(name) ... O(drop_source) above,
        same meaning and defaults). Each is run in turn on one connection, as if called alone, under its own run
        lock (taken just before it and released after it); one process and one connection serve the whole list.
      - Mutually exclusive with O(name) and the other table options (they go in the entries). The connection, lock
        and O(skip_on_standby) options apply to every entry.
      - The first table that fails stops the list, as a loop over the tables would. The message names it, the
        tables done before it and those not run; RV(results) holds the results so far, the failed one last, and
        C(changed) is true when anything was committed.
    type: list
    elements: dict
    suboptions:
      name: {description: The table (O(name))., type: str, required: true}
      key: {description: 'The partition key column (O(key)); required unless the entry''s state is plain.', type: str}
      key_format:
        description: See O(key_format).
        type: str
        choices: [auto, date, timestamp, timestamptz, yyyymmdd, yyyymm, integer, epoch, epoch_ms]
        default: auto
      interval: {description: 'See O(interval); required unless the entry''s state is plain.', type: str}
      start: {description: See O(start)., type: str}
      premake: {description: See O(premake)., type: int, default: 2}
      max_new_partitions: {description: See O(max_new_partitions)., type: int, default: 100}
      default_partition: {description: See O(default_partition)., type: bool, default: true}
      retention:
        description: See O(retention).
        type: dict
        suboptions:
          keep: {description: See O(retention.keep)., type: int, required: true}
          action:
            description: See O(retention.action).
            type: str
            choices: [detach, drop, archive, parquet]
            default: detach
          archive_schema: {description: See O(retention.archive_schema)., type: str}
          archive_dir: {description: See O(retention.archive_dir)., type: path}
          max_per_run: {description: See O(retention.max_per_run)., type: int, default: 3}
      partition_options: {description: See O(partition_options)., type: dict, default: {}}
      tiers:
        description: See O(tiers).
        type: list
        elements: dict
        suboptions:
          after: {description: 'See O(tiers[].after).', type: int, required: true}
          tablespace: {description: 'See O(tiers[].tablespace).', type: str, required: true}
      tiers_max_per_run: {description: See O(tiers_max_per_run)., type: int, default: 3}
      pg_repack_path: {description: See O(pg_repack_path)., type: path}
      repartition: {description: See O(repartition)., type: str, choices: [online, offline]}
      rollup:
        description: See O(rollup).
        type: dict
        suboptions:
          after: {description: 'See O(rollup.after).', type: int, required: true}
          interval: {description: 'See O(rollup.interval).', type: str, required: true, choices: [month, quarter, year]}
          max_per_run: {description: 'See O(rollup.max_per_run).', type: int, default: 1}
      columns: {description: See O(columns)., type: list, elements: raw}
      primary_key: {description: See O(primary_key)., type: list, elements: str, default: []}
      state: {description: See O(state)., type: str, choices: [partitioned, present, plain], default: partitioned}
      migrate:
        description: See O(migrate).
        type: str
        choices: [online, offline, attach, never, abandon]
        default: online
      batch_rows: {description: See O(batch_rows)., type: int, default: 100000}
      extend_primary_key: {description: See O(extend_primary_key)., type: bool, default: false}
      drop_source: {description: See O(drop_source)., type: bool, default: false}
attributes:
  check_mode:
    description:
      - Changes nothing. The catalog is read without locking any table.
      - Rows are read only for counts - the default partition's rows (C(count(*)), per missing period too) and,
        for integer keys, the largest key of the newest partitions - under ACCESS SHARE, waiting at most 10 ms
        for it. When another session holds a conflicting lock (ACCESS EXCLUSIVE) check mode does not wait; it
        uses the estimates of C(pg_class) instead and a warning names that session.
      - With O(partition_options), their validity is asked of the server by creating a temporary table in a
        transaction that is rolled back (no lock on any user table).
      - For a plain table (O(migrate)) the migration plan reads the table (ACCESS SHARE) to size it.
      - With O(retention.action=parquet), pyarrow, O(retention.archive_dir) and the archived partitions' column types
        are checked as in a real run; nothing is written there (RV(archive_files) predicts the files).
    support: full
  diff_mode:
    description:
      - The partition list before and after, then the partitions O(rollup) merges and the partition they become,
        then the tablespace of each partition O(tiers) moves; with
        O(retention.action=parquet), after it one line per archived partition saying which file it goes to.
    support: full
notes:
  - Needs ownership of the table (ALTER TABLE), CREATE on its schema, and SELECT on the default partition.
  - "One run per table at a time: before reading anything it plans from, the module takes a session-level
    advisory lock per table (key C(hashtext('schema.table')) in class 21319). A second run waits up to its lock
    budget (O(lock_timeout) for each of O(lock_retries)+1 attempts plus the retry delays), then fails naming the
    other run (pid, application_name, client, since when). The lock goes with the session, so a killed run never
    leaves it behind. Check mode does not wait: it warns when another run is changing the table."
seealso:
  - module: sigeti.dwh.table_info
"""

EXAMPLES = r"""
- name: SIGETI's attributions, yearly on an integer YYYYMMDD key, two years ahead, ten kept
  sigeti.dwh.partitioned_table:
    login_db: sigeti_node_db
    name: dwh_facts.fait_attributions
    key: date_demandee_key
    key_format: yyyymmdd
    interval: year
    start: "2020-01-01"
    premake: 2
    retention:
      keep: 10
      action: archive
      archive_schema: dwh_archive
    partition_options:
      autovacuum_vacuum_scale_factor: 0.02

- name: Monthly partitions of a new events table, created when absent
  sigeti.dwh.partitioned_table:
    login_db: sigeti_node_db
    name: dwh_staging.events
    key: occurred_at
    interval: month
    premake: 3
    columns:
      - {name: id, type: bigint}
      - {name: occurred_at, type: timestamptz, not_null: true}
      - payload jsonb
    primary_key: [id, occurred_at]
"""

RETURN = r"""
results:
  description:
    - With O(tables), one result per table in the order given, each with the keys below (those returned for one
      table) plus C(name) (as given) and C(warnings) (that table's). A failed table's result is last, with
      C(failed) and C(msg).
  returned: when O(tables) is given
  type: list
  elements: dict
migration:
  description:
    - When a plain table was migrated, what happened - phases run, rows copied, batches, replayed keys, the
      checksums, the name the original was renamed to, rows sent to the default partition and how long writers were
      blocked by the swap.
    - C(checksums) holds C(total) (the whole table - C(source_rows), C(target_rows), C(source_checksum),
      C(target_checksum) - compared in one snapshot) and C(partitions) (the same per target partition, computed
      only when the totals differ, to name where; empty after a successful verification). In check mode, the phases with their SQL and the
      estimated disk need; the online copy shows its first batch as it will run and, in C(batches), how many
      batches the run executes.
    - With O(migrate=abandon), C(abandoned) lists what was removed (or would be, in check mode).
    - C(mode) (V(online), V(offline) or V(attach)); C(rows_moved), the rows copied into the partition set (offline
      both halves of the copy, online the rows at the swap, attach 0; null in check mode and in a run finishing an
      earlier run's swap); C(kept_original), C({name, bytes}) of the original kept as C(<table>_unpartitioned) (in
      check mode its size now), null when dropped (O(drop_source)) or nothing is kept (attach); C(drop_hint), one line
      on how to drop it (null when nothing is kept); C(created), the migration's own partitions; C(catchup) (online),
      each catch-up's keys left and replayed, batches, seconds, and the writers' change rate against the replay rate.
    - With O(state=plain) (back to a plain table), C(direction) V(plain), C(table), C(mode), C(kept) (the name the
      partition set is kept under, null once dropped), C(rows_copied), C(checksums) (C(total) as above); online also
      C(phases_run), C(resumed_from), C(catchup_rounds), C(replayed_keys) and C(swap_seconds); C(abandoned) with
      O(migrate=abandon).
  returned: when O(name) was a plain table, or with O(state=plain)
  type: dict
partitions:
  description:
    - The partitions after the run (predicted in check mode), by low bound, the default last.
    - In check mode of a migration, those the migration would leave (attach - the original as C(<table>_unpartitioned)
      over its key range and the partitions created beside it); the maintenance that follows a migration in a real run
      (retention) is not predicted, the table not being partitioned yet.
  returned: with O(name) and per table in RV(results)
  type: list
  elements: dict
  sample: [{name: fait_2024, low: 20240101, high: 20250101, default: false}, {name: fait_default, low: null, high: null, default: true}]
rewrites:
  description:
    - What the run does (in check mode, would do) that rewrites or removes the table's existing rows - V(migrate) (a
      plain table copied into partitions), V(detach), V(drop), V(archive) (retention); empty when it only creates
      partitions or sets their options. With O(tables), per table in RV(results), and at the top every kind listed.
    - The preflight role takes its backup (C(dwh_backup=auto)) before such a change.
  type: list
  elements: str
  returned: always
created:
  description:
    - Partitions created, a migration's first (in check mode of a migration, those it would create; attach - not the
      attached original), then the maintenance's. A run finishing a migration whose swap an earlier, killed run
      committed reports the migration's too.
  type: list
  elements: str
  returned: with O(name) and per table in RV(results)
detached: {description: Partitions detached by retention (whatever the action)., type: list, elements: str, returned: with O(name) and per table in RV(results)}
dropped: {description: Partitions dropped by retention., type: list, elements: str, returned: with O(name) and per table in RV(results)}
archived:
  description: Partitions moved to the archive schema, or archived to Parquet files (then also in RV(archive_files)).
  type: list
  elements: str
  returned: with O(name) and per table in RV(results)
archive_files:
  description:
    - With O(retention.action=parquet), where each archived partition went - C(partition), C(parquet) and C(manifest)
      (the files' paths on the host that ran the module), C(rows) and C(checksum) (the manifest's content checksum).
    - In check mode, the partitions that would be archived and where, C(rows) and C(checksum) null; nothing is written.
  type: list
  elements: dict
  returned: with O(name) and per table in RV(results)
  sample:
    - partition: fait_2019
      parquet: /srv/dwh_archive/dwh_facts.fait/fait_2019.parquet
      manifest: /srv/dwh_archive/dwh_facts.fait/fait_2019.manifest.json
      rows: 160000
      checksum: "md5-rowsum-v1:160000:5f0e9b2c1d7a43e8a0c6b9d1e2f3a4b5"
default_rows:
  description: Rows left in the default partition after the run (null without one).
  type: int
  returned: with O(name) and per table in RV(results)
moved_rows:
  description:
    - Rows moved out of the default partition into new partitions (counted by the statements that moved them; in check
      mode, the rows counted there when planning).
  type: int
  returned: with O(name) and per table in RV(results)
finished_detaches:
  description:
    - Partitions found pending detach (an interrupted C(DETACH PARTITION ... CONCURRENTLY) hides their rows) whose
      detach the run finished with C(DETACH PARTITION ... FINALIZE) before applying retention.
  type: list
  elements: str
  returned: with O(name) and per table in RV(results)
retention_remaining:
  description: Partitions older than the retention window left attached because of O(retention.max_per_run).
  type: int
  returned: with O(name) and per table in RV(results)
bound:
  description:
    - When the table is itself a partition of a table partitioned by range on the same key (a year partitioned by
      month), the key range its rows can have, from its ancestors' bounds; null otherwise.
    - Only periods inside it get partitions (a later one belongs to the parent's next partition, an earlier one to
      none); C(periods_outside) counts those O(start) and O(premake) reached and were left out. A O(start) outside
      it is refused; existing partitions wholly outside it get a warning (no row can reach them).
  type: dict
  returned: with O(name) and per table in RV(results)
  sample: {low: "2024-01-01", high: "2025-01-01", parents: [dwh_facts.fait], periods_outside: 25}
repartition:
  description:
    - With O(repartition), when the set was of another interval - C(from) and C(to) (the intervals), C(mode), C(note)
      and C(back_to_plain) (what the way back to a plain table checked; its plan in check mode).
  returned: when O(repartition) rebuilt the set (or would, in check mode)
  type: dict
tiers:
  description:
    - With O(tiers), C(moved) - the partitions moved to their tier this run (in check mode, those it would move),
      each C({partition, schema, tablespace, from, bytes, method, lock_seconds}) (C(method) V(alter) or V(pg_repack);
      C(lock_seconds), how long the partition was held under ACCESS EXCLUSIVE, from C(LOCK TABLE) granted to the
      commit; null in check mode and for pg_repack) - and C(remaining), those left for the next runs by
      O(tiers_max_per_run).
  type: dict
  returned: when O(tiers) is given
  sample: {moved: [{partition: fait_2019, schema: dwh, tablespace: cold, from: pg_default, bytes: 8691712, method: alter, lock_seconds: 0.412}], remaining: 0}
  contains:
    moved:
      description: The partitions moved (in check mode, to move), oldest first.
      type: list
      elements: dict
      returned: always
    remaining:
      description: Partitions still to move, left for the next runs by O(tiers_max_per_run).
      type: int
      returned: always
rollup:
  description:
    - With O(rollup), C(merged) - the periods merged this run (in check mode, those it would merge), each
      C({partition, period, from, to, sources}) - and C(remaining), the periods due that wait for the next runs
      (O(rollup.max_per_run)).
  type: dict
  returned: when O(rollup) is given
  sample: {merged: [{partition: fait_202501, period: "202501", from: "2025-01-01", to: "2025-02-01", sources: [fait_20250101, fait_20250102]}], remaining: 2}
  contains:
    merged:
      description: The periods merged (in check mode, to merge), oldest first.
      type: list
      elements: dict
      returned: always
    remaining:
      description: Periods due for their merge left for the next runs by O(rollup.max_per_run).
      type: int
      returned: always
queries:
  description: The exact SQL run (or that would run in check mode); with O(tables), of every table in order.
  type: list
  elements: str
  returned: always
plan:
  description: Each statement with its reason and the lock it takes.
  type: list
  elements: dict
  returned: with O(name) and per table in RV(results)
warnings: {description: 'What was left alone and why (partly old partitions, an unwanted default).', type: list, elements: str, returned: always}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.sigeti.dwh.plugins.module_utils.backup import rewrites as backup_rewrites
from ansible_collections.sigeti.dwh.plugins.module_utils.core import periods
from ansible_collections.sigeti.dwh.plugins.module_utils.core.identifiers import split_name
from ansible_collections.sigeti.dwh.plugins.module_utils.partitioning import planner as partitioning
from ansible_collections.sigeti.dwh.plugins.module_utils.partitioning import run as partitioned_run
from ansible_collections.sigeti.dwh.plugins.module_utils.plan import tables as table_runs
from ansible_collections.sigeti.dwh.plugins.module_utils.rollup import planner as rollups
from ansible_collections.sigeti.dwh.plugins.module_utils.session import runlock
from ansible_collections.sigeti.dwh.plugins.module_utils.session.connection import (
    connection_argument_spec,
    module_errors,
    open_session,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.session.context import RunContext
from ansible_collections.sigeti.dwh.plugins.module_utils.tiering import planner as tiers


def table_options(required):
    """The options of one table: the module's own, and those of each ``tables`` entry (then ``required``). ``key``
    and ``interval`` are checked by ``missing_keys``: a table going back to a plain table needs neither."""
    return dict(
        name=dict(type="str", required=required),
        key=dict(type="str", no_log=False),
        key_format=dict(type="str", default="auto", choices=list(periods.FORMAT_NAMES)),
        interval=dict(type="str"),
        start=dict(type="str"),
        premake=dict(type="int", default=2),
        max_new_partitions=dict(type="int", default=partitioning.DEFAULT_MAX_NEW_PARTITIONS),
        default_partition=dict(type="bool", default=True),
        retention=dict(
            type="dict",
            options=dict(
                keep=dict(type="int", required=True),
                action=dict(type="str", choices=list(partitioning.RETENTION_ACTIONS), default="detach"),
                archive_schema=dict(type="str"),
                archive_dir=dict(type="path"),
                max_per_run=dict(type="int", default=partitioning.DEFAULT_MAX_PER_RUN),
            ),
        ),
        partition_options=dict(type="dict", default={}),
        tiers=dict(
            type="list",
            elements="dict",
            options=dict(after=dict(type="int", required=True), tablespace=dict(type="str", required=True)),
        ),
        tiers_max_per_run=dict(type="int", default=tiers.DEFAULT_MAX_MOVES),
        pg_repack_path=dict(type="path"),
        repartition=dict(type="str", choices=["online", "offline"]),
        rollup=dict(
            type="dict",
            options=dict(
                after=dict(type="int", required=True),
                interval=dict(type="str", required=True, choices=list(rollups.ROLLUP_INTERVALS)),
                max_per_run=dict(type="int", default=rollups.DEFAULT_MAX_PER_RUN),
            ),
        ),
        columns=dict(type="list", elements="raw"),
        primary_key=dict(type="list", elements="str", default=[], no_log=False),
        state=dict(type="str", choices=["partitioned", "present", "plain"], default="partitioned"),
        migrate=dict(type="str", choices=["online", "offline", "attach", "never", "abandon"], default="online"),
        batch_rows=dict(type="int", default=100000),
        extend_primary_key=dict(type="bool", default=False),
        drop_source=dict(type="bool", default=False),
    )


def missing_keys(table):
    """The options a table's declaration lacks: ``key`` and ``interval``, unless its state is plain."""
    if table["state"] == "plain":
        return []
    return [option for option in ("key", "interval") if table[option] is None]


def main():
    argument_spec = connection_argument_spec()
    argument_spec.update(table_options(required=False))
    argument_spec.update(
        tables=dict(type="list", elements="dict", options=table_options(required=True)),
        skip_on_standby=dict(type="bool", default=False),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
        required_one_of=[["name", "tables"]],
        # a table's options go in its entry of tables, not beside it
        mutually_exclusive=[["tables", option] for option in table_options(required=False)],
    )
    # required_by, except for state plain (a set going back to a plain table needs neither)
    if module.params["name"] is not None and missing_keys(module.params):
        module.fail_json(msg="missing parameter(s) required by 'name': %s" % ", ".join(missing_keys(module.params)))
    for entry in module.params["tables"] or []:
        if missing_keys(entry):
            module.fail_json(
                msg="missing required arguments: %s found in tables (entry %s; only state: plain needs neither);"
                " nothing was changed" % (", ".join(missing_keys(entry)), entry["name"])
            )
    context = RunContext(module.params, module.check_mode, module._diff, module.warn, module.run_command)
    holder = []
    with module_errors(module.fail_json, module.exit_json, holder):
        if module.params["tables"] is not None:
            table_runs.table_names(module.params["tables"], "tables")
            conn, server = open_session(module.params, holder, module.params["skip_on_standby"])
            output = partitioned_run.run_tables(context, conn, server)
        else:
            schema, name = split_name(module.params["name"])
            conn, server = open_session(module.params, holder, module.params["skip_on_standby"])
            runlock.hold(context, conn, [(schema, name)])
            output = partitioned_run.run(context, conn, server, schema, name)
        conn.close()
        module.exit_json(**backup_rewrites.mark(output, backup_rewrites.partitioning))


if __name__ == "__main__":
    main()
