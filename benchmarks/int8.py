"""--precision int8 against fp32 (and bf16) and OpenVINO fp32, on this CPU as it is and as an
AVX2-only CPU would run it, in one run. Prints a markdown table.

    .venv/bin/python benchmarks/int8.py                                # fast 320x180, ~5 min
    .venv/bin/python benchmarks/int8.py --model srresnet --size 160x90 --frames 6 --model-only

Every measurement runs in its own subprocess. "AVX2" caps the instruction sets of both libraries
that run the convolutions: ONEDNN_MAX_CPU_ISA=AVX2 (oneDNN in torch, and OpenVINO's copy of it:
its int8 convs then run as jit_avx2_I8, no VNNI) and ATEN_CPU_CAPABILITY=avx2 (torch's own
kernels). Model fps: vidsr's Engine at each precision (uint8 frame in and out) and OpenVINO fp32
on the same network (random seeded weights, BatchNorm folded, exported to ONNX), interleaved in
one process per ISA. Pipeline fps: `vidsr bench --json` (decode, model, x264, mux) with its
default `--temporal auto` (the stabiliser) and with it off; bench's own model fps gives the
pipeline / model ratios.
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


def model_only(model: str, size: str, frames: int, precisions: list[str], rounds: int) -> dict:
    """Model fps of vidsr at each precision and of OpenVINO fp32, interleaved round by round in
    this one process (a busy moment on a shared machine hits them alike); best round of each."""
    import numpy as np
    import openvino as ov
    import torch

    from vidsr.media.sample import sample_frame
    from vidsr.models import build_model, fold_batchnorm
    from vidsr.models.onnx import OPSET, write_graph
    from vidsr.upscale.engine import Engine

    w, h = (int(v) for v in size.split("x"))

    def net():
        torch.manual_seed(0)
        return build_model(model)

    steps = {}
    still = torch.from_numpy(sample_frame(0, w, h))[None]
    for precision in precisions:
        engine = Engine(net(), device="cpu", precision=precision)
        steps[f"vidsr {precision}"] = lambda e=engine: e(still)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.onnx"
        write_graph(fold_batchnorm(net()).eval(), torch.rand(1, 3, 32, 32), path, OPSET)
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
        compiled = ov.Core().compile_model(str(path), "CPU", config)
    req = compiled.create_infer_request()
    x = np.random.rand(1, 3, h, w).astype(np.float32)
    steps[f"OpenVINO {ov.__version__.split('-')[0]} fp32"] = lambda: req.infer({0: x})
    best = dict.fromkeys(steps, 0.0)
    for step in steps.values():
        step()  # warm
    for _ in range(rounds):
        for name, step in steps.items():
            t = time.perf_counter()
            for _ in range(frames):
                step()
            best[name] = max(best[name], frames / (time.perf_counter() - t))
    return best


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
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--model-only", action="store_true", help="skip the pipeline (vidsr bench)")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(model_only(args.model, args.size, args.frames, args.one.split(","),
                                    args.rounds)))  # fmt: skip
        return
    from vidsr.upscale.engine import cpu_has_fast_bf16

    load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"{cpu_name()}, {os.cpu_count()} cores, fast bf16: {cpu_has_fast_bf16()}; load "
          f"average {load}; {args.model} {args.size}; model: {args.frames} frames, best of "
          f"{args.rounds} interleaved rounds; pipeline: vidsr bench, best of 2")  # fmt: skip
    print()
    print("| ISA | what | model fps | model vs fp32 | pipeline fps (--temporal auto / off) "
          "| pipeline / model (auto / off) |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    bench = [*VIDSR, "bench", "--model", args.model, "--size", args.size, "--frames",
             str(args.frames), "--json"]  # fmt: skip
    for isa, env in (("native", {}), ("AVX2", AVX2)):
        precisions = ["fp32", "bf16", "int8"] if isa == "native" else ["fp32", "int8"]
        one = [sys.executable, __file__, "--one", ",".join(precisions), "--model", args.model,
               "--size", args.size, "--frames", str(args.frames),
               "--rounds", str(args.rounds)]  # fmt: skip
        models = run(one, env)
        if "error" in models:
            print(f"| {isa} | model-only run failed: {models['error']} | | | | |", flush=True)
            continue
        base = models["vidsr fp32"]
        for name, fps in models.items():
            pipe, ratio = "—", "—"
            if name.startswith("vidsr") and not args.model_only:
                r = run([*bench, "--precision", name.split()[1]], env)
                if "error" in r:
                    pipe = r["error"]
                else:
                    pipe = f"{r['pipeline_fps']:.2f} / {r['steady_off_fps']:.2f}"
                    ratio = (f"{r['pipeline_fps'] / r['model_fps']:.2f} / "
                             f"{r['steady_off_fps'] / r['model_fps']:.2f}")  # fmt: skip
            print(f"| {isa} | {name} | {fps:.2f} | {fps / base:.2f}x | {pipe} | {ratio} |",
                  flush=True)  # fmt: skip
    load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"\nload average after: {load}")


if __name__ == "__main__":
    main()
