"""What Ray costs: a folder of short clips upscaled by a plain local run and with `--ray auto`,
on the same cores, interleaved; then, on warm Ray workers, the cost of one task.

    PYTHONPATH=$PWD python benchmarks/ray_overhead.py --clips 4 --repeat 2

Every clip is one task (shorter than a segment). The local run is one process with a thread
per core; `--ray auto` starts Ray on this machine with one single-threaded worker per core.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_clips(folder: Path, count: int, size: str, seconds: float) -> None:
    from vidsr.media.sample import write_sample
    from vidsr.quality.throughput import parse_size

    width, height = parse_size(size)
    for i in range(count):
        write_sample(folder / f"clip{i}.mp4", width=width, height=height, seconds=seconds)


def timed_cli(folder: Path, out: Path, model: str, ray: bool) -> float:
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "vidsr", "upscale", str(folder), "-o", str(out),
               "--model", model, "--device", "cpu", "-q"]  # fmt: skip
    command += ["--ray", "auto"] if ray else []
    t0 = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def warm_task_costs(folder: Path, out: Path, model: str, tasks: int) -> dict[str, float]:
    """On a Ray instance started here: the start-up, an empty task's round trip on a warm
    worker, and what a whole-file task costs the driver beyond the worker's upscale time."""
    from vidsr.config import UpscaleConfig
    from vidsr.jobs.distributed import RayRunner

    config = UpscaleConfig(model=model, device="cpu", ray="auto", overwrite=True, quiet=True)
    t0 = time.perf_counter()
    with RayRunner(config) as runner:
        runner.preflight()  # Ray up, one worker started, its engine built
        ready = time.perf_counter() - t0
        trips = []
        for _ in range(tasks):
            t = time.perf_counter()
            runner.preflight()
            trips.append(time.perf_counter() - t)
        clips = sorted(folder.glob("*.mp4"))
        extra = []
        for clip in clips * 2:  # the second pass: every worker has its engine
            t = time.perf_counter()
            result = runner.run_one(clip, out / clip.name)
            extra.append(time.perf_counter() - t - result.seconds)
    local = []
    from vidsr.jobs.batch import BatchRunner

    runner = BatchRunner(UpscaleConfig(model=model, device="cpu", overwrite=True, quiet=True))
    for clip in clips * 2:
        t = time.perf_counter()
        result = runner.run_one(clip, out / clip.name)
        local.append(time.perf_counter() - t - result.seconds)
    return {
        "ray_ready_s": ready,
        "empty_task_ms": 1000 * statistics.median(trips),
        "file_task_extra_s": statistics.median(extra[len(clips) :]),
        "local_file_extra_s": statistics.median(local[len(clips) :]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--size", default="160x90")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--model", default="fast")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="vidsr-ray-bench-"))
    try:
        folder, out = root / "in", root / "out"
        folder.mkdir()
        make_clips(folder, args.clips, args.size, args.seconds)
        walls: dict[str, list[float]] = {"local": [], "ray": []}
        for _ in range(args.repeat):  # interleaved: the load of the machine drifts
            walls["local"].append(timed_cli(folder, out, args.model, ray=False))
            walls["ray"].append(timed_cli(folder, out, args.model, ray=True))
        costs = warm_task_costs(folder, out, args.model, tasks=20)
        print(json.dumps({"clips": args.clips, "size": args.size, "seconds": args.seconds,
                          "model": args.model, "wall_s": walls, **costs,
                          "load": os.getloadavg()}, indent=1))  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
