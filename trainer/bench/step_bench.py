"""Phase timing of a training step in eager PyTorch (twin of trainer/examples/step_bench.rs)."""
import sys, time
import torch, torch.nn.functional as F
sys.path.insert(0, __file__.rsplit("/", 1)[0])
from throughput import build, augment, MEAN, STD

model = sys.argv[1] if len(sys.argv) > 1 else "cnn"
bs = int(sys.argv[2]) if len(sys.argv) > 2 else 128
steps = int(sys.argv[3]) if len(sys.argv) > 3 else 20
threads = int(sys.argv[4]) if len(sys.argv) > 4 else 1
torch.set_num_threads(threads)
torch.manual_seed(0)
x = torch.randint(256, (bs * 4, 3, 32, 32)).to(torch.uint8)
y = torch.randint(100, (bs * 4,))
m = build(model, 32, 4, 0.0)
opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
scale = torch.tensor([1.0 / (255.0 * s) for s in STD]).view(1, 3, 1, 1)
shift = torch.tensor([-a / s for a, s in zip(MEAN, STD)]).view(1, 3, 1, 1)
t = [0.0] * 4
for s in range(steps + 2):
    t0 = time.perf_counter()
    idx = torch.randperm(bs * 4).narrow(0, 0, bs)
    xb = augment(x.index_select(0, idx)).float() * scale + shift
    yb = y.index_select(0, idx)
    t1 = time.perf_counter()
    loss = F.cross_entropy(m(xb), yb)
    t2 = time.perf_counter()
    opt.zero_grad()
    loss.backward()
    t3 = time.perf_counter()
    opt.step()
    t4 = time.perf_counter()
    if s >= 2:
        for i, d in enumerate([t1 - t0, t2 - t1, t3 - t2, t4 - t3]):
            t[i] += d * 1000 / steps
print(f"python {model} bs={bs} threads={threads}: data {t[0]:.2f} ms, forward {t[1]:.2f} ms, backward {t[2]:.2f} ms, optim {t[3]:.2f} ms, total {bs * 1000 / sum(t):.1f} img/s")
