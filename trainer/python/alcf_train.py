#!/usr/bin/env python3
"""alcf_train.py: the Python twin of `alcf-trainer train`, for Intel XPUs (Aurora) and anywhere
else PyTorch runs.

The same models, data handling, hyperparameters (flags and params.json keys), metrics and trial
protocol as the native trainer (trainer/src/*.rs):

- reads CIFAR-100 in its binary format (DIR/cifar-100-binary/train.bin or DIR/train.bin) and holds
  out the same stratified validation images (the same fixed-seed split as alcf-trainer);
- trains resnet18 | resnet34 | resnet50 | vgg16 | densenet121 | cnn (CIFAR variants, defined here:
  no torchvision) with SGD or AdamW and a per-batch cosine | step | constant schedule;
- writes one JSON line per epoch to OUT/metrics.jsonl and OUT/result.json at the end, with the
  metric names alcf-trainer writes (val_acc, val_top5, val_auc, val_loss, curve_auc, ...);
- checkpoints every epoch into OUT/checkpoint/ and continues from there with --resume.

Devices: --device auto | cpu | cuda | cuda:N | xpu | xpu:N (auto: xpu:0 if torch.xpu.is_available(),
else cuda:0 if CUDA works, else the CPU). On an Aurora node, `module load frameworks` gives a
PyTorch with XPU; with ZE_AFFINITY_MASK pinning one tile per trial the tile is xpu:0.

Needs only the Python standard library and torch. torch is imported after the settings are
checked, so a bad params.json fails at once even where importing torch takes many seconds.

    python3 alcf_train.py [train] --data DIR --out DIR [--params FILE] [--resume] [--model cnn] ...
    python3 alcf_train.py info

Exit status: 0 done; 1 error (message on stderr, prefixed "alcf_train.py: error:"); 2 bad command
line; 75 stopped by --stop-after (continue with --resume).
"""

import argparse
import json
import math
import os
import shutil
import sys
import time

PROG = "alcf_train.py"
TRAINER = "alcf_train.py"  # recorded in checkpoint/state.json

METRICS_FILE = "metrics.jsonl"
RESULT_FILE = "result.json"
CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "state.json"
EVAL_BATCH = 500

IMAGE_BYTES = 3 * 32 * 32
RECORD_BYTES = 2 + IMAGE_BYTES
NUM_CLASSES = 100
NUM_COARSE = 20
SUBDIR = "cifar-100-binary"
# The validation split does not depend on the training seed (trainer/src/data.rs: SPLIT_SEED).
SPLIT_SEED = 0x00C1_FA21_0005_EED5
MEAN = [0.5071, 0.4865, 0.4409]
STD = [0.2673, 0.2564, 0.2762]

MODELS = ["resnet18", "resnet34", "resnet50", "vgg16", "densenet121", "cnn"]
OPTIMIZERS = ["sgd", "adamw"]
SCHEDULES = ["cosine", "step", "constant"]

EX_TEMPFAIL = 75


class ConfigError(Exception):
    """A setting that is unknown or out of range (exit status 1, before any work)."""


class Stopped(Exception):
    """--stop-after ended the run early (exit status 75)."""


# ---------------------------------------------------------------------------------------------
# Settings: defaults, params.json, flags, validation (trainer/src/config.rs)
# ---------------------------------------------------------------------------------------------

DEFAULTS = {
    "model": "resnet18",
    "width": 32,
    "depth": 4,
    "dropout": 0.0,
    "optimizer": "sgd",
    "lr": 0.1,
    "momentum": 0.9,
    "nesterov": False,
    "weight_decay": 5e-4,
    "beta1": 0.9,
    "beta2": 0.999,
    "eps": 1e-8,
    "schedule": "cosine",
    "warmup_epochs": 0.0,
    "lr_step_size": 0,
    "lr_gamma": 0.1,
    "label_smoothing": 0.0,
    "batch_size": 128,
    "epochs": 30,
    "seed": 0,
    "val_split": 0.1,
    "limit_train": 0,
    "limit_val": 0,
    "augment": True,
    "data": "data/cifar-100",
    "device": "auto",
    "threads": 0,
    "eval_test": False,
}
PARAM_KEYS = list(DEFAULTS)
KINDS = {
    "model": "choice",
    "width": "int",
    "depth": "int",
    "dropout": "float",
    "optimizer": "choice",
    "lr": "float",
    "momentum": "float",
    "nesterov": "bool",
    "weight_decay": "float",
    "beta1": "float",
    "beta2": "float",
    "eps": "float",
    "schedule": "choice",
    "warmup_epochs": "float",
    "lr_step_size": "int",
    "lr_gamma": "float",
    "label_smoothing": "float",
    "batch_size": "int",
    "epochs": "int",
    "seed": "int",
    "val_split": "float",
    "limit_train": "int",
    "limit_val": "int",
    "augment": "bool",
    "data": "str",
    "device": "device",
    "threads": "int",
    "eval_test": "bool",
}
CHOICES = {"model": MODELS, "optimizer": OPTIMIZERS, "schedule": SCHEDULES}


def _json(v):
    return json.dumps(v)


def want_float(key, v):
    if isinstance(v, bool) or v is None or isinstance(v, (list, dict)):
        raise ConfigError(f"'{key}': expected a number, got {_json(v)}")
    if isinstance(v, (int, float)):
        return float(v)
    try:
        return float(str(v).strip())
    except ValueError:
        raise ConfigError(f"'{key}': expected a number, got {_json(v)}") from None


def want_int(key, v):
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    try:
        f = want_float(key, v)
    except ConfigError:
        raise ConfigError(f"'{key}': expected an integer, got {_json(v)}") from None
    if not math.isfinite(f) or f != int(f) or abs(f) > 9.0e15:
        raise ConfigError(f"'{key}': expected an integer, got {_json(v)}")
    return int(f)


def want_bool(key, v):
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)) and v in (0, 1):
        return bool(v)
    if isinstance(v, str):
        low = v.lower()
        if low in ("true", "1", "yes"):
            return True
        if low in ("false", "0", "no"):
            return False
    raise ConfigError(f"'{key}': expected true or false, got {_json(v)}")


def want_str(key, v):
    if isinstance(v, str):
        return v
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return str(v)
    raise ConfigError(f"'{key}': expected a string, got {_json(v)}")


def parse_device(s):
    """auto | cpu | cuda | cuda:N | gpu | xpu | xpu:N -> (kind, index)."""
    low = s.lower()
    if low in ("auto", "cpu"):
        return low
    if low in ("cuda", "gpu"):
        return "cuda:0"
    if low == "xpu":
        return "xpu:0"
    for kind in ("cuda", "xpu"):
        rest = low[len(kind) + 1 :] if low.startswith(kind + ":") else None
        if rest is not None and rest.isdigit():
            return f"{kind}:{int(rest)}"
    raise ValueError(f"'{s}' is not one of auto, cpu, cuda, cuda:N, xpu, xpu:N")


def coerce(key, v):
    """One params.json value (or flag string) for `key`, as alcf-trainer's set_param takes it."""
    kind = KINDS[key]
    if kind == "float":
        return want_float(key, v)
    if kind == "int":
        n = want_int(key, v)
        if key == "seed" and n < 0:
            raise ConfigError(f"'{key}': must be >= 0, got {n}")
        return n
    if kind == "bool":
        return want_bool(key, v)
    s = want_str(key, v)
    if kind == "choice":
        if s.lower() not in CHOICES[key]:
            raise ConfigError(f"'{key}': '{s}' is not one of {', '.join(CHOICES[key])}")
        return s.lower()
    if kind == "device":
        try:
            return parse_device(s)
        except ValueError as e:
            raise ConfigError(f"'{key}': {e}") from None
    return s


def apply_params_file(cfg, path):
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"cannot read params file {path}: {e.strerror}") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"params file {path} is not valid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise ConfigError(f"params file {path} must hold a JSON object (name -> value)")
    for k, v in obj.items():
        key = k.replace("-", "_")
        if key not in KINDS:
            raise ConfigError(f"in params file {path}: unknown parameter '{k}' (known: {', '.join(PARAM_KEYS)})")
        try:
            cfg[key] = coerce(key, v)
        except ConfigError as e:
            raise ConfigError(f"in params file {path}: {e}") from None


def validate(c):
    def range_f(name, v, lo, hi, lo_open, hi_open):
        ok = math.isfinite(v) and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
        if not ok:
            raise ConfigError(
                f"--{name} (params key '{name.replace('-', '_')}') must be in "
                f"{'(' if lo_open else '['}{_num(lo)}, {_num(hi)}{')' if hi_open else ']'}, got {_num(v)}"
            )

    def range_i(name, v, lo, hi):
        if v < lo or v > hi:
            raise ConfigError(
                f"--{name} (params key '{name.replace('-', '_')}') must be an integer in [{lo}, {hi}], got {v}"
            )

    range_i("width", c["width"], 1, 1024)
    range_i("depth", c["depth"], 1, 16)
    range_f("dropout", c["dropout"], 0.0, 1.0, False, True)
    range_f("lr", c["lr"], 0.0, 10.0, True, False)
    range_f("momentum", c["momentum"], 0.0, 1.0, False, True)
    if c["nesterov"] and c["optimizer"] == "sgd" and c["momentum"] == 0.0:
        raise ConfigError("--nesterov needs --momentum > 0")
    range_f("weight-decay", c["weight_decay"], 0.0, 1.0, False, False)
    range_f("beta1", c["beta1"], 0.0, 1.0, False, True)
    range_f("beta2", c["beta2"], 0.0, 1.0, False, True)
    range_f("eps", c["eps"], 0.0, 1.0, True, False)
    range_i("epochs", c["epochs"], 1, 100_000)
    range_f("warmup-epochs", c["warmup_epochs"], 0.0, float(c["epochs"]), False, False)
    range_i("lr-step-size", c["lr_step_size"], 0, 100_000)
    range_f("lr-gamma", c["lr_gamma"], 0.0, 1.0, True, False)
    range_f("label-smoothing", c["label_smoothing"], 0.0, 1.0, False, True)
    range_i("batch-size", c["batch_size"], 1, 65_536)
    range_f("val-split", c["val_split"], 0.0, 0.9, True, False)
    range_i("limit-train", c["limit_train"], 0, 2**63 - 1)
    range_i("limit-val", c["limit_val"], 0, 2**63 - 1)
    range_i("threads", c["threads"], 0, 4096)
    if not c["data"]:
        raise ConfigError("--data must name the dataset directory")


def _num(v):
    """Numbers in messages as Rust prints them (1 not 1.0, 0.1, 1e-8 as 0.00000001)."""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return repr(v)


def fingerprint(c):
    """The settings that must match for --resume (where and how fast it runs does not matter)."""
    return {k: v for k, v in c.items() if k not in ("data", "device", "threads", "eval_test")}


def effective_step_size(c):
    return c["lr_step_size"] if c["lr_step_size"] > 0 else max(c["epochs"] // 3, 1)


def lr_at(c, step, steps_per_epoch):
    """Learning rate at global step `step` (0-based), as trainer/src/optim.rs lr_at."""
    total = float(max(c["epochs"] * steps_per_epoch, 1))
    warm = _round_half_away(c["warmup_epochs"] * steps_per_epoch)
    s = float(step)
    if warm > 0.0 and s < warm:
        return c["lr"] * (s + 1.0) / warm
    if c["schedule"] == "constant":
        return c["lr"]
    if c["schedule"] == "cosine":
        span = max(total - warm, 1.0)
        progress = min(max((s - warm) / span, 0.0), 1.0)
        return c["lr"] * 0.5 * (1.0 + math.cos(math.pi * progress))
    epoch = step // max(steps_per_epoch, 1)
    k = epoch // effective_step_size(c)
    return c["lr"] * c["lr_gamma"] ** k


def _round_half_away(x):
    """Rust's f64::round (halves away from zero), not Python's round (halves to even)."""
    return math.floor(x + 0.5) if x >= 0 else -math.floor(-x + 0.5)


# ---------------------------------------------------------------------------------------------
# Data (trainer/src/data.rs): CIFAR-100 binary files, the deterministic split
# ---------------------------------------------------------------------------------------------

M64 = (1 << 64) - 1


class SplitMix:
    """splitmix64, bit for bit as trainer/src/data.rs SplitMix."""

    def __init__(self, seed):
        self.s = (seed ^ 0x9E37_79B9_7F4A_7C15) & M64

    def next_u64(self):
        self.s = (self.s + 0x9E37_79B9_7F4A_7C15) & M64
        z = self.s
        z = ((z ^ (z >> 30)) * 0xBF58_476D_1CE4_E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D0_49BB_1331_11EB) & M64
        return z ^ (z >> 31)

    def below(self, n):
        return self.next_u64() % n

    def shuffle(self, v):
        for i in range(len(v) - 1, 0, -1):
            j = self.below(i + 1)
            v[i], v[j] = v[j], v[i]


def stratified_split(labels, val_frac):
    """(train indices, val indices), both shuffled: the same images as alcf-trainer holds out."""
    rng = SplitMix(SPLIT_SEED)
    by_class = [[] for _ in range(256)]
    for i, lab in enumerate(labels):
        by_class[lab].append(i)
    train, val = [], []
    for idx in by_class:
        if not idx:
            continue
        rng.shuffle(idx)
        n_val = int(_round_half_away(len(idx) * val_frac))
        if n_val == 0 and len(idx) >= 2 and val_frac > 0.0:
            n_val = 1
        n_val = min(n_val, max(len(idx) - 1, 0))
        val.extend(idx[:n_val])
        train.extend(idx[n_val:])
    rng.shuffle(train)
    rng.shuffle(val)
    return train, val


def find_dataset_dir(data):
    for cand in (os.path.join(data, SUBDIR), data):
        if os.path.isfile(os.path.join(cand, "train.bin")):
            return cand
    raise ConfigError(
        f"no CIFAR-100 data under {data}: expected {data}/{SUBDIR}/train.bin (or train.bin directly in it). "
        f"Get the real data with `alcf-trainer download --out {data}` or make a synthetic set with "
        f"`alcf-trainer gen-data --out {data}`"
    )


def read_bin(path):
    """(pixels as bytes, fine labels as a list), checked record by record like alcf-trainer."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None
    if not raw or len(raw) % RECORD_BYTES:
        raise ConfigError(
            f"{path} is not a CIFAR-100 binary file: its size {len(raw)} is not a positive multiple of "
            f"{RECORD_BYTES} bytes"
        )
    coarse = raw[0::RECORD_BYTES]
    fine = raw[1::RECORD_BYTES]
    for i, (c, f) in enumerate(zip(coarse, fine)):
        if c >= NUM_COARSE or f >= NUM_CLASSES:
            raise ConfigError(
                f"{path}: record {i} has labels coarse={c} fine={f}; CIFAR-100 has 20 coarse and 100 fine classes"
            )
    return raw, list(fine)


# ---------------------------------------------------------------------------------------------
# Metrics (trainer/src/metrics.rs)
# ---------------------------------------------------------------------------------------------


def curve_auc(acc):
    """Mean validation accuracy over the learning curve (trapezoid / intervals)."""
    if not acc:
        return None
    if len(acc) == 1:
        return acc[0]
    return sum((a + b) / 2.0 for a, b in zip(acc, acc[1:])) / (len(acc) - 1)


def binary_auc(torch, scores, positive):
    """Exact ROC AUC (Mann-Whitney U, tied scores get their average rank); None if a class is empty."""
    n_pos = int(positive.sum())
    n_neg = positive.numel() - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    sorted_scores, order = torch.sort(scores, stable=True)
    _, counts = torch.unique_consecutive(sorted_scores, return_counts=True)
    ends = counts.cumsum(0).double()
    avg = ends - (counts.double() - 1.0) / 2.0  # average of ranks end-count+1 .. end
    ranks = torch.repeat_interleave(avg, counts)
    rank_sum_pos = float(ranks[positive[order]].sum())
    return (rank_sum_pos - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def macro_ovr_auc(torch, probs, labels):
    """Macro one-vs-rest AUC over the classes of `probs` [n, C] (CPU); classes without both
    positives and negatives are skipped; None when none qualifies."""
    aucs = []
    for k in range(probs.shape[1]):
        a = binary_auc(torch, probs[:, k].contiguous(), labels == k)
        if a is not None:
            aucs.append(a)
    return sum(aucs) / len(aucs) if aucs else None


# ---------------------------------------------------------------------------------------------
# Models (trainer/src/models.rs, layer for layer)
# ---------------------------------------------------------------------------------------------


def build_model(torch, name, width, depth, dropout, classes=NUM_CLASSES):
    nn = torch.nn
    F = torch.nn.functional

    def conv(cin, cout, k, stride, pad):
        return nn.Conv2d(cin, cout, k, stride=stride, padding=pad, bias=False)

    class Shortcut(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv, self.bn = conv(cin, cout, 1, stride, 0), nn.BatchNorm2d(cout)

        def forward(self, x):
            return self.bn(self.conv(x))

    class Basic(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.c1, self.b1 = conv(cin, cout, 3, stride, 1), nn.BatchNorm2d(cout)
            self.c2, self.b2 = conv(cout, cout, 3, 1, 1), nn.BatchNorm2d(cout)
            self.sc = Shortcut(cin, cout, stride) if stride != 1 or cin != cout else None

        def forward(self, x):
            y = self.b2(self.c2(F.relu(self.b1(self.c1(x)))))
            return F.relu(y + (self.sc(x) if self.sc is not None else x))

    class Bottleneck(nn.Module):
        def __init__(self, cin, mid, stride):
            super().__init__()
            cout = mid * 4
            self.c1, self.b1 = conv(cin, mid, 1, 1, 0), nn.BatchNorm2d(mid)
            self.c2, self.b2 = conv(mid, mid, 3, stride, 1), nn.BatchNorm2d(mid)
            self.c3, self.b3 = conv(mid, cout, 1, 1, 0), nn.BatchNorm2d(cout)
            self.sc = Shortcut(cin, cout, stride) if stride != 1 or cin != cout else None

        def forward(self, x):
            y = F.relu(self.b1(self.c1(x)))
            y = F.relu(self.b2(self.c2(y)))
            y = self.b3(self.c3(y))
            return F.relu(y + (self.sc(x) if self.sc is not None else x))

    class ResNet(nn.Module):
        def __init__(self, blocks, bottle):
            super().__init__()
            self.stem_c, self.stem_b = conv(3, 64, 3, 1, 1), nn.BatchNorm2d(64)
            layers, cin = [], 64
            for stage, n in enumerate(blocks):
                w = 64 << stage
                for b in range(n):
                    stride = 2 if stage > 0 and b == 0 else 1
                    if bottle:
                        layers.append(Bottleneck(cin, w, stride))
                        cin = w * 4
                    else:
                        layers.append(Basic(cin, w, stride))
                        cin = w
            self.layers = nn.Sequential(*layers)
            self.fc = nn.Linear(cin, classes)

        def forward(self, x):
            y = self.layers(F.relu(self.stem_b(self.stem_c(x))))
            y = F.adaptive_avg_pool2d(y, 1).flatten(1)
            return self.fc(F.dropout(y, dropout, self.training))

    class VGG16(nn.Module):
        CFG = [64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0]  # 0 = max-pool

        def __init__(self):
            super().__init__()
            layers, cin = [], 3
            for c in self.CFG:
                if c == 0:
                    layers.append(nn.MaxPool2d(2))
                else:
                    layers += [nn.Conv2d(cin, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU()]
                    cin = c
            self.features = nn.Sequential(*layers)
            self.fc1, self.fc = nn.Linear(512, 512), nn.Linear(512, classes)

        def forward(self, x):
            y = self.features(x).flatten(1)
            y = F.relu(self.fc1(F.dropout(y, dropout, self.training)))
            return self.fc(F.dropout(y, dropout, self.training))

    class DenseLayer(nn.Module):
        def __init__(self, c, growth):
            super().__init__()
            self.b1, self.c1 = nn.BatchNorm2d(c), conv(c, 4 * growth, 1, 1, 0)
            self.b2, self.c2 = nn.BatchNorm2d(4 * growth), conv(4 * growth, growth, 3, 1, 1)

        def forward(self, x):
            z = self.c2(F.relu(self.b2(self.c1(F.relu(self.b1(x))))))
            return torch.cat([x, z], 1)

    class Transition(nn.Module):
        def __init__(self, c, out):
            super().__init__()
            self.b, self.c = nn.BatchNorm2d(c), conv(c, out, 1, 1, 0)

        def forward(self, x):
            return F.avg_pool2d(self.c(F.relu(self.b(x))), 2)

    class DenseNet121(nn.Module):
        def __init__(self, growth=32, blocks=(6, 12, 24, 16)):
            super().__init__()
            self.stem = conv(3, 2 * growth, 3, 1, 1)
            c, mods = 2 * growth, []
            for bi, n in enumerate(blocks):
                for _ in range(n):
                    mods.append(DenseLayer(c, growth))
                    c += growth
                if bi + 1 < len(blocks):
                    mods.append(Transition(c, c // 2))
                    c //= 2
            self.body = nn.Sequential(*mods)
            self.final_bn, self.fc = nn.BatchNorm2d(c), nn.Linear(c, classes)

        def forward(self, x):
            y = F.relu(self.final_bn(self.body(self.stem(x))))
            y = F.adaptive_avg_pool2d(y, 1).flatten(1)
            return self.fc(F.dropout(y, dropout, self.training))

    class CNN(nn.Module):
        """`depth` conv3x3-BN-ReLU layers in min(depth, 3) stages of width*2^stage channels, each
        stage ending in a 2x2 max-pool."""

        def __init__(self):
            super().__init__()
            stages = min(depth, 3)
            self.convs, self.bns, self.pools = nn.ModuleList(), nn.ModuleList(), []
            cin = 3
            for i in range(depth):
                s = i * stages // depth
                last = (i + 1) * stages // depth != s or i + 1 == depth
                c = width << s
                self.convs.append(conv(cin, c, 3, 1, 1))
                self.bns.append(nn.BatchNorm2d(c))
                self.pools.append(last)
                cin = c
            self.fc = nn.Linear(cin, classes)

        def forward(self, x):
            y = x
            for c, b, p in zip(self.convs, self.bns, self.pools):
                y = F.relu(b(c(y)))
                if p:
                    y = F.max_pool2d(y, 2)
            y = F.adaptive_avg_pool2d(y, 1).flatten(1)
            return self.fc(F.dropout(y, dropout, self.training))

    return {
        "resnet18": lambda: ResNet([2, 2, 2, 2], False),
        "resnet34": lambda: ResNet([3, 4, 6, 3], False),
        "resnet50": lambda: ResNet([3, 4, 6, 3], True),
        "vgg16": VGG16,
        "densenet121": DenseNet121,
        "cnn": CNN,
    }[name]()


# ---------------------------------------------------------------------------------------------
# Devices
# ---------------------------------------------------------------------------------------------


def xpu_available(torch):
    return hasattr(torch, "xpu") and torch.xpu.is_available()


def resolve_device(torch, spec):
    """A torch.device for the --device setting; a clear error when it cannot be used."""
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "auto":
        if xpu_available(torch):
            return torch.device("xpu", 0)
        if torch.cuda.is_available():
            return torch.device("cuda", 0)
        return torch.device("cpu")
    kind, index = spec.split(":")
    index = int(index)
    if kind == "xpu":
        if not xpu_available(torch):
            why = "it has no torch.xpu" if not hasattr(torch, "xpu") else "torch.xpu.is_available() is False"
            raise ConfigError(
                f"--device {spec}: this PyTorch ({torch.__version__}) has no usable XPU ({why}). On Aurora run "
                "it after `module load frameworks` (PyTorch with XPU), on a compute node; or use --device cpu"
            )
        count = torch.xpu.device_count()
    else:
        if not torch.cuda.is_available():
            raise ConfigError(
                f"--device {spec}: CUDA is not available in this PyTorch ({torch.__version__}); use --device cpu"
            )
        count = torch.cuda.device_count()
    if index >= count:
        raise ConfigError(f"--device {spec}: only {count} {kind.upper()} device(s) ({kind}:0..{kind}:{count - 1})")
    return torch.device(kind, index)


def synchronize(torch, device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "xpu":
        torch.xpu.synchronize(device)


def available_cores():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------


def write_atomic(path, data):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json(path, obj):
    write_atomic(path, (json.dumps(obj, indent=2) + "\n").encode())


def write_history(path, history):
    write_atomic(path, "".join(json.dumps(h) + "\n" for h in history).encode())


def append_line(path, obj):
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(obj) + "\n")
        f.flush()


def put(m, k, v):
    """m[k] = v when v is a finite number (JSON has no NaN/inf)."""
    if v is not None and math.isfinite(v):
        m[k] = v


def checkpoint_path(out, epoch):
    return os.path.join(out, CHECKPOINT_DIR, f"epoch{epoch}.pt")


def read_state(out, cfg):
    p = os.path.join(out, CHECKPOINT_DIR, STATE_FILE)
    if not os.path.isfile(p):
        return None
    try:
        with open(p, encoding="utf-8") as f:
            st = json.load(f)
    except (OSError, json.JSONDecodeError):
        raise ConfigError(f"{p} is not valid JSON; delete the checkpoint directory to start over") from None
    if st.get("trainer") != TRAINER:
        raise ConfigError(
            f"--resume: the checkpoint in {os.path.dirname(p)} was not written by {PROG} "
            "(alcf-trainer's?); use a fresh --out directory"
        )
    saved, now = st.get("config"), fingerprint(cfg)
    if saved != now:
        diffs = [
            f"{k}: checkpoint {json.dumps((saved or {}).get(k))} vs now {json.dumps(v)}"
            for k, v in now.items()
            if (saved or {}).get(k) != v
        ]
        raise ConfigError(
            f"--resume: the checkpoint in {os.path.dirname(p)} was made with different settings "
            f"({'; '.join(diffs) or 'unreadable config'}); use the same settings or a fresh --out directory"
        )
    return st


# ---------------------------------------------------------------------------------------------
# Training (trainer/src/train.rs)
# ---------------------------------------------------------------------------------------------


def epoch_seed(seed, epoch):
    r = SplitMix(seed ^ ((epoch * 0xA24B_AED4_963E_E407) & M64))
    return r.next_u64() >> 1


def augment(torch, x):
    """Random crop of the 4-pixel zero-padded image and random horizontal flip, per image, as two
    gathers on the uint8 batch [B,3,32,32] (on x's device)."""
    F = torch.nn.functional
    b, dev = x.shape[0], x.device
    padded = F.pad(x, (4, 4, 4, 4))
    ox = torch.randint(9, (b, 1), device=dev)
    oy = torch.randint(9, (b, 1), device=dev)
    flip = torch.randint(2, (b, 1), device=dev)
    ar = torch.arange(32, device=dev).unsqueeze(0)
    rows = oy + ar
    cols = ox + ar + flip * (ar.neg() * 2 + 31)
    t = padded.gather(2, rows.view(b, 1, 32, 1).expand(b, 3, 32, 40))
    return t.gather(3, cols.view(b, 1, 1, 32).expand(b, 3, 32, 32))


def evaluate(torch, model, x_all, y_all, scale, shift):
    F = torch.nn.functional
    model.eval()
    n = y_all.shape[0]
    loss_sum, correct, correct5, probs = 0.0, 0, 0, []
    with torch.no_grad():
        for start in range(0, n, EVAL_BATCH):
            x = x_all[start : start + EVAL_BATCH].float() * scale + shift
            y = y_all[start : start + EVAL_BATCH]
            logits = model(x)
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
            top = logits.topk(min(5, NUM_CLASSES), 1).indices
            correct5 += int((top == y.unsqueeze(1)).any(1).sum())
            probs.append(logits.float().softmax(1).cpu())
    probs = torch.cat(probs)
    auc = macro_ovr_auc(torch, probs, y_all.cpu())
    return {"loss": loss_sum / n, "acc": correct / n, "top5": correct5 / n, "auc": auc}


def train(cfg, out, resume=False, verbose=True, stop_after=None, keep_checkpoint=False):
    """Train per `cfg` (a validated settings dict), writing the trial files into `out`."""
    t_start = time.perf_counter()

    def log(s):
        if verbose:
            print(s, file=sys.stderr, flush=True)

    import torch  # noqa: PLC0415 (after the settings are checked: the import can take many seconds)

    F = torch.nn.functional
    device = resolve_device(torch, cfg["device"])
    threads = cfg["threads"] if cfg["threads"] > 0 else available_cores()
    torch.set_num_threads(threads)
    os.makedirs(out, exist_ok=True)
    metrics_p = os.path.join(out, METRICS_FILE)
    result_p = os.path.join(out, RESULT_FILE)
    state = read_state(out, cfg) if resume else None

    # A finished run: answer from the state file, without data or model.
    if state is not None and isinstance(state.get("result"), dict):
        write_history(metrics_p, state["history"])
        write_json(result_p, state["result"])
        log(f"{PROG}: --resume: the run in {out} had finished; result.json rewritten")
        return state["result"]

    # Data: uint8 images and int64 labels on the device, loaded once.
    ddir = find_dataset_dir(cfg["data"])
    raw, fine = read_bin(os.path.join(ddir, "train.bin"))
    tr_idx, va_idx = stratified_split(fine, cfg["val_split"])
    if cfg["limit_train"] > 0:
        tr_idx = tr_idx[: cfg["limit_train"]]
    if cfg["limit_val"] > 0:
        va_idx = va_idx[: cfg["limit_val"]]
    if not tr_idx or not va_idx:
        raise ConfigError(
            f"{os.path.join(ddir, 'train.bin')}: {len(fine)} images give {len(tr_idx)} training and "
            f"{len(va_idx)} validation images; need at least one of each (check --val-split/--limit-*)"
        )
    recs = torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(-1, RECORD_BYTES)
    images = recs[:, 2:].reshape(-1, 3, 32, 32)
    labels = recs[:, 1].to(torch.int64)

    def take(idx):
        i = torch.tensor(idx, dtype=torch.int64)
        return images.index_select(0, i).to(device), labels.index_select(0, i).to(device)

    x_train, y_train = take(tr_idx)
    x_val, y_val = take(va_idx)
    test = None
    if cfg["eval_test"]:
        traw, tfine = read_bin(os.path.join(ddir, "test.bin"))
        trecs = torch.frombuffer(bytearray(traw), dtype=torch.uint8).view(-1, RECORD_BYTES)
        test = (trecs[:, 2:].reshape(-1, 3, 32, 32).to(device), trecs[:, 1].to(torch.int64).to(device))
    del raw, recs, images, labels
    n_train, n_val = len(tr_idx), len(va_idx)
    scale = torch.tensor([1.0 / (255.0 * s) for s in STD]).view(1, 3, 1, 1).to(device)
    shift = torch.tensor([-m / s for m, s in zip(MEAN, STD)]).view(1, 3, 1, 1).to(device)

    torch.manual_seed(cfg["seed"])
    model = build_model(torch, cfg["model"], cfg["width"], cfg["depth"], cfg["dropout"]).to(device)
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if cfg["optimizer"] == "sgd":
        opt = torch.optim.SGD(
            model.parameters(),
            lr=cfg["lr"],
            momentum=cfg["momentum"],
            nesterov=cfg["nesterov"],
            weight_decay=cfg["weight_decay"],
        )
    else:
        opt = torch.optim.AdamW(
            model.parameters(),
            lr=cfg["lr"],
            betas=(cfg["beta1"], cfg["beta2"]),
            eps=cfg["eps"],
            weight_decay=cfg["weight_decay"],
        )

    if os.path.exists(result_p):
        os.remove(result_p)
    ck_dir = os.path.join(out, CHECKPOINT_DIR)
    if state is not None:
        start_epoch, step = int(state["epoch"]), int(state["step"])
        history, prior_elapsed = list(state["history"]), float(state.get("elapsed_s", 0.0))
        ck = torch.load(checkpoint_path(out, start_epoch), map_location=device, weights_only=True)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        log(f"{PROG}: resuming after epoch {start_epoch} of {cfg['epochs']} from {ck_dir}")
    else:
        if resume:
            log(f"{PROG}: --resume: no checkpoint yet, starting from epoch 1")
        shutil.rmtree(ck_dir, ignore_errors=True)
        start_epoch, step, history, prior_elapsed = 0, 0, [], 0.0
    # metrics.jsonl holds exactly the epochs the checkpoint covers.
    write_history(metrics_p, history)

    log(
        f"{PROG}: {cfg['model']} ({n_params} parameters) on {device}, {threads} threads; {n_train} train / "
        f"{n_val} val images; {cfg['epochs']} epochs, batch {cfg['batch_size']} (torch {torch.__version__})"
    )

    bs = min(cfg["batch_size"], n_train)
    # A last batch of a single image breaks batch norm in training mode: drop it.
    steps_per_epoch = n_train // bs + (1 if n_train % bs > 1 else 0)
    diverged = False
    train_time_total = sum(h.get("train_time_s", 0.0) for h in history)

    for done_this_run, epoch in enumerate(range(start_epoch, cfg["epochs"])):
        if stop_after is not None and done_this_run >= stop_after:
            raise Stopped(f"stopped after epoch {epoch} as asked (--stop-after); continue with --resume")
        t_epoch = time.perf_counter()
        cpu_epoch = time.process_time()
        torch.manual_seed(epoch_seed(cfg["seed"], epoch))
        model.train()
        perm = torch.randperm(n_train).to(device)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        seen, lr, last_report = 0, cfg["lr"], time.perf_counter()
        for b in range(steps_per_epoch):
            start = b * bs
            ln = min(bs, n_train - start)
            idx = perm[start : start + ln]
            xb = x_train.index_select(0, idx)
            if cfg["augment"]:
                xb = augment(torch, xb)
            xb = xb.float() * scale + shift
            yb = y_train.index_select(0, idx)
            logits = model(xb)
            loss = F.cross_entropy(logits, yb, label_smoothing=cfg["label_smoothing"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            lr = lr_at(cfg, step, steps_per_epoch)
            for g in opt.param_groups:
                g["lr"] = lr
            opt.step()
            step += 1
            seen += ln
            with torch.no_grad():
                loss_sum += loss.detach() * ln
                correct += (logits.argmax(1) == yb).sum()
            if verbose and time.perf_counter() - last_report > 30.0:
                last_report = time.perf_counter()
                rate = seen / (last_report - t_epoch)
                log(f"  epoch {epoch + 1}: {b + 1}/{steps_per_epoch} batches, {rate:.0f} images/s")
        synchronize(torch, device)
        train_time = time.perf_counter() - t_epoch
        train_cpu = time.process_time() - cpu_epoch
        train_time_total += train_time
        train_loss = float(loss_sum) / seen
        train_acc = int(correct) / seen
        ev = evaluate(torch, model, x_val, y_val, scale, shift)
        epoch_time = time.perf_counter() - t_epoch

        m = {"epoch": epoch + 1}
        put(m, "train_loss", train_loss)
        put(m, "train_acc", train_acc)
        put(m, "val_loss", ev["loss"])
        put(m, "val_acc", ev["acc"])
        put(m, "val_top5", ev["top5"])
        put(m, "val_auc", ev["auc"])
        put(m, "lr", lr)
        put(m, "epoch_time_s", epoch_time)
        put(m, "train_time_s", train_time)
        put(m, "images_per_s", seen / train_time)
        put(m, "train_cpu_s", train_cpu)
        append_line(metrics_p, m)
        auc_s = f"{ev['auc']:.4f}" if ev["auc"] is not None else "nan"
        log(
            f"epoch {epoch + 1:>3}/{cfg['epochs']}  train_loss {train_loss:.4f}  val_loss {ev['loss']:.4f}  "
            f"val_acc {ev['acc']:.4f}  val_top5 {ev['top5']:.4f}  val_auc {auc_s}  {epoch_time:.1f}s  "
            f"{seen / train_time:.0f} img/s"
        )
        history.append(m)
        # Checkpoint: tensors first, then the state file that points at them, then older files.
        os.makedirs(ck_dir, exist_ok=True)
        ck_p = checkpoint_path(out, epoch + 1)
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict()}, ck_p + ".tmp")
        os.replace(ck_p + ".tmp", ck_p)
        write_json(
            os.path.join(ck_dir, STATE_FILE),
            {
                "format": 1,
                "trainer": TRAINER,
                "epoch": epoch + 1,
                "step": step,
                "elapsed_s": prior_elapsed + time.perf_counter() - t_start,
                "config": fingerprint(cfg),
                "history": history,
            },
        )
        for name in os.listdir(ck_dir):
            if name not in (STATE_FILE, os.path.basename(ck_p)):
                os.remove(os.path.join(ck_dir, name))
        if not math.isfinite(train_loss):
            log(f"{PROG}: training diverged in epoch {epoch + 1} (loss is not finite; lower --lr?); stopping")
            diverged = True
            break

    def get(h, k):
        v = h.get(k)
        return float(v) if isinstance(v, (int, float)) else None

    accs = [get(h, "val_acc") or 0.0 for h in history]
    last = history[-1] if history else {}
    r = {}
    for k in ["val_acc", "val_top5", "val_auc", "val_loss", "train_loss", "train_acc"]:
        put(r, k, get(last, k))
    best_epoch, best_acc = 0, -math.inf
    for i, a in enumerate(accs):
        if a > best_acc:
            best_epoch, best_acc = i + 1, a
    put(r, "best_val_acc", best_acc)
    r["best_epoch"] = best_epoch
    put(r, "best_val_auc", max((get(h, "val_auc") for h in history if get(h, "val_auc") is not None), default=None))
    put(r, "curve_auc", curve_auc(accs))
    if test is not None:
        ev = evaluate(torch, model, test[0], test[1], scale, shift)
        put(r, "test_acc", ev["acc"])
        put(r, "test_top5", ev["top5"])
        put(r, "test_loss", ev["loss"])
        put(r, "test_auc", ev["auc"])
    r["epochs"] = len(history)
    r["diverged"] = int(diverged)
    r["n_train"] = n_train
    r["n_val"] = n_val
    r["n_params"] = n_params
    put(r, "train_time_s", train_time_total)
    if train_time_total > 0:
        put(r, "images_per_s", n_train * len(history) / train_time_total)
    put(r, "total_time_s", prior_elapsed + time.perf_counter() - t_start)
    write_json(result_p, r)
    # The state file now carries the result, so that --resume of a finished run needs no tensors.
    write_json(
        os.path.join(ck_dir, STATE_FILE),
        {
            "format": 1,
            "trainer": TRAINER,
            "epoch": len(history),
            "step": step,
            "elapsed_s": prior_elapsed + time.perf_counter() - t_start,
            "config": fingerprint(cfg),
            "history": history,
            "result": r,
        },
    )
    if not keep_checkpoint:
        p = checkpoint_path(out, len(history))
        if os.path.exists(p):
            os.remove(p)
    log(
        f"{PROG}: done: val_acc {r.get('val_acc', math.nan):.4f} (best {best_acc:.4f}), "
        f"curve_auc {r.get('curve_auc', math.nan):.4f}; wrote {result_p}"
    )
    return r


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------

FLAG_HELP = {
    "model": "resnet18 | resnet34 | resnet50 | vgg16 | densenet121 | cnn   [default: resnet18]",
    "width": "Plain CNN: channels of the first stage, 1..=1024   [default: 32]",
    "depth": "Plain CNN: number of conv layers, 1..=16   [default: 4]",
    "dropout": "Dropout before the classifier, [0, 1)   [default: 0]",
    "optimizer": "sgd | adamw   [default: sgd]",
    "lr": "Peak learning rate, (0, 10]   [default: 0.1]",
    "momentum": "SGD momentum, [0, 1)   [default: 0.9]",
    "nesterov": "SGD Nesterov momentum (true/false)   [default: false]",
    "weight_decay": "Weight decay (SGD: L2 in the gradient; AdamW: decoupled), [0, 1]   [default: 5e-4]",
    "beta1": "AdamW beta1, [0, 1)   [default: 0.9]",
    "beta2": "AdamW beta2, [0, 1)   [default: 0.999]",
    "eps": "AdamW epsilon, (0, 1]   [default: 1e-8]",
    "schedule": "cosine | step | constant   [default: cosine]",
    "warmup_epochs": "Linear warmup, in epochs (fractions allowed), [0, epochs]   [default: 0]",
    "lr_step_size": "Step schedule: epochs between decays; 0 = epochs/3   [default: 0]",
    "lr_gamma": "Step schedule: decay factor, (0, 1]   [default: 0.1]",
    "label_smoothing": "Label smoothing, [0, 1)   [default: 0]",
    "batch_size": "Batch size, 1..=65536   [default: 128]",
    "epochs": "Epochs, 1..=100000   [default: 30]",
    "seed": "Seed for initialization, shuffling, augmentation and dropout   [default: 0]",
    "val_split": "Fraction of train.bin held out for validation (stratified, fixed), (0, 0.9]   [default: 0.1]",
    "limit_train": "Train on the first N images of the training split only (0 = all)",
    "limit_val": "Validate on the first N images of the validation split only (0 = all)",
    "augment": "Random crop + horizontal flip (true/false)   [default: true]",
    "data": "Dataset directory: holds cifar-100-binary/{train,test}.bin   [default: data/cifar-100]",
    "device": "auto | cpu | cuda | cuda:N | xpu | xpu:N (auto: xpu, else cuda, else cpu)   [default: auto]",
    "threads": "CPU threads; 0 = one per available core   [default: 0]",
    "eval_test": "Also evaluate test.bin after the last epoch (test_* keys in result.json)",
}


def make_parser():
    ap = argparse.ArgumentParser(
        prog=PROG,
        description="Train one CIFAR-100 model with PyTorch (XPU, CUDA or CPU); writes metrics.jsonl "
        "(one line per epoch), result.json and a checkpoint into --out. The same settings, metrics and "
        "files as `alcf-trainer train`.",
        epilog="`alcf_train.py info` prints the PyTorch version and the devices it sees.",
    )
    ap.add_argument(
        "--params",
        metavar="FILE",
        help="params.json (JSON object name -> value, keys as the flags with '_'); default: $ALCF_PARAMS "
        "when set. Unknown keys are an error.",
    )
    ap.add_argument("--out", metavar="DIR", help="Output directory; default: $ALCF_TRIAL_DIR when set, else '.'")
    ap.add_argument(
        "--resume", action="store_true", help="Continue from the checkpoint in --out if there is one (else start fresh)."
    )
    ap.add_argument("-q", "--quiet", action="store_true", help="No progress lines on stderr.")
    ap.add_argument("--stop-after", type=int, metavar="N", help=argparse.SUPPRESS)
    ap.add_argument(
        "--keep-checkpoint",
        action="store_true",
        help="Keep the final model and optimizer state in DIR/checkpoint/ (default: only checkpoint/state.json)",
    )
    for key in PARAM_KEYS:
        flag = "--" + key.replace("_", "-")
        if KINDS[key] == "bool":
            ap.add_argument(flag, dest=key, nargs="?", const="true", metavar="BOOL", help=FLAG_HELP[key])
        else:
            ap.add_argument(flag, dest=key, metavar=key.upper() if key != "data" else "DIR", help=FLAG_HELP[key])
    return ap


def to_config(args):
    cfg = dict(DEFAULTS)
    params = args.params or os.environ.get("ALCF_PARAMS")
    if params:
        apply_params_file(cfg, params)
    for key in PARAM_KEYS:
        v = getattr(args, key)
        if v is not None:
            try:
                cfg[key] = coerce(key, v)
            except ConfigError as e:
                flag = "--" + key.replace("_", "-")
                raise ConfigError(f"{flag}: {str(e).split(': ', 1)[-1]}") from None
    validate(cfg)
    return cfg


def info():
    import torch  # noqa: PLC0415

    print(f"{PROG}: torch {torch.__version__} ({os.path.dirname(torch.__file__)})")
    xpu = xpu_available(torch)
    print(f"xpu available: {xpu}" + (f", devices: {torch.xpu.device_count()}" if xpu else ""))
    print(f"ZE_AFFINITY_MASK: {os.environ.get('ZE_AFFINITY_MASK', 'unset')}")
    cuda = torch.cuda.is_available()
    print(f"cuda available: {cuda}" + (f", devices: {torch.cuda.device_count()}" if cuda else ""))
    print(f"default device: {resolve_device(torch, 'auto')}")
    print(f"threads: {available_cores()}")


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "info":
        info()
        return 0
    if argv and argv[0] == "train":  # the subcommand word of `alcf-trainer train`, optional here
        argv = argv[1:]
    args = make_parser().parse_args(argv)
    try:
        cfg = to_config(args)
        out = args.out or os.environ.get("ALCF_TRIAL_DIR") or "."
        train(cfg, out, resume=args.resume, verbose=not args.quiet, stop_after=args.stop_after,
              keep_checkpoint=args.keep_checkpoint)
    except Stopped as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return EX_TEMPFAIL
    except ConfigError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
