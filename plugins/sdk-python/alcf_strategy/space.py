"""Mapping between a search space and the unit cube [0,1]^d, one coordinate per parameter.

The same formulas, in the same order, as the Rust SDK (plugins/sdk/src/space.rs), so a point
decodes to the same values bit for bit (the float operations and `math.log`/`math.exp` are the
ones Rust's `ln`/`exp` call natively).

Encoding, per parameter kind (`u` is the coordinate):

- **float**: ``low + u*(high - low)``; with `log`, uniform in ln(value):
  ``exp(ln low + u*(ln high - ln low))``.
- **int**: the interval is cut into ``high - low + 1`` equal bins (equal in ln-space with `log`,
  the bin of `v` being [ln v, ln(v+1))), `u` decodes to the bin it falls into; a value encodes to
  its bin's centre (ln(v + 1/2) with `log`), so ``decode(encode(v)) == v`` and every `u` in [0,1]
  decodes inside [low, high].
- **choice** (index-based): `k` equal bins, `u` decodes to choice ``floor(u*k)`` (clamped), a
  choice encodes to its bin's centre ``(i + 1/2)/k``. Algorithms that must not treat categories as
  ordered use `is_choice` / `choice_index` or `one_hot`.

`Space.snap` maps any point to the canonical representative of the assignment it decodes to (bin
centres for ints and choices): use it before fitting models or comparing points.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from ._display import rust_float
from .errors import PluginError
from .types import Param

_U64_MAX = (1 << 64) - 1


def _clamp(x, lo, hi):
    # Rust's f64::clamp / Ord::clamp: NaN stays NaN.
    if x < lo:
        x = lo
    if x > hi:
        x = hi
    return x


def _round(x: float) -> float:
    # Rust's f64::round: half away from zero.
    if not math.isfinite(x):
        return x
    t = float(math.trunc(x))
    if abs(x - t) >= 0.5:
        t += math.copysign(1.0, x)
    return math.copysign(t, x) if t == 0.0 else t


def _as_f64(v):
    # Rust's Value::as_f64: floats and ints, not choices (nor bools, which Rust has no value for).
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    try:
        return float(v)
    except OverflowError:
        return None



# The coordinate of a parameter a trial lacks (inactive in a conditional space).
INACTIVE = 0.5

class Space:
    """A validated search space (`Space(params)`; raises `PluginError` with the Rust SDK's texts)."""

    def __init__(self, params):
        checked = []
        for i, p in enumerate(params):
            if any(q.name == p.name for q in checked):
                raise PluginError(f"parameter `{p.name}` is declared twice")
            if p.kind == "float":
                low, high = p.low, p.high
                try:
                    low, high = float(low), float(high)
                except (TypeError, ValueError, OverflowError):
                    raise PluginError(f"parameter `{p.name}`: bad float range [{low}, {high}]") from None
                if not (math.isfinite(low) and math.isfinite(high) and low <= high):
                    raise PluginError(
                        f"parameter `{p.name}`: bad float range [{rust_float(low)}, {rust_float(high)}]"
                    )
                if p.log and low <= 0.0:
                    raise PluginError(f"parameter `{p.name}`: log scale needs low > 0")
                p = Param(p.name, "float", low, high, bool(p.log), None)
            elif p.kind == "int":
                low, high = p.low, p.high
                if not all(_is_integral(v) for v in (low, high)):
                    raise PluginError(f"parameter `{p.name}`: bad int range [{low}, {high}]")
                low, high = int(low), int(high)
                if low > high:
                    raise PluginError(f"parameter `{p.name}`: bad int range [{low}, {high}]")
                if p.log and low < 1:
                    raise PluginError(f"parameter `{p.name}`: log scale needs low >= 1")
                p = Param(p.name, "int", low, high, bool(p.log), None)
            elif p.kind == "choice":
                if not p.choices:
                    raise PluginError(f"parameter `{p.name}`: no choices")
                p = Param(p.name, "choice", None, None, False, [str(c) for c in p.choices])
            else:
                raise PluginError(f"parameter `{p.name}`: unknown kind `{p.kind}` (float, int or choice)")
            checked.append(p)
        self._params = checked

    def __repr__(self) -> str:
        return f"Space({self._params!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Space) and self._params == other._params

    @property
    def params(self) -> "_Params":
        """The parameters, in order (bounds normalized: floats as `float`, ints as `int`).

        A list; calling it, ``space.params()``, gives the same list (Rust's method)."""
        return _Params(self._params)

    @property
    def dim(self) -> "_Dim":
        """Number of unit-cube coordinates (one per parameter).

        An int; calling it, ``space.dim()``, gives the same number (Rust's method)."""
        return _Dim(len(self._params))

    def is_choice(self, j: int) -> bool:
        """True when parameter `j` is a choice."""
        return self._params[j].kind == "choice"

    def n_choices(self, j: int) -> int:
        """Number of categories of parameter `j` (0 when it is not a choice)."""
        p = self._params[j]
        return len(p.choices) if p.kind == "choice" else 0

    def n_values(self, j: int):
        """Number of distinct values of a discrete parameter (ints, choices); None for floats."""
        p = self._params[j]
        if p.kind == "float":
            return None
        if p.kind == "int":
            return (p.high - p.low) + 1
        return len(p.choices)

    def choice_index(self, j: int, u: float) -> int:
        """The category index that coordinate `u` of choice parameter `j` decodes to."""
        k = max(self.n_choices(j), 1)
        v = _clamp(u, 0.0, 1.0) * float(k)
        i = 0 if math.isnan(v) else int(v)  # Rust `as usize`: truncation, NaN -> 0
        return min(i, k - 1)

    def choice_coord(self, j: int, i: int) -> float:
        """The coordinate (bin centre) of category `i` of choice parameter `j`."""
        return (float(i) + 0.5) / float(max(self.n_choices(j), 1))

    def decode_value(self, j: int, u: float):
        """Decodes coordinate `u` of parameter `j` (a non-finite `u` counts as 0.5)."""
        u = float(u)
        u = _clamp(u, 0.0, 1.0) if math.isfinite(u) else 0.5
        p = self._params[j]
        if p.kind == "float":
            low, high = p.low, p.high
            if p.log:
                v = math.exp(math.log(low) + u * (math.log(high) - math.log(low)))
            else:
                v = low + u * (high - low)
            return _clamp(v, low, high)
        if p.kind == "int":
            low, high = p.low, p.high
            if p.log:
                a = math.log(float(low))
                b = math.log(float(high) + 1.0)
                v = math.floor(math.exp(a + u * (b - a)))
            else:
                n = float(high - low) + 1.0
                v = low + math.floor(u * n)
            return _clamp(v, low, high)
        return p.choices[self.choice_index(j, u)]

    def encode_value(self, j: int, v) -> float:
        """Encodes value `v` of parameter `j`; raises `PluginError` when it does not fit."""
        p = self._params[j]

        def bad():
            return PluginError(f"parameter `{p.name}`: value {v!r} does not fit {p.describe_domain()}")

        if p.kind == "float":
            x = _as_f64(v)
            if x is None:
                raise bad()
            low, high = p.low, p.high
            if high <= low:
                u = 0.5
            elif p.log:
                if not x > 0.0:
                    raise bad()
                u = (math.log(x) - math.log(low)) / (math.log(high) - math.log(low))
            else:
                u = (x - low) / (high - low)
        elif p.kind == "int":
            x = _as_f64(v)
            if x is None:
                raise bad()
            x = _clamp(_round(x), float(p.low), float(p.high))
            if p.log:
                a = math.log(float(p.low))
                b = math.log(float(p.high) + 1.0)
                u = (math.log(x + 0.5) - a) / (b - a) if x + 0.5 > 0.0 else math.nan
            else:
                u = (x - float(p.low) + 0.5) / (float(p.high - p.low) + 1.0)
        else:
            if not isinstance(v, str) or v not in p.choices:
                raise bad()
            u = (float(p.choices.index(v)) + 0.5) / float(len(p.choices))
        if not math.isfinite(u):
            raise bad()
        return _clamp(u, 0.0, 1.0)

    def decode(self, x) -> dict:
        """Decodes a unit-cube point into a full assignment (a dict, in the space's order)."""
        if len(x) != len(self._params):
            raise ValueError("point has the wrong dimension")
        return {p.name: self.decode_value(j, x[j]) for j, p in enumerate(self._params)}

    def encode(self, params) -> list:
        """Encodes an assignment (a dict) into the unit cube. A parameter it lacks (inactive in a
        conditional space: the host never drops any other) is at `INACTIVE`, the middle."""
        if not isinstance(params, Mapping):
            params = dict(params)
        out = []
        for j, p in enumerate(self._params):
            out.append(self.encode_value(j, params[p.name]) if p.name in params else INACTIVE)
        return out

    def snap(self, x) -> list:
        """The canonical representative of the assignment `x` decodes to."""
        out = []
        for j, p in enumerate(self._params):
            if p.kind == "float":
                u = float(x[j])
                out.append(_clamp(u, 0.0, 1.0) if math.isfinite(u) else 0.5)
            else:
                try:
                    out.append(self.encode_value(j, self.decode_value(j, x[j])))
                except PluginError:
                    out.append(0.5)
        return out

    def same_point(self, a, b, tol: float) -> bool:
        """True when `a` and `b` decode to the same assignment, up to `tol` on float coordinates."""
        for j, p in enumerate(self._params):
            if p.kind == "float":
                if not abs(a[j] - b[j]) <= tol:
                    return False
            elif self.decode_value(j, a[j]) != self.decode_value(j, b[j]):
                return False
        return True

    def one_hot_dim(self) -> int:
        """Length of the one-hot feature vector: 1 per float/int, k per k-way choice."""
        return sum(max(self.n_choices(j), 1) for j in range(len(self._params)))

    def one_hot(self, x) -> list:
        """One-hot features of a unit-cube point: numeric coordinates copied, choices expanded."""
        out = []
        for j, xj in enumerate(list(x)[: len(self._params)]):
            k = self.n_choices(j)
            if k == 0:
                out.append(xj)
            else:
                i = self.choice_index(j, xj)
                out.extend(1.0 if c == i else 0.0 for c in range(k))
        return out

    def sample(self, rng) -> list:
        """Draws a uniformly random assignment as a (snapped) unit-cube point (`rng.unit_point`)."""
        return self.snap(rng.unit_point(len(self._params)))

    def sample_distinct(self, rng, taken, count: int) -> list:
        """Uniform random search's draw: `count` points, each redrawn (up to 100 times) while it
        decodes to the same assignment as one in `taken` or an earlier one of this call."""
        taken = list(taken)
        out = []
        for _ in range(count):
            x = self.sample(rng)
            for _ in range(100):
                if not any(self.same_point(t, x, 0.0) for t in taken):
                    break
                x = self.sample(rng)
            taken.append(x)
            out.append(x)
        return out

    def cardinality(self):
        """Total number of distinct assignments; None when a float makes it infinite (or it
        exceeds 2^64 - 1, where the Rust SDK's count overflows)."""
        n = 1
        for j in range(len(self._params)):
            k = self.n_values(j)
            if k is None:
                return None
            n *= k
            if n > _U64_MAX:
                return None
        return n


class _Dim(int):
    """An int that may also be called: ``space.dim`` and ``space.dim()`` are both the dimension."""

    def __call__(self) -> int:
        return int(self)


class _Params(list):
    """A list that may also be called: ``space.params`` and ``space.params()`` are both the list."""

    def __call__(self) -> list:
        return list(self)


def _is_integral(v) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return True
    return isinstance(v, float) and math.isfinite(v) and v.is_integer()
