#!/usr/bin/env python3
"""Generate the COCO oracle fixture for the Rust BBOB implementation (alcf_testfns::bbob).

Writes host/testfns/tests/data/bbob-coco.json, used by host/testfns/tests/bbob.rs.

Oracle: COCO's Python package `coco-experiment` (module `cocoex`), version 2.8.2, installed
into a private virtual environment:

    python3 -m venv /tmp/cocovenv && /tmp/cocovenv/bin/pip install coco-experiment==2.8.2

Command used to produce the committed fixture (from the repository root):

    /tmp/cocovenv/bin/python scripts/bbob-fixture.py --out host/testfns/tests/data/bbob-coco.json

(or `... scripts/bbob-fixture.py > host/testfns/tests/data/bbob-coco.json`).

Contents (defaults): for every function 1..24, dimensions 2, 5, 10, 20 and instances 1, 2, 3,
15 (the suite is built as `cocoex.Suite('bbob', 'instances: 1,2,3,15', 'dimensions: 2,5,10,20')`;
COCO accepts any dimension of 2, 3, 5, 10, 20, 40 and any positive instance number), COCO's
value `problem(x)` at 5 seeded uniform random points in [-5, 5]^d plus the zero vector and
the all-(-4) vector, together with COCO's optimum: `best_value` and `best_parameter`.
cocoex does not expose those two as Python attributes (`_best_parameter('print')` only
writes `%.16f`-rounded text to a file), so they are read exactly through the C API that the
cocoex extension module exports (`coco_get_bbob_problem`, `coco_problem_get_best_value`,
`coco_problem_get_best_parameter`) via ctypes; the script checks that the ctypes problem
evaluates identically to the suite problem at every point.

The second committed fixture, host/testfns/tests/data/bbob-coco-suite.json, covers the instances
the quality suite uses that the first does not (tuning 4-5, held-out 101-110; scripts/bench-suite.py)
with COCO's optimum and its values at 0 and at -4 only:

    /tmp/cocovenv/bin/python scripts/bbob-fixture.py --instances 4,5,101,102,103,104,105,106,107,108,109,110 \
        --points 0 --out host/testfns/tests/data/bbob-coco-suite.json

--dimensions, --instances, --points and --seed make other (held-out) fixtures, e.g.

    /tmp/cocovenv/bin/python scripts/bbob-fixture.py --dimensions 3,40 --instances 4,9,42,101,110 \
        --seed 7 --out /tmp/bbob-heldout.json
    BBOB_COCO_FIXTURE=/tmp/bbob-heldout.json cargo test -p alcf-testfns --test bbob

All floats are written with repr (Python's json module does so), so they round-trip exactly.
"""

import argparse
import ctypes
import glob
import json
import os
import sys

import numpy as np
import cocoex

FUNCTIONS = list(range(1, 25))
DIMENSIONS = [2, 5, 10, 20]
INSTANCES = [1, 2, 3, 15]
RANDOM_POINTS = 5
SEED = 20240601


def coco_c_api():
    """The C API of the cocoex extension module, through ctypes."""
    candidates = glob.glob(os.path.join(os.path.dirname(cocoex.__file__), "interface*.so"))
    if not candidates:
        raise SystemExit("cannot find cocoex's interface extension module")
    lib = ctypes.CDLL(candidates[0])
    ptr = ctypes.c_void_p
    dptr = ctypes.POINTER(ctypes.c_double)
    lib.coco_get_bbob_problem.restype = ptr
    lib.coco_get_bbob_problem.argtypes = [ctypes.c_size_t] * 3
    lib.coco_problem_get_best_value.restype = ctypes.c_double
    lib.coco_problem_get_best_value.argtypes = [ptr]
    lib.coco_problem_get_best_parameter.restype = ctypes.c_int
    lib.coco_problem_get_best_parameter.argtypes = [ptr, dptr]
    lib.coco_evaluate_function.restype = None
    lib.coco_evaluate_function.argtypes = [ptr, dptr, dptr]
    lib.coco_problem_free.restype = None
    lib.coco_problem_free.argtypes = [ptr]
    return lib


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="output file (default: stdout)")
    ap.add_argument("--dimensions", default=",".join(map(str, DIMENSIONS)), help="comma-separated dimensions")
    ap.add_argument("--instances", default=",".join(map(str, INSTANCES)), help="comma-separated instances")
    ap.add_argument("--seed", type=int, default=SEED, help="seed of the random points")
    ap.add_argument("--points", type=int, default=RANDOM_POINTS, help="random points per problem (besides 0 and -4)")
    args = ap.parse_args()
    dimensions = [int(v) for v in args.dimensions.split(",")]
    instances = [int(v) for v in args.instances.split(",")]

    lib = coco_c_api()
    suite = cocoex.Suite(
        "bbob", "instances: " + ",".join(map(str, instances)), "dimensions: " + ",".join(map(str, dimensions))
    )
    rng = np.random.default_rng(args.seed)
    problems = []
    for f in FUNCTIONS:
        for d in dimensions:
            for i in instances:
                problem = suite.get_problem_by_function_dimension_instance(f, d, i)
                assert problem.id == "bbob_f%03d_i%02d_d%02d" % (f, i, d), problem.id
                points = [rng.uniform(-5.0, 5.0, d) for _ in range(args.points)]
                points.append(np.zeros(d))
                points.append(np.full(d, -4.0))
                values = [float(problem(x)) for x in points]

                raw = lib.coco_get_bbob_problem(f, d, i)
                best_value = lib.coco_problem_get_best_value(raw)
                best = (ctypes.c_double * d)()
                if not lib.coco_problem_get_best_parameter(raw, best):
                    raise SystemExit("no best parameter for " + problem.id)
                y = ctypes.c_double()
                for x, v in zip(points, values):
                    arr = (ctypes.c_double * d)(*x)
                    lib.coco_evaluate_function(raw, arr, ctypes.byref(y))
                    assert y.value == v or (np.isnan(v) and np.isnan(y.value)), (problem.id, y.value, v)
                lib.coco_problem_free(raw)

                problems.append(
                    {
                        "id": problem.id,
                        "function": f,
                        "dimension": d,
                        "instance": i,
                        "best_value": best_value,
                        "best_parameter": [float(v) for v in best],
                        "points": [[float(v) for v in x] for x in points],
                        "values": values,
                    }
                )
                problem.free()

    doc = {
        "generator": "scripts/bbob-fixture.py",
        "cocoex_version": cocoex.__version__,
        "seed": args.seed,
        "problems": problems,
    }
    text = json.dumps(doc, separators=(",", ":"), allow_nan=False)
    text = text.replace('{"id"', '\n{"id"') + "\n"
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
