"""`vidsr bench`: throughput of the model alone, decode, encode and the whole pipeline.

The model and engine options are the upscale options of the one table (vidsr.config.OPTIONS),
parsed as `vidsr upscale` parses them."""

from __future__ import annotations

import click

from .options import options_from, upscale_options

# What shapes the measurement (the encoder's codec and speed preset included); span and output
# options do not apply to a generated clip.
BENCH_OPTIONS = ("model", "weights", "device", "precision", "batch_size", "tile", "memory",
                 "temporal", "codec", "encoder_preset")  # fmt: skip


@click.command(context_settings={"show_default": True})
@click.option("--size", default="320x180", help="WIDTHxHEIGHT of the generated clip.")
@click.option("--frames", default=24, help="Frames to time in each measurement.")
@click.option("--repeat", default=2, help="Repeat each measurement, interleaved; keep the best.")
@click.option(
    "--threads", type=int, default=None, help="CPU threads for the model.  [default: cores]"
)
@click.option(
    "--profile",
    is_flag=True,
    help="Also say where the time goes: each stage's CPU time alone, and the wall time of every "
    "section of a pipeline and a segmented run, in ms per frame.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON line and nothing else.")
@upscale_options(only=BENCH_OPTIONS, preset=False)
@click.pass_context
def bench(ctx, size, frames, repeat, threads, profile, as_json, **params):
    """Throughput: model alone, decode, encode and the whole pipeline, on a generated clip."""
    import json
    from dataclasses import asdict

    from ..config import build_upscale_config, temporal_name
    from ..quality.throughput import run_bench

    config = build_upscale_config(options_from(ctx, params))
    result = run_bench(
        config, size=size, frames=frames, repeat=repeat, threads=threads, profile=profile
    )
    if as_json:
        data = asdict(result)
        if data["profile"] is None:  # only with --profile
            del data["profile"]
        click.echo(json.dumps(data))
        return
    what = (f"{config.weights}" if config.weights else
            f"{config.model} (random weights: speed does not depend on them)")  # fmt: skip
    click.echo(
        f"vidsr bench: {what}, {result.size} -> x{result.scale}, {result.device}, "
        f"{result.precision}, batch {result.batch_size}, temporal {temporal_name(config.temporal)}"
    )
    for name in ("model", "decode", "encode", "pipeline", "segmented"):
        click.echo(f"  {name + ' fps':<14}{getattr(result, name + '_fps'):>9.2f}")
    ratio = result.pipeline_fps / result.model_fps if result.model_fps else 0.0
    click.echo(f"  pipeline / model: {ratio:.2f}")
    if config.temporal:
        click.echo(f"  {'pipeline fps, --temporal off':<30}{result.steady_off_fps:>9.2f}")
        cost = result.pipeline_fps / result.steady_off_fps if result.steady_off_fps else 0.0
        click.echo(f"  pipeline with / without --temporal: {cost:.2f}")
    seg = result.segmented_fps / result.pipeline_fps if result.pipeline_fps else 0.0
    click.echo(f"  segmented / pipeline: {seg:.2f} (resumable segments: 2 in the clip)")
    if result.profile:
        show_profile(result.profile)


def show_profile(profile: dict) -> None:
    """--profile's table: what each stage costs alone, and where a run's wall time went."""
    cores, alone = profile["cores"], profile["alone_cpu_ms"]
    work = sum(alone.values())
    click.echo("where the time goes, ms per frame:")
    click.echo("  CPU time of each stage alone (all its threads):")
    for name, ms in alone.items():
        click.echo(f"    {name:<42}{ms:>8.2f}")
    click.echo(
        f"    {'all stages':<42}{work:>8.2f}  -> on {cores} core(s) at best "
        f"{work / cores:.2f} ms a frame ({1000 * cores / work if work else 0:.2f} fps)"
    )
    for name in ("pipeline", "segmented"):
        run = profile[name]
        busy = run["cpu_ms"] / (run["wall_ms"] * cores) if run["wall_ms"] else 0.0
        best = work / cores / run["wall_ms"] if run["wall_ms"] else 0.0
        click.echo(
            f"  {name}: {run['wall_ms']:.2f} ms a frame ({1000 / run['wall_ms']:.2f} fps, "
            f"{best:.2f} of the best above), CPU {run['cpu_ms']:.2f} ms ({busy:.0%} of "
            f"{cores} core(s) busy); wall time of each section, on the thread that runs it:"
        )
        for section, ms in run["sections_ms"].items():
            click.echo(f"    {section:<42}{ms:>8.2f}")
