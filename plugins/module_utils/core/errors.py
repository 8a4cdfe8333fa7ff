# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Errors every module turns into one clear ``fail_json`` message."""

from __future__ import annotations

from typing import Any


class DwhError(Exception):
    """An error the user can act on: the message names the object, the value and what to do.

    ``details`` are extra result keys returned beside ``msg`` (e.g. the blocking pid).
    """

    def __init__(self, msg: str, **details: Any) -> None:
        super().__init__(msg)
        self.msg = msg
        self.details = details


class InvalidInput(DwhError):
    """The declared state cannot be reached as written; nothing was changed."""


class LockNotGranted(DwhError):
    """A lock stayed unavailable through every retry; the transaction was rolled back."""


class UnsupportedServer(DwhError):
    """The server cannot do what was asked (version, standby, missing feature)."""
