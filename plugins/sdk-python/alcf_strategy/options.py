"""Plugin options (`study.options`): a JSON object with typed, checked getters that fall back to
defaults. Every error is an `OptionsError` whose text is the Rust SDK's (plugins/sdk/src/json.rs),
e.g. "options: unknown option `bta` (known: beta, n_init)" or
"options: `gamma` must be a number, got the string \\"x\\"", so the host reports it as a
configuration mistake.

Numbers are read as floats, as the Rust reader does (JSON has one number type); NaN and Infinity
are not JSON and are rejected.
"""

from __future__ import annotations

import json
import math

from ._display import rust_float, rust_str_debug
from .errors import OPTIONS_ERROR_PREFIX, OptionsError


class _NotJson(ValueError):
    pass


def _reject_constant(name):
    raise _NotJson(f"`{name}` is not JSON")


def describe(v) -> str:
    """A short description of a JSON value for error messages (`the string "ucb"`, `the number 2.5`)."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return f"the number {rust_float(v)}"
    if isinstance(v, str):
        n = len(v.encode("utf-8"))
        return f"the string {rust_str_debug(v)}" if n <= 40 else f"a string of {n} bytes"
    if isinstance(v, list):
        return f"an array of {len(v)} items"
    if isinstance(v, dict):
        return f"an object with {len(v)} keys"
    return repr(v)


class Options:
    """`Options(text)`: parses `study.options`. Empty text (or None, or `null`) means no options;
    anything but a JSON object raises `OptionsError`."""

    def __init__(self, text=None):
        self._map = {}
        if text is None or not str(text).strip():
            return
        text = str(text)
        try:
            v = json.loads(text, parse_int=float, parse_constant=_reject_constant)
        except _NotJson as e:
            raise OptionsError(f"{OPTIONS_ERROR_PREFIX} invalid JSON: {e}") from None
        except json.JSONDecodeError as e:
            at = len(text[: e.pos].encode("utf-8"))
            msg = e.msg[:1].lower() + e.msg[1:]
            raise OptionsError(f"{OPTIONS_ERROR_PREFIX} invalid JSON at byte {at}: {msg}") from None
        except RecursionError:
            raise OptionsError(f"{OPTIONS_ERROR_PREFIX} invalid JSON: nested too deeply") from None
        if v is None:
            return
        if not isinstance(v, dict):
            raise OptionsError(f"{OPTIONS_ERROR_PREFIX} the plugin options must be a JSON object")
        self._map = v

    def __repr__(self) -> str:
        return f"Options({self._map!r})"

    @staticmethod
    def invalid(key: str, message: str) -> OptionsError:
        """An options error about `key` (returned, for you to raise), for checks of a value's
        meaning the getters cannot do: ``raise Options.invalid("gamma", "must be in (0, 1]")``
        -> "options: `gamma` must be in (0, 1]"."""
        return OptionsError(f"{OPTIONS_ERROR_PREFIX} `{key}` {message}")

    def keys(self) -> list:
        """The option names given, sorted."""
        return sorted(self._map)

    def get(self, key: str):
        """The raw JSON value of `key` (numbers as floats), None when absent."""
        return self._map.get(key)

    def check_known(self, known) -> None:
        """Raises `OptionsError` on an option name not in `known` (catches typos in
        configurations), naming the first unknown one (in sorted order) and listing the known ones."""
        known = list(known)
        for k in sorted(self._map):
            if k not in known:
                listed = "this plugin takes no options" if not known else "known: " + ", ".join(known)
                raise OptionsError(f"{OPTIONS_ERROR_PREFIX} unknown option `{k}` ({listed})")

    @staticmethod
    def _mistyped(key: str, expected: str, got) -> OptionsError:
        return Options.invalid(key, f"must be {expected}, got {describe(got)}")

    def float(self, key: str, default: float) -> float:
        """A finite number; `default` when absent or null."""
        v = self._map.get(key)
        if v is None:
            return default
        if isinstance(v, float) and math.isfinite(v):
            return v
        raise Options._mistyped(key, "a number", v)

    def int(self, key: str, default: int) -> int:
        """A non-negative integer below 1e15 (Rust `usize`); `default` when absent or null."""
        v = self._map.get(key)
        if v is None:
            return default
        if isinstance(v, float) and 0.0 <= v < 1e15 and v == math.floor(v):
            return int(v)
        raise Options._mistyped(key, "a non-negative integer", v)

    def bool(self, key: str, default: bool) -> bool:
        """true or false; `default` when absent or null."""
        v = self._map.get(key)
        if v is None:
            return default
        if isinstance(v, bool):
            return v
        raise Options._mistyped(key, "true or false", v)

    def str(self, key: str, default: str) -> str:
        """A string; `default` when absent or null."""
        v = self._map.get(key)
        if v is None:
            return default
        if isinstance(v, str):
            return v
        raise Options._mistyped(key, "a string", v)
