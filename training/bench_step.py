"""Iterations/s of the srresnet recipe's step on a fixed batch of 96 px crops (16 by default).

One step = forward, MSE, backward, grad clipping, Adam, EMA: the loop of vidsr.train.loop without
data loading. `bf16` adds autocast(bf16) + channels_last; `fp32` is the tutorial's plain loop.

    python training/bench_step.py bf16 [cpu|cuda] [iterations] [--batch N] [--json]
    python training/bench_step.py fp32 [cpu|cuda] [iterations] [--batch N] [--json]
"""

from __future__ import annotations

import argparse
import json
import time
from contextlib import nullcontext

import torch

from vidsr.models import build_model
from vidsr.train.ema import ModelEma


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=["bf16", "fp32"])
    p.add_argument("device", nargs="?", default="cpu")
    p.add_argument("iterations", nargs="?", type=int, default=10)
    p.add_argument("--batch", type=int, default=16, help="crops per step")
    p.add_argument("--crop", type=int, default=96, help="HR crop size (LR is a quarter of it)")
    p.add_argument("--json", action="store_true", help="print one JSON line")
    return p.parse_args(argv)


def bench(mode: str, dev: str, iterations: int, batch: int, crop: int) -> dict:
    torch.manual_seed(0)
    fast = mode == "bf16"
    fmt = torch.channels_last if fast else torch.contiguous_format
    g = build_model("srresnet").to(dev, memory_format=fmt).train()
    ema = ModelEma(g)
    opt = torch.optim.Adam(g.parameters(), lr=1e-4)
    x = torch.rand(batch, 3, crop // 4, crop // 4, device=dev).contiguous(memory_format=fmt)
    y = torch.rand(batch, 3, crop, crop, device=dev).contiguous(memory_format=fmt)
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
        return loss.item()  # waits for the device: every step is timed whole

    for i in range(2):  # warm-up (cuDNN picks its algorithms here)
        step(i)
    t = time.perf_counter()
    for i in range(iterations):
        step(i)
    dt = time.perf_counter() - t
    return {
        "mode": mode,
        "device": dev,
        "batch": batch,
        "crop": crop,
        "it_per_s": round(iterations / dt, 3),
        "samples_per_s": round(iterations * batch / dt, 1),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> None:
    a = parse(argv)
    r = bench(a.mode, a.device, a.iterations, a.batch, a.crop)
    if a.json:
        print(json.dumps(r))
        return
    print(
        f"{r['mode']} {r['device']} batch {r['batch']}: {r['it_per_s']:.3f} it/s "
        f"({1 / r['it_per_s']:.3f} s/it, {r['samples_per_s']} crops/s) torch {r['torch']} "
        f"threads {r['threads']}"
    )


if __name__ == "__main__":
    main()
