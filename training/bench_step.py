"""Iterations/s of the srresnet recipe's step on a fixed batch 16 x 96 px crops.

One step = forward, MSE, backward, grad clipping, Adam, EMA: the loop of vidsr.train.loop without
data loading. `bf16` adds autocast(bf16) + channels_last; `fp32` is the tutorial's plain loop.

    python training/bench_step.py bf16 [cpu|cuda] [iterations]
    python training/bench_step.py fp32 [cpu|cuda] [iterations]
"""

import sys
import time
from contextlib import nullcontext

import torch

from vidsr.models import build_model
from vidsr.train.ema import ModelEma

mode, dev = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else "cpu")
torch.manual_seed(0)
fast = mode == "bf16"
fmt = torch.channels_last if fast else torch.contiguous_format
g = build_model("srresnet").to(dev, memory_format=fmt).train()
ema = ModelEma(g)
opt = torch.optim.Adam(g.parameters(), lr=1e-4)
x = torch.rand(16, 3, 24, 24, device=dev).contiguous(memory_format=fmt)
y = torch.rand(16, 3, 96, 96, device=dev).contiguous(memory_format=fmt)
ctx = torch.autocast(torch.device(dev).type, dtype=torch.bfloat16) if fast else nullcontext()


def step(i):
    with ctx:
        sr = g(x)
    loss = torch.nn.functional.mse_loss(sr.float(), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(g.parameters(), 1.0)
    opt.step()
    ema.update(g, i)
    return loss.item()


for i in range(2):  # warm-up
    step(i)
n = int(sys.argv[3]) if len(sys.argv) > 3 else 10
t = time.perf_counter()
for i in range(n):
    step(i)
dt = time.perf_counter() - t
print(
    f"{mode} {dev}: {n / dt:.3f} it/s ({dt / n:.3f} s/it) torch {torch.__version__} "
    f"threads {torch.get_num_threads()}"
)
