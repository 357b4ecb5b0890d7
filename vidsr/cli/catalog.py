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


class _ModelsGroup(click.Group):
    """`vidsr models` lists, `vidsr models pull ID` downloads, `vidsr models FILE` says what a
    model file is (the word after `models` that is no subcommand is a file)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["show", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_ModelsGroup, invoke_without_command=True)
@click.pass_context
def models(ctx):
    """The models: built-in, and the community's by name (downloaded on first use); with a FILE,
    what that model file is. `vidsr models pull ID` downloads one now."""
    if ctx.invoked_subcommand is not None:
        return
    from ..models import MODELS
    from ..models.community import known_architectures
    from ..models.download import cache_dir, is_installed
    from ..models.records import COMMUNITY
    from ..models.weights import SHIPPED

    click.echo("built-in (--model NAME; Set5 / Set14 PSNR-Y of the shipped weights):")
    for name, record in MODELS.items():
        ships = "shipped weights" if name in SHIPPED else "no weights needed"
        ships = ships if name in SHIPPED or not record.trainable else "bring --weights"
        score = f"{record.scores.set5:.2f} / {record.scores.set14:.2f} dB, " if (
            record.scores and name in SHIPPED or not record.trainable) else ""  # fmt: skip
        click.echo(f"  {name:<10} x{record.scale}  {record.description} ({score}{ships})")
    click.echo(f"community (--model ID; downloaded on first use into {cache_dir()}):")
    for rid, r in COMMUNITY.items():
        state = "installed" if is_installed(r) else f"{r.size / 1e6:.1f} MB to download"
        licence = r.license + ("" if r.commercial else ", NOT FOR COMMERCIAL USE")
        click.echo(f"  {rid:<28} x{r.scale} {r.architecture}, {r.speed} on a CPU, {licence}, "
                   f"{state}: {r.description}")  # fmt: skip
    click.echo("model files (--model FILE or --weights FILE; .pth, .pt, .safetensors), via "
               "spandrel:")  # fmt: skip
    click.echo("  " + ", ".join(known_architectures()))


@models.command("pull")
@click.argument("model_id", metavar="ID")
@click.option("--from", "source", type=click.Path(path_type=Path, dir_okay=False),
              help="Adopt a file downloaded elsewhere (its sha256 is checked).")  # fmt: skip
def models_pull(model_id, source):
    """Download a community model now (or adopt one with --from), verified by its sha256."""
    from ..errors import ConfigError
    from ..models.download import adopt, fetch
    from ..models.records import COMMUNITY

    record = COMMUNITY.get(model_id)
    if record is None:
        raise ConfigError("ID", f"no community model {model_id!r}; `vidsr models` lists them")
    path = adopt(record, source) if source else fetch(record)
    click.echo(f"{model_id}: {path}")


@models.command("show", hidden=True)
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
def models_show(file):
    """What a model file is (architecture, scale, size, precisions)."""
    from ..models import MODELS
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
