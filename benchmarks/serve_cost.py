"""What `vidsr serve` costs: one clip upscaled by `vidsr upscale` (vidsr.upscale_video, the same
runner) and as a job uploaded to the page, interleaved; while the page's job runs, how long the
page takes to answer (GET / and GET /api/jobs, every second).

    PYTHONPATH=$PWD python benchmarks/serve_cost.py [CLIP] --model fast --repeat 2

Both report the pipeline's own fps (frames written / seconds from the first frame), so engine
loading is left out of both. Each run is a fresh process, as `vidsr upscale` and a freshly
started `vidsr serve` are: a job run in a process that has already run one can be several times
faster on a loaded CPU (seen here: 2 -> 10 fps), which would flatter whichever side ran second.
Needs the web extra.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn

from vidsr import upscale_video
from vidsr.jobs.serve import JobQueue, ServeConfig
from vidsr.web.app import create_app

DEFAULT_CLIP = Path(__file__).resolve().parents[1] / "../shared/data/clips/carphone_pristine.mp4"


def through_cli(clip: Path, work: Path, model: str) -> float:
    out = work / f"cli_{time.monotonic_ns()}.mp4"
    result = upscale_video(clip, out, model, device="cpu")
    return result.fps


def through_page(clip: Path, work: Path, model: str) -> tuple[float, list[float]]:
    out = work / f"served_{time.monotonic_ns()}"
    queue = JobQueue(ServeConfig(out=out, values={"model": model, "device": "cpu"}))
    queue.start()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(create_app(queue), log_level="warning", lifespan="off",
                                           timeout_graceful_shutdown=1))  # fmt: skip
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]})
    thread.start()
    while not server.started:
        time.sleep(0.02)
    latencies: list[float] = []
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            r = client.post("/api/upload", params={"name": clip.name}, content=clip.read_bytes(),
                            headers={"X-Vidsr": "1"})  # fmt: skip
            r.raise_for_status()
            while True:
                for path in ("/", "/api/jobs"):
                    t0 = time.perf_counter()
                    jobs = client.get(path)
                    latencies.append(time.perf_counter() - t0)
                job = jobs.json()["jobs"][0]
                if job["state"] in ("done", "failed"):
                    break
                time.sleep(1.0)
            if job["state"] != "done":
                raise SystemExit(f"the job failed: {job['error']}")
            return job["fps"], latencies
    finally:
        queue.close()
        server.should_exit = True
        thread.join()
        sock.close()


def one(kind: str, clip: Path, model: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        if kind == "cli":
            return {"fps": through_cli(clip, Path(tmp), model), "latencies": []}
        fps, latencies = through_page(clip, Path(tmp), model)
        return {"fps": fps, "latencies": latencies}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("clip", nargs="?", type=Path, default=DEFAULT_CLIP)
    ap.add_argument("--model", default="fast")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--one", choices=("cli", "page"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print("RESULT " + json.dumps(one(args.one, args.clip, args.model)))
        return
    runs: dict[str, list[float]] = {"cli": [], "page": []}
    lat: list[float] = []
    for i in range(args.repeat):
        for kind in ("cli", "page"):
            cmd = [sys.executable, __file__, str(args.clip), "--model", args.model, "--one", kind]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            result = json.loads(out.split("RESULT ", 1)[1])
            runs[kind].append(result["fps"])
            lat += result["latencies"]
        print(f"run {i + 1}: vidsr upscale {runs['cli'][-1]:.2f} fps, "
              f"through the page {runs['page'][-1]:.2f} fps", flush=True)  # fmt: skip
    cli, page = statistics.mean(runs["cli"]), statistics.mean(runs["page"])
    lat_ms = sorted(x * 1000 for x in lat)
    p95 = lat_ms[int(0.95 * (len(lat_ms) - 1))]
    print(f"{args.clip.name}, model {args.model}, cpu: vidsr upscale {cli:.2f} fps, "
          f"through the page {page:.2f} fps (ratio {page / cli:.3f})")  # fmt: skip
    print(f"page answers while the job runs: {len(lat_ms)} requests, median "
          f"{statistics.median(lat_ms):.1f} ms, p95 {p95:.1f} ms, "
          f"max {lat_ms[-1]:.1f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
