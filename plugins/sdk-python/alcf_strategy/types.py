"""Plain Python mirrors of the WIT types (`alcf:hpo/types@0.2.0`).

Strategies work with these types only, so they run and test natively without any WebAssembly
machinery; the export layer converts to and from the generated bindings.

- A parameter value is a plain Python value: `float` (float parameter), `int` (int parameter) or
  `str` (a choice).
- An assignment set (`Params`) is a `dict` name -> value.
- Directions are the strings "minimize" and "maximize"; statuses "completed", "failed", "pruned".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple, Union

#: One hyperparameter value: float, int or a choice's string.
Value = Union[float, int, str]
#: One suggestion: a value for every parameter, by name.
Params = Dict[str, Value]

#: The parameter kinds.
KINDS = ("float", "int", "choice")
#: The study directions.
DIRECTIONS = ("minimize", "maximize")
#: The outcome statuses.
STATUSES = ("completed", "failed", "pruned")


@dataclass
class Param:
    """One search-space parameter (WIT `param`).

    `kind` is "float" (closed interval [low, high]; `log`: uniform in ln(value), low > 0),
    "int" (closed integer interval; `log` as for floats, low >= 1) or "choice" (unordered
    `choices`). Build one with `Param.float`, `Param.int` or `Param.choice`; `Space` validates.
    """

    name: str
    kind: str
    low: Optional[Union[float, int]] = None
    high: Optional[Union[float, int]] = None
    log: bool = False
    choices: Optional[List[str]] = None

    @classmethod
    def float(cls, name: str, low, high, log: bool = False) -> "Param":
        """A float parameter in [low, high] (log scale when `log`)."""
        return cls(name, "float", low, high, bool(log), None)

    @classmethod
    def int(cls, name: str, low, high, log: bool = False) -> "Param":
        """An integer parameter in [low, high] (log scale when `log`)."""
        return cls(name, "int", low, high, bool(log), None)

    @classmethod
    def choice(cls, name: str, choices) -> "Param":
        """A categorical parameter over the strings `choices`."""
        return cls(name, "choice", None, None, False, list(choices))

    def describe_domain(self) -> str:
        """A short text of the domain for messages: "float [0, 1]", "log-int [1, 64]", "choice [a, b]"."""
        if self.kind == "choice":
            return "choice [" + ", ".join(map(str, self.choices or [])) + "]"
        return f"{'log-' if self.log else ''}{self.kind} [{self.low}, {self.high}]"


@dataclass
class Study:
    """What a strategy is told about the study it serves (WIT `study`).

    `space` lists the parameters in a fixed order, `direction` is "minimize" or "maximize",
    `objective` names the objective metric, `budget` is the total number of trials or None,
    `parallelism` the number of trials the host keeps running at once and `options` the plugin
    options as JSON object text ("{}" when none; read it with `Options`). `objectives` lists
    every objective as (name, direction), the first being `objective`: one entry unless the
    study is multi-objective (empty means just `objective`). `conditions` lists the conditional
    parameters as (param, parent, values): `param` is active only when the choice `parent` has one
    of `values`; a trial's params lack an inactive parameter (`Space.encode` puts it at the middle),
    and a suggestion may give it or not (the host drops it).
    """

    name: str
    space: List[Param]
    direction: str = "minimize"
    objective: str = "objective"
    seed: int = 0
    budget: Optional[int] = None
    parallelism: int = 1
    options: str = "{}"
    objectives: List[Tuple[str, str]] = field(default_factory=list)
    conditions: List[Tuple[str, str, List[str]]] = field(default_factory=list)

    @classmethod
    def new(cls, space, seed: int = 0, direction: str = "minimize", options: str = "{}") -> "Study":
        """A study named "study" over `space`, objective "objective", no budget, parallelism 1:
        convenient in native tests (adjust the fields as needed)."""
        return cls("study", list(space), direction, "objective", seed, None, 1, options)


@dataclass
class Trial:
    """A trial that was started: its id and its parameters (`dict` name -> value)."""

    id: int
    params: Params


@dataclass
class Outcome:
    """A finished trial (WIT `outcome`).

    `status` is "completed", "failed" or "pruned"; `value` is the objective as reported (not
    negated for maximization), None unless completed; `metrics` every numeric metric the trial
    reported, objective included (`dict` name -> float).
    """

    trial: Trial
    status: str
    value: Optional[float] = None
    metrics: Dict[str, float] = field(default_factory=dict)
    #: Its intermediate reports in order (one dict per epoch for the trainer); empty when it
    #: reported none. A pruned trial's last report is also its `metrics`.
    curve: List[Dict[str, float]] = field(default_factory=list)


@dataclass
class Report:
    """One intermediate report of a running trial (WIT `report`), for `Strategy.judge`: `step`
    is 0 for the trial's first report, then counts up by one (its epoch, for the trainer)."""

    trial: Trial
    step: int
    metrics: Dict[str, float] = field(default_factory=dict)
