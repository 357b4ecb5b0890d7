"""`vidsr upscale`: a file or a folder, with the upscale options of the one table."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .options import options_from, upscale_options


@click.command(context_settings={"show_default": True})
@click.argument("input", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="Output file (or folder, when INPUT is a folder). "
    "Default: beside the input, with an _x4 suffix.",
)
@upscale_options
@click.pass_context
def upscale(ctx, input, output, **params):
    """Upscale a video or image file, or every video and image in a folder, 4x."""
    from ..config import build_upscale_config
    from ..jobs.runner import upscale_path

    config = build_upscale_config(options_from(ctx, params))
    results = upscale_path(input, output, config)
    if any(r.error for r in results):
        sys.exit(1)
