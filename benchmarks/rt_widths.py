"""Speed of the real-time model (`rt`, vidsr.models.ecbsr) at other widths and depths, beside the
shipped `fast` and bicubic: model frames per second at one size, as `vidsr bench` counts them
(the engine's slot ring: input copy, network, output to uint8 NHWC). Prints one line per network.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/rt_widths.py --size 320x180 --threads 2
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 .venv/bin/python benchmarks/rt_widths.py

Weights are random (seeded) and folded as inference runs them; speed does not depend on them.
Quality at a width needs a training run of its own: see training/RESULTS.md for the ones made.
"""

from __future__ import annotations

import argparse
import platform

import numpy as np
import torch

from vidsr.media.sample import sample_frame
from vidsr.models import RealTimeSR, build_model
from vidsr.quality.throughput import model_fps, parse_size
from vidsr.upscale.engine import Engine

NETWORKS = (("rt 4x8", 4, 8), ("rt 4x16 (shipped)", 4, 16), ("rt 4x24", 4, 24),
            ("rt 4x32", 4, 32), ("rt 8x16", 8, 16))  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="320x180")
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--repeat", type=int, default=3, help="keep the best of this many")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--precision", default="fp32")
    args = ap.parse_args()
    width, height = parse_size(args.size)
    still = np.stack([sample_frame(i, width, height) for i in range(3)])
    torch.manual_seed(0)
    nets = [(name, RealTimeSR(blocks=b, channels=c).fuse()) for name, b, c in NETWORKS]
    nets += [("fast", build_model("fast")), ("bicubic", build_model("bicubic"))]
    threads = args.threads or torch.get_num_threads()
    cpu = platform.processor() or platform.machine()
    print(f"{cpu}, torch {torch.__version__}, {args.size} -> x4, {args.precision}, {threads} thr.")
    for name, net in nets:
        engine = Engine(net, device="cpu", precision=args.precision, threads=args.threads)
        fps = max(model_fps(engine, still, 1, args.frames) for _ in range(args.repeat))
        params = sum(p.numel() for p in net.parameters())
        print(f"{name:<20} {params:>8} parameters  {fps:8.2f} fps")


if __name__ == "__main__":
    main()
