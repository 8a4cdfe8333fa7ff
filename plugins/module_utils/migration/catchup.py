# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The online catch-up: replay the change log in bounded batches until few keys are left, and give up, the
original left in use, when the writers change keys faster than the replay applies them.

Each batch is one short transaction (``migration_sql._replay_steps`` with a limit): no replay statement holds a
snapshot for long, so the dead row versions writers leave on hot rows (TPC-B's branches: a new version per
transaction) are pruned between batches instead of piling up under one statement that reads them again and again.
The batch size follows the measured time (``next_batch``: about ``replay_seconds`` a batch). After each batch the
log says how many keys are left (``backlog_step``) and how many were ever logged (its sequence): ``judge`` turns
that into the writers' rate, the replay's rate, and a verdict (done, not converging: warn, stalled: give up).

``catch_up(run, purpose)`` is the loop; the runner (``migration_run``) calls it before the foreign keys are added
and before the verification. The rest is pure.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any, Sequence

from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import DwhError
from ansible_collections.sigeti.dwh.plugins.module_utils.migration.sql import REPLAY_KEYS, backlog_step, state_update
from ansible_collections.sigeti.dwh.plugins.module_utils.plan.steps import Step

try:
    from psycopg2 import sql
except ImportError:  # reported by the connection layer
    sql = None

MIN_BATCH = 100
RATE_WINDOW = 10.0  # seconds of samples the rates are measured over


@dataclasses.dataclass(frozen=True)
class Sample:
    """What one batch of the catch-up measured."""

    at: float  # time.monotonic() once the batch committed
    left: int  # keys left in the change log after it
    logged: int | None  # keys ever logged (the log's sequence), None when it was never used
    consumed: int  # keys it replayed (distinct: fewer than the log entries it took when keys repeat)
    took: float  # seconds its transaction took
    limit: int  # the most keys it could take (its batch size)


@dataclasses.dataclass(frozen=True)
class Verdict:
    """``judge``'s reading of the samples so far."""

    done: bool  # at most one batch (or ``replay_threshold``) of keys left: the catch-up is over
    slow: bool  # the keys left did not shrink over half the patience: warn
    stalled: bool  # nor over the whole patience: give up
    change_rate: float  # keys logged per second by the writers (over the last RATE_WINDOW seconds)
    replay_rate: float  # keys replayed per second


def next_batch(batch: int, took: float, target: float, largest: int) -> int:
    """The next batch size (log entries): halved when a batch took more than twice ``target`` seconds, doubled (up to
    ``largest``) when it took less than half (a batch that drained the log was quick: a larger limit costs
    nothing)."""
    if took > 2 * target:
        return max(MIN_BATCH, batch // 2)
    if took < target / 2:
        return min(largest, batch * 2)
    return batch


def rates(samples: Sequence[Sample], window: float = RATE_WINDOW) -> tuple[float, float]:
    """``(change rate, replay rate)`` in keys per second over the samples of the last ``window`` seconds."""
    if len(samples) < 2:
        return 0.0, 0.0
    last = samples[-1]
    first = next((s for s in samples if s.at >= last.at - window), samples[0])
    if first is last:
        first = samples[-2]
    span = max(last.at - first.at, 1e-6)
    later = [s for s in samples if first.at < s.at <= last.at]
    replayed = sum(s.consumed for s in later)
    changed = (last.logged - first.logged) if last.logged is not None and first.logged is not None else 0
    return max(changed, 0) / span, replayed / span


def _left_at(samples, moment):
    """Keys left as of the latest sample taken at or before ``moment`` (None when there is none)."""
    found = [s.left for s in samples if s.at <= moment]
    return found[-1] if found else None


def judge(samples: Sequence[Sample], threshold: int, patience: float) -> Verdict:
    """Done when at most ``threshold`` keys, or one batch of them (about ``replay_seconds`` of replay: the batch size
    follows the time a batch takes), are left: the verification's replay takes the rest; slow / stalled when the keys
    left did not shrink since half the ``patience`` / the whole ``patience`` ago (seconds)."""
    last = samples[-1]
    change, replay = rates(samples)
    half = _left_at(samples, last.at - patience / 2)
    whole = _left_at(samples, last.at - patience)
    return Verdict(
        done=last.left <= max(threshold, last.limit),
        slow=half is not None and last.left >= half,
        stalled=whole is not None and last.left >= whole,
        change_rate=change,
        replay_rate=replay,
    )


def figures(samples: Sequence[Sample], verdict: Verdict, started: float) -> dict[str, Any]:
    """The catch-up's progress as the state row keeps it (``result -> 'catchup'``) and events report it."""
    last = samples[-1]
    return {
        "keys_left": last.left,
        "keys_replayed": sum(s.consumed for s in samples),
        "batches": len(samples),
        "batch_keys": last.limit,
        "seconds": round(last.at - started, 1),
        "change_rate": round(verdict.change_rate, 1),
        "replay_rate": round(verdict.replay_rate, 1),
    }


def progress_step(names: dict[str, str], figures_so_far: dict[str, Any] | None) -> Step:
    """The state row's progress, committed with the batch: the keys replayed so far and the last figures."""
    values = {"replayed": sql.SQL("replayed + (SELECT count(*) FROM {})").format(sql.Identifier(REPLAY_KEYS))}
    if figures_so_far:
        values["result"] = sql.SQL("result || jsonb_build_object('catchup', {}::jsonb)").format(
            sql.Literal(json.dumps(figures_so_far, sort_keys=True))
        )
    return Step(state_update(names, **values), "progress of the catch-up, committed with its batch")


def not_converging(display: str, figs: dict[str, Any], patience: float, gave_up: bool) -> str:
    """The warning (``gave_up`` false) or the error message of a catch-up that does not converge."""
    rates_text = "writers change %.0f keys/s while the replay applies %.0f keys/s; %d keys left after %.0f s" % (
        figs["change_rate"],
        figs["replay_rate"],
        figs["keys_left"],
        figs["seconds"],
    )
    if not gave_up:
        return (
            "the catch-up of %s is not converging yet: %s. It gives up once the keys left have not shrunk for %.0f s "
            "(the original stays in use)" % (display, rates_text, patience)
        )
    return (
        "the catch-up of %s does not converge: %s, and they have not shrunk for %.0f s. Nothing was swapped: the "
        "original is in use and untouched, its changes are still logged. What to do: run again when writes are "
        "lighter (the run resumes from here), or run with migrate: abandon to remove the migration (capture "
        "triggers, change log and shadow)" % (display, rates_text, patience)
    )


def catch_up(run: Any, purpose: str) -> dict[str, Any]:
    """Replay the change log in bounded batches until at most ``replay_threshold`` keys are left; return the
    figures. ``run`` is the runner's bookkeeping (``migration_run._Run``: ``plan``, ``replay``, ``event``,
    ``result``). Raises DwhError (the migration kept, to resume or abandon) when it does not converge."""
    plan = run.plan
    options = plan.options
    batch = max(MIN_BATCH, int(options["replay_batch_keys"]))
    largest = max(batch, int(options.get("replay_batch_max") or 200000))
    patience = float(options["catchup_patience"])
    samples, figs, warned = [], None, False
    started = time.monotonic()
    while True:
        backlog = backlog_step(plan.names)
        began = time.monotonic()
        consumed = run.replay([progress_step(plan.names, figs), backlog], limit=batch)
        left, logged = backlog.rows[0]
        now = time.monotonic()
        samples.append(Sample(now, int(left), None if logged is None else int(logged), consumed, now - began, batch))
        verdict = judge(samples, int(options["replay_threshold"]), patience)
        figs = figures(samples, verdict, started)
        run.event("catchup", purpose=purpose, **figs)
        if verdict.done:
            run.result.setdefault("catchup", []).append(dict(figs, purpose=purpose))
            return figs
        if verdict.stalled:
            raise DwhError(not_converging(plan.display, figs, patience, gave_up=True), catchup=figs)
        if verdict.slow and not warned:
            warned = True
            run.result["warnings"].append(not_converging(plan.display, figs, patience, gave_up=False))
        batch = next_batch(batch, samples[-1].took, float(options["replay_seconds"]), largest)
