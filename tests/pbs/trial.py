#!/usr/bin/env python3
"""The trial program of the pbs executor's end-to-end tests (tests/e2e/pbs.rs).

Speaks the trial protocol: reads params.json from the trial directory (argv[1]), appends two
metrics lines (TRIAL_EPOCHS of them, default 2, over TRIAL_SLEEP_S seconds), writes result.json
atomically. It also writes seen.json with what it saw (its argv,
the pinning variables, its parameters) and appends its job name to the study's ledger, so the
tests can check that values arrive intact and that no trial runs twice.

Parameters: x (float) is the objective's input; `mode` (when present) picks a behaviour:
"fail" exits 3 with a message on stderr; "slow" sleeps TRIAL_SLOW_S (default 30) seconds;
"slow-once" does so only on its first run in that directory (a run killed with its pilot).
"""
import json
import os
import sys
import time

trial_dir = sys.argv[1]
ledger = sys.argv[2] if len(sys.argv) > 2 else None
with open(os.path.join(trial_dir, "params.json")) as f:
    params = json.load(f)
x = float(params["x"])
mode = str(params.get("mode", "ok"))
seen = {
    "argv": sys.argv,
    "params": params,
    "env": {k: os.environ.get(k) for k in ("ZE_AFFINITY_MASK", "ALCF_SLOT", "ZE_ENABLE_PCI_ID_DEVICE_ORDER", "TRIAL_TAG",
                                     "ALCF_TRIAL_ID", "ALCF_TRIAL_DIR", "ALCF_PARAMS")},
    "cwd": os.getcwd(),
    "started": time.time(),
}
with open(os.path.join(trial_dir, "seen.json"), "w") as f:
    json.dump(seen, f)
if ledger:
    with open(ledger, "a") as f:
        f.write("%s\n" % os.path.basename(trial_dir.rstrip("/")))

sleep = float(os.environ.get("TRIAL_SLEEP_S", "0.2"))
marker = os.path.join(trial_dir, "slow-once.marker")
if mode == "slow" or (mode == "slow-once" and not os.path.exists(marker)):
    open(marker, "w").close()
    sleep = float(os.environ.get("TRIAL_SLOW_S", "30"))
epochs = int(os.environ.get("TRIAL_EPOCHS", "2"))
with open(os.path.join(trial_dir, "metrics.jsonl"), "a") as f:
    for epoch in range(epochs):
        time.sleep(sleep / epochs)
        f.write(json.dumps({"epoch": epoch, "loss": (x - 0.3) ** 2 + 0.5 / (epoch + 1)}) + "\n")
        f.flush()
if mode.startswith("fail"):
    print("trial.py: failing on purpose (mode=%s)" % mode, file=sys.stderr)
    sys.exit(3)
tmp = os.path.join(trial_dir, "result.json.tmp")
with open(tmp, "w") as f:
    json.dump({"loss": (x - 0.3) ** 2}, f)
os.rename(tmp, os.path.join(trial_dir, "result.json"))
