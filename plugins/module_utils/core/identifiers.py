# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Parse ``schema.table`` names the way PostgreSQL does, and quote them only through psycopg2.sql."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import InvalidInput

try:
    from psycopg2 import sql
except ImportError:  # the connection layer reports the missing driver
    sql = None

if TYPE_CHECKING:  # names used in annotations only
    from psycopg2.sql import Identifier


class InvalidName(InvalidInput):
    """A relation name that cannot be parsed; the message says why and what to write instead."""


def split_identifiers(text: str) -> list[str]:
    """Return the parts of a dotted SQL name.

    Unquoted parts are folded to lower case, quoted parts keep their case and may hold dots,
    spaces and doubled quotes (``"a""b"`` is ``a"b``), exactly as PostgreSQL reads them.
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidName("an empty name was given: write it as schema.table")
    parts = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i].isspace():
            i += 1
        if i < n and text[i] == '"':
            i += 1
            buf = []
            while True:
                if i >= n:
                    raise InvalidName("name %r has an unterminated quote" % text)
                if text[i] == '"':
                    if i + 1 < n and text[i + 1] == '"':
                        buf.append('"')
                        i += 2
                        continue
                    i += 1
                    break
                buf.append(text[i])
                i += 1
            if not buf:
                raise InvalidName("name %r has an empty quoted part" % text)
            parts.append("".join(buf))
        else:
            start = i
            while i < n and text[i] not in '."' and not text[i].isspace():
                i += 1
            word = text[start:i]
            if not word:
                raise InvalidName("name %r has an empty part: write it as schema.table" % text)
            parts.append(word.lower())
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            break
        if text[i] != ".":
            raise InvalidName(
                "name %r is not a valid identifier: quote parts holding spaces, quotes or dots "
                'with double quotes, e.g. "My Schema"."My Table"' % text
            )
        i += 1
    return parts


def split_name(text: str, default_schema: str = "public") -> tuple[str, str]:
    """Return ``(schema, relation)`` for ``table`` or ``schema.table``; reject anything longer."""
    parts = split_identifiers(text)
    if len(parts) == 1:
        return default_schema, parts[0]
    if len(parts) == 2:
        return parts[0], parts[1]
    raise InvalidName(
        "name %r has %d parts: write schema.table, and quote a part that contains a dot" % (text, len(parts))
    )


def quote_ident(name: str) -> str:
    """Return an identifier as PostgreSQL would print it (for messages and state keys, never for SQL)."""
    if (
        name
        and name == name.lower()
        and (name[0].isalpha() or name[0] == "_")
        and all(c.isalnum() or c in "_$" for c in name)
        and name.isascii()
    ):
        return name
    return '"%s"' % name.replace('"', '""')


def display_name(schema: str, relation: str) -> str:
    """Return ``schema.relation`` quoted as needed, for messages and result keys."""
    return "%s.%s" % (quote_ident(schema), quote_ident(relation))


def relation(schema: str, name: str) -> Identifier:
    """Return the ``psycopg2.sql`` identifier for ``schema.name``."""
    return sql.Identifier(schema, name)


def column(name: str) -> Identifier:
    """Return the ``psycopg2.sql`` identifier for a column or other single name."""
    return sql.Identifier(name)
