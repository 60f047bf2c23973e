#!/usr/bin/env python3
"""Cross-language check of the Python SDK against the Rust SDK: Space and Rng on given cases.

Reads ONE JSON document from stdin::

    {
      "space":  [{"name": "x", "kind": "float", "low": -5, "high": 10, "log": false},
                 {"name": "n", "kind": "int", "low": 1, "high": 4, "log": false},
                 {"name": "c", "kind": "choice", "choices": ["a", "b"]}],
      "points": [[0.1, 0.5, 0.9], ...],   # unit-cube points, one coordinate per parameter
      "seed":   42,                       # an integer in [0, 2^64)
      "draws":  10                        # how many values of each Rng stream below
    }

`log` may be omitted (false); `choices` is only read for "choice", `low`/`high` only for
"float" and "int". Float bounds are converted with `float()`, int bounds must be integers.

Prints ONE JSON document to stdout (keys in this order)::

    {
      "decoded": [{name: value, ...} per point],   # Space.decode(point); float params give JSON
                                                   # floats (always with a "." or an exponent),
                                                   # int params JSON integers, choices strings
      "encoded": [[u, ...] per decoded],           # Space.encode(decoded[i])
      "snapped": [[u, ...] per point],             # Space.snap(point)
      "rng": {
        "u64":        ["<decimal>", ...],  # first `draws` Rng(seed).next_u64(), as decimal strings
        "f64":        [x, ...],            # first `draws` Rng(seed).random()  (Rust `f64()`)
        "normal":     [x, ...],            # first `draws` Rng(seed).normal()
        "below7":     [k, ...],            # first `draws` Rng(seed).below(7), JSON integers
        "derive_1_5": ["<decimal>", ...]   # first 5 Rng.derive(seed, 5).next_u64(), decimal strings
      }
    }

Each "rng" list comes from a FRESH generator (`Rng(seed)` anew for "u64", "f64", "normal" and
"below7"). Floats are printed with Python's `repr` (the shortest text that round-trips), so a
reader that parses JSON numbers to the nearest f64 (serde_json does) gets exactly the Python
values: compare with `==`, bit for bit. A parameter the space refuses exits with status 2 and
the `PluginError` text on stderr.

Usage (from the repository root)::

    echo '{"space": [...], "points": [...], "seed": 42, "draws": 10}' \\
        | python3 plugins/sdk-python/tests/space_cases.py
"""

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import alcf_strategy as hpo  # noqa: E402


def param_of(d) -> hpo.Param:
    """One `space` entry of the input as a `Param`."""
    kind = d["kind"]
    if kind == "float":
        return hpo.Param.float(d["name"], float(d["low"]), float(d["high"]), bool(d.get("log", False)))
    if kind == "int":
        return hpo.Param.int(d["name"], int(d["low"]), int(d["high"]), bool(d.get("log", False)))
    if kind == "choice":
        return hpo.Param.choice(d["name"], list(d["choices"]))
    raise SystemExit(f"space_cases: unknown kind `{kind}`")


def cases(doc) -> dict:
    """The output document for the input document `doc`."""
    space = hpo.Space([param_of(d) for d in doc["space"]])
    points = [[float(u) for u in x] for x in doc.get("points", [])]
    seed = int(doc.get("seed", 0))
    draws = int(doc.get("draws", 0))
    decoded = [space.decode(x) for x in points]

    def stream(f):
        rng = hpo.Rng(seed)
        return [f(rng) for _ in range(draws)]

    derived = hpo.Rng.derive(seed, 5)
    return {
        "decoded": decoded,
        "encoded": [space.encode(a) for a in decoded],
        "snapped": [space.snap(x) for x in points],
        "rng": {
            "u64": stream(lambda r: str(r.next_u64())),
            "f64": stream(lambda r: r.random()),
            "normal": stream(lambda r: r.normal()),
            "below7": stream(lambda r: r.below(7)),
            "derive_1_5": [str(derived.next_u64()) for _ in range(5)],
        },
    }


def main() -> int:
    """Reads the input from stdin, prints the output to stdout."""
    doc = json.load(sys.stdin)
    try:
        out = cases(doc)
    except hpo.PluginError as e:
        print(f"space_cases: {e}", file=sys.stderr)
        return 2
    json.dump(out, sys.stdout, allow_nan=False)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
