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
    """vidsr: 4x video super-resolution (SRResNet / SRGAN) that keeps audio, timestamps and colour."""


@main.command()
@click.argument("input", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Output file (or folder, when INPUT is a folder). Default: beside the input, with an _x4 suffix.")
@click.option("--model", default="srgan", show_default=True, help="srresnet, srgan, fast or bicubic.")
@click.option("--weights", type=click.Path(path_type=Path), default=None,
              help="A state_dict or `vidsr train` checkpoint to use instead of the shipped weights.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("--precision", default="auto", show_default=True, help="auto, fp32, bf16 or fp16.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no summary line.")
@friendly_errors
def upscale(input, output, model, weights, overwrite, device, precision, quiet):
    """Upscale a video file, or every video in a folder, 4x."""
    from .config import UpscaleConfig
    from .pipeline import upscale_path

    config = UpscaleConfig(
        model=model, weights=weights, overwrite=overwrite, device=device, precision=precision,
        quiet=quiet,
    )
    results = upscale_path(input, output, config)
    if any(r.error for r in results):
        sys.exit(1)


@main.command()
@click.argument("output", type=click.Path(path_type=Path), default="sample.mp4")
@click.option("--size", default="320x180", show_default=True, help="WIDTHxHEIGHT of the clip.")
@click.option("--seconds", default=2.0, show_default=True, help="Length of the clip.")
@click.option("--overwrite", is_flag=True, help="Replace an existing file.")
@friendly_errors
def sample(output, size, seconds, overwrite):
    """Write a small sample clip (H.264 + AAC) to try vidsr on."""
    from .media.sample import write_sample

    try:
        width, height = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"expected WIDTHxHEIGHT, got {size!r}", param_hint="--size") from None
    write_sample(output, width=width, height=height, seconds=seconds, overwrite=overwrite)
    click.echo(f"wrote {output}")


# Commands that live in their own modules register here.
# (train/eval: vidsr.train.cli; watch/jobs: vidsr.watch)
from .watch_cli import jobs as _jobs, watch as _watch  # noqa: E402

main.add_command(_watch)
main.add_command(_jobs)


if __name__ == "__main__":
    main()
