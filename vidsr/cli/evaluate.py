"""`vidsr eval`: a model's quality on a benchmark folder of images, or steadiness on a video clip.

Imports of torch and the quality modules happen inside the command so `vidsr --help` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..config import names, parse_temporal, temporal_name
from ..errors import ConfigError
from ..models.records import BUILTIN_MODELS
from .options import parsed

_dir = click.Path(path_type=Path, exists=True, file_okay=False)
_file = click.Path(path_type=Path, dir_okay=False)
VIDEO_TEMPORAL = "off,auto"


def _size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"expected WIDTHxHEIGHT (640x360), got {text!r}") from None
    if w < 32 or h < 32:
        raise click.BadParameter(f"at least 32x32, got {text!r}")
    return w, h


def _temporals(text: str) -> list[float]:
    try:
        return [parse_temporal(t.strip()) for t in text.split(",")]
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


@click.command(name="eval")
@click.option(
    "--model",
    "models",
    multiple=True,
    metavar="NAME",
    help=f"{names(BUILTIN_MODELS)} or a registry id; repeat it to compare models on --video.  "
    "[default: srresnet; with --weights: the file's]",
)
@click.option(
    "--weights",
    type=_file,
    help="A `vidsr train` checkpoint or export, or a community model file (any architecture).",
)
@click.option(
    "--data",
    type=_dir,
    help="Folder of NAME_HR.png (+ NAME_LR.png) images, e.g. Set5.",
)
@click.option(
    "--video",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="A clip whose frames are the truth: steadiness between frames (below).",
)
@click.option("--frames", default=60, show_default=True, help="--video: frames from the start.")
@click.option(
    "--size", metavar="WxH", help="--video: a centre crop of the clip's frames (the truth's size)."
)
@click.option(
    "--temporal",
    "temporal",
    default=VIDEO_TEMPORAL,
    show_default=True,
    metavar="LIST",
    help="--video: each model with each of these --temporal settings (off, auto, 0.5 ...).",
)
@click.option(
    "--picture",
    type=click.Path(path_type=Path, dir_okay=False),
    help="--video: save the frame-to-frame difference maps of one frame pair as this PNG.",
)
@click.option(
    "--device", type=parsed("device"), default="auto", show_default=True, help="auto, cpu or cuda."
)
@click.option(
    "--precision",
    type=parsed("precision"),
    default="fp32",
    show_default=True,
    help="fp32 (exact numbers), bf16, fp16 (CUDA) or int8 (CPU, built-in models).",
)
@click.option("--shave", default=4, show_default=True, help="Border pixels left out of the scores.")
@click.option(
    "--degrade",
    metavar="SPEC",
    help="Damage the LR before scoring: a mix (web, legacy) or a comma-list of steps (below).",
)
@click.option(
    "--denoise",
    type=parsed("denoise"),
    default="off",
    show_default=True,
    help="Denoise the (damaged) LR first, as `vidsr upscale --denoise` does.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON line: psnr_y, ssim_y, grid_index, ..., images, degrade (--video: rows).",
)
def evaluate(models, weights, data, video, frames, size, temporal, picture, device, precision,
             shave, degrade, denoise, as_json):  # fmt: skip
    """PSNR and SSIM on the Y channel (BT.601) of a model on a benchmark folder (--data), or how
    steady its video is (--video).

    With --degrade SPEC the LR (the folder's NAME_LR file, else bicubic from the HR) is damaged
    first, with a generator seeded by each image's name, so a run gives the same numbers every
    time. SPEC is a comma-list of steps applied in order:

    \b
      x264:crf=N  x265:crf=N        H.264 / HEVC at a constant rate factor
      mpeg4:q=N   msmpeg4v2:q=N     MPEG-4 Part 2 / MS-MPEG4v2 at a fixed quantiser (qscale)
      mpeg2:q=N                     MPEG-2 (mpeg2video) at a fixed quantiser
      jpeg:q=N                      JPEG quality N
      noise:SIGMA                   Gaussian noise, SIGMA grey levels
      blur:SIGMA                    Gaussian blur, SIGMA LR pixels

    A codec step codes a 3-frame, 1-pixel pan that ends on the image, so the image is decoded as
    an inter-coded frame, as in real video; add :intra to code it alone. Any value may be a
    range A-B, drawn per image from its seed. Named mixes:

    \b
      web     x264:crf=30 (with the pan): streamed and uploaded video
      legacy  noise:2,mpeg4:q=6-8 (with the pan): camcorder and early web MPEG-4

    With --video CLIP the clip's first --frames frames are the truth: each is shrunk with
    MATLAB's bicubic (as the benchmarks' LR), damaged as one video by --degrade (a codec step
    codes the whole clip; noise is new on every frame), and upscaled by bicubic and by each
    --model, with each --temporal setting. Measured on Y, over consecutive frame pairs:

    \b
      PSNR-Y, SSIM-Y   per frame, averaged
      tMSE             mean ((SR[t+1] - SR[t]) - (HR[t+1] - HR[t]))^2: change between
                       frames that the truth's change does not account for
      static flicker   mean |SR[t+1] - SR[t]| where the truth stands still (|HR[t+1] - HR[t]|
                       < 1 level everywhere in a 5x5 window); x: as a ratio to bicubic's
      warp error       mean (SR[t+1] - warp(SR[t]))^2 along the truth's motion (Farneback
                       optical flow on HR, where the forward and backward flows agree);
                       x: as a ratio to bicubic's

    A ratio of 1.0 is as steady as bicubic, which adds no detail of its own to flicker.
    """
    if (data is None) == (video is None):
        raise click.UsageError("give --data FOLDER (images) or --video CLIP")
    if video is None and len(models) > 1:
        raise click.UsageError("one --model at a time on --data (several with --video)")
    if data is not None and (picture or size or temporal != VIDEO_TEMPORAL):
        raise click.UsageError("--size, --temporal and --picture go with --video")
    from ..train.degrade import parse_spec

    spec = parse_spec(degrade) if degrade is not None else None  # before the slow part
    models = list(models) or ["auto" if weights is not None else "srresnet"]
    if weights is not None and len(models) > 1:
        raise click.UsageError("--weights goes with one --model")
    if video is not None:
        _evaluate_video(models, weights, video, frames, _size(size), _temporals(temporal),
                        picture, device, precision, shave, spec, denoise, as_json)  # fmt: skip
        return
    _evaluate_images(models[0], weights, data, device, precision, shave, spec, denoise, as_json)


def _engine(model: str, weights: Path | None, device: str, precision: str):
    from ..models.weights import load_network
    from ..upscale.engine import Engine

    net, _ = load_network(model, weights)
    return Engine(net, device=device, precision=precision)


def _denoised(lr, denoise: str):
    if denoise == "off":
        return lr
    from ..media.filters import denoise_picture

    return denoise_picture(lr, denoise)


def _evaluate_images(model, weights, data, device, precision, shave, spec, denoise, as_json):
    from dataclasses import replace

    from ..quality.scoring import degrade_pairs, load_benchmark, mean_score, score_pairs

    engine = _engine(model, weights, device, precision)
    scale = engine.scale
    notes: list[str] = []
    pairs = load_benchmark(data, scale=scale, notes=notes)
    for note in notes:
        click.echo(f"note: {note}", err=True)
    if spec is not None:
        pairs = degrade_pairs(pairs, spec)
    pairs = [replace(p, lr=_denoised(p.lr, denoise)) for p in pairs]
    rows = [(pair.name, score) for pair, _, score in score_pairs(engine, pairs, border=shave)]
    mean = mean_score([s for _, s in rows])
    applied = str(spec) if spec is not None else "none"
    if as_json:
        click.echo(json.dumps({
            "psnr_y": round(mean.psnr_y, 4),
            "ssim_y": round(mean.ssim_y, 4),
            "grid_index": round(mean.grid_index, 4),
            "detail": round(mean.detail, 4),
            "colour_shift_rgb": [round(c, 3) for c in mean.colour],
            "images": len(rows),
            "degrade": applied,
            "denoise": denoise,
        }))  # fmt: skip
        return
    shown = Path(weights).name if model == "auto" else model
    lr = f", LR degraded: {applied}" if spec is not None else ""
    _print_table(rows, mean, f"{shown} x{scale} on {data.name} (Y channel, {shave} px shaved{lr})")


def _console():
    """Rich's console, as wide as a table needs when the output is a file or a pipe (where rich
    would assume 80 columns and cut the numbers short)."""
    import sys

    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 132)


def _print_table(rows, mean, title: str) -> None:
    from rich.table import Table

    table = Table(title=title)
    for name in ("image", "PSNR-Y (dB)", "SSIM-Y", "grid index", "detail"):
        table.add_column(name, justify="left" if name == "image" else "right")
    for name, score in [*rows, ("mean", mean)]:
        if name == "mean":
            table.add_section()
        table.add_row(
            name, f"{score.psnr_y:.2f}", f"{score.ssim_y:.4f}", f"{score.grid_index:.3f}",
            f"{score.detail:.2f}", style="bold" if name == "mean" else None,
        )  # fmt: skip
    _console().print(table)


def _evaluate_video(models, weights, video, frames, size, temporals, picture, device, precision,
                    shave, spec, denoise, as_json):  # fmt: skip
    import numpy as np
    import torch

    from ..quality.flicker import difference_picture, flicker_rows, read_clip, shrink
    from ..train.degrade import degrade_clip, name_seed
    from ..upscale.temporal import Stabiliser

    if frames < 2:
        raise ConfigError("--frames", "at least 2 frames are needed")
    engines = [(m, _engine(m, weights, device, precision)) for m in models]
    scales = {e.scale for _, e in engines}
    if len(scales) > 1:
        raise click.UsageError(f"the models differ in scale ({sorted(scales)}); compare one scale")
    scale = scales.pop()
    hr, lr = shrink(read_clip(video, frames=frames, size=size), scale)
    if spec is not None:
        lr = degrade_clip(lr, spec, name_seed(video.name))
    lr = np.stack([_denoised(f, denoise) for f in lr])

    def upscale(engine):
        made: list[np.ndarray] = []

        def run(strength: float):
            def go(clip: np.ndarray) -> np.ndarray:
                if not made:  # the model once; each --temporal setting on a copy of its frames
                    batches = [torch.from_numpy(np.ascontiguousarray(clip[k : k + 4]))
                               for k in range(0, len(clip), 4)]  # fmt: skip
                    made.append(np.concatenate([engine(b).cpu().numpy() for b in batches]))
                sr = made[0].copy()
                return Stabiliser(strength)(clip, sr) if strength else sr

            return go

        return run

    runs = []
    for name, engine in engines:
        label = Path(weights).name if name == "auto" else name
        run = upscale(engine)
        runs += [(label, temporal_name(s), run(s)) for s in temporals]
    kept: dict[str, np.ndarray] = {}
    keep = kept.__setitem__ if picture else None
    rows = flicker_rows(hr, lr, scale, runs, border=shave, keep=keep)
    if picture is not None:
        t = _stillest_pair(hr)
        difference_picture(hr, kept, t, picture)
        click.echo(f"wrote {picture} (frames {t} and {t + 1})", err=True)
    applied = str(spec) if spec is not None else "none"
    if as_json:
        click.echo(json.dumps({
            "clip": video.name, "frames": len(hr), "size": [hr.shape[2], hr.shape[1]],
            "scale": scale, "degrade": applied, "denoise": denoise, "precision": precision,
            "rows": [{"label": r.label, "model": r.model, "temporal": r.temporal,
                      **r.score.as_dict()} for r in rows],
        }))  # fmt: skip
        return
    title = (f"{video.name}: {len(hr)} frames {hr.shape[2]}x{hr.shape[1]}, x{scale}, "
             f"LR degraded: {applied} (Y channel, {shave} px shaved)")  # fmt: skip
    _print_video_table(rows, title)


def _stillest_pair(hr) -> int:
    """The frame pair where most of the truth stands still: flicker shows best there."""
    import numpy as np

    diffs = np.abs(np.diff(hr.astype(np.int16), axis=0)).max(axis=-1)
    return int(np.argmax((diffs < 1).mean(axis=(1, 2))))


def _print_video_table(rows, title: str) -> None:
    from rich.table import Table

    table = Table(title=title)
    heads = ("", "PSNR-Y", "SSIM-Y", "tMSE", "static", "x", "warp err", "x")
    for name in heads:
        table.add_column(name, justify="left" if not name else "right", no_wrap=True)
    for r in rows:
        s = r.score
        table.add_row(
            r.label, f"{s.psnr_y:.2f}", f"{s.ssim_y:.4f}", f"{s.tmse:.2f}",
            f"{s.static_flicker:.3f}", f"{s.static_ratio:.2f}", f"{s.warp_error:.2f}",
            f"{s.warp_ratio:.2f}",
        )  # fmt: skip
    _console().print(table)


__all__ = ["evaluate"]
