"""The one-command GPU check (issue 18); benchmarks/gpu.sh installs the carried wheels and runs it.

    python benchmarks/gpu_check.py OUTDIR [--dry-run] [--budget S] [--only G,..] [--skip G,..]

Groups, in the order they run (most wanted first, so a short budget still answers the most):
  env      GPU, driver, torch, CUDA, cuDNN, PyAV; whether each NVENC encoder opens
  peak     a large bf16 torch.matmul: the TFLOP/s that the model rows are a fraction of
  tests    pytest -m gpu (every test marked gpu)
  bench    `vidsr bench` (model, decode, encode, pipeline fps) for srresnet and fast, 320x180 and
           960x540, fp16 and bf16, batch auto, eager
  codec    decode and encode fps at 3840x2160: libx264 and each NVENC encoder that opens here
  train    training/bench_step.py on cuda, srresnet, batch 16 and 64
  compile  model fps eager vs Engine(compile="default" / "reduce-overhead" (CUDA graphs)), and
           eager with cudnn.benchmark, in one process, best-informed rows first
Each step is its own process group with a time limit (one hang cannot eat the budget), and
OUTDIR/results.json + results.md are rewritten after every step and every streamed row, so a
killed run still leaves what it had measured. OUTDIR/log.txt holds every step's output.

--dry-run (here, on a CPU): prints every command it would run and proves each one's wiring with
a quick CPU twin through the same parser (`vidsr bench` with the same flags on a tiny clip,
pytest collecting the gpu tests, bench_step running one tiny step, each worker in a tiny CPU
form), then writes the JSON/Markdown skeleton.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import platform
import queue
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SELF = str(Path(__file__).resolve())
MODELS = ("srresnet", "fast")
SIZES = ("320x180", "960x540")
PRECISIONS = ("fp16", "bf16")
COMPILE_MODES = ("default", "reduce-overhead")
BENCH_FRAMES = {"320x180": 256, "960x540": 96}  # each measurement runs about a second or more
GROUPS = ("env", "peak", "tests", "bench", "codec", "train", "compile")
MARK = "@@ "  # a worker's result line; anything else a step prints is only logged
SCHEMA = 1


# -- workers: each runs in its own process and prints MARK + one JSON object per result ---------
def emit(record: dict) -> None:
    print(MARK + json.dumps(record), flush=True)


def worker_env(dry: bool) -> None:
    import av
    import torch

    from vidsr.media.codecs import NVENC, nvenc_unavailable

    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "av": av.__version__,
        "ffmpeg": ".".join(map(str, av.library_versions.get("libavcodec", ()))),
        "cpus": os.cpu_count(),
        "gpu": None,
    }
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        env["gpu"] = p.name
        env["gpu_memory_gib"] = round(p.total_memory / 2**30, 1)
        env["sm_count"] = p.multi_processor_count
        env["capability"] = f"{p.major}.{p.minor}"
        env["driver"] = _nvidia_smi("driver_version")
    env["nvenc"] = {c: nvenc_unavailable(c) or "opens" for c in NVENC}
    emit(env)


def _nvidia_smi(query: str) -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=15,
        )
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout else None
    except (OSError, subprocess.TimeoutExpired):
        return None


def worker_peak(dry: bool) -> None:
    """bf16 matmul TFLOP/s: n^3 x 2 FLOP per product, mean of 10 after 3 warm-ups (CUDA events)."""
    import torch

    cuda = torch.cuda.is_available() and not dry
    n = 8192 if cuda else 256
    dev = "cuda" if cuda else "cpu"
    a = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    reps = 10 if cuda else 2
    if cuda:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
        for _ in range(reps):
            a @ b
        end.record()
        end.synchronize()
        seconds = start.elapsed_time(end) / 1e3
    else:
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        seconds = time.perf_counter() - t
    emit({"n": n, "device": dev, "bf16_tflops": round(2 * n**3 * reps / seconds / 1e12, 3)})


def worker_codec(dry: bool) -> None:
    """Encode fps at 4x 960x540 (= 3840x2160) per encoder, then decode fps of the x264 result."""
    from vidsr.config import EncodeConfig, UpscaleConfig
    from vidsr.media.codecs import NVENC, nvenc_unavailable
    from vidsr.media.encode import encoder_options
    from vidsr.media.probe import probe
    from vidsr.media.sample import write_sample
    from vidsr.quality.throughput import decode_fps, encode_fps

    w, h, frames = (32, 18, 4) if dry else (960, 540, 48)
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "src.mp4"
        src = write_sample(clip, width=w, height=h, seconds=frames / 25, audio=False)
        encoders = [("libx264", None), *((c, None) for c in NVENC), ("hevc_nvenc", "p010le")]
        for codec, pix_fmt in encoders:
            reason = nvenc_unavailable(codec, pix_fmt or "yuv420p", 4 * w, 4 * h)
            row = {"codec": codec, "pix_fmt": pix_fmt or "yuv420p", "size": f"{4 * w}x{4 * h}"}
            if reason is not None:
                emit({**row, "encode_fps": None, "note": f"cannot open: {reason}"})
                continue
            enc = EncodeConfig(codec=codec, pix_fmt=pix_fmt)
            cfg = UpscaleConfig(encode=enc, overwrite=True, quiet=True)
            out = Path(tmp) / f"{codec}-{row['pix_fmt']}.mp4"
            fps = encode_fps(src, out, cfg, 4, frames)
            opts = encoder_options(enc, probe(src), 4 * h)
            emit({**row, "encode_fps": round(fps, 2), "options": opts})
            if codec == "libx264":
                emit(
                    {
                        "decode": out.name,
                        "size": row["size"],
                        "decode_fps": round(max(decode_fps(out, 8) for _ in range(2)), 2),
                    }
                )


def worker_compile(dry: bool) -> None:
    """Model fps eager, eager + cudnn.benchmark, and each torch.compile mode, one shape at a time.

    The batch is what eager's auto batch picks; every compiled engine gets full batches only, so
    it compiles once per mode. The compiled output is checked against eager's on the same frames.
    """
    import torch

    dev = "cuda" if torch.cuda.is_available() and not dry else "cpu"
    plan = [(m, s, p) for p in PRECISIONS for s in reversed(SIZES) for m in MODELS]
    if dry:
        plan, modes = [("fast", "32x24", "bf16")], ()
    else:
        modes = COMPILE_MODES
    for model, size, precision in plan:
        for row in compile_rows(model, size, precision, dev, modes, dry):
            emit(row)


def compile_rows(model: str, size: str, precision: str, dev: str, modes, dry: bool):
    import numpy as np
    import torch

    from vidsr.media.sample import sample_frame
    from vidsr.models import build_model
    from vidsr.quality.throughput import model_fps, parse_size
    from vidsr.upscale.engine import Engine

    w, h = parse_size(size)
    gc.collect()  # the last shape's engines and slots
    if dev == "cuda":
        torch.cuda.empty_cache()
    torch.manual_seed(0)
    eager = Engine(build_model(model), device=dev, precision=precision)
    batch = eager.auto_batch_size(h, w)
    base = np.stack([sample_frame(i, w, h) for i in range(min(3 * batch, 8))])
    frames = np.resize(base, (3 * batch, h, w, 3))
    count = 2 * batch if dry else max(4 * batch, 128 if h > 200 else 512)
    row = {"model": model, "size": size, "precision": eager.precision, "batch": batch}
    yield {**row, "compile": "eager", "model_fps": round(model_fps(eager, frames, batch, count), 2)}
    if dev != "cuda":
        return
    torch.backends.cudnn.benchmark = True
    fps = model_fps(eager, frames, batch, count, warmup=3)
    yield {**row, "compile": "eager+cudnn.benchmark", "model_fps": round(fps, 2)}
    torch.backends.cudnn.benchmark = False
    x = torch.from_numpy(frames[:batch]).to(dev)
    want = eager(x).int()
    for mode in modes:
        # Eager's cached blocks would sit beside the CUDA-graph pool, which holds its own peak.
        torch._dynamo.reset()
        gc.collect()
        torch.cuda.empty_cache()
        engine = Engine(build_model(model), device=dev, precision=precision, compile=mode)
        t = time.perf_counter()
        got = engine(x).int()
        torch.cuda.synchronize()
        compile_s = time.perf_counter() - t
        diff = int((got - want).abs().max())
        fps = model_fps(engine, frames, batch, count, warmup=3)
        yield {
            **row,
            "compile": mode,
            "model_fps": round(fps, 2),
            "compile_s": round(compile_s, 1),
            "max_diff_vs_eager": diff,
            "batch_after_oom": engine.max_batch,  # None: the eager batch fitted compiled too
        }
        del engine, got


WORKERS: dict[str, Callable[[bool], None]] = {
    "env": worker_env,
    "peak": worker_peak,
    "codec": worker_codec,
    "compile": worker_compile,
}


# -- the model's cost --------------------------------------------------------------------------
def flops_per_pixel(model: str) -> float:
    """FLOPs per input pixel (2 per multiply-add) of every convolution, counted on a probe.

    srresnet: 4.44 MFLOP (DESIGN.md); fast: counted the same way. PReLU, the adds and
    PixelShuffle are a rounding error next to the convolutions and are left out.
    """
    import torch

    from vidsr.models import build_model

    net = build_model(model).eval()
    total = 0

    def count(conv, _inp, out):
        nonlocal total
        k = conv.kernel_size[0] * conv.kernel_size[1] * conv.in_channels // conv.groups
        total += 2 * k * out.numel()

    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    hooks = [m.register_forward_hook(count) for m in convs]
    with torch.no_grad():
        net(torch.zeros(1, 3, 16, 16))
    for hook in hooks:
        hook.remove()
    return total / (16 * 16)


# -- steps -------------------------------------------------------------------------------------
@dataclass
class Step:
    name: str
    group: str
    argv: list[str]
    timeout: float
    # Stores what the step printed (records, text, the argv that ran) in the results; a note.
    record: Callable[[Results, list[dict], str, list[str]], str]
    check: list[str] | None = None  # --dry-run: a quick command that proves the wiring
    check_key: str = ""  # checks with the same key run once
    streamed: bool = False  # records arrive one by one (stored as they come)


@dataclass
class Results:
    out: Path
    dry_run: bool
    data: dict = field(default_factory=dict)

    def __post_init__(self):
        self.data = {
            "schema": SCHEMA,
            "dry_run": self.dry_run,
            "started": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "finished": None,
            "host": platform.node(),
            "flops_per_pixel": {m: flops_per_pixel(m) for m in MODELS},
            "env": {},
            "peak": {},
            "tests": {},
            "bench": [],
            "codecs": [],
            "train": [],
            "steps": [],
            "targets": {},
        }

    def save(self) -> None:
        self.data["targets"] = targets(self.data)
        for name, text in (
            ("results.json", json.dumps(self.data, indent=1)),
            ("results.md", markdown(self.data)),
        ):
            tmp = self.out / f".{name}.tmp"
            tmp.write_text(text + "\n")
            os.replace(tmp, self.out / name)


def model_row(data: dict, row: dict) -> dict:
    """A bench row with its TFLOP/s and its fraction of the measured bf16 peak."""
    w, h = (int(v) for v in row["size"].split("x"))
    per_px = data["flops_per_pixel"].get(row["model"])
    fps = row.get("model_fps")
    if per_px and fps:
        row["tflops"] = round(fps * per_px * w * h / 1e12, 2)
        peak = data["peak"].get("bf16_tflops")
        if peak:
            row["of_peak"] = round(row["tflops"] / peak, 3)
    enc, pipe = row.get("encode_fps"), row.get("pipeline_fps")
    if fps and enc and pipe:
        row["pipeline_vs_bound"] = round(pipe / min(fps, enc), 3)
    return row


def record_one(key: str) -> Callable:
    def record(results: Results, records: list[dict], _text: str, _argv: list[str]) -> str:
        if not records:
            raise ValueError("the worker printed no result")
        results.data[key].update(records[-1])
        return ""

    return record


def record_bench(results: Results, _records: list[dict], text: str, argv: list[str]) -> str:
    lines = [ln for ln in text.splitlines() if ln.startswith("{")]
    if not lines:
        raise ValueError("vidsr bench printed no JSON line")
    raw = json.loads(lines[-1])
    model = argv[argv.index("--model") + 1]
    row = model_row(results.data, {"model": model, "compile": "eager", **raw})
    results.data["bench"].append(row)
    return f"model {row['model_fps']} fps, pipeline {row['pipeline_fps']} fps"


def record_rows(key: str) -> Callable:
    def record(results: Results, records: list[dict], _text: str, _argv: list[str]) -> str:
        for r in records:
            results.data[key].append(model_row(results.data, r) if key == "bench" else r)
        return f"{len(records)} rows"

    return record


def record_train(results: Results, _records: list[dict], text: str, _argv: list[str]) -> str:
    lines = [ln for ln in text.splitlines() if ln.startswith("{")]
    if not lines:
        raise ValueError("bench_step printed no JSON line")
    row = json.loads(lines[-1])
    results.data["train"].append(row)
    return f"batch {row['batch']}: {row['it_per_s']} it/s"


def record_tests(results: Results, _records: list[dict], text: str, _argv: list[str]) -> str:
    counts = {
        k: int(n)
        for n, k in re.findall(
            r"(\d+) (passed|failed|skipped|errors?|deselected|xfailed|xpassed)", text
        )
    }
    collected = re.search(r"(\d+)(?:/\d+)? tests? collected", text)
    if collected:
        counts["collected"] = int(collected.group(1))
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", text, re.M)
    results.data["tests"].update({"counts": counts, "failed": failed})
    if not counts:
        raise ValueError("no pytest summary in the output")
    if counts.get("collected") == 0:
        raise ValueError("no gpu-marked test was collected")
    return ", ".join(f"{n} {k}" for k, n in counts.items())


def plan(py: str) -> list[Step]:
    vidsr = [py, "-m", "vidsr"]
    steps = [
        Step(
            "env",
            "env",
            [py, SELF, "--worker", "env"],
            60,
            record_one("env"),
            [py, SELF, "--worker", "env", "--dry-run"],
        ),
        Step(
            "peak",
            "peak",
            [py, SELF, "--worker", "peak"],
            90,
            record_one("peak"),
            [py, SELF, "--worker", "peak", "--dry-run"],
        ),
        Step(
            "pytest -m gpu",
            "tests",
            pytest_argv(py),
            240,
            record_tests,
            pytest_argv(py, collect=True),
        ),
    ]
    for precision in PRECISIONS:
        for size in SIZES:
            for model in MODELS:
                argv = vidsr + ["bench", "--model", model, "--size", size, "--device", "cuda"]
                argv += ["--precision", precision, "--batch-size", "auto"]
                repeat = "2" if precision == "fp16" else "1"  # bf16 shares fp16's encoder bound
                argv += ["--frames", str(BENCH_FRAMES[size]), "--repeat", repeat, "--json"]
                check = vidsr + ["bench", "--model", "bicubic", "--size", "32x24", "--frames", "2"]
                check += ["--device", "cpu", "--precision", "fp32", "--batch-size", "auto"]
                check += ["--repeat", "1", "--json"]
                steps.append(
                    Step(
                        f"bench {model} {size} {precision}",
                        "bench",
                        argv,
                        120,
                        record_bench,
                        check,
                        "bench",
                    )
                )
    steps.append(
        Step(
            "codec 4K",
            "codec",
            [py, SELF, "--worker", "codec"],
            120,
            record_rows("codecs"),
            [py, SELF, "--worker", "codec", "--dry-run"],
            streamed=True,
        )
    )
    step = [py, str(ROOT / "training" / "bench_step.py"), "bf16"]
    for batch in (16, 64):
        steps.append(
            Step(
                f"train step batch {batch}",
                "train",
                step + ["cuda", "30", "--batch", str(batch), "--json"],
                120,
                record_train,
                step + ["cpu", "1", "--batch", "1", "--crop", "8", "--json"],
                "train",
            )
        )
    steps.append(
        Step(
            "compile vs eager",
            "compile",
            [py, SELF, "--worker", "compile"],
            600,
            record_rows("bench"),
            [py, SELF, "--worker", "compile", "--dry-run"],
            streamed=True,
        )
    )
    return steps


def gpu_test_files() -> list[str]:
    """The test files that hold gpu-marked tests: the others cannot break this run's collection."""
    files = sorted((ROOT / "tests").glob("test_*.py"))
    return [str(f) for f in files if re.search(r"mark\.gpu\b", f.read_text())]


def pytest_argv(py: str, *, collect: bool = False) -> list[str]:
    argv = [py, "-m", "pytest", "-m", "gpu", "-p", "no:cacheprovider", *gpu_test_files()]
    if collect:
        return argv + ["--collect-only", "-q"]
    argv += ["-q", "-rA", "--continue-on-collection-errors"]
    import importlib.util

    if importlib.util.find_spec("pytest_timeout") is not None:
        argv += ["--timeout", "180"]  # one hung test fails alone instead of the whole step
    return argv


# -- running -----------------------------------------------------------------------------------
class Runner:
    """Runs steps as process groups with a deadline; streams MARK records to `on_record`."""

    def __init__(self, log: Path):
        self.log = log
        self.child: subprocess.Popen | None = None

    def run(self, argv: list[str], timeout: float, on_record) -> tuple[int | None, str, list]:
        group = {"process_group": 0} if sys.version_info >= (3, 11) else {"start_new_session": True}
        with open(self.log, "a") as log:
            log.write(f"\n$ {shlex.join(argv)}\n")
            log.flush()
            self.child = subprocess.Popen(
                argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                cwd=ROOT,
                env=child_env(),
                **group,
            )
            lines: queue.Queue = queue.Queue()
            reader = threading.Thread(target=_pump, args=(self.child.stdout, lines), daemon=True)
            reader.start()
            text, records, end = [], [], time.monotonic() + timeout
            while True:
                try:
                    line = lines.get(timeout=max(0.0, min(1.0, end - time.monotonic())))
                except queue.Empty:
                    if time.monotonic() >= end:
                        self.kill()
                        reader.join(5)
                        return None, "".join(text), records
                    continue
                if line is None:
                    break
                log.write(line)
                log.flush()
                text.append(line)
                if line.startswith(MARK):
                    records.append(json.loads(line[len(MARK) :]))
                    on_record(records[-1])
            rc = self.child.wait()
            self.child = None
            return rc, "".join(text), records

    def kill(self) -> None:
        if self.child is not None and self.child.poll() is None:
            try:
                os.killpg(self.child.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.child.wait()


def _pump(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def child_env() -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    paths = env.get("PYTHONPATH", "").split(os.pathsep)
    if str(ROOT) not in paths:
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, paths)])
    return env


def run_step(step: Step, results: Results, runner: Runner, deadline: float) -> dict:
    """Run one step within what is left of the budget; returns its status entry."""
    argv = step.check if results.dry_run else step.argv
    left = deadline - time.monotonic()
    entry = {"name": step.name, "group": step.group, "command": shlex.join(step.argv)}
    if argv is None:
        return {**entry, "status": "not checked"}
    if left < 20:
        return {**entry, "status": "skipped: budget spent"}
    t = time.monotonic()

    def on_record(record: dict) -> None:
        if step.streamed:  # stored at once: a later kill keeps it
            step.record(results, [record], "", argv)
            results.save()

    rc, text, records = runner.run(argv, min(step.timeout, left), on_record)
    entry["seconds"] = round(time.monotonic() - t, 1)
    if rc is None:
        entry["status"] = f"timed out after {entry['seconds']} s"
        return entry
    try:
        note = "" if step.streamed else step.record(results, records, text, argv)
        if step.streamed:
            note = f"{len(records)} rows"
        entry["status"] = "ok" if rc == 0 else f"exit {rc}"
    except (ValueError, KeyError, AttributeError, json.JSONDecodeError) as e:
        note, entry["status"] = str(e), f"exit {rc}, unreadable output"
    if rc != 0:  # the last line usually says why (an exception, a failed test count)
        last = [ln.strip() for ln in text.splitlines() if ln.strip()][-1:]
        note = f"{note}; last line: {last[0][:200]}" if last else note
    entry["note"] = note
    return entry


# -- the report --------------------------------------------------------------------------------
def targets(data: dict) -> dict:
    rows = [r for r in data["bench"] if r.get("model") == "srresnet" and r.get("size") == "960x540"]
    rows = [r for r in rows if r.get("precision") == "fp16" and r.get("of_peak") is not None]
    best = max(rows, key=lambda r: r["of_peak"], default=None)
    pipes = [r for r in data["bench"] if r.get("pipeline_vs_bound") is not None]
    return {
        "srresnet_960x540_fp16_of_peak": {
            "want": ">= 0.5",
            "got": best and best["of_peak"],
            "by": best and best["compile"],
            "met": None if best is None else best["of_peak"] >= 0.5,
        },
        "pipeline_vs_min_model_encode": {
            "want": ">= 0.9",
            "rows": {
                f"{r['model']} {r['size']} {r['precision']}": r["pipeline_vs_bound"] for r in pipes
            },
            "met": None if not pipes else all(r["pipeline_vs_bound"] >= 0.9 for r in pipes),
        },
    }


def _cell(v) -> str:
    return "" if v is None else str(v)


def markdown(data: dict) -> str:
    env, peak = data["env"], data["peak"]
    dry = " (dry run: the skeleton, nothing measured on a GPU)" if data["dry_run"] else ""
    lines = [
        f"# vidsr GPU check{dry}",
        "",
        f"- started {data['started']}, finished {data['finished'] or 'not (partial results)'}",
        f"- GPU {env.get('gpu')}, {env.get('gpu_memory_gib')} GiB, driver {env.get('driver')}; "
        f"torch {env.get('torch')}, CUDA {env.get('cuda')}, cuDNN {env.get('cudnn')}, "
        f"PyAV {env.get('av')}, Python {env.get('python')}",
        f"- bf16 matmul peak: {peak.get('bf16_tflops')} TFLOP/s (n={peak.get('n')}, "
        f"{peak.get('device')}); model cost: "
        + ", ".join(f"{m} {v / 1e6:.2f} MFLOP/px" for m, v in data["flops_per_pixel"].items()),
        f"- NVENC: {env.get('nvenc')}",
        f"- tests: {data['tests'].get('counts')}; failed: {data['tests'].get('failed') or 'none'}",
        "",
        "| model | input | precision | compile | batch | model fps | TFLOP/s | of peak "
        "| pipeline fps | decode fps | encode fps | pipeline / min(model, encode) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in data["bench"]:
        cells = [
            r.get("model"),
            r.get("size"),
            r.get("precision"),
            r.get("compile"),
            r.get("batch", r.get("batch_size")),
            r.get("model_fps"),
            r.get("tflops"),
            r.get("of_peak"),
            r.get("pipeline_fps"),
            r.get("decode_fps"),
            r.get("encode_fps"),
            r.get("pipeline_vs_bound"),
        ]
        lines.append("| " + " | ".join(map(_cell, cells)) + " |")
    lines += [
        "",
        "| codec (4K) | pix_fmt | encode fps | decode fps | note |",
        "|---|---|---|---|---|",
    ]
    for r in data["codecs"]:
        if "codec" in r:
            lines.append(
                f"| {r['codec']} | {r['pix_fmt']} | {_cell(r['encode_fps'])} | "
                f"| {r.get('note', '')} |"
            )
        else:
            lines.append(f"| decode {r['decode']} | | | {r['decode_fps']} | |")
    lines += ["", "| training step | batch | it/s | crops/s |", "|---|---|---|---|"]
    for r in data["train"]:
        lines.append(
            f"| srresnet {r['mode']} {r['device']} | {r['batch']} | {r['it_per_s']} | "
            f"{r['samples_per_s']} |"
        )
    lines += ["", "| target | want | got | met |", "|---|---|---|---|"]
    for name, t in data["targets"].items():
        got = t.get("got", t.get("rows"))
        lines.append(f"| {name} | {t['want']} | {_cell(got)} | {_cell(t['met'])} |")
    lines += ["", "| step | status | seconds | note |", "|---|---|---|---|"]
    for s in data["steps"]:
        lines.append(
            f"| {s['name']} | {s['status']} | {_cell(s.get('seconds'))} | {s.get('note', '')} |"
        )
    return "\n".join(lines)


# -- main --------------------------------------------------------------------------------------
def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("outdir", nargs="?", type=Path)
    p.add_argument("--dry-run", action="store_true", help="check the wiring on a CPU")
    p.add_argument("--budget", type=float, default=420.0, help="seconds for all steps")
    p.add_argument("--only", default="", help=f"comma-separated groups: {','.join(GROUPS)}")
    p.add_argument("--skip", default="", help="comma-separated groups to leave out")
    p.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker is None and a.outdir is None:
        p.error("OUTDIR is required")
    for g in filter(None, (a.only + "," + a.skip).split(",")):
        if g not in GROUPS:
            p.error(f"unknown group {g!r}; choose from {', '.join(GROUPS)}")
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse(argv)
    if a.worker:
        WORKERS[a.worker](a.dry_run)
        return 0
    a.outdir.mkdir(parents=True, exist_ok=True)
    results = Results(a.outdir, a.dry_run)
    runner = Runner(a.outdir / "log.txt")
    signal.signal(signal.SIGTERM, lambda *_: (runner.kill(), sys.exit(143)))
    only = set(filter(None, a.only.split(","))) or set(GROUPS)
    skip = set(filter(None, a.skip.split(",")))
    deadline, t0, seen = time.monotonic() + a.budget, time.monotonic(), set()
    ok = True
    for step in plan(sys.executable):
        if step.group not in only or step.group in skip:
            continue
        print(
            f"[{time.monotonic() - t0:5.0f} s] {'would run' if a.dry_run else 'run'}: "
            f"{shlex.join(step.argv)}",
            flush=True,
        )
        if a.dry_run and step.check_key and step.check_key in seen:
            entry = {
                "name": step.name,
                "group": step.group,
                "command": shlex.join(step.argv),
                "status": "ok (wiring checked above)",
            }
        else:
            seen.add(step.check_key)
            entry = run_step(step, results, runner, deadline)
        ok &= entry["status"].startswith(("ok", "skipped"))
        print(f"         -> {entry['status']} {entry.get('note', '')}", flush=True)
        results.data["steps"].append(entry)
        results.save()
    results.data["finished"] = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    results.save()
    print("\n" + (a.outdir / "results.md").read_text())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
