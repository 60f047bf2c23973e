#!/usr/bin/env python3
"""Eager-PyTorch baseline for alcf-trainer's training throughput.

The same work per step as `alcf-trainer train`, op for op: index_select of a shuffled batch from
uint8 tensors, random crop (4 px zero padding) + flip as two gathers, per-channel normalization,
forward, cross-entropy, backward, SGD (momentum 0.9, weight decay 5e-4), and the same running
loss/accuracy bookkeeping. The models are trainer/python/alcf_train.py's, which mirror trainer/src/models.rs layer for layer.

Prints one JSON object: {"model":..., "images_per_s": [per epoch], ...}.
Needs `import torch` (scripts/setup-torch.sh --bench).
"""

import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

MEAN = [0.5071, 0.4865, 0.4409]
STD = [0.2673, 0.2564, 0.2762]


# The models, defined once: trainer/python/alcf_train.py mirrors trainer/src/models.rs layer for
# layer (its tests compare parameter counts with alcf-trainer's).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import alcf_train  # noqa: E402


def build(name, width, depth, dropout):
    return alcf_train.build_model(torch, name, width, depth, dropout, classes=100)


def load(data_dir, n):
    import os

    path = os.path.join(data_dir, "cifar-100-binary", "train.bin")
    if not os.path.exists(path):
        path = os.path.join(data_dir, "train.bin")
    with open(path, "rb") as f:
        raw = bytearray(f.read(n * 3074))
    recs = torch.frombuffer(raw, dtype=torch.uint8).view(-1, 3074)
    x = recs[:, 2:].reshape(-1, 3, 32, 32).clone()
    y = recs[:, 1].to(torch.int64)
    return x, y


def augment(x):
    b = x.shape[0]
    padded = F.pad(x, (4, 4, 4, 4))
    ox = torch.randint(9, (b, 1))
    oy = torch.randint(9, (b, 1))
    flip = torch.randint(2, (b, 1))
    ar = torch.arange(32).unsqueeze(0)
    rows = oy + ar
    cols = ox + ar + flip * (ar.neg() * 2 + 31)
    t = padded.gather(2, rows.view(b, 1, 32, 1).expand(b, 3, 32, 40))
    return t.gather(3, cols.view(b, 1, 1, 32).expand(b, 3, 32, 32))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--images", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    x, y = load(a.data, a.images)
    n = x.shape[0]
    model = build(a.model, a.width, a.depth, 0.0)
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=0.9, weight_decay=5e-4)
    scale = torch.tensor([1.0 / (255.0 * s) for s in STD]).view(1, 3, 1, 1)
    shift = torch.tensor([-m / s for m, s in zip(MEAN, STD)]).view(1, 3, 1, 1)
    bs = min(a.batch_size, n)
    steps = n // bs + (1 if n % bs > 1 else 0)
    total = a.epochs * steps
    rates, cpu_rates = [], []
    step = 0
    for epoch in range(a.epochs):
        model.train()
        t0 = time.perf_counter()
        c0 = time.process_time()
        perm = torch.randperm(n)
        loss_sum = torch.zeros(())
        correct = torch.zeros((), dtype=torch.int64)
        seen = 0
        for b in range(steps):
            start = b * bs
            ln = min(bs, n - start)
            idx = perm.narrow(0, start, ln)
            xb = augment(x.index_select(0, idx))
            xb = xb.float() * scale + shift
            yb = y.index_select(0, idx)
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            opt.zero_grad()
            loss.backward()
            for g in opt.param_groups:
                g["lr"] = a.lr * 0.5 * (1 + math.cos(math.pi * step / total))
            opt.step()
            step += 1
            seen += ln
            with torch.no_grad():
                loss_sum += loss.detach() * ln
                correct += (logits.argmax(1) == yb).sum()
        dt = time.perf_counter() - t0
        dc = time.process_time() - c0
        _ = loss_sum.item() / seen, correct.item() / seen
        rates.append(seen / dt)
        cpu_rates.append(seen / dc)
    print(
        json.dumps(
            {
                "model": a.model,
                "images": n,
                "batch_size": bs,
                "threads": torch.get_num_threads(),
                "torch": torch.__version__,
                "images_per_s": rates,
                "images_per_cpu_s": cpu_rates,
            }
        )
    )


if __name__ == "__main__":
    main()
