"""Train fast and srresnet on a lent GPU for a fixed wall-clock budget; benchmarks/gpu_train.sh
installs the carried wheels and runs this.

    python benchmarks/gpu_train.py OUTDIR [--dry-run] [--budget S] [--models fast,srresnet]

For each model, from its shipped weights: Set5/Set14 scores of the shipped weights; a short
calibration run that measures steps per second; a run of as many steps as the model's share of
the budget allows (L1, cosine from 2e-4 with a warm-up, EMA, bf16, batch 64 of 128 px crops from
the prepared crop cache); Set5/Set14 of what it reached; the fp16 export. OUTDIR/results.json and
results.md (the before/after table) are rewritten after every step, so a run killed at any point
leaves what it had; OUTDIR/MODEL.pt are the exports, OUTDIR/log.txt every command's output.

What it needs beside the tree (git-ignored, carried as `.device`):
  .device/crops/          vidsr train prepare --data ../shared/data/photos --video
                          ../shared/data/clips --hr-downscale 2 --hr-downscale 3
                          --min-video-lines 480 --tile 128 --step 128 --max-mb 12
                          --out .device/crops
  .device/bench/Set5, Set14   copies of ../shared/data/benchmarks/Set5 and Set14 (6 MB)

--dry-run (here, on the CPU): the same steps in miniature (a tiny generated cache and benchmark
when .device has none, 2 steps at batch 2, a second of budget), so the day a GPU is lent the
one call runs right the first time (tests/test_gpu_script.py runs it).
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

ROOT = Path(__file__).resolve().parents[1]
DEVICE = ROOT / ".device"
MODELS = ("fast", "srresnet")
RECIPE = """model = "{model}"
init_from = "{model}"
steps = {steps}
batch_size = {batch}
crop = {crop}
lr = 2e-4
lr_schedule = "cosine"
warmup_steps = {warmup}
lr_final = 0.01
betas = [0.9, 0.99]
pixel_loss = "l1"
val_every = 0
ckpt_every = {ckpt}
sample_every = 0
log_every = {log}
precision = "{precision}"
device = "{device}"
workers = {workers}
quiet = true
"""


class Log:
    def __init__(self, path: Path):
        self.path = path

    def __call__(self, text: str) -> None:
        with open(self.path, "a") as f:
            f.write(text if text.endswith("\n") else text + "\n")
        print(text.rstrip(), flush=True)


def vidsr(args: list[str], log: Log, timeout: float | None = None) -> subprocess.CompletedProcess:
    """`python -m vidsr ARGS`; on a timeout it is sent SIGTERM (training then checkpoints and
    stops after the step in progress) and given a minute to do so."""
    argv = [sys.executable, "-m", "vidsr", *args]
    log(f"$ {' '.join(argv)}")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=ROOT)  # fmt: skip
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()
        out, _ = proc.communicate(timeout=60)
    log(out or "")
    return subprocess.CompletedProcess(argv, proc.returncode, out or "", "")


def score(log: Log, bench: Path, model: str, weights: Path | None, device: str) -> dict:
    out = {}
    for name in ("Set5", "Set14"):
        args = ["eval", "--data", str(bench / name), "--device", device, "--json"]
        args += ["--weights", str(weights)] if weights else ["--model", model]
        r = vidsr(args, log)
        lines = [line for line in r.stdout.splitlines() if line.startswith("{")]
        if r.returncode or not lines:
            raise RuntimeError(f"vidsr eval failed on {name} (log.txt)")
        row = json.loads(lines[-1])
        out[name] = {"psnr_y": row["psnr_y"], "grid": row["grid_index"]}
    return out


def train(log: Log, out: Path, cache: Path, model: str, steps: int, seconds: float | None,
          a: argparse.Namespace) -> dict:  # fmt: skip
    run = out / "runs" / model
    recipe = out / f"{model}.toml"
    out.mkdir(parents=True, exist_ok=True)
    recipe.write_text(RECIPE.format(
        model=model, steps=steps, batch=a.batch, crop=a.crop, warmup=min(100, steps // 10),
        ckpt=max(10, steps // 10), precision=a.precision, device=a.device, workers=a.workers,
        log=max(1, min(10, steps // 2)),
    ))  # fmt: skip
    t0 = time.perf_counter()
    r = vidsr(["train", "--recipe", str(recipe), "--data", str(cache), "--out", str(run)], log,
              timeout=seconds)  # fmt: skip
    wall = time.perf_counter() - t0
    ckpt = run / "last.pt"
    if not ckpt.exists():
        raise RuntimeError(f"training {model} left no checkpoint (exit {r.returncode}; log.txt)")
    rows = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines() if x.strip()]
    timed = [x["step_s"] for x in rows if "step_s" in x]
    data = [x["data_s"] for x in rows if "data_s" in x]
    reached = max((x["step"] for x in rows), default=0)
    return {"steps": reached, "wall_s": round(wall, 1), "run": str(run),
            "step_s": round(sum(timed) / len(timed), 4) if timed else None,
            "data_s": round(sum(data) / len(data), 4) if data else None}  # fmt: skip


def tiny_inputs(tmp: Path, log: Log) -> tuple[Path, Path]:
    """A generated cache and benchmark for the dry run, where .device has none."""
    import numpy as np
    from PIL import Image

    pics, bench = tmp / "pics", tmp / "bench"
    rng = np.random.default_rng(0)
    for folder, n, size in ((pics, 3, 160), (bench / "Set5", 2, 64), (bench / "Set14", 2, 64)):
        folder.mkdir(parents=True)
        for i in range(n):
            img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(img).save(folder / (f"{i}.png" if folder == pics else f"i{i}_HR.png"))
    cache = tmp / "crops"
    r = vidsr(["train", "prepare", "--data", str(pics), "--out", str(cache), "--tile", "64"], log)
    if r.returncode:
        raise RuntimeError("vidsr train prepare failed (log.txt)")
    return cache, bench


def markdown(results: dict) -> str:
    lines = [f"# gpu_train.sh ({results['device']}, budget {results['budget_s']} s)", "",
             "| model | steps | s/step | data s/step | wall s | Set5 before -> after | "
             "Set14 before -> after | grid Set14 | ships |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for model, r in results["models"].items():
        if "error" in r:
            lines.append(f"| {model} | error: {r['error']} | | | | | | | |")
            continue
        b, f = r.get("before", {}), r.get("after", {})
        cell = {s: f"{b[s]['psnr_y']:.2f} -> {f[s]['psnr_y']:.2f}" if s in b and s in f else ""
                for s in ("Set5", "Set14")}  # fmt: skip
        t = r.get("train", {})
        grid = f"{b['Set14']['grid']:.3f} -> {f['Set14']['grid']:.3f}" if f else ""
        lines.append(f"| {model} | {t.get('steps', '')} | {t.get('step_s', '')} | "
                     f"{t.get('data_s', '')} | {t.get('wall_s', '')} | {cell['Set5']} | "
                     f"{cell['Set14']} | {grid} | {r.get('ships', '')} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def save(out: Path, results: dict) -> None:
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "results.md").write_text(markdown(results))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outdir", type=Path)
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--budget", type=float, default=420.0, help="seconds for all of it")
    ap.add_argument("--models", default=",".join(MODELS))
    a = ap.parse_args(argv)
    out = a.outdir
    out.mkdir(parents=True, exist_ok=True)
    log = Log(out / "log.txt")
    deadline = time.monotonic() + a.budget
    models = [m for m in a.models.split(",") if m]
    if a.dry_run:
        a.device, a.precision, a.batch, a.crop, a.workers = "cpu", "fp32", 2, 32, 0
    else:
        a.device, a.precision, a.batch, a.crop, a.workers = "cuda", "bf16", 64, 128, 4
    cache, bench = DEVICE / "crops", DEVICE / "bench"
    tmp = tempfile.TemporaryDirectory()
    if not (cache / "crops.json").exists() or not (bench / "Set5").is_dir():
        if not a.dry_run:
            log(f"gpu_train: {cache} or {bench} is missing: prepare them here first "
                "(benchmarks/gpu_train.py's docstring) and carry .device")  # fmt: skip
            return 2
        log("dry run: no .device/crops or .device/bench here: a tiny generated pair instead")
        cache, bench = tiny_inputs(Path(tmp.name), log)
    results = {"device": a.device, "budget_s": a.budget, "cache": str(cache), "models": {}}
    save(out, results)
    for k, model in enumerate(models):
        r = results["models"][model] = {}
        try:
            r["before"] = score(log, bench, model, None, a.device)
            save(out, results)
            calib = train(log, out / "calibration", cache, model, 2 if a.dry_run else 30, None, a)
            rate = 1 / calib["step_s"] if calib["step_s"] else 1.0
            # this model's share of what is left, less about 40 s to score and export after
            share = (deadline - time.monotonic()) / (len(models) - k) - (0 if a.dry_run else 40)
            steps = 2 if a.dry_run else max(50, int(share * rate * 0.95))
            log(f"{model}: {rate:.2f} steps/s on the calibration run: {steps} steps in "
                f"{share:.0f} s")  # fmt: skip
            r["train"] = train(log, out, cache, model, steps, None if a.dry_run else share, a)
            save(out, results)
            ckpt = Path(r["train"]["run"]) / "last.pt"
            r["after"] = score(log, bench, model, ckpt, a.device)
            export = vidsr(["export", str(ckpt), "--model", model, "-o", str(out / f"{model}.pt"),
                            "--force"], log)  # fmt: skip
            r["export"] = str(out / f"{model}.pt") if export.returncode == 0 else None
            gain = [r["after"][s]["psnr_y"] - r["before"][s]["psnr_y"] for s in ("Set5", "Set14")]
            grid_ok = r["after"]["Set14"]["grid"] <= r["before"]["Set14"]["grid"]
            r["ships"] = "yes" if min(gain) >= 0.05 and grid_ok else "no"
        except (RuntimeError, OSError, ValueError, KeyError) as e:
            r["error"] = str(e)
            log(f"{model}: {e}")
        save(out, results)
    log(markdown(results))
    tmp.cleanup()
    return 0 if all("error" not in r for r in results["models"].values()) else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
