# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Asking the server to try something and rolling it back: never a change, but more than a catalog read.

EXPLAIN (ANALYZE) really runs the guide's range query, in a read-only transaction; storage parameters are tried on
a temporary table. ``catalog`` only reads; these two live here so that stays true.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, NamedTuple

try:
    import psycopg2
    from psycopg2 import sql
except ImportError:  # reported by the connection layer
    psycopg2 = None
    sql = None

if TYPE_CHECKING:  # names used in annotations only
    from psycopg2.sql import Composable

    from ansible_collections.sigeti.dwh.plugins.module_utils.session.connection import Connection


class RangePlan(NamedTuple):
    """``explain_range``'s answer; a tuple, so ``plan, query = explain_range(...)`` reads as before."""

    plan: dict[str, Any]  # the JSON plan of the query (``{"Plan": ..., "Planning Time": ...}``)
    query: str  # the query text as the server received it


def explain_range(
    conn: Connection, schema: str, name: str, key: str, low: Any, high: Any, analyze: bool = False
) -> RangePlan:
    """Return the JSON plan (one dict) and the query text of ``SELECT count(*) FROM schema.name WHERE key BETWEEN
    low AND high``.

    The guide's date-range query. With ``analyze`` the count really runs (read-only transaction, rolled back)
    so the plan carries actual times and which partitions were executed.
    """
    options = sql.SQL("FORMAT JSON, ANALYZE, TIMING OFF, SUMMARY ON") if analyze else sql.SQL("FORMAT JSON")
    query = sql.SQL("EXPLAIN ({}) SELECT count(*) FROM {} WHERE {} BETWEEN {} AND {}").format(
        options, sql.Identifier(schema, name), sql.Identifier(key), sql.Literal(low), sql.Literal(high)
    )
    autocommit = conn.autocommit
    conn.autocommit = False
    try:
        with conn.cursor() as cur:
            cur.execute("SET TRANSACTION READ ONLY")
            cur.execute(query)
            plan = cur.fetchone()[0]
            text = cur.mogrify(query).decode()
    finally:
        conn.rollback()
        conn.autocommit = autocommit
    if isinstance(plan, str):
        plan = json.loads(plan)
    return RangePlan(plan[0], text)


def storage_parameters_error(conn: Connection, with_clause: Composable) -> str | None:
    """Ask the server whether a ``WITH (...)`` clause of storage parameters is valid for a table, touching no table.

    Creates a temporary table with them in a transaction that is rolled back (no lock on any user relation).
    Returns the server's message when it refuses them, else None.
    """
    was = conn.autocommit
    conn.autocommit = False
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE TEMP TABLE sigeti_dwh_option_check (v text){}").format(with_clause))
        return None
    except psycopg2.Error as error:
        if error.pgcode == "25006":  # read-only transaction: cannot check here, the real run will
            return None
        return str(error).strip().splitlines()[0]
    finally:
        conn.rollback()
        conn.autocommit = was
