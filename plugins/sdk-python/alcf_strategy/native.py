"""Driving a strategy natively, the way the host does: for tests and native benchmarks
(plugins/sdk/src/native.rs)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Optional

from .errors import PluginError
from .strategy import check_suggestion, deliver
from .types import Outcome, Params, Trial


@dataclass
class Record:
    """One finished trial of a native run; `value` None: the objective reported a failure."""

    params: Params
    value: Optional[float]


def run(strategy, study, n: int, parallel: int, objective) -> list:
    """Runs `strategy` (a `Strategy` subclass, instantiated with `study`, or an instance) for
    `n` trials with up to `parallel` pending at once, and returns the `Record`s in finishing order.

    Trial ids count from 0; the oldest pending trial finishes first; `objective(params)` returns
    the value in the study's direction, or None for a failed trial. Suggestions are checked as the
    export layer does (`TypeError` on a value of the wrong type, `AssertionError` on a missing
    parameter); one that duplicates a pending trial, or an empty answer with nothing pending,
    raises `PluginError`.
    """
    if isinstance(strategy, type):
        strategy = strategy(study)
    kinds = {p.name: p.kind for p in study.space}
    parallel = max(int(parallel), 1)
    pending = deque()
    records = []
    next_id = 0
    while len(records) < n:
        started = len(records) + len(pending)
        want = min(parallel - len(pending), n - started)
        if want > 0:
            sugg = list(strategy.suggest(want, list(pending)))
            if not sugg and not pending:
                raise PluginError("strategy suggested nothing")
            for i, params in enumerate(sugg[:want]):
                params = check_suggestion(kinds, params, i)
                for p in study.space:
                    assert p.name in params, f"suggestion lacks `{p.name}`"
                if any(t.params == params for t in pending):
                    raise PluginError(f"suggestion {params!r} duplicates a pending trial")
                pending.append(Trial(next_id, params))
                next_id += 1
        if pending:
            t = pending.popleft()
            value = objective(t.params)
            outcome = Outcome(
                trial=t,
                status="completed" if value is not None else "failed",
                value=value,
                metrics={study.objective: value} if value is not None else {},
            )
            deliver(strategy, [outcome])
            records.append(Record(t.params, value))
    return records


def best(records, direction: str = "minimize"):
    """Best value of a run in the study's direction; None when every trial failed."""
    vals = [r.value for r in records if r.value is not None]
    if not vals:
        return None
    return min(vals) if direction == "minimize" else max(vals)
