# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How every catalog read runs: one statement, then its transaction ends (no lock kept beyond the read)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

if TYPE_CHECKING:  # names used in annotations only
    from psycopg2.sql import Composable

    from ansible_collections.sigeti.dwh.plugins.module_utils.session.connection import Connection

try:
    import psycopg2.extensions
except ImportError:  # reported by the connection layer
    psycopg2 = None


# JIT never pays on a catalog read (its rows are the warehouse's relations, a few thousand at most), but the
# planner's estimate of a read over hundreds of partitions can pass jit_above_cost, and a server built with LLVM
# then compiles the query: 1.4 s of compilation for a 45 ms read of 500 relations (PostgreSQL 15, issue 20).
# Sent in the same round trip as the read it precedes; SET LOCAL ends with that read's transaction (the implicit
# one of a multi-statement query under autocommit).
NO_JIT = "SET LOCAL jit = off;\n"


def end_read(conn: Connection) -> None:
    """End the current read's transaction (no-op under autocommit)."""
    # a read ends its transaction at once: catalog reads never keep the locks they took
    if not conn.autocommit:
        conn.rollback()


def fetch_one(
    conn: Connection, query: str | Composable, params: Sequence[Any] | Mapping[str, Any] | None = None
) -> tuple[Any, ...] | None:
    """Run one read, end its transaction, return its first row."""
    with conn.cursor() as cur:
        cur.execute(query, params)
        row = cur.fetchone()
    end_read(conn)
    return row


def fetch_all(
    conn: Connection, query: str | Composable, params: Sequence[Any] | Mapping[str, Any] | None = None
) -> list[tuple[Any, ...]]:
    """Run one read, end its transaction, return every row."""
    with conn.cursor() as cur:
        cur.execute(query, params)
        rows = cur.fetchall()
    end_read(conn)
    return rows


if psycopg2 is not None:

    class DictRowsCursor(psycopg2.extensions.cursor):
        """A cursor whose ``fetchone``/``fetchall`` return plain dicts keyed by column name.

        Built with one ``zip`` per row: psycopg2's RealDictCursor sets each column on its own (0.7 s of a
        ``table_info`` read of 3,650 partitions went there).
        """

        def _names(self) -> list[str]:
            return [column.name for column in self.description]

        def fetchone(self) -> dict[str, Any] | None:
            """Return the next row as a dict, or None."""
            row = super().fetchone()
            return None if row is None else dict(zip(self._names(), row))

        def fetchall(self) -> list[dict[str, Any]]:
            """Return every remaining row as a dict."""
            names = self._names()
            return [dict(zip(names, row)) for row in super().fetchall()]


def dict_cursor(conn: Connection) -> DictRowsCursor:
    """A cursor returning rows as dicts (``fetchone``, ``fetchall``)."""
    return conn.cursor(cursor_factory=DictRowsCursor)
