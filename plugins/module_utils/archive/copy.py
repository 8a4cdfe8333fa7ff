# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The bulk streams of Parquet archives: ``COPY ... TO STDOUT`` into a reader, ``COPY ... FROM STDIN`` out of
chunks, and the tables a restore or a verification loads (the only database writes of the archive engine).

``COPY`` rather than a server-side cursor: PostgreSQL formats the values (the canonical CSV text, settings pinned)
and pyarrow parses them in C++ threads, where a cursor builds a Python object per value (bench/parquet_library.py
measures both). The stream runs in a thread of its own writing into a pipe, so the reader (pyarrow's streaming CSV
reader) holds at most a few blocks in memory whatever the table's size.
"""

from __future__ import annotations

import os
import threading
from typing import IO, TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence, TypeVar

from ansible_collections.sigeti.dwh.plugins.module_utils.archive.types import (
    ColumnSpec,
    column_definition,
    transfer_expression,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.core.identifiers import relation

try:
    from psycopg2 import sql
except ImportError:  # reported by the connection layer
    sql = None

if TYPE_CHECKING:  # names used in annotations only
    from psycopg2.sql import Composable

    from ansible_collections.sigeti.dwh.plugins.module_utils.session.connection import Connection

T = TypeVar("T")
PIPE_CHUNK = 1 << 20


def export_query(schema: str, name: str, specs: Sequence[ColumnSpec]) -> Composable:
    """``COPY (SELECT <transfer expressions> FROM ONLY schema.name) TO STDOUT (FORMAT csv)``."""
    return sql.SQL("COPY (SELECT {columns} FROM ONLY {table}) TO STDOUT (FORMAT csv)").format(
        columns=sql.SQL(", ").join(transfer_expression(s) for s in specs),
        table=relation(schema, name),
    )


def copy_out(conn: Connection, query: Composable, consume: Callable[[IO[bytes]], T]) -> T:
    """Run ``query`` (a COPY TO STDOUT) and hand its bytes, as a readable binary file, to ``consume``.

    The COPY runs in a thread writing into a pipe; if ``consume`` fails, the query is cancelled and the pipe closed
    so the thread ends, and the error is raised. A COPY failing on the server is raised even when ``consume``
    returned (a reader sees a short stream as a clean end).
    """
    read_fd, write_fd = os.pipe()
    reader = os.fdopen(read_fd, "rb", buffering=PIPE_CHUNK)
    writer = os.fdopen(write_fd, "wb", buffering=PIPE_CHUNK)
    failures: list[BaseException] = []

    def produce() -> None:
        try:
            with conn.cursor() as cur:
                cur.copy_expert(query.as_string(conn), writer, size=PIPE_CHUNK)
        except BaseException as error:  # handed to the caller's thread
            failures.append(error)
        finally:
            try:
                writer.close()
            except OSError:  # the reader went away first (it failed): its error is the one to raise
                pass

    thread = threading.Thread(target=produce, name="sigeti-dwh-copy-out", daemon=True)
    thread.start()
    try:
        result = consume(reader)
    except BaseException:
        conn.cancel()
        reader.close()
        thread.join()
        raise
    reader.close()
    thread.join()
    if failures:
        raise failures[0]
    return result


class ChunkReader:
    """A read-only binary file over an iterator of byte chunks (what ``copy_expert`` reads a COPY FROM from)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)
        self._buffer = b""

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (all that remain when negative); ``b""`` at the end."""
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        if size < 0:
            size = len(self._buffer)
        out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out

    def readline(self, size: int = -1) -> bytes:
        """Not used by COPY FROM; here for the file protocol."""
        return self.read(size)


def copy_in(conn: Connection, schema: str, name: str, chunks: Iterable[bytes], freeze: bool = False) -> int:
    """``COPY schema.name FROM STDIN (FORMAT csv)`` fed by ``chunks``; return the rows it loaded.

    ``freeze`` writes the rows frozen (only for a table created or truncated in this transaction: a restore's),
    sparing the later VACUUM that would set their hint bits and freeze them.
    """
    statement = sql.SQL("COPY {} FROM STDIN (FORMAT csv{})").format(
        relation(schema, name), sql.SQL(", FREEZE") if freeze else sql.SQL("")
    )
    with conn.cursor() as cur:
        cur.copy_expert(statement.as_string(conn), ChunkReader(chunks), size=PIPE_CHUNK)
        return cur.rowcount


def create_table(
    conn: Connection, schema: str | None, name: str, specs: Sequence[ColumnSpec], like: tuple[str, str] | None = None
) -> None:
    """``CREATE TABLE`` with the archived columns (a TEMPORARY one dropped at commit when ``schema`` is None), or
    ``LIKE`` the table ``like`` with its constraints (the caller checked its columns are ``specs``)."""
    columns = sql.SQL(", ").join(column_definition(s) for s in specs)
    if like is not None:
        columns = sql.SQL("LIKE {} INCLUDING CONSTRAINTS").format(relation(*like))
    if schema is None:
        statement = sql.SQL("CREATE TEMPORARY TABLE {} ({}) ON COMMIT DROP").format(sql.Identifier(name), columns)
    else:
        statement = sql.SQL("CREATE TABLE {} ({})").format(relation(schema, name), columns)
    with conn.cursor() as cur:
        cur.execute(statement)


def truncate_temporary(conn: Connection, name: str) -> None:
    """Empty this session's temporary table ``name`` (between two verification batches)."""
    with conn.cursor() as cur:
        cur.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(name)))


def temporary_schema(conn: Connection) -> str:
    """The name of this session's temporary schema (``pg_temp_N``), once a temporary table exists."""
    with conn.cursor() as cur:
        cur.execute("SELECT nspname::text FROM pg_namespace WHERE oid = pg_my_temp_schema()")
        return cur.fetchone()[0]


def begin_snapshot(conn: Connection, schema: str, name: str, block_writers: bool) -> None:
    """Open the export's REPEATABLE READ transaction; ``block_writers`` first takes SHARE on the table
    (under the session's lock_timeout) so no row can change between the archive and the caller's next step."""
    conn.rollback()
    conn.set_client_encoding("UTF8")  # the CSV reader reads UTF-8, whatever the database's encoding
    # not READ ONLY: a read-only transaction may not take SHARE
    conn.set_session(isolation_level="REPEATABLE READ", autocommit=False)
    if block_writers:
        with conn.cursor() as cur:
            # LOCK takes no snapshot: the snapshot is the first query's, after the lock is granted
            cur.execute(sql.SQL("LOCK TABLE ONLY {} IN SHARE MODE").format(relation(schema, name)))


def begin_load(conn: Connection) -> None:
    """Start the transaction of a restore or a verification (UTF-8 client encoding, the CSV's)."""
    conn.rollback()
    conn.set_client_encoding("UTF8")
    conn.autocommit = False


def end_snapshot(conn: Connection, state: Sequence[Any]) -> None:
    """Roll back the open transaction (if any) and give the connection back what ``session_state`` read."""
    conn.rollback()
    isolation, readonly, deferrable, autocommit, encoding = state
    if conn.encoding != encoding:
        conn.set_client_encoding(encoding)
    conn.set_session(
        isolation_level="DEFAULT" if isolation is None else isolation,
        readonly="DEFAULT" if readonly is None else readonly,
        deferrable="DEFAULT" if deferrable is None else deferrable,
        autocommit=autocommit,
    )


def session_state(conn: Connection) -> tuple:
    """The connection's (isolation_level, readonly, deferrable, autocommit, encoding), for ``end_snapshot``."""
    return (conn.isolation_level, conn.readonly, conn.deferrable, conn.autocommit, conn.encoding)
