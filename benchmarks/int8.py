"""--precision int8 against fp32 (and bf16) and OpenVINO fp32, on this CPU as it is and as an
AVX2-only CPU would run it, in one run. Prints a markdown table.

    .venv/bin/python benchmarks/int8.py                                # fast 320x180, ~5 min
    .venv/bin/python benchmarks/int8.py --model srresnet --size 160x90

Every measurement runs in its own subprocess. "AVX2" caps the instruction sets of both libraries
that run the convolutions: ONEDNN_MAX_CPU_ISA=AVX2 (oneDNN in torch, and OpenVINO's copy of it:
its int8 convs then run as jit_avx2_I8, no VNNI) and ATEN_CPU_CAPABILITY=avx2 (torch's own
kernels). vidsr rows: `vidsr bench --json` (model alone and the whole pipeline); OpenVINO rows:
the same network (random seeded weights, BatchNorm folded) exported to ONNX, model only.
Needs openvino (pip install 'vidsr[int8]').
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

AVX2 = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
VIDSR = [sys.executable, "-m", "vidsr"]


def openvino_fp32(model: str, size: str, frames: int) -> dict:
    import numpy as np
    import openvino as ov
    import torch

    from vidsr.models import build_model, fold_batchnorm
    from vidsr.models.onnx import OPSET, write_graph

    w, h = (int(v) for v in size.split("x"))
    torch.manual_seed(0)
    net = fold_batchnorm(build_model(model)).eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.onnx"
        write_graph(net, torch.rand(1, 3, 32, 32), path, OPSET)
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
        compiled = ov.Core().compile_model(str(path), "CPU", config)
    req = compiled.create_infer_request()
    x = np.random.rand(1, 3, h, w).astype(np.float32)
    for _ in range(2):
        req.infer({0: x})
    best = 0.0
    for _ in range(2):
        t = time.perf_counter()
        for _ in range(frames):
            req.infer({0: x})
        best = max(best, frames / (time.perf_counter() - t))
    return {"model_fps": round(best, 3), "version": ov.__version__}


def run(cmd: list[str], env: dict[str, str]) -> dict:
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env})
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": ((proc.stderr.strip().splitlines() or ["failed"])[-1])[:200]}
    return json.loads(lines[-1])


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "?"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="fast")
    ap.add_argument("--size", default="320x180")
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(openvino_fp32(args.model, args.size, args.frames)))
        return
    from vidsr.upscale.engine import cpu_has_fast_bf16

    load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"{cpu_name()}, {os.cpu_count()} cores, fast bf16: {cpu_has_fast_bf16()}; load "
          f"average {load}; {args.model} {args.size}, {args.frames} frames, best of 2")  # fmt: skip
    print()
    print("| ISA | what | model fps | pipeline fps | model vs fp32 |")
    print("|---|---|---|---|---|")
    bench = [*VIDSR, "bench", "--model", args.model, "--size", args.size, "--frames",
             str(args.frames), "--json"]  # fmt: skip
    for isa, env in (("native", {}), ("AVX2", AVX2)):
        precisions = ("fp32", "bf16", "int8") if isa == "native" else ("fp32", "int8")
        base = None
        for precision in precisions:
            r = run([*bench, "--precision", precision], env)
            if "error" in r:
                print(f"| {isa} | vidsr {precision} | {r['error']} | | |", flush=True)
                continue
            base = base or (r["model_fps"] if precision == "fp32" else None)
            ratio = f"{r['model_fps'] / base:.2f}x" if base else "—"
            print(f"| {isa} | vidsr {precision} | {r['model_fps']:.2f} | {r['pipeline_fps']:.2f} "
                  f"| {ratio} |", flush=True)  # fmt: skip
        one = [sys.executable, __file__, "--one", "--model", args.model, "--size", args.size,
               "--frames", str(args.frames)]  # fmt: skip
        r = run(one, env)
        if "error" in r:
            print(f"| {isa} | OpenVINO fp32 | {r['error']} | | |", flush=True)
        else:
            ratio = f"{r['model_fps'] / base:.2f}x" if base else "—"
            print(f"| {isa} | OpenVINO {r['version'].split('-')[0]} fp32 | {r['model_fps']:.2f} "
                  f"| — | {ratio} |", flush=True)  # fmt: skip
    load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"\nload average after: {load}")


if __name__ == "__main__":
    main()
