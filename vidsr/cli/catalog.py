"""What vidsr has: `vidsr models` (built-in, and what a model file is), `vidsr presets`, and
`vidsr sample` (a clip to try it on)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("output", type=click.Path(path_type=Path), default="sample.mp4")
@click.option("--size", default="320x180", show_default=True, help="WIDTHxHEIGHT of the clip.")
@click.option("--seconds", default=2.0, show_default=True, help="Length of the clip.")
@click.option("--overwrite", is_flag=True, help="Replace an existing file.")
def sample(output, size, seconds, overwrite):
    """Write a small sample clip (H.264 + AAC) to try vidsr on."""
    from ..media.sample import write_sample
    from ..quality.throughput import parse_size

    width, height = parse_size(size)
    write_sample(output, width=width, height=height, seconds=seconds, overwrite=overwrite)
    click.echo(f"wrote {output}")


@click.group(invoke_without_command=True)
@click.pass_context
def presets(ctx):
    """List the presets (name and description); `vidsr presets show NAME` prints one."""
    if ctx.invoked_subcommand is None:
        from ..jobs.presets import builtin_presets

        for p in builtin_presets():
            click.echo(f"{p.name:<12} {p.description}")


@presets.command("show")
@click.argument("name")
def presets_show(name):
    """Print one preset (a shipped name or a .toml file) as TOML."""
    from ..jobs.presets import load_preset

    click.echo(load_preset(name).describe())


@click.command()
@click.argument("file", required=False, type=click.Path(path_type=Path, dir_okay=False))
def models(file):
    """The built-in models and the architectures a model file may have; with FILE, what it is."""
    from ..models import MODELS
    from ..models.weights import SHIPPED

    if file is None:
        from ..models.community import known_architectures

        click.echo("built-in (--model NAME; Set5 / Set14 PSNR-Y of the shipped weights):")
        for name, record in MODELS.items():
            ships = "shipped weights" if name in SHIPPED else "no weights needed"
            ships = ships if name in SHIPPED or not record.trainable else "bring --weights"
            score = f"{record.scores.set5:.2f} / {record.scores.set14:.2f} dB, " if (
                record.scores and name in SHIPPED or not record.trainable) else ""  # fmt: skip
            click.echo(f"  {name:<10} x{record.scale}  {record.description} ({score}{ships})")
        click.echo("model files (--model FILE or --weights FILE; .pth, .pt, .safetensors), via "
                   "spandrel:")  # fmt: skip
        click.echo("  " + ", ".join(known_architectures()))
        return
    from ..models.weights import describe_weights

    info = describe_weights(file)
    if isinstance(info, str):
        record = MODELS[info]
        click.echo(f"{file}: vidsr {info} weights (x{record.scale}, {record.description})")
        return
    size = f", input a multiple of {info.multiple_of} px" if info.multiple_of > 1 else ""
    size += f", at least {info.minimum} px" if info.minimum > 1 else ""
    click.echo(
        f"{file}: {info.architecture} ({info.purpose}), x{info.scale}, "
        f"{info.parameters / 1e6:.2f} M parameters, precisions {'/'.join(info.precisions)}{size}"
    )
