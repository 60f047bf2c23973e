#!/usr/bin/env python3
"""Eager-PyTorch baseline for alcf-trainer's training throughput.

The same work per step as `alcf-trainer train`, op for op: index_select of a shuffled batch from
uint8 tensors, random crop (4 px zero padding) + flip as two gathers, per-channel normalization,
forward, cross-entropy, backward, SGD (momentum 0.9, weight decay 5e-4), and the same running
loss/accuracy bookkeeping. The models mirror trainer/src/models.rs layer for layer.

Prints one JSON object: {"model":..., "images_per_s": [per epoch], ...}.
Needs `import torch` (scripts/setup-torch.sh --bench).
"""

import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

MEAN = [0.5071, 0.4865, 0.4409]
STD = [0.2673, 0.2564, 0.2762]


def conv(cin, cout, k, stride, pad):
    return nn.Conv2d(cin, cout, k, stride=stride, padding=pad, bias=False)


class Shortcut(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv = conv(cin, cout, 1, stride, 0)
        self.bn = nn.BatchNorm2d(cout)

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
    def __init__(self, blocks, bottle, classes, dropout):
        super().__init__()
        self.stem_c, self.stem_b = conv(3, 64, 3, 1, 1), nn.BatchNorm2d(64)
        layers, cin = [], 64
        for stage, n in enumerate(blocks):
            width = 64 << stage
            for b in range(n):
                stride = 2 if stage > 0 and b == 0 else 1
                if bottle:
                    layers.append(Bottleneck(cin, width, stride))
                    cin = width * 4
                else:
                    layers.append(Basic(cin, width, stride))
                    cin = width
        self.layers = nn.Sequential(*layers)
        self.dropout = dropout
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        y = self.layers(F.relu(self.stem_b(self.stem_c(x))))
        y = F.adaptive_avg_pool2d(y, 1).flatten(1)
        return self.fc(F.dropout(y, self.dropout, self.training))


class VGG16(nn.Module):
    CFG = [64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0]

    def __init__(self, classes, dropout):
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
        self.dropout = dropout

    def forward(self, x):
        y = self.features(x).flatten(1)
        y = F.relu(self.fc1(F.dropout(y, self.dropout, self.training)))
        return self.fc(F.dropout(y, self.dropout, self.training))


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
    def __init__(self, classes, dropout, growth=32, blocks=(6, 12, 24, 16)):
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
        self.final_bn, self.fc, self.dropout = nn.BatchNorm2d(c), nn.Linear(c, classes), dropout

    def forward(self, x):
        y = F.relu(self.final_bn(self.body(self.stem(x))))
        y = F.adaptive_avg_pool2d(y, 1).flatten(1)
        return self.fc(F.dropout(y, self.dropout, self.training))


class CNN(nn.Module):
    def __init__(self, width, depth, classes, dropout):
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
        self.fc, self.dropout = nn.Linear(cin, classes), dropout

    def forward(self, x):
        y = x
        for c, b, p in zip(self.convs, self.bns, self.pools):
            y = F.relu(b(c(y)))
            if p:
                y = F.max_pool2d(y, 2)
        y = F.adaptive_avg_pool2d(y, 1).flatten(1)
        return self.fc(F.dropout(y, self.dropout, self.training))


def build(name, width, depth, dropout):
    return {
        "resnet18": lambda: ResNet([2, 2, 2, 2], False, 100, dropout),
        "resnet34": lambda: ResNet([3, 4, 6, 3], False, 100, dropout),
        "resnet50": lambda: ResNet([3, 4, 6, 3], True, 100, dropout),
        "vgg16": lambda: VGG16(100, dropout),
        "densenet121": lambda: DenseNet121(100, dropout),
        "cnn": lambda: CNN(width, depth, 100, dropout),
    }[name]()


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
