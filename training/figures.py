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

from vidsr.models.weights import load_generator
from vidsr.quality.scoring import degrade_pairs, inference_engine, load_benchmark
from vidsr.train.degrade import parse_spec
from vidsr.train.plots import curve_image, stack_panels

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


def _engines(columns, weights: dict[str, Path]) -> dict:
    engines = {}
    for name in columns:
        net, _ = load_generator(name, weights.get(name))
        engines[name] = inference_engine(net, precision="fp32")
    return engines


def _pairs(benches: list[Path], names: list[str], degrade: str | None = None) -> list:
    pairs = [
        (f"{b.name}/{p.name}", p)
        for b in benches
        for p in load_benchmark(b)
        if not names or p.name in names or f"{b.name}/{p.name}" in names
    ]
    if not pairs:
        raise SystemExit(f"no benchmark image matches {names} in {[str(b) for b in benches]}")
    if degrade is not None:
        damaged = degrade_pairs([p for _, p in pairs], parse_spec(degrade))
        pairs = [(f"{label} ({degrade})", p) for (label, _), p in zip(pairs, damaged, strict=True)]
    return pairs


def crops(
    benches: list[Path],
    names: list[str],
    weights: dict[str, Path],
    out: Path,
    *,
    columns: tuple[str, ...] = COLUMNS,
    degrades: tuple[str | None, ...] = (None,),
    file: str | None = "crops.png",
) -> Image.Image:
    engines = _engines(columns, weights)
    pairs = [pair for d in degrades for pair in _pairs(benches, names, d)]
    tiles = []
    for _, pair in pairs:
        top, left = detailed_window(pair.hr, CROP)
        # Run each model on an LR window with 8 px of context, then cut the centre.
        pad = 8
        lt, ll = max(top // 4 - pad, 0), max(left // 4 - pad, 0)
        lr = pair.lr[lt : top // 4 + CROP // 4 + pad, ll : left // 4 + CROP // 4 + pad]
        oy, ox = (top // 4 - lt) * 4, (left // 4 - ll) * 4
        for name in columns:
            with torch.no_grad():
                sr = engines[name](torch.from_numpy(np.ascontiguousarray(lr))[None])[0]
            tiles.append(sr.cpu()[oy : oy + CROP, ox : ox + CROP])
        tiles.append(torch.from_numpy(pair.hr[top : top + CROP, left : left + CROP]))
    labels = [*columns, "HR"]
    sheet = _sheet(tiles, labels, [label for label, _ in pairs])
    if file:
        sheet.save(out / file)
    return sheet


def _sheet(tiles: list, labels: list[str], rows: list[str]) -> Image.Image:
    """Tiles (CROP x CROP x 3 uint8) in rows of len(labels), enlarged ZOOM x, labelled."""
    grid = make_grid(torch.stack(tiles).permute(0, 3, 1, 2), nrow=len(labels), padding=0)
    tile = CROP * ZOOM
    body = Image.fromarray(grid.permute(1, 2, 0).numpy()).resize(
        (tile * len(labels), tile * len(rows)), Image.NEAREST
    )
    sheet = Image.new("RGB", (body.width, 20 + body.height), "white")
    sheet.paste(body, (0, 20))
    draw = ImageDraw.Draw(sheet)
    for c, label in enumerate(labels):
        draw.text((c * tile + 6, 4), label, fill="black")
    for r, label in enumerate(rows):
        draw.text((4, 20 + r * tile + 4), label, fill="yellow")
    return sheet


REAL_COLUMNS = ("bicubic", "srresnet", "fast", "real")  # fast: the default, clean-trained


def clip_frames(video: Path) -> list[np.ndarray]:
    import av

    with av.open(str(video)) as c:
        return [frame.to_ndarray(format="rgb24") for frame in c.decode(video=0)]


def matching_frame(frame: np.ndarray, candidates: list[np.ndarray]) -> np.ndarray:
    """The candidate closest to `frame` (the two clips need not start on the same frame)."""
    errors = [float(np.mean((c.astype(np.float32) - frame) ** 2)) for c in candidates]
    return candidates[int(np.argmin(errors))]


def crops_real(bench: Path, names: list[str], weights: dict[str, Path], clip: Path | None,
               out: Path) -> None:  # fmt: skip
    """crops_real.png: compressed-LR crops (each named mix) bicubic | srresnet | fast | real |
    HR, then one frame of a real low-quality clip through the same models (its pristine twin
    beside it, nearest-enlarged, where one exists)."""
    panels = [crops([bench], names, weights, out, columns=REAL_COLUMNS,
                    degrades=("web", "legacy"), file=None)]  # fmt: skip
    if clip is not None:
        engines = _engines(REAL_COLUMNS, weights)
        lr = clip_frames(clip)[60]
        side = CROP * ZOOM // 4  # LR pixels: the 4x output fills a tile without enlarging
        top, left = detailed_window(lr, side)
        window = lr[top : top + side, left : left + side]
        tiles = []
        for name in REAL_COLUMNS:
            with torch.no_grad():
                tiles.append(engines[name](torch.from_numpy(np.ascontiguousarray(window))[None])[0])
        twin = clip.with_name(clip.name.replace("distorted", "pristine"))
        if twin != clip and twin.is_file():
            ref = matching_frame(lr, clip_frames(twin))[top : top + side, left : left + side]
            tiles.append(torch.from_numpy(np.repeat(np.repeat(ref, 4, 0), 4, 1)))
        else:
            tiles.append(torch.zeros_like(tiles[0]))
        labels = [*REAL_COLUMNS, "pristine source (4x nearest)"]
        panels.append(_sheet([t.cpu() for t in tiles], labels, [f"{clip.name} frame 60"]))
    stack_panels(panels).save(out / "crops_real.png")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--run", action="append", default=[], help="NAME=RUN_FOLDER (log.jsonl)")
    ap.add_argument("--bench", action="append", type=Path, default=[], help="benchmark folder")
    ap.add_argument(
        "--image", action="append", default=[], help="only these images (NAME or SET/NAME)"
    )
    ap.add_argument("--weights", action="append", default=[], help="NAME=FILE instead of shipped")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent)
    ap.add_argument("--real", type=Path, help="crops_real.png from this benchmark folder (Set14)")
    ap.add_argument("--clip", type=Path, help="with --real: a low-quality clip for its last row")
    args = ap.parse_args()
    if any("=" not in kv for kv in args.run + args.weights):
        ap.error("--run and --weights take NAME=PATH")
    runs = dict(kv.split("=", 1) for kv in args.run)
    if runs:
        curves({k: Path(v) for k, v in runs.items()}, args.out)
    weights = {k: Path(v) for k, v in (kv.split("=", 1) for kv in args.weights)}
    if args.bench:
        crops(args.bench, args.image, weights, args.out)
    if args.real:
        crops_real(args.real, args.image, weights, args.clip, args.out)


if __name__ == "__main__":
    main()
