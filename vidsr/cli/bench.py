"""`vidsr bench`: throughput of the model alone, decode, encode and the whole pipeline."""

from __future__ import annotations

from pathlib import Path

import click

from ..config import BUILTIN_MODELS, names


@click.command()
@click.option("--model", default="srresnet", show_default=True, help=f"{names(BUILTIN_MODELS)}.")
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
@click.option(
    "--weights",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="A model file (any architecture `vidsr models` lists) instead of --model.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON line and nothing else.")
def bench(model, size, frames, device, precision, batch_size, tile, repeat, threads, weights,
          as_json):  # fmt: skip
    """Throughput: model alone, decode, encode and the whole pipeline, on a generated clip."""
    import json
    from dataclasses import asdict

    from ..config import parse_batch, parse_model, parse_tile
    from ..errors import ConfigError
    from ..quality.throughput import run_bench

    try:
        model, batch_size, tile = parse_model(model), parse_batch(batch_size), parse_tile(tile)
    except ValueError as e:
        raise ConfigError("vidsr bench", str(e)) from None
    result = run_bench(
        model=model,
        size=size,
        frames=frames,
        device=device,
        precision=precision,
        batch_size=batch_size,
        tile=tile,
        repeat=repeat,
        threads=threads,
        weights=weights,
    )
    if as_json:
        click.echo(json.dumps(asdict(result)))
        return
    what = f"{weights}" if weights else f"{model} (random weights: speed does not depend on them)"
    click.echo(
        f"vidsr bench: {what}, {result.size} -> x{result.scale}, {result.device}, "
        f"{result.precision}, batch {result.batch_size}"
    )
    for name in ("model", "decode", "encode", "pipeline", "segmented"):
        click.echo(f"  {name + ' fps':<14}{getattr(result, name + '_fps'):>9.2f}")
    ratio = result.pipeline_fps / result.model_fps if result.model_fps else 0.0
    click.echo(f"  pipeline / model: {ratio:.2f}")
    seg = result.segmented_fps / result.pipeline_fps if result.pipeline_fps else 0.0
    click.echo(f"  segmented / pipeline: {seg:.2f} (resumable segments: 2 in the clip)")
