"""`vidsr train`, `vidsr eval` and `vidsr export` on the command line; registered in vidsr/cli.py.

Imports of torch and the training modules happen inside the commands so `vidsr --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import click

from ..config import names
from ..models.records import TRAINED_MODELS
from ..train.recipe import recipe_names

_dir = click.Path(path_type=Path, exists=True, file_okay=False)
_file = click.Path(path_type=Path, dir_okay=False)


@click.group(invoke_without_command=True)
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
@click.pass_context
def train(ctx, recipe, **flags):
    """Train or fine-tune a model from a recipe (torchrun-ready for several GPUs).

    `vidsr train prepare --data DIR --out CACHE` first cuts the pictures into a cache of crops
    that costs nothing to load; then `vidsr train --data CACHE ...` trains from it."""
    if ctx.invoked_subcommand is not None:
        return
    if flags["out"] is None:
        raise click.UsageError("Missing option '--out'.")
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


@train.command(name="prepare")
@click.option(
    "--data", multiple=True, type=_dir, help="Image folder, read recursively (repeatable)."
)
@click.option("--video", multiple=True, type=_dir, help="Folder of footage to sample frames from.")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="The cache folder (crops.u8 and crops.json).")  # fmt: skip
@click.option("--tile", default=256, show_default=True,
              help="Tile size in HR pixels: at least the --crop the runs will use.")  # fmt: skip
@click.option("--step", type=int, help="Pixels between tiles.  [default: 3/4 of a tile]")
@click.option("--hr-downscale", "factors", multiple=True, type=click.IntRange(1, 16),
              help="Shrink the pictures by this factor first (repeatable: 2 and 3 give both; "
              "the recipes' hr_downscale and extra_downscales).  [default: 1]")  # fmt: skip
@click.option("--frames-per-video", default=64, show_default=True,
              help="Frames sampled from each video at most.")  # fmt: skip
@click.option("--min-video-lines", default=0, show_default=True,
              help="Leave out footage under this height.")  # fmt: skip
@click.option("--max-mb", type=click.IntRange(1), help="Keep every k-th tile, evenly, so that "
              "the cache stays under this size (one to carry to a GPU machine).")  # fmt: skip
def prepare(data, video, out, tile, step, factors, frames_per_video, min_video_lines, max_mb):
    """Cut the training pictures into a cache of HR tiles that costs nothing to load."""
    import tempfile
    import time

    from ..train.data import extract_frames, scan_images
    from ..train.prepare import prepare_crops

    if not data and not video:
        raise click.UsageError("give --data DIR and/or --video DIR")
    t0 = time.perf_counter()
    files = list(scan_images(list(data), min_size=tile).images) if data else []
    most = max_mb * 2**20 // (tile * tile * 3) if max_mb else None
    with tempfile.TemporaryDirectory() as tmp:  # the sampled frames live only until cut
        if video:
            frames, failed = extract_frames(list(video), Path(tmp), cap=frames_per_video,
                                            min_lines=min_video_lines)  # fmt: skip
            files += frames
            click.echo(f"video: {len(frames)} frames sampled, {len(failed)} videos unreadable",
                       err=True)  # fmt: skip
        cache = prepare_crops(files, out, tile=tile, step=step, factors=tuple(factors) or (1,),
                              max_tiles=most, say=lambda m: click.echo(m, err=True))  # fmt: skip
    size = cache.count * tile * tile * 3 / 2**20
    click.echo(
        f"{cache.path}: {cache.count} tiles of {tile} px ({size:.0f} MiB) from {cache.sources} "
        f"pictures in {time.perf_counter() - t0:.0f} s; train with --data {cache.path}"
    )


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
