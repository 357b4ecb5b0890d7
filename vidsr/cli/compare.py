"""`vidsr compare`: one frame through several models, its most detailed crops side by side."""

from __future__ import annotations

from pathlib import Path

import click

from ..quality import compare as comparison
from .options import parsed


@click.command("compare", context_settings={"show_default": True})
@click.argument("input", type=click.Path(path_type=Path))
@click.option("--at", "at", default=None, metavar="T",
              help="The video frame on screen at T: seconds or HH:MM:SS[.ms].  "
              "[default: the middle]")  # fmt: skip
@click.option("--models", default=None, metavar="LIST",
              help="Comma-separated model names, weights files, or NAME=FILE.  [default: bicubic "
              "and every model with shipped weights]")  # fmt: skip
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="The PNG to write.  [default: INPUT_compare.png beside INPUT]")  # fmt: skip
@click.option("--reference", type=click.Path(path_type=Path), default=None, metavar="FILE",
              help="The same frame at 4x (an image, or a video at the same time): "
              "PSNR-Y of every crop in its label.")  # fmt: skip
@click.option("--crops", default=2, help="How many crops, the most detailed regions first.")
@click.option("--crop-size", default=96, help="Side of a crop in source pixels.")
@click.option("--device", type=parsed("device"), default="auto", help="auto, cpu, cuda or cuda:N.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
def compare(input, at, models, output, reference, crops, crop_size, device, overwrite):
    """Compare models on one frame (or image): the most detailed crops side by side, as a PNG."""
    done = comparison.compare(
        input,
        at=None if at is None else comparison.parse_time(at),
        contenders=None if models is None else comparison.parse_models(models),
        output=output,
        reference=reference,
        crops=crops,
        crop_size=crop_size,
        device=device,
        overwrite=overwrite,
    )
    width, height = done.size
    when = f" at {done.time:.2f} s" if done.time is not None else ""
    click.echo(f"wrote {done.output} ({width}x{height}): crops of {done.crop_size} px{when}")
    rows: dict[tuple[int, int], list[comparison.Panel]] = {}
    for panel in done.panels:
        rows.setdefault(panel.crop, []).append(panel)
    for (y, x), row in rows.items():
        scores = ", ".join(f"{p.label} {p.psnr_y:.2f} dB" for p in row if p.psnr_y is not None)
        click.echo(f"  crop at x={x} y={y}" + (f": PSNR-Y {scores}" if scores else ""))
