# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a run needs from the module that started it, and nothing of the module itself.

A module file builds one ``RunContext`` from its ``AnsibleModule`` (its options, check and diff mode, where warnings
go, how a program is run) and hands it down; nothing below ``plugins/modules/`` sees the module. A ``tables`` list
gives each entry its own context (``for_entry``): the entry's options over the module's, its warnings kept apart.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

# run_command(argv, environ_update=..., ...) -> (rc, stdout, stderr), as AnsibleModule.run_command
RunCommand = Callable[..., "tuple[int, str, str]"]


def _no_warning(_text: str) -> None:
    return None


@dataclasses.dataclass
class RunContext:
    """One run's options (``params``), ``check_mode`` and ``diff``, its ``warnings`` (shown as the module's through
    ``on_warning`` as they come) and the module's ``run_command`` for the programs it starts (pg_dump, pg_repack)."""

    params: Mapping[str, Any]
    check_mode: bool = False
    diff: bool = False
    on_warning: Callable[[str], None] = _no_warning
    run_command: RunCommand | None = None
    warnings: list[str] = dataclasses.field(default_factory=list)

    def warn(self, text: str) -> None:
        """Keep the warning for this run's result and show it as the module's."""
        self.warnings.append(text)
        self.on_warning(text)

    def for_entry(self, entry: Mapping[str, Any]) -> RunContext:
        """Return the context of one entry of a ``tables`` / ``policies`` list: its options over this run's, the
        same modes, its own warnings (each also shown as this run's)."""
        return RunContext(
            params=dict(self.params, **entry),
            check_mode=self.check_mode,
            diff=self.diff,
            on_warning=self.warn,
            run_command=self.run_command,
        )
