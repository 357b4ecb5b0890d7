"""`vidsr probe FILE`: what a video is (streams, size, rate, field order, interlacing as
detected) and what `vidsr upscale` would do with it before the network, without upscaling."""

from __future__ import annotations

from pathlib import Path

import click

from .options import parsed


@click.command()
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--crop", "find_crop", is_flag=True, help="Also look for black bars (cropdetect).")
@click.option("--deinterlace", type=parsed("deinterlace"), default="auto", show_default=True,
              help="As `vidsr upscale` would take it.")  # fmt: skip
@click.option("--ivtc", type=parsed("ivtc"), default="auto", show_default=True,
              help="As `vidsr upscale` would take it.")  # fmt: skip
def probe(file, find_crop, deinterlace, ivtc):
    """What a video is, and how `vidsr upscale` would prepare it (deinterlace, inverse telecine,
    crop) before the network."""
    from ..media.filters import plan_prep, scan
    from ..media.probe import probe as probe_file

    info = probe_file(file)
    rate = f"{float(info.average_rate):.3f} fps" if info.average_rate else "unknown rate"
    frames = f"{info.frames} frames" if info.frames else "frames not counted"
    length = f"{info.duration:.2f} s" if info.duration else "length unknown"
    click.echo(
        f"{file.name}: {info.container}, {info.codec} {info.width}x{info.height} {info.pix_fmt}, "
        f"{rate} (time base {info.time_base}), {frames}, {length}"
    )
    for s in info.other_streams:
        click.echo(
            f"  stream #{s.index}: {s.type} {s.codec}" + (f" ({s.language})" if s.language else "")
        )
    click.echo(f"scan: {scan(info).describe()}")
    prep, warnings = plan_prep(info, deinterlace=deinterlace, ivtc=ivtc,
                               crop="auto" if find_crop else None)  # fmt: skip
    for line in warnings:
        click.echo(f"warning: {line}", err=True)
    click.echo(f"vidsr upscale would: {prep.said or 'take the frames as they are'}")
