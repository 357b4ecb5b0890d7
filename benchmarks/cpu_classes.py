"""Every built-in model's speed per CPU class on this machine, in one run: the README's table.

    .venv/bin/python benchmarks/cpu_classes.py --out classes.json       # ~15 min on 2 cores

Classes: "AVX2 fp32" and "AVX2 int8" cap the instruction sets of both libraries that run the
convolutions (ONEDNN_MAX_CPU_ISA=AVX2 for oneDNN in torch and in OpenVINO, ATEN_CPU_CAPABILITY=avx2
for torch's own kernels), as on a laptop or desktop CPU without AVX-512; "native" is this CPU as
it is, at the precision `auto` picks here (bf16 where it has AVX512-BF16 or AMX). A CPU cannot be
made faster than it is, so an AVX2 figure taken here is this core with AVX-512 switched off, not
another CPU: `lscpu` goes with every number.

Per class and model: `vidsr bench --json` at 320x180 -> 1280x720 with the default encoder (x264,
preset fast at 720 lines) and the default `--temporal auto` (model fps, pipeline fps with and
without the stabiliser, segmented fps), each in its own process; then the README's "Try it"
(`vidsr upscale sample.mp4`, the 2-second sample, wall clock of the whole command, start-up
included) with the default model, `--preset fast` (rt) and `--model srgan`.
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
CLASSES = {  # name: (environment, --precision)
    "AVX2 fp32": (AVX2, "fp32"),
    "AVX2 int8": (AVX2, "int8"),
    "native": ({}, "auto"),
}
MODELS = {"bicubic": 96, "rt": 96, "fast": 16, "real": 16, "srresnet": 6, "srgan": 6}  # frames
NO_INT8 = {"bicubic", "rt"}


def run(args: list[str], env: dict[str, str], timeout: float = 900) -> tuple[str, float]:
    t = time.perf_counter()
    done = subprocess.run(args, env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=timeout, check=False)  # fmt: skip
    if done.returncode:
        raise RuntimeError(f"{' '.join(args)}: {done.stderr.strip()[-500:]}")
    return done.stdout, time.perf_counter() - t


def bench(model: str, env: dict[str, str], precision: str, extra: list[str]) -> dict:
    frames = MODELS[model]
    args = [*VIDSR, "bench", "--model", model, "--precision", precision, "--frames", str(frames),
            "--repeat", "2" if frames > 8 else "1", "--json", *extra]  # fmt: skip
    return json.loads(run(args, env)[0].strip().splitlines()[-1])


def try_it(env: dict[str, str], precision: str, tmp: Path) -> dict[str, float]:
    sample = tmp / "sample.mp4"
    if not sample.exists():
        run([*VIDSR, "sample", str(sample), "--overwrite"], {})
    out: dict[str, float] = {}
    for label, extra in (("default (fast)", []), ("--preset fast (rt)", ["--preset", "fast"]),
                         ("--model srgan", ["--model", "srgan"])):  # fmt: skip
        if precision == "int8" and "--preset" in extra:
            continue  # rt has no int8 path
        args = [*VIDSR, "upscale", str(sample), "-o", str(tmp / "out.mp4"), "--overwrite", "-q"]
        if precision != "auto":
            args += ["--precision", precision]
        out[label] = round(run([*args, *extra], env)[1], 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON lines, appended as it goes")
    parser.add_argument("--classes", default=",".join(CLASSES))
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--no-try", action="store_true", help="skip the Try-it timings")
    args = parser.parse_args()
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    cpu = next((ln.split(":", 1)[1].strip() for ln in lscpu.splitlines()
                if ln.startswith("Model name")), "?")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp, args.out.open("a") as log:
        for name in args.classes.split(","):
            env, precision = CLASSES[name]
            for model in args.models.split(","):
                if precision == "int8" and model in NO_INT8:
                    continue
                runs = [("default", [])]
                if model == "rt":  # the goal is stated with x264 veryfast
                    runs.append(("x264 veryfast", ["--encoder-preset", "veryfast"]))
                for label, extra in runs:
                    load = round(os.getloadavg()[0], 2)
                    row = {"class": name, "cpu": cpu, "model": model, "encoder": label,
                           "load_before": load, **bench(model, env, precision, extra)}  # fmt: skip
                    print(json.dumps(row), flush=True)
                    log.write(json.dumps(row) + "\n")
                    log.flush()
            if not args.no_try:
                row = {"class": name, "cpu": cpu, "try_it_s": try_it(env, precision, Path(tmp))}
                print(json.dumps(row), flush=True)
                log.write(json.dumps(row) + "\n")
                log.flush()


if __name__ == "__main__":
    main()
