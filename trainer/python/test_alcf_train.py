"""Tests of alcf_train.py, the Python trial program, against alcf-trainer: real training runs with
a CPU torch on a tiny dataset in the CIFAR-100 binary format (written by `alcf-trainer gen-data`).

    bash scripts/setup-pytorch-cpu.sh          # a python that can `import torch` on the CPU wheel
    target/pytorch-cpu/python trainer/python/test_alcf_train.py -v

Needs the alcf-trainer binary (target/release/alcf-trainer, or $ALCF_TRAINER_BIN): it makes the
data and is the reference for the metric names, the validation split and the error messages.
The XPU path itself is not exercised: there is no Intel GPU here (the test checks the refusal).
"""

import json
import math
import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SCRIPT = os.path.join(HERE, "alcf_train.py")
sys.path.insert(0, HERE)

import alcf_train  # noqa: E402


def trainer_bin():
    if os.environ.get("ALCF_TRAINER_BIN"):
        return os.environ["ALCF_TRAINER_BIN"]
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    return os.path.join(target, "release", "alcf-trainer")


BIN = trainer_bin()
# Small, fast settings for both trainers (as trainer/tests/training.rs uses).
SMALL = ["--model", "cnn", "--width", "8", "--depth", "2", "--batch-size", "64", "--val-split", "0.25"]
SMALL += ["--threads", "1", "--seed", "5", "--lr", "0.05", "--epochs", "2"]


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("ALCF_PARAMS", "ALCF_TRIAL_DIR")}
    env.update(extra)
    return env


def py(args, cwd=None, env=None):
    return subprocess.run(
        [sys.executable, SCRIPT, *args], cwd=cwd, env=env or clean_env(), capture_output=True, text=True
    )


def native(args, env=None):
    return subprocess.run([BIN, *args], env=env or clean_env(), capture_output=True, text=True)


def metrics(d):
    with open(os.path.join(d, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def result(d):
    with open(os.path.join(d, "result.json")) as f:
        return json.load(f)


def comparable(lines):
    keys = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "val_top5", "val_auc", "lr"]
    return [[(k, m[k]) for k in keys] for m in lines]


class Pure(unittest.TestCase):
    """Parts that need no torch: the split, the schedule, the settings and their errors."""

    def test_split_is_the_one_alcf_trainer_holds_out(self):
        # Values printed by trainer/src/data.rs stratified_split for the same inputs.
        t, v = alcf_train.stratified_split([i % 100 for i in range(1000)], 0.1)
        self.assertEqual(t[:12], [948, 863, 810, 318, 409, 363, 216, 142, 620, 24, 715, 927])
        self.assertEqual(v[:12], [650, 20, 853, 995, 235, 417, 371, 969, 776, 286, 767, 758])
        self.assertEqual((len(t), len(v)), (900, 100))
        # 18 per class x 0.25 = 4.5 -> 5 (Rust rounds halves away from zero; Python's round would give 4).
        t, v = alcf_train.stratified_split([i % 10 for i in range(180)], 0.25)
        self.assertEqual((len(t), len(v)), (130, 50))
        self.assertEqual(t[:8], [143, 102, 168, 42, 131, 51, 49, 92])
        self.assertEqual(v[:10], [91, 22, 113, 178, 129, 10, 57, 20, 9, 100])

    def test_schedules_as_optim_rs(self):
        c = dict(alcf_train.DEFAULTS, lr=1.0, epochs=10, warmup_epochs=1.0)
        self.assertAlmostEqual(alcf_train.lr_at(c, 0, 10), 0.1)
        self.assertAlmostEqual(alcf_train.lr_at(c, 9, 10), 1.0)
        self.assertAlmostEqual(alcf_train.lr_at(c, 10, 10), 1.0)
        self.assertLess(alcf_train.lr_at(c, 99, 10), 0.01)
        c.update(schedule="step", warmup_epochs=0.0, lr_step_size=4)
        self.assertEqual(alcf_train.lr_at(c, 39, 10), 1.0)
        self.assertAlmostEqual(alcf_train.lr_at(c, 40, 10), 0.1)
        self.assertAlmostEqual(alcf_train.lr_at(c, 85, 10), 0.01)
        c.update(schedule="constant")
        self.assertEqual(alcf_train.lr_at(c, 85, 10), 1.0)

    def test_curve_auc(self):
        self.assertIsNone(alcf_train.curve_auc([]))
        self.assertEqual(alcf_train.curve_auc([0.4]), 0.4)
        self.assertAlmostEqual(alcf_train.curve_auc([0.1, 0.3, 0.5]), 0.3)

    def test_bad_params_fail_clearly_and_as_alcf_trainer_says(self):
        with tempfile.TemporaryDirectory() as d:
            params = os.path.join(d, "params.json")
            out = os.path.join(d, "trial")
            nodata = os.path.join(d, "no-such-data")
            cases = [
                ('{"lr": 0.1, "learning_rate": 0.2}', "unknown parameter 'learning_rate' (known: model, width,"),
                ('{"lr": -1}', "--lr (params key 'lr') must be in (0, 10], got -1"),
                ('{"model": "resnet9"}', "'model': 'resnet9' is not one of resnet18, resnet34"),
                ('{"epochs": 2.5}', "'epochs': expected an integer, got 2.5"),
                ('{"batch_size": "abc"}', "'batch_size': expected an integer, got \"abc\""),
                ('{"dropout": 1.5}', "--dropout (params key 'dropout') must be in [0, 1), got 1.5"),
                ('{"device": "tpu"}', "'device': 'tpu' is not one of auto, cpu, cuda, cuda:N, xpu, xpu:N"),
                ('{"nesterov": true, "momentum": 0}', "--nesterov needs --momentum > 0"),
            ]
            for text, needle in cases:
                with open(params, "w") as f:
                    f.write(text)
                args = ["--params", params, "--data", nodata, "--out", out]
                p = py(args)
                self.assertEqual(p.returncode, 1, f"{text}: {p.stderr}")
                self.assertTrue(p.stderr.startswith("alcf_train.py: error: "), p.stderr)
                self.assertIn(needle, p.stderr, text)
                self.assertNotIn("Traceback", p.stderr)
                self.assertFalse(os.path.exists(out), f"{text}: wrote {out} before refusing")
                # alcf-trainer says the same about the same file.
                n = native(["train", *args])
                self.assertEqual(n.returncode, 1, n.stderr)
                self.assertEqual(
                    p.stderr.strip().removeprefix("alcf_train.py: error: "),
                    n.stderr.strip().removeprefix("alcf-trainer: error: "),
                    text,
                )
            # A file that is not JSON, or not an object.
            for text, needle in [("{lr: 1", "is not valid JSON"), ("[1, 2]", "must hold a JSON object")]:
                with open(params, "w") as f:
                    f.write(text)
                p = py(["--params", params, "--data", nodata])
                self.assertEqual(p.returncode, 1, p.stderr)
                self.assertIn(needle, p.stderr)
            # A bad flag value names the flag; a flag beats params.json.
            p = py(["--data", nodata, "--batch-size", "0"])
            self.assertEqual(p.returncode, 1)
            self.assertIn("--batch-size (params key 'batch_size') must be an integer in [1, 65536], got 0", p.stderr)
            p = py(["--data", nodata, "--width", "x"])
            self.assertEqual(p.returncode, 1)
            self.assertIn("--width: expected an integer, got \"x\"", p.stderr)
            p = py(["--data", nodata, "--no-such-flag"])
            self.assertEqual(p.returncode, 2)


@unittest.skipUnless(os.path.exists(BIN), f"no alcf-trainer binary at {BIN} (cargo build -p alcf-trainer --release)")
class Training(unittest.TestCase):
    """Real runs on the CPU torch, next to alcf-trainer runs with the same settings."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.data = os.path.join(cls.tmp.name, "data")
        g = native(["gen-data", "--out", cls.data, "--train-per-class", "12", "--test-per-class", "2", "--seed", "3"])
        assert g.returncode == 0, g.stderr
        # The reference run, the way the host starts a trial: cwd = trial dir, ALCF_* set, params.json.
        cls.ref = os.path.join(cls.tmp.name, "ref")
        os.makedirs(cls.ref)
        params = os.path.join(cls.ref, "params.json")
        with open(params, "w") as f:
            json.dump({"lr": 0.05, "batch_size": "64", "optimizer": "sgd", "nesterov": True, "dropout": 0.1}, f)
        env = clean_env(ALCF_TRIAL_DIR=cls.ref, ALCF_PARAMS=params, ALCF_TRIAL_ID="1")
        args = ["--data", cls.data, "--model", "cnn", "--width", "8", "--depth", "2", "--val-split", "0.25"]
        args += ["--threads", "1", "--seed", "5", "--epochs", "2", "--device", "cpu"]
        cls.ref_run = py(["train", *args], cwd=cls.ref, env=env)
        cls.ref_args = args + ["--lr", "0.05", "--batch-size", "64", "--nesterov", "--dropout", "0.1"]
        # alcf-trainer with the same settings.
        cls.native_out = os.path.join(cls.tmp.name, "native")
        cls.native_run = native(["train", *cls.ref_args, "--out", cls.native_out, "--quiet"])

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_two_epochs_write_the_trial_files(self):
        self.assertEqual(self.ref_run.returncode, 0, self.ref_run.stderr)
        self.assertIn("epoch   2/2", self.ref_run.stderr)
        lines = metrics(self.ref)
        self.assertEqual(len(lines), 2)
        for i, m in enumerate(lines):
            self.assertEqual(m["epoch"], i + 1)
            for k in ["train_loss", "val_loss", "val_acc", "val_top5", "val_auc", "epoch_time_s", "images_per_s"]:
                self.assertTrue(math.isfinite(m[k]) and m[k] >= 0, f"{k}={m[k]}")
            self.assertLessEqual(m["val_acc"], m["val_top5"])
            self.assertTrue(0.0 <= m["val_auc"] <= 1.0)
        self.assertLess(lines[1]["train_loss"], lines[0]["train_loss"])
        r = result(self.ref)
        accs = [m["val_acc"] for m in lines]
        self.assertAlmostEqual(r["curve_auc"], (accs[0] + accs[1]) / 2, places=12)
        self.assertEqual(r["val_acc"], accs[1])
        self.assertEqual(r["best_val_acc"], max(accs))
        self.assertEqual((r["epochs"], r["n_train"], r["n_val"], r["diverged"]), (2, 900, 300, 0))
        self.assertTrue(all(isinstance(v, (int, float)) for v in r.values()), r)
        self.assertEqual(os.listdir(os.path.join(self.ref, "checkpoint")), ["state.json"])

    def test_metric_names_are_alcf_trainers(self):
        self.assertEqual(self.native_run.returncode, 0, self.native_run.stderr)
        ours, theirs = metrics(self.ref), metrics(self.native_out)
        self.assertEqual([sorted(m) for m in ours], [sorted(m) for m in theirs])
        r_ours, r_theirs = result(self.ref), result(self.native_out)
        self.assertEqual(sorted(r_ours), sorted(r_theirs))
        # The same split and model size.
        for k in ["n_train", "n_val", "n_params", "epochs"]:
            self.assertEqual(r_ours[k], r_theirs[k], k)

    def test_resume_continues_and_gives_the_same_numbers(self):
        with tempfile.TemporaryDirectory() as d:
            first = py(["train", *self.ref_args, "--out", d, "--resume", "--stop-after", "1", "--quiet"])
            self.assertEqual(first.returncode, 75, first.stderr)
            self.assertEqual(len(metrics(d)), 1)
            self.assertFalse(os.path.exists(os.path.join(d, "result.json")))
            rest = py(["train", *self.ref_args, "--out", d, "--resume"])
            self.assertEqual(rest.returncode, 0, rest.stderr)
            self.assertIn("resuming after epoch 1 of 2", rest.stderr)
            self.assertEqual(comparable(metrics(d)), comparable(metrics(self.ref)))
            for k in ["val_acc", "val_auc", "curve_auc", "train_loss", "val_loss"]:
                self.assertEqual(result(d)[k], result(self.ref)[k], k)
            # Other settings are refused.
            other = py(["train", *self.ref_args, "--out", d, "--resume", "--label-smoothing", "0.1"])
            self.assertEqual(other.returncode, 1)
            self.assertIn("different settings", other.stderr)
            self.assertIn("label_smoothing", other.stderr)

    def test_device_xpu_is_refused_without_an_xpu_torch(self):
        for dev, needle in [("xpu", "has no usable XPU"), ("xpu:1", "has no usable XPU"), ("cuda", "CUDA is not")]:
            p = py(["--data", os.path.join(self.tmp.name, "nodata"), "--device", dev, "--out", self.tmp.name])
            self.assertEqual(p.returncode, 1, p.stderr)
            self.assertIn(f"alcf_train.py: error: --device {dev if ':' in dev else dev + ':0'}: ", p.stderr)
            self.assertIn(needle, p.stderr)
            self.assertNotIn("Traceback", p.stderr)
            self.assertNotIn("no CIFAR-100 data", p.stderr)
            if dev.startswith("xpu"):
                self.assertIn("module load frameworks", p.stderr)

    def test_info(self):
        p = py(["info"])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("xpu available: False", p.stdout)
        self.assertIn("default device: cpu", p.stdout)


if __name__ == "__main__":
    unittest.main()
