"""The `vidsr` command line: a thin click group. Options become a frozen config; one core call runs.

Every command reports failures as one line on stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import click

from . import __version__
from .errors import VidsrError


def friendly_errors(fn):
    """Turn VidsrError (and Ctrl-C) into one line on stderr and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except VidsrError as e:
            click.echo(f"vidsr: error: {e}", err=True)
            sys.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo("vidsr: interrupted", err=True)
            sys.exit(130)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="vidsr")
def main() -> None:
    """vidsr: 4x video super-resolution (SRResNet / SRGAN) keeping audio, timestamps, colour."""


@main.command()
@click.argument("input", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="Output file (or folder, when INPUT is a folder). "
    "Default: beside the input, with an _x4 suffix.",
)
@click.option(
    "--preset",
    default=None,
    help="fast, balanced, quality, archival (see `vidsr presets`) or a .toml file; "
    "explicit flags override its values.",
)
@click.option("--model", default=None, help="srresnet, srgan, fast or bicubic.  [default: srgan]")
@click.option(
    "--weights",
    type=click.Path(path_type=Path),
    default=None,
    help="A state_dict or `vidsr train` checkpoint to use instead of the shipped weights.",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("--precision", default=None, help="auto, fp32, bf16 or fp16.  [default: auto]")
@click.option(
    "--codec",
    default=None,
    help="libx264, libx265, libsvtav1, libvpx-vp9, ffv1 or prores_ks; the container "
    "follows the output extension.  [default: libx264]",
)
@click.option(
    "--crf",
    type=int,
    default=None,
    help="Constant quality (lower is better); default suits the codec and output size.",
)
@click.option(
    "--encoder-preset",
    default=None,
    help="Encoder speed preset (x264/x265: veryfast..veryslow, svtav1: 0-13, vp9: "
    "cpu-used 0-8, prores_ks: proxy|lt|standard|hq|4444|4444xq).",
)
@click.option(
    "--pix-fmt",
    default=None,
    help="Output pixel format (yuv420p10le ...). Default: the source's, never below its bit depth.",
)
@click.option(
    "--batch-size",
    default=None,
    help="Frames per model call, or auto (what fits free device memory; 1 on a CPU).",
)
@click.option(
    "--tile",
    default=None,
    help="auto (tiles only when memory runs out), off, or a tile size in input pixels.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no summary line.")
@friendly_errors
def upscale(
    input,
    output,
    preset,
    model,
    weights,
    overwrite,
    device,
    precision,
    codec,
    crf,
    encoder_preset,
    pix_fmt,
    batch_size,
    tile,
    quiet,
):
    """Upscale a video file, or every video in a folder, 4x."""
    from .pipeline import upscale_path
    from .presets import build_config

    config = build_config(
        preset,
        model=model,
        weights=weights,
        overwrite=overwrite,
        device=device,
        precision=precision,
        codec=codec,
        crf=crf,
        encoder_preset=encoder_preset,
        pix_fmt=None if pix_fmt in ("source", "auto") else pix_fmt,
        quiet=quiet,
        batch_size=_batch_or_auto(batch_size, "--batch-size"),
        tile=_tile_option(tile),
    )
    results = upscale_path(input, output, config)
    if any(r.error for r in results):
        sys.exit(1)


def _batch_or_auto(value: str | None, hint: str) -> int | str | None:
    if value is None or value == "auto":
        return value
    try:
        n = int(value)
    except ValueError:
        raise click.BadParameter(
            f"expected auto or a number, got {value!r}", param_hint=hint
        ) from None
    if n < 1:
        raise click.BadParameter(f"must be at least 1, got {n}", param_hint=hint)
    return n


def _tile_option(value: str | None) -> int | str | None:
    if value in (None, "auto", "off"):
        return value
    try:
        return int(value)
    except ValueError:
        raise click.BadParameter(
            f"expected auto, off or a size, got {value!r}", param_hint="--tile"
        ) from None


@main.command()
@click.option(
    "--model", default="srresnet", show_default=True, help="srresnet, srgan, fast or bicubic."
)
@click.option(
    "--size", default="320x180", show_default=True, help="WIDTHxHEIGHT of the generated clip."
)
@click.option("--frames", default=24, show_default=True, help="Frames to time in each measurement.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("--precision", default="auto", show_default=True, help="auto, fp32, bf16 or fp16.")
@click.option(
    "--batch-size", default="1", show_default=True, help="Frames per model call, or auto."
)
@click.option("--tile", default="auto", show_default=True, help="auto, off, or a tile size.")
@click.option(
    "--repeat",
    default=2,
    show_default=True,
    help="Repeat each measurement, interleaved; keep the best of each.",
)
@click.option(
    "--threads", type=int, default=None, help="CPU threads for the model.  [default: cores]"
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON line and nothing else.")
@friendly_errors
def bench(model, size, frames, device, precision, batch_size, tile, repeat, threads, as_json):
    """Throughput: model alone, decode, encode and the whole pipeline, on a generated clip."""
    import json
    from dataclasses import asdict

    from .bench import run_bench

    result = run_bench(
        model=model,
        size=size,
        frames=frames,
        device=device,
        precision=precision,
        batch_size=_batch_or_auto(batch_size, "--batch-size"),
        tile=_tile_option(tile),
        repeat=repeat,
        threads=threads,
    )
    if as_json:
        click.echo(json.dumps(asdict(result)))
        return
    click.echo(
        f"vidsr bench: {model} (random weights: speed does not depend on them), "
        f"{result.size} -> 4x, {result.device}, {result.precision}, batch {result.batch_size}"
    )
    for name in ("model", "decode", "encode", "pipeline"):
        click.echo(f"  {name + ' fps':<14}{getattr(result, name + '_fps'):>9.2f}")
    ratio = result.pipeline_fps / result.model_fps if result.model_fps else 0.0
    click.echo(f"  pipeline / model: {ratio:.2f}")


@main.command()
@click.argument("output", type=click.Path(path_type=Path), default="sample.mp4")
@click.option("--size", default="320x180", show_default=True, help="WIDTHxHEIGHT of the clip.")
@click.option("--seconds", default=2.0, show_default=True, help="Length of the clip.")
@click.option("--overwrite", is_flag=True, help="Replace an existing file.")
@friendly_errors
def sample(output, size, seconds, overwrite):
    """Write a small sample clip (H.264 + AAC) to try vidsr on."""
    from .bench import parse_size
    from .media.sample import write_sample

    width, height = parse_size(size)
    write_sample(output, width=width, height=height, seconds=seconds, overwrite=overwrite)
    click.echo(f"wrote {output}")


@main.group(invoke_without_command=True)
@click.pass_context
@friendly_errors
def presets(ctx):
    """List the presets (name and description); `vidsr presets show NAME` prints one."""
    if ctx.invoked_subcommand is None:
        from .presets import builtin_presets

        for p in builtin_presets():
            click.echo(f"{p.name:<10} {p.description}")


@presets.command("show")
@click.argument("name")
@friendly_errors
def presets_show(name):
    """Print one preset (a shipped name or a .toml file) as TOML."""
    from .presets import load_preset

    click.echo(load_preset(name).describe())


# Commands that live in their own modules (they import only click at this point).
from .train.cli import evaluate as _evaluate  # noqa: E402
from .train.cli import export as _export  # noqa: E402
from .train.cli import train as _train  # noqa: E402
from .watch_cli import jobs as _jobs  # noqa: E402
from .watch_cli import watch as _watch  # noqa: E402

for _command in (_watch, _jobs, _train, _evaluate, _export):
    main.add_command(_command)


if __name__ == "__main__":
    main()
