"""The observed history, in unit-cube coordinates, with "lower is better" objectives
(plugins/sdk/src/history.rs)."""

import math

from .errors import PluginError
from .types import DIRECTIONS


class History:
    """Finished trials as unit-cube points (snapped, see `Space.snap`).

    `y` holds the objective converted so that **lower is better** whatever the study's direction
    (negated for "maximize"). Failed and pruned trials, and completed ones whose value is missing
    or not finite, go to `failed` / `failed_ids` (their points are still known, e.g. to avoid
    suggesting them again). `x[i]`, `y[i]` and `ids[i]` describe one completed trial.
    """

    def __init__(self, direction: str = "minimize"):
        if direction not in DIRECTIONS:
            raise PluginError(f"unknown direction `{direction}` (minimize or maximize)")
        self.direction = direction
        self.x = []
        self.y = []
        self.ids = []
        self.failed = []
        self.failed_ids = []

    def __repr__(self) -> str:
        return f"History({self.direction!r}, {len(self.y)} completed, {len(self.failed)} failed)"

    def observe(self, space, outcomes) -> None:
        """Records outcomes. An outcome whose parameters do not fit the space raises
        `PluginError` ("trial 3: ...") and nothing of the batch after it is recorded."""
        for o in outcomes:
            try:
                x = space.snap(space.encode(o.trial.params))
            except PluginError as e:
                raise PluginError(f"trial {o.trial.id}: {e}") from None
            v = o.value
            if o.status == "completed" and v is not None and math.isfinite(v):
                self.push(o.trial.id, x, v if self.direction == "minimize" else -v)
            else:
                self.failed.append(x)
                self.failed_ids.append(o.trial.id)

    def push(self, id: int, x, y: float) -> None:
        """Adds a completed point directly (`y`: lower is better)."""
        self.x.append(list(x))
        self.y.append(y)
        self.ids.append(id)

    def __len__(self) -> int:
        """Number of completed trials with a value."""
        return len(self.y)

    def is_empty(self) -> bool:
        """True when no trial completed with a value."""
        return not self.y

    def n_finished(self) -> int:
        """Number of finished trials, failed included."""
        return len(self.y) + len(self.failed)

    def best(self):
        """``(index, y)`` of the best (lowest) completed trial, the first of equals; None when empty."""
        best = None
        for i, v in enumerate(self.y):
            if best is not None and best[1] <= v:
                continue
            best = (i, v)
        return best

    def all_points(self) -> list:
        """Every known point, completed ones first, then failed ones."""
        return self.x + self.failed

    def to_study_value(self, y: float) -> float:
        """Objective value in the study's own direction (undoes the negation for maximization)."""
        return y if self.direction == "minimize" else -y


def encode_trials(space, trials) -> list:
    """Encodes trials (e.g. the pending ones) as snapped points, skipping any whose parameters do
    not fit the space."""
    out = []
    for t in trials:
        try:
            out.append(space.snap(space.encode(t.params)))
        except PluginError:
            pass
    return out
