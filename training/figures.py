"""The pictures in training/RESULTS.md: training curves of the runs and side-by-side crops.

    python training/figures.py --run srresnet=../runs/srresnet --run srgan=../runs/srgan \
        --run fast=../runs/fast --bench ../shared/data/benchmarks/Set14 \
        --bench ../shared/data/benchmarks/Set5 --out training/

curves.png: Set5 PSNR-Y (the runs' --val) and the training losses against step, one line per run.
crops.png: for the most detailed 64x64 window of a few benchmark images, bicubic | each shipped
model | HR, enlarged 3x with nearest-neighbour so single pixels stay visible. The models are the
shipped weights (vidsr/weights/) unless --weights NAME=FILE points elsewhere.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torchvision.utils import make_grid

from vidsr.train.benchmark import inference_engine, load_benchmark
from vidsr.train.plots import curve_image, stack_panels
from vidsr.weights import load_generator

COLUMNS = ("bicubic", "fast", "srresnet", "srgan")
CROP, ZOOM = 64, 3


def read_log(run: Path) -> list[dict]:
    with open(run / "log.jsonl") as f:
        return [json.loads(line) for line in f if line.strip()]


def curves(runs: dict[str, Path], out: Path) -> None:
    logs = {name: read_log(path) for name, path in runs.items()}
    gan = {n: h for n, h in logs.items() if any("content" in r or "adv" in r for r in h)}
    mse = {n: h for n, h in logs.items() if n not in gan}
    panels = []
    for group, title in (
        (mse, "Set5 PSNR-Y (dB, EMA weights) against step: MSE-trained models"),
        (gan, "Set5 PSNR-Y (dB, EMA weights) against step: GAN training from srresnet"),
    ):
        psnr = {
            n: [(r["step"], r["val_psnr_y"]) for r in h if "val_psnr_y" in r]
            for n, h in group.items()
        }
        if any(psnr.values()):
            panels.append(curve_image(psnr, title=title))
    for key, title in (
        ("pixel", "pixel MSE (srresnet, fast), running mean"),
        ("content", "VGG content loss (srgan), running mean"),
        ("loss_d", "discriminator loss (srgan), running mean"),
    ):
        series = {}
        for name, history in logs.items():
            pts = [(r["step"], r[key]) for r in history if key in r]
            if len(pts) < 2 or (key == "pixel" and name == "srgan"):
                continue
            n = max(1, len(pts) // 60)  # about 60 points a line, each the mean of n log rows
            means = [
                (pts[i + n - 1][0], float(np.mean([v for _, v in pts[i : i + n]])))
                for i in range(0, len(pts) - n + 1, n)
            ]
            series[name] = means
        if series:
            panels.append(curve_image(series, title=title, log_y=key == "pixel"))
    stack_panels(panels).save(out / "curves.png")


def detailed_window(hr: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left corner (multiple of 4) of the size x size window with the most gradient energy."""
    y = hr.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    energy = np.abs(np.diff(y, axis=0))[:, :-1] + np.abs(np.diff(y, axis=1))[:-1, :]
    best, corner = -1.0, (0, 0)
    step = size // 4
    for top in range(0, energy.shape[0] - size + 1, step):
        for left in range(0, energy.shape[1] - size + 1, step):
            e = float(energy[top : top + size, left : left + size].mean())
            if e > best:
                best, corner = e, (top - top % 4, left - left % 4)
    return corner


def crops(benches: list[Path], names: list[str], weights: dict[str, Path], out: Path) -> None:
    engines = {}
    for name in COLUMNS:
        net, _ = load_generator(name, weights.get(name))
        engines[name] = inference_engine(net, precision="fp32")
    pairs = [
        (f"{b.name}/{p.name}", p)
        for b in benches
        for p in load_benchmark(b)
        if not names or p.name in names or f"{b.name}/{p.name}" in names
    ]
    if not pairs:
        raise SystemExit(f"no benchmark image matches {names} in {[str(b) for b in benches]}")
    tiles = []
    for _, pair in pairs:
        top, left = detailed_window(pair.hr, CROP)
        # Run each model on an LR window with 8 px of context, then cut the centre.
        pad = 8
        lt, ll = max(top // 4 - pad, 0), max(left // 4 - pad, 0)
        lr = pair.lr[lt : top // 4 + CROP // 4 + pad, ll : left // 4 + CROP // 4 + pad]
        oy, ox = (top // 4 - lt) * 4, (left // 4 - ll) * 4
        for name in COLUMNS:
            with torch.no_grad():
                sr = engines[name](torch.from_numpy(np.ascontiguousarray(lr))[None])[0]
            tiles.append(sr.cpu()[oy : oy + CROP, ox : ox + CROP])
        tiles.append(torch.from_numpy(pair.hr[top : top + CROP, left : left + CROP]))
    labels = [*COLUMNS, "HR"]
    grid = make_grid(torch.stack(tiles).permute(0, 3, 1, 2), nrow=len(labels), padding=0)
    tile = CROP * ZOOM
    body = Image.fromarray(grid.permute(1, 2, 0).numpy()).resize(
        (tile * len(labels), tile * len(pairs)), Image.NEAREST
    )
    sheet = Image.new("RGB", (body.width, 20 + body.height), "white")
    sheet.paste(body, (0, 20))
    draw = ImageDraw.Draw(sheet)
    for c, label in enumerate(labels):
        draw.text((c * tile + 6, 4), label, fill="black")
    for r, (label, _) in enumerate(pairs):
        draw.text((4, 20 + r * tile + 4), label, fill="yellow")
    sheet.save(out / "crops.png")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--run", action="append", default=[], help="NAME=RUN_FOLDER (log.jsonl)")
    ap.add_argument("--bench", action="append", type=Path, default=[], help="benchmark folder")
    ap.add_argument(
        "--image", action="append", default=[], help="only these images (NAME or SET/NAME)"
    )
    ap.add_argument("--weights", action="append", default=[], help="NAME=FILE instead of shipped")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent)
    args = ap.parse_args()
    if any("=" not in kv for kv in args.run + args.weights):
        ap.error("--run and --weights take NAME=PATH")
    runs = dict(kv.split("=", 1) for kv in args.run)
    if runs:
        curves({k: Path(v) for k, v in runs.items()}, args.out)
    if args.bench:
        weights = {k: Path(v) for k, v in (kv.split("=", 1) for kv in args.weights)}
        crops(args.bench, args.image, weights, args.out)


if __name__ == "__main__":
    main()
