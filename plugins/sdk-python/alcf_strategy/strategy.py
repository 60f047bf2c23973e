"""The `Strategy` base class, and the bookkeeping the export layer and `native.run` share."""

from __future__ import annotations

import math
from collections.abc import Mapping

from .history import History
from .rng import Rng
from .space import Space


class Strategy:
    """A search strategy. One instance serves one study: the host calls the constructor once
    (WIT `init`), then `suggest` and `observe` in any interleaving. On resume the host replays
    every finished trial through `observe` into a fresh instance, so a strategy needs no
    persistence of its own.

    Class attributes: `name`, `version`, `description` and `capabilities` (any of "log",
    "storage", "llm"), returned by WIT `describe`; `prunes = True` asks the host for running
    trials' reports (`judge`); `multi_objective = True` says it optimizes every objective in
    `study.objectives` at once.

    `__init__(study)` sets `self.study`, `self.space = Space(study.space)`,
    `self.history = History(study.direction)`, `self.seed = study.seed` and `self.seen = 0` (the
    highest trial id observed). Before the subclass's `observe` runs, `self.history` and
    `self.seen` already include the outcomes.
    """

    name = ""
    version = "0.1.0"
    description = ""
    capabilities: list = []
    prunes = False
    multi_objective = False

    def __init__(self, study):
        self.study = study
        self.space = Space(study.space)
        self.history = History(study.direction)
        self.seed = study.seed
        self.seen = 0

    def suggest(self, count: int, pending: list) -> list:
        """Proposes up to `count` assignments (dicts naming every parameter). `pending` are
        trials started but not finished: avoid proposing them again."""
        raise NotImplementedError(f"{type(self).__name__} does not implement suggest")

    def observe(self, outcomes: list) -> None:
        """Finished trials (`Outcome`s), in the order they finished. Default: nothing
        (`self.history` and `self.seen` are already updated)."""

    def judge(self, reports: list) -> list:
        """Running trials' intermediate reports (`Report`s), in the order they arrived: one
        verdict each, in the same order, "continue" or "prune". Called only when `prunes` is
        set. After a resume the reports of trials still running come again: decide from what was
        seen, not from the clock, and the decisions come out the same. Default: all continue."""
        return ["continue"] * len(reports)

    def next_trial_id(self, pending) -> int:
        """1 + the highest trial id seen so far, observed or pending: the id the next trial
        will most likely get."""
        return max([self.seen] + [t.id for t in pending]) + 1

    def trial_rng(self, trial_id: int) -> Rng:
        """``Rng.derive(self.seed, trial_id)``: one stream per trial id, so a resumed study
        (fresh instance, replayed history) continues its sequence instead of repeating it."""
        return Rng.derive(self.seed, trial_id)


def describe_info(cls) -> dict:
    """The `describe` answer of strategy class `cls`: name, version, description, capabilities."""
    name = getattr(cls, "name", "") or cls.__name__
    description = getattr(cls, "description", "")
    if not description and cls.__doc__ and cls.__doc__ is not Strategy.__doc__:
        description = cls.__doc__.strip().splitlines()[0]
    return {
        "name": str(name),
        "version": str(getattr(cls, "version", "0.1.0")),
        "description": str(description),
        "capabilities": [str(c) for c in getattr(cls, "capabilities", [])],
        "prunes": bool(getattr(cls, "prunes", False)),
        "multi_objective": bool(getattr(cls, "multi_objective", False)),
    }


def deliver(strategy, outcomes) -> None:
    """Updates `strategy.history` and `strategy.seen` with `outcomes`, then calls its `observe`."""
    outcomes = list(outcomes)
    history, space = getattr(strategy, "history", None), getattr(strategy, "space", None)
    if isinstance(history, History) and isinstance(space, Space):
        history.observe(space, outcomes)
    if outcomes:
        strategy.seen = max([getattr(strategy, "seen", 0)] + [o.trial.id for o in outcomes])
    strategy.observe(outcomes)


def check_verdicts(verdicts, count: int) -> list:
    """`judge`'s answer checked: a list of `count` verdicts, each "continue" or "prune"."""
    verdicts = list(verdicts)
    if len(verdicts) != count:
        raise ValueError(f"judge returned {len(verdicts)} verdicts for {count} reports")
    for i, v in enumerate(verdicts):
        if v not in ("continue", "prune"):
            raise ValueError(f"judge: verdict {i} is {v!r}, not \"continue\" or \"prune\"")
    return verdicts


def check_suggestion(kinds: dict, params, index: int) -> dict:
    """Checks one suggestion against the parameter kinds (name -> "float"/"int"/"choice") and
    returns it as a dict of canonical values: an int parameter's value as `int` (an integral
    float is accepted), a float's as `float`, a choice's as `str`. A value of the wrong type (a
    bool, a non-integral float for an int, ...) is a bug in the strategy: `TypeError`."""
    if not isinstance(params, Mapping):
        raise TypeError(f"suggestion {index} is a {type(params).__name__}, not a dict name -> value")
    out = {}
    for name, v in params.items():
        kind = kinds.get(name)
        if kind is None:  # not in the space: typed by its Python type, the host rejects it
            kind = "choice" if isinstance(v, str) else "int" if isinstance(v, int) else "float"
        if kind == "int":
            if isinstance(v, int) and not isinstance(v, bool):
                out[name] = int(v)
                continue
            if isinstance(v, float) and math.isfinite(v) and v.is_integer():
                out[name] = int(v)
                continue
        elif kind == "float":
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out[name] = float(v)
                continue
        elif isinstance(v, str):
            out[name] = v
            continue
        raise TypeError(f"suggestion {index}: parameter `{name}` is a {kind} parameter, got {v!r}")
    return out
