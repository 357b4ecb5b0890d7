"""`vidsr train`, `vidsr eval` and `vidsr export` on the command line; registered in vidsr/cli.py.

Imports of torch and the training modules happen inside the commands so `vidsr --help` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..config import names
from ..models.records import BUILTIN_MODELS, TRAINED_MODELS
from ..train.recipe import recipe_names
from .options import parsed

_dir = click.Path(path_type=Path, exists=True, file_okay=False)
_file = click.Path(path_type=Path, dir_okay=False)


@click.command()
@click.option(
    "--recipe",
    default=None,
    help=f"{', '.join(recipe_names())}, or a TOML file of TrainConfig keys.  [default: "
    "srresnet; with --resume: the run's stored config]",
)
@click.option(
    "--data", "data", multiple=True, type=_dir, help="Image folder, read recursively (repeatable)."
)
@click.option(
    "--video",
    "video",
    multiple=True,
    type=_dir,
    help="Folder of footage to sample frames from (repeatable).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="Run folder: last.pt, samples/, curves.png, log.jsonl.",
)
@click.option("--steps", type=int, help="Total optimiser steps (a resumed run continues to it).")
@click.option("--batch-size", type=int, help="Samples per step (per process under torchrun).")
@click.option("--crop", type=int, help="HR crop size in pixels (a multiple of the scale).")
@click.option("--lr", type=float, help="Learning rate.")
@click.option(
    "--init",
    type=_file,
    help="Start from these generator weights (state_dict, checkpoint, or 'shipped').",
)
@click.option(
    "--resume",
    is_flag=True,
    default=None,
    help="Continue OUT/last.pt from its step, with the config the run stored; flags given again "
    "may change steps, lr, schedule, how often to validate/checkpoint/sample (not the model, crop, "
    "batch size or losses).",
)
@click.option("--val", type=_dir, help="Benchmark folder (Set5 layout) for PSNR-Y/SSIM-Y.")
@click.option("--val-every", type=int, help="Validate every N steps.")
@click.option("--ckpt-every", type=int, help="Write OUT/last.pt every N steps.")
@click.option("--sample-every", type=int, help="Write a sample grid every N steps.")
@click.option("--device", help="auto, cpu, cuda or cuda:N.")
@click.option("--precision", help="auto, fp32, bf16 or fp16 (fp16 uses a GradScaler).")
@click.option(
    "--no-channels-last",
    "channels_last",
    flag_value=False,
    default=None,
    help="Keep the default memory layout (for comparisons).",
)
@click.option("--pixel-loss", type=click.Choice(["mse", "l1", "charbonnier"]), help="Pixel loss.")
@click.option("--pixel-weight", type=click.FloatRange(min=0), help="Weight of the pixel loss.")
@click.option(
    "--content-weight",
    type=click.FloatRange(min=0),
    help="Weight of the VGG content loss (features / 12.75).",
)
@click.option(
    "--adversarial-weight", type=click.FloatRange(min=0), help="Weight of the adversarial loss."
)
@click.option(
    "--vgg",
    help="Content-loss feature layer: vgg19_54 (the paper's), vgg19_22, vgg16_53, vgg16_22.",
)
@click.option("--vgg-weights", help="torchvision VGG19 (or VGG16) ImageNet state_dict file.")
@click.option("--gan-loss", type=click.Choice(["bce", "ragan"]), help="Adversarial loss form.")
@click.option(
    "--grid-weight", type=click.FloatRange(min=0), help="Weight of the sub-pixel grid penalty."
)
@click.option(
    "--degrade",
    type=click.Choice(["none", "video", "real", "chain"]),
    help="LR degradations (real: mostly one compression of the bicubic LR, as the real model "
    "learnt; chain: the Real-ESRGAN-style two-order chain).",
)
@click.option("--hr-downscale", type=int, help="Shrink source images by this factor first.")
@click.option("--frames-per-video", type=int, help="Frames sampled from each video at most.")
@click.option(
    "--frame-cache",
    type=click.Path(path_type=Path, file_okay=False),
    help="Keep sampled video frames here (default OUT/frames).",
)
@click.option("--workers", type=int, help="Data loader processes.")
@click.option("--seed", type=int, help="Seed for init, crops and degradations.")
@click.option("--tensorboard", is_flag=True, default=None, help="Also log to OUT/tb.")
@click.option("-q", "--quiet", is_flag=True, default=None, help="No progress bar.")
def train(recipe, **flags):
    """Train or fine-tune a model from a recipe (torchrun-ready for several GPUs)."""
    from rich.console import Console

    from ..train.loop import train as run_train
    from ..train.recipe import DEFAULT_RECIPE, build_config, resume_config

    console = Console(stderr=True)
    for key in ("data", "video"):
        flags[key] = flags[key] or None  # an empty tuple means "not given": keep the recipe's
    if flags["resume"]:
        config = resume_config(flags["out"], recipe, flags, say=console.print)
    else:
        config = build_config(recipe or DEFAULT_RECIPE, **flags)
    run_train(config, console=console)


@click.command(name="eval")
@click.option(
    "--model",
    default=None,
    help=f"{names(BUILTIN_MODELS)}.  [default: srresnet; with --weights: the file's]",
)
@click.option(
    "--weights",
    type=_file,
    help="A `vidsr train` checkpoint or export, or a community model file (any architecture).",
)
@click.option(
    "--data",
    type=_dir,
    required=True,
    help="Folder of NAME_HR.png (+ NAME_LR.png) images, e.g. Set5.",
)
@click.option(
    "--device", type=parsed("device"), default="auto", show_default=True, help="auto, cpu or cuda."
)
@click.option(
    "--precision",
    type=parsed("precision"),
    default="fp32",
    show_default=True,
    help="fp32 (exact numbers), bf16 or fp16.",
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
    help="Print one JSON line: psnr_y, ssim_y, grid_index, ..., images, degrade.",
)
def evaluate(model, weights, data, device, precision, shave, as_json, degrade, denoise):
    """PSNR and SSIM on the Y channel (BT.601) of a model on a benchmark folder.

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
    """
    from ..models.weights import load_network
    from ..quality.scoring import degrade_pairs, load_benchmark, mean_score, score_pairs
    from ..train.degrade import parse_spec
    from ..upscale.engine import Engine

    spec = parse_spec(degrade) if degrade is not None else None  # before the slow part
    model = model or ("auto" if weights is not None else "srresnet")
    net, _ = load_network(model, weights)
    engine = Engine(net, device=device, precision=precision)
    scale = engine.scale
    notes: list[str] = []
    pairs = load_benchmark(data, scale=scale, notes=notes)
    for note in notes:
        click.echo(f"note: {note}", err=True)
    if spec is not None:
        pairs = degrade_pairs(pairs, spec)
    if denoise != "off":
        from dataclasses import replace

        from ..media.filters import denoise_picture

        pairs = [replace(p, lr=denoise_picture(p.lr, denoise)) for p in pairs]
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


def _print_table(rows, mean, title: str) -> None:
    from rich.console import Console
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
    Console().print(table)


@click.command(name="export")
@click.argument("checkpoint", metavar="CKPT_OR_MODEL")
@click.option(
    "--model",
    default=None,
    help=f"Registry name the weights are for: {names(TRAINED_MODELS)} "
    "(implied where CKPT_OR_MODEL is one of them: its shipped weights, --onnx only).",
)
@click.option(
    "-o",
    "--out",
    type=_file,
    required=True,
    help="The file to write: the fp16 state_dict, or the .onnx graph with --onnx.",
)
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
@click.option(
    "--onnx",
    "as_onnx",
    is_flag=True,
    help="Write an ONNX graph (RGB in [0, 1], NCHW, dynamic batch/height/width, BatchNorm "
    "folded) for ONNX Runtime, TensorRT or vs-mlrt.",
)
@click.option("--fp16", is_flag=True, help="With --onnx: fp16 weights, input and output.")
def export(checkpoint, model, out, force, as_onnx, fp16):
    """Write a checkpoint's EMA weights as a small fp16 state_dict (as the shipped ones), or any
    built-in model's weights as an ONNX graph (--onnx).
    """
    if as_onnx:
        from ..models.onnx import export_onnx

        done = export_onnx(checkpoint, out, model=model, fp16=fp16, force=force)
        click.echo(
            f"wrote {done.path} ({done.size / 1e6:.2f} MB, {done.model} with {done.weights} "
            f"weights, {'fp16' if done.fp16 else 'fp32'}, opset {done.opset})"
        )
        click.echo(f"sha256 {done.sha256}")
        return
    if fp16:
        raise click.UsageError("--fp16 goes with --onnx (the state_dict is always fp16)")
    if model is None:
        raise click.UsageError(f"--model is required: {names(TRAINED_MODELS)}")
    from ..train.export import export_weights

    done = export_weights(Path(checkpoint), model, out, force=force)
    click.echo(
        f"wrote {done.path} ({done.size / 1e6:.2f} MB, {done.tensors} tensors, "
        f"worst fp16 rounding {done.max_rel_change:.1e} of a tensor's range)"
    )
    click.echo(f"sha256 {done.sha256}")
    click.echo(
        f"to ship it: {done.path.name} in vidsr/weights/, and its sha256 and scores in the "
        f"{model!r} ModelRecord of vidsr/models/records.py (the README's model table follows)"
    )
