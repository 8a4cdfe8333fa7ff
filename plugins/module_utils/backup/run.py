# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The run of ``sigeti.dwh.backup`` on the host the module runs on: pg_dump and pg_restore, the backup folder.

1. Read what the dump holds (``catalog_backup``; decided by ``backup_plan``), check the folder has room for it.
2. ``pg_dump -Fc`` into ``<name>.dump.partial`` (a private pgpass file carries the password: never a command line,
   never the environment Ansible shows), read it back in full (``pg_restore -f /dev/null``) and list it.
3. With ``verify: restore``: what a DBA types on a new server - create an empty database, ``pg_restore -d`` the dump
   into it, nothing else - then compare every dumped table's row count with the source's, counted in the snapshot
   pg_dump read (``--snapshot``: rows written meanwhile make no difference); the scratch database is dropped.
4. Only then the dump gets its final name (never over an existing file), and its manifest is written beside it.
5. Rotation: older dumps of the same host, database and server beyond ``keep``, read from their manifests; a dump is
   removed only when its archive's header names the manifest's database and its size is the recorded one.

A backup never changes the database (the scratch database is dropped): ``changed`` is always false. What a killed
run leaves (a partial dump, a password folder, a scratch database) is removed by the next run once it is old enough
not to belong to a run in progress.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import random
import re
import shutil
import tempfile
import time
from typing import TYPE_CHECKING, Any, Sequence

from ansible_collections.sigeti.dwh.plugins.module_utils.backup import planner as backup_plan
from ansible_collections.sigeti.dwh.plugins.module_utils.backup.planner import DumpSelection, Identity, Manifest
from ansible_collections.sigeti.dwh.plugins.module_utils.catalog import backup as catalog_backup
from ansible_collections.sigeti.dwh.plugins.module_utils.catalog.reads import end_read
from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import DwhError, InvalidInput
from ansible_collections.sigeti.dwh.plugins.module_utils.core.identifiers import split_name
from ansible_collections.sigeti.dwh.plugins.module_utils.plan.executor import Executor
from ansible_collections.sigeti.dwh.plugins.module_utils.plan.steps import Step
from ansible_collections.sigeti.dwh.plugins.module_utils.session.connection import (
    connection_kwargs,
    explain_connect_error,
    parse_duration_ms,
)

try:
    import psycopg2
    from psycopg2 import sql
except ImportError:  # reported by the connection layer
    psycopg2 = None
    sql = None

if TYPE_CHECKING:  # names used in annotations only
    from ansible_collections.sigeti.dwh.plugins.module_utils.session.connection import Connection
    from ansible_collections.sigeti.dwh.plugins.module_utils.session.context import RunCommand, RunContext

APPLICATION_NAME = "sigeti.dwh-backup"
# A partial dump younger than this may be another run's, being written; a password folder is needed only while the
# programs connect; a scratch database lives as long as one restore.
PARTIAL_MAX_AGE = 3600
PGPASS_MAX_AGE = 600
SCRATCH_MAX_AGE = 3600
SHOWN_EXCLUSIONS = 5
ERRORS_SHOWN = 4000


@dataclasses.dataclass(frozen=True)
class BackupRequest:
    """The module's options, checked."""

    folder: str
    scope: str
    tables: tuple[tuple[str, str], ...]
    shown_tables: tuple[str, ...]
    verify: str
    keep: int
    required_ratio: float
    bin_dir: str
    host: str
    lock_timeout_ms: int
    session_role: str | None
    connection: dict[str, Any]


def request_from(params: dict[str, Any], host_default: str) -> BackupRequest:
    """Check the module's options and return them as a BackupRequest (pure); ``host_default`` names this host."""
    folder = params["backup_dir"]
    if not folder or not os.path.isabs(folder):
        raise InvalidInput("backup_dir=%r: give an absolute folder for the dumps" % (folder,))
    if params["keep"] < 0:
        raise InvalidInput("keep=%d: give 0 (keep every dump) or the number of newest dumps kept" % params["keep"])
    if not params["required_ratio"] > 0:
        raise InvalidInput("required_ratio=%r: give a positive factor of the dump's size" % (params["required_ratio"],))
    tables = tuple(split_name(name) for name in params["tables"] or [])
    if params["scope"] == "tables" and not tables:
        raise InvalidInput("scope tables needs tables (schema.table each): name them, or use scope: database")
    return BackupRequest(
        folder=os.path.normpath(folder),
        scope=params["scope"],
        tables=tables,
        shown_tables=tuple(params["tables"] or []),
        verify=params["verify"],
        keep=params["keep"],
        required_ratio=float(params["required_ratio"]),
        bin_dir=params.get("pg_bin_dir") or "",
        host=params.get("host_label") or host_default,
        lock_timeout_ms=parse_duration_ms(params.get("lock_timeout", "5s"), "lock_timeout"),
        session_role=params.get("session_role"),
        connection=dict(params),
    )


def program(bin_dir: str, name: str) -> str:
    """The path of ``pg_dump`` / ``pg_restore`` in ``bin_dir`` (or on PATH); DwhError naming it when absent."""
    path = os.path.join(bin_dir, name) if bin_dir else shutil.which(name)
    if not path or not os.path.isfile(path) or not os.access(path, os.X_OK):
        raise DwhError(
            "%s not found or not executable: set pg_bin_dir (dwh_pg_bin_dir in the roles) to the bin folder of "
            "pg_dump and pg_restore of the server's major version or newer" % (path or name + " (on PATH)")
        )
    return path


def shown(argv: Sequence[str]) -> str:
    """A command line as the result shows it (quoted; a long list of exclusions abbreviated; never a password)."""
    excluded = [a for a in argv if a.startswith("--exclude-table=")]
    kept = [a for a in argv if not a.startswith("--exclude-table=")]
    if len(excluded) > SHOWN_EXCLUSIONS:
        position = kept.index("-d")
        kept[position:position] = excluded[:SHOWN_EXCLUSIONS] + [
            "... (%d more --exclude-table)" % (len(excluded) - SHOWN_EXCLUSIONS)
        ]
    else:
        position = kept.index("-d") if "-d" in kept else len(kept)
        kept[position:position] = excluded
    return " ".join(shell_word(a) for a in kept)


def shell_word(word: str) -> str:
    """``word`` as a shell reads it back, in double quotes when needed (a conninfo keeps its single quotes)."""
    if word and all(c.isalnum() or c in "-_./=:,+@%" for c in word):
        return word
    return '"%s"' % "".join("\\" + c if c in '"\\$`' else c for c in word)


def run_program(argv: Sequence[str], env: dict[str, str], step: str, run_command: RunCommand) -> str:
    """Run a PostgreSQL client program through the module's ``run_command``; return its standard output, or raise
    DwhError naming ``step`` and its error output. PGPASSWORD is emptied for it (it would win over the pgpass file;
    libpq reads the pgpass file when it is empty)."""
    try:
        code, out, err = run_command(list(argv), environ_update=dict(env, PGPASSWORD=""), check_rc=False)
    except OSError as error:
        raise DwhError("%s: cannot run %s: %s" % (step, argv[0], error))
    if code != 0:
        errors = (err or "").strip() or "exit code %d" % code
        if len(errors) > ERRORS_SHOWN:
            errors = errors[:ERRORS_SHOWN] + " ... (%d more characters)" % (len(errors) - ERRORS_SHOWN)
        raise DwhError("%s failed (%s exit code %d): %s" % (step, os.path.basename(argv[0]), code, errors))
    return out


def major_version(version_output: str) -> int:
    """The major version ``pg_dump --version`` prints (``pg_dump (PostgreSQL) 15.6 (Debian 15.6-0+deb12u1)`` -> 15)."""
    match = re.search(r"(\d+)", version_output.split(")", 1)[-1])
    if not match:
        raise DwhError("cannot read a version in %r" % version_output.strip())
    return int(match.group(1))


class BackupRun:
    """One backup: the connection, the request, the files it writes, the commands it ran."""

    def __init__(self, conn: Connection, request: BackupRequest, context: RunContext) -> None:
        self.conn = conn
        self.request = request
        self.warn = context.warn
        self.run_command = context.run_command
        self.commands: list[str] = []
        self.env: dict[str, str] = {}
        self.started = datetime.datetime.now(datetime.timezone.utc)

    # -- facts and checks ------------------------------------------------------------------------------------
    def conninfo(self, database: str | None = None) -> str:
        """The conninfo the programs connect with: the modules' settings, without the password."""
        params = dict(self.request.connection)
        if database:
            params["login_db"] = database
        kwargs = connection_kwargs(params)
        kwargs["application_name"] = APPLICATION_NAME
        kwargs.pop("connect_timeout", None)
        return backup_plan.conninfo(kwargs)

    def selection(self) -> tuple[DumpSelection | None, int, list[dict[str, Any]]]:
        """What the dump holds, how many bytes that is in the database, and the relations as returned."""
        if self.request.scope == "database":
            return None, catalog_backup.database_size(self.conn), []
        facts = catalog_backup.read_dump_facts(self.conn, self.request.tables)
        if not facts.touched:
            raise DwhError(
                "none of %s exists yet: nothing to dump (use scope: database, dwh_backup_scope: database in the "
                "roles)" % ", ".join(self.request.shown_tables)
            )
        chosen = backup_plan.select_dump(facts)
        sizes = catalog_backup.relation_sizes(self.conn, [m.relation.oid for m in chosen.members])
        return chosen, sum(sizes.values()), catalog_backup.members_report(chosen.members, sizes)

    def check_room(self, needed: int, what: str) -> int:
        """Free bytes in the backup folder (or the nearest folder above it that exists); DwhError when short."""
        folder = self.request.folder
        while not os.path.isdir(folder) and os.path.dirname(folder) != folder:
            folder = os.path.dirname(folder)
        stat = os.statvfs(folder)
        free = stat.f_bavail * stat.f_frsize
        refusal = backup_plan.space_check(free, needed, self.request.required_ratio, self.request.folder, what)
        if refusal:
            raise DwhError(refusal + " (dwh_backup_required_ratio, dwh_backup_keep, dwh_backup_dir in the roles)")
        return free

    def check_programs(self, server_major: int) -> tuple[str, str]:
        """The pg_dump and pg_restore to run; DwhError when missing or older than the server."""
        dump, restore = program(self.request.bin_dir, "pg_dump"), program(self.request.bin_dir, "pg_restore")
        version = run_program([dump, "--version"], {}, "pg_dump --version", self.run_command).strip()
        if major_version(version) < server_major:
            raise DwhError(
                "%s is %s, older than the server (PostgreSQL %d): it cannot dump it. Set pg_bin_dir (dwh_pg_bin_dir) "
                "to the bin folder of PostgreSQL %d or newer" % (dump, version, server_major, server_major)
            )
        return dump, restore

    # -- files -----------------------------------------------------------------------------------------------
    def prepare_folder(self) -> None:
        """Create the backup folder (0700) and remove what killed runs left there."""
        try:
            os.makedirs(self.request.folder, mode=0o700, exist_ok=True)
        except OSError as error:
            raise DwhError("cannot create the backup folder %s: %s" % (self.request.folder, error))
        now = time.time()
        for entry in os.scandir(self.request.folder):
            try:
                age = now - entry.stat(follow_symlinks=False).st_mtime
                if entry.is_file(follow_symlinks=False) and age > PARTIAL_MAX_AGE and ours_partial(entry.name):
                    os.unlink(entry.path)
                elif (
                    entry.is_dir(follow_symlinks=False)
                    and age > PGPASS_MAX_AGE
                    and entry.name.startswith(backup_plan.PGPASS_PREFIX)
                ):
                    shutil.rmtree(entry.path, ignore_errors=True)
            except OSError:
                continue  # removed meanwhile by another run

    def password_file(self) -> str | None:
        """Write the private pgpass file (folder 0700, file 0600) when there is a password; return its folder."""
        password = self.request.connection.get("login_password") or ""
        if not password:
            return None
        line = backup_plan.pgpass_line(password)
        folder = tempfile.mkdtemp(prefix=backup_plan.PGPASS_PREFIX, dir=self.request.folder)
        path = os.path.join(folder, "pgpass")
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(handle, "w") as out:
            out.write(line)
        self.env["PGPASSFILE"] = path
        return folder

    def reserve(self, name: str) -> str:
        """Create ``<name>.partial`` (0600, never over an existing file); return its path."""
        path = os.path.join(self.request.folder, name + backup_plan.PARTIAL_SUFFIX)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        return path

    def run(self, argv: Sequence[str], step: str) -> str:
        """Run a program with the password file, recording its command line."""
        self.commands.append(shown(argv))
        return run_program(argv, self.env, step, self.run_command)

    def manifests(self) -> list[Manifest]:
        """Every manifest of the backup folder that is ours and names the dump beside it."""
        found = []
        for entry in os.scandir(self.request.folder):
            if not entry.name.endswith(backup_plan.DUMP_SUFFIX + backup_plan.MANIFEST_SUFFIX):
                continue
            try:
                with open(entry.path, encoding="utf-8") as handle:
                    manifest = backup_plan.parse_manifest(handle.read(65536), entry.name)
            except (OSError, UnicodeDecodeError):
                continue
            if manifest is not None:
                found.append(manifest)
        return found

    # -- the steps, in the order ``backup`` runs them ---------------------------------------------------------
    def dump(self, pg_dump: str, target: str, chosen: DumpSelection | None) -> dict[str, int] | None:
        """pg_dump into ``target``; with ``verify: restore``, in an exported snapshot whose row counts of the dumped
        tables are returned (the same rows pg_dump read)."""
        request = self.request
        snapshot = counted = None
        if request.verify == "restore":
            counted = chosen.tables() if chosen else catalog_backup.user_tables(self.conn)
            snapshot = catalog_backup.export_snapshot(self.conn)
        try:
            argv = backup_plan.dump_argv(
                pg_dump, target, self.conninfo(), request.lock_timeout_ms, chosen, snapshot, request.session_role
            )
            self.run(argv, "pg_dump")
            return catalog_backup.count_rows(self.conn, counted) if snapshot else None
        finally:
            end_read(self.conn)

    def read_back(self, pg_restore: str, target: str, database: str) -> int:
        """Read the whole archive (every data block) and list it; return how many entries it lists."""
        self.run([pg_restore, "-f", os.devnull, target], "reading the dump back (pg_restore -f /dev/null)")
        listing = self.run([pg_restore, "--list", target], "listing the dump (pg_restore --list)")
        objects = backup_plan.listed_objects(listing)
        if not objects:
            raise DwhError("pg_restore --list %s lists no object: the dump is empty or unreadable" % target)
        recorded = backup_plan.archive_database(listing)
        if recorded != database:
            raise DwhError(
                "the archive %s names database %r, not %r: it is not this run's dump" % (target, recorded, database)
            )
        return objects

    def restore_check(self, pg_restore: str, target: str, source: dict[str, int]) -> dict[str, Any]:
        """What a DBA types on a new server: an empty database, ``pg_restore -d`` the dump into it, nothing else;
        then every dumped table's row count compared with the source's; the database is dropped in any case."""
        scratch = scratch_name(self.started)
        executor = Executor(self.conn, self.request.connection.get("lock_retries", 3), 1.0)
        name = sql.Identifier(scratch)
        executor.run(
            [Step(sql.SQL("CREATE DATABASE {}").format(name), "createdb for the restore check", transactional=False)]
        )
        try:
            argv = [pg_restore, "--no-password"] + backup_plan.role_options(self.request.session_role)
            self.run(
                argv + ["-d", self.conninfo(scratch), target], "restoring the dump into the empty database %s" % scratch
            )
            other = open_database(self.request.connection, scratch)
            try:
                restored = catalog_backup.count_rows(other, [tuple(key.split(".", 1)) for key in source])
            finally:
                other.close()
        finally:
            executor.run(
                [
                    Step(
                        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name),
                        "drop the restore check",
                        transactional=False,
                    )
                ]
            )
        differences = backup_plan.count_differences(source, restored)
        if differences:
            raise DwhError(
                "the dump restored into %s does not hold the source's rows: %s" % (scratch, ", ".join(differences))
            )
        return {"database": scratch, "tables": len(restored), "rows": sum(restored.values())}

    def drop_stale_scratch(self) -> None:
        """Drop the scratch databases killed runs left (ours, older than an hour, nobody connected)."""
        now = datetime.datetime.now(datetime.timezone.utc)
        for name, busy in catalog_backup.scratch_databases(self.conn, backup_plan.SCRATCH_PREFIX):
            age = scratch_age(name, now)
            if busy or age is None or age < SCRATCH_MAX_AGE:
                continue
            try:
                Executor(self.conn, 0, 0).run(
                    [
                        Step(
                            sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)),
                            "a killed run's restore check",
                            transactional=False,
                        )
                    ]
                )
            except psycopg2.Error as error:
                self.warn("could not drop %s, left by an interrupted restore check: %s" % (name, str(error).strip()))

    def finalize(self, partial: str, name: str) -> str:
        """Give the verified dump its final name, never over an existing file; return its path."""
        final = os.path.join(self.request.folder, name)
        try:
            os.link(partial, final)
        except FileExistsError:
            raise DwhError("%s already exists: not overwritten (run again: the next name differs)" % final)
        except OSError:  # a filesystem without hard links
            if os.path.lexists(final):
                raise DwhError("%s already exists: not overwritten (run again: the next name differs)" % final)
            os.rename(partial, final)
            return final
        os.unlink(partial)
        return final

    def write_manifest(self, manifest: Manifest, extra: dict[str, Any]) -> str:
        """Write ``<dump>.json`` beside the dump (temporary name, then renamed); return its path."""
        path = os.path.join(self.request.folder, manifest.file + backup_plan.MANIFEST_SUFFIX)
        partial = path + backup_plan.PARTIAL_SUFFIX
        handle = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(manifest.to_json(extra))
        os.replace(partial, path)
        return path

    def rotate(self, pg_restore: str, manifests: Sequence[Manifest], current: Manifest) -> list[str]:
        """Remove the dumps of this host, database and server beyond ``keep`` (with their manifests); a dump whose
        archive does not name the manifest's database, or whose size is not the recorded one, is left with a warning."""
        removed = []
        for old in backup_plan.rotation(manifests, current, self.request.keep):
            path = os.path.join(self.request.folder, old.file)
            try:
                size = os.stat(path).st_size
                listing = run_program([pg_restore, "--list", path], self.env, "reading %s" % path, self.run_command)
            except (OSError, DwhError) as error:
                self.warn(
                    "rotation left %s: it cannot be read as the archive its manifest describes (%s)" % (path, error)
                )
                continue
            database = backup_plan.archive_database(listing)
            if size != old.bytes or database != old.identity.database:
                self.warn(
                    "rotation left %s: its manifest says %d bytes of database %s, the file holds %d bytes of database %s"
                    % (path, old.bytes, old.identity.database, size, database)
                )
                continue
            os.unlink(path)
            try:
                os.unlink(path + backup_plan.MANIFEST_SUFFIX)
            except FileNotFoundError:
                pass
            removed.append(path)
        return removed

    def unmanaged(self, manifests: Sequence[Manifest]) -> list[str]:
        """The ``*.dump`` files of the folder no manifest describes (the rotation never removes them)."""
        described = {m.file for m in manifests}
        return sorted(
            e.name
            for e in os.scandir(self.request.folder)
            if e.name.endswith(backup_plan.DUMP_SUFFIX) and e.name not in described and e.is_file(follow_symlinks=False)
        )


def ours_partial(name: str) -> bool:
    """Whether ``name`` is a partial dump or manifest this module writes (nothing else is ever removed)."""
    for suffix in (backup_plan.DUMP_SUFFIX, backup_plan.DUMP_SUFFIX + backup_plan.MANIFEST_SUFFIX):
        tail = suffix + backup_plan.PARTIAL_SUFFIX
        if name.endswith(tail) and "@" in name:
            return bool(backup_plan.NAME_TAIL.search(name[: -len(tail)] + backup_plan.DUMP_SUFFIX))
    return False


def open_database(params: dict[str, Any], database: str) -> Connection:
    """A connection to ``database`` of the same server with the modules' settings (the scratch database)."""
    kwargs = connection_kwargs(dict(params, login_db=database))
    kwargs["application_name"] = APPLICATION_NAME
    try:
        conn = psycopg2.connect(**kwargs)
    except psycopg2.Error as error:
        raise DwhError(explain_connect_error(dict(params, login_db=database), error))
    conn.autocommit = True
    if params.get("session_role"):
        with conn.cursor() as cur:
            cur.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(params["session_role"])))
    return conn


def scratch_name(started: datetime.datetime) -> str:
    """``sigeti_verify_<UTC time>_<6 hex digits>``: the time tells a later run when a leftover is stale."""
    return "%s%s_%06x" % (backup_plan.SCRATCH_PREFIX, started.strftime("%Y%m%d%H%M%S"), random.getrandbits(24))


def scratch_age(name: str, now: datetime.datetime) -> float | None:
    """Seconds since the scratch database ``name`` was created (from its name), or None when not one of ours."""
    try:
        stamp = datetime.datetime.strptime(name[len(backup_plan.SCRATCH_PREFIX) :][:14], "%Y%m%d%H%M%S")
    except ValueError:
        return None
    return (now - stamp.replace(tzinfo=datetime.timezone.utc)).total_seconds()


def backup(conn: Connection, server_version_num: int, context: RunContext) -> dict[str, Any]:
    """The whole run of ``sigeti.dwh.backup`` once connected (see the module's docstring); returns its result.

    In check mode, what the dump would hold and whether it fits, with nothing written anywhere.
    """
    params, check_mode = context.params, context.check_mode
    request = request_from(params, socket_host())
    steps = BackupRun(conn, request, context)
    server = catalog_backup.server_identity(conn)
    identity = Identity(request.host, server.database, server.system_identifier)
    pg_dump, pg_restore = steps.check_programs(server_version_num // 10000)
    chosen, needed, relations = steps.selection()
    what = backup_plan.dumped_what(request.scope, request.shown_tables, chosen)
    free = steps.check_room(needed, what)
    name = backup_plan.dump_name(server.database, request.host, steps.started, random.getrandbits(24))
    result: dict[str, Any] = {
        "changed": False,
        "scope": request.scope,
        "contents": chosen.contents() if chosen else "the database",
        "relations": relations,
        "extensions": list(chosen.extensions) if chosen else [],
        "excluded": len(chosen.excluded) if chosen else 0,
        "database_bytes": needed,
        "required_bytes": int(needed * request.required_ratio),
        "free_bytes": free,
        "identity": dataclasses.asdict(identity),
    }
    if check_mode:
        target = os.path.join(request.folder, name)
        argv = backup_plan.dump_argv(
            pg_dump, target, steps.conninfo(), request.lock_timeout_ms, chosen, None, request.session_role
        )
        result.update(file=target, commands=[shown(argv)], msg="would dump %s into %s" % (what, target))
        return result
    steps.prepare_folder()
    steps.drop_stale_scratch()
    password_folder = steps.password_file()
    partial = None
    try:
        partial = steps.reserve(name)
        source = steps.dump(pg_dump, partial, chosen)
        objects = steps.read_back(pg_restore, partial, server.database)
        restored = steps.restore_check(pg_restore, partial, source) if source is not None else None
        path = steps.finalize(partial, name)
        partial = None
        result.update(
            file=path,
            bytes=os.stat(path).st_size,
            objects=objects,
            verified=request.verify,
            restore=restored,
        )
        holds = (
            "database"
            if chosen is None
            else "%s and what a restore of them needs: %s"
            % (
                ", ".join(request.shown_tables),
                chosen.contents(),
            )
        )
        result.update(keep_and_rotate(steps, pg_restore, identity, result, holds))
    finally:
        if partial and os.path.lexists(partial):
            os.unlink(partial)
        if password_folder:
            shutil.rmtree(password_folder, ignore_errors=True)
    result["commands"] = steps.commands
    return result


def keep_and_rotate(
    steps: BackupRun, pg_restore: str, identity: Identity, result: dict[str, Any], what: str
) -> dict[str, Any]:
    """Write the new dump's manifest, rotate the older dumps; return the result keys saying so, and ``msg``."""
    manifests = steps.manifests()
    current = Manifest(
        identity,
        backup_plan.next_sequence(manifests, identity),
        steps.started.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        os.path.basename(result["file"]),
        result["bytes"],
    )
    extra = {
        "finished_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "scope": result["scope"],
        "tables": list(steps.request.shown_tables),
        "contents": result["contents"],
        "verified": result["verified"],
        "restore": result["restore"],
    }
    manifest_path = None
    try:
        manifest_path = steps.write_manifest(current, extra)
    except OSError as error:
        steps.warn(
            "the manifest of %s could not be written (%s): the rotation will never remove it" % (result["file"], error)
        )
    removed = steps.rotate(pg_restore, manifests, current) if manifest_path else []
    unmanaged = steps.unmanaged(steps.manifests())
    if unmanaged:
        steps.warn(
            "%d .dump file(s) in %s have no manifest (written before sigeti.dwh 0.2, or by hand), e.g. %s: the rotation "
            "never removes them" % (len(unmanaged), steps.request.folder, unmanaged[0])
        )
    restore = result["restore"]
    msg = "backup %s (%s) verified: read back in full by pg_restore, %d objects listed by pg_restore" % (
        result["file"],
        what,
        result["objects"],
    )
    if restore:
        msg += (
            ", restored alone into the empty database %s (pg_restore -d): %d tables, %d rows, counts equal to the source's"
            % (
                restore["database"],
                restore["tables"],
                restore["rows"],
            )
        )
    if removed:
        msg += "; rotation removed %s" % ", ".join(os.path.basename(p) for p in removed)
    return {"manifest": manifest_path, "sequence": current.sequence, "removed": removed, "msg": msg}


def socket_host() -> str:
    """This machine's host name (the default host label)."""
    import socket

    return socket.gethostname()
