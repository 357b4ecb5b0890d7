"""The `vidsr` command line: a thin click group. Options become a frozen config; one core call runs.

Failures are handled once, in VidsrGroup: a VidsrError (or a click usage error) is one line on
stderr and its exit code, Ctrl-C and SIGTERM stop cleanly with 130 and 143. The upscale options
are declared once (vidsr.config.OPTIONS) and `upscale_options` puts them on `upscale` and
`watch`; `--preset` fills ctx.default_map, so `--help` shows the preset's real defaults.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Any

import click

from . import __version__
from .cli_options import options_from, upscale_options
from .config import BUILTIN_MODELS, names
from .errors import VidsrError


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread: everything that cleans up after Ctrl-C runs again."""


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


class VidsrGroup(click.Group):
    """The one place where errors become one line and an exit code, for every command."""

    def invoke(self, ctx: click.Context) -> Any:
        old = None
        if threading.current_thread() is threading.main_thread():
            old = signal.signal(signal.SIGTERM, _on_sigterm)
        try:
            return super().invoke(ctx)
        except VidsrError as e:
            click.echo(f"vidsr: error: {e}", err=True)
            sys.exit(e.exit_code)
        except Terminated:
            click.echo("vidsr: stopped by SIGTERM; nothing was left at the target", err=True)
            sys.exit(143)
        except KeyboardInterrupt:
            click.echo("vidsr: interrupted; nothing was left at the target", err=True)
            sys.exit(130)
        finally:
            if old is not None:
                signal.signal(signal.SIGTERM, old)

    def main(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("standalone_mode", True) is False:
            return super().main(*args, **kwargs)
        try:
            return super().main(*args, standalone_mode=False, **kwargs)
        except click.exceptions.Exit as e:
            sys.exit(e.exit_code)
        except click.Abort:
            click.echo("vidsr: interrupted", err=True)
            sys.exit(130)
        except click.ClickException as e:
            # One line, like every other failure; `--help` is one flag away.
            click.echo(f"vidsr: error: {_one_line(e)}", err=True)
            sys.exit(e.exit_code)


def _one_line(e: click.ClickException) -> str:
    msg = e.format_message().replace("\n", " ").strip()
    ctx = getattr(e, "ctx", None)
    if isinstance(e, click.UsageError) and ctx is not None and ctx.command_path:
        return f"{ctx.command_path}: {msg}"
    return msg


# -- commands ----------------------------------------------------------------------------------


@click.group(
    cls=VidsrGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="vidsr")
def main() -> None:
    """vidsr: 4x video super-resolution (SRResNet / SRGAN) keeping audio, timestamps, colour."""


@main.command(context_settings={"show_default": True})
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
    from .batch import upscale_path
    from .config import build_upscale_config

    config = build_upscale_config(options_from(ctx, params))
    results = upscale_path(input, output, config)
    if any(r.error for r in results):
        sys.exit(1)


@main.command()
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

    from .bench import run_bench
    from .config import parse_batch, parse_model, parse_tile
    from .errors import ConfigError

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


@main.command()
@click.argument("output", type=click.Path(path_type=Path), default="sample.mp4")
@click.option("--size", default="320x180", show_default=True, help="WIDTHxHEIGHT of the clip.")
@click.option("--seconds", default=2.0, show_default=True, help="Length of the clip.")
@click.option("--overwrite", is_flag=True, help="Replace an existing file.")
def sample(output, size, seconds, overwrite):
    """Write a small sample clip (H.264 + AAC) to try vidsr on."""
    from .bench import parse_size
    from .media.sample import write_sample

    width, height = parse_size(size)
    write_sample(output, width=width, height=height, seconds=seconds, overwrite=overwrite)
    click.echo(f"wrote {output}")


@main.group(invoke_without_command=True)
@click.pass_context
def presets(ctx):
    """List the presets (name and description); `vidsr presets show NAME` prints one."""
    if ctx.invoked_subcommand is None:
        from .presets import builtin_presets

        for p in builtin_presets():
            click.echo(f"{p.name:<10} {p.description}")


@presets.command("show")
@click.argument("name")
def presets_show(name):
    """Print one preset (a shipped name or a .toml file) as TOML."""
    from .presets import load_preset

    click.echo(load_preset(name).describe())


@main.command()
@click.argument("file", required=False, type=click.Path(path_type=Path, dir_okay=False))
def models(file):
    """The built-in models and the architectures a model file may have; with FILE, what it is."""
    from .models import MODELS
    from .weights import SHIPPED

    if file is None:
        from .community import known_architectures

        click.echo("built-in (--model NAME):")
        for name, spec in MODELS.items():
            ships = "shipped weights" if name in SHIPPED else "no weights needed"
            ships = ships if name in SHIPPED or not spec.trainable else "bring --weights"
            click.echo(f"  {name:<10} x{spec.arch.get('scale', 4)}  {spec.description} ({ships})")
        click.echo("model files (--model FILE or --weights FILE; .pth, .pt, .safetensors), via "
                   "spandrel:")  # fmt: skip
        click.echo("  " + ", ".join(known_architectures()))
        return
    from .weights import describe_weights

    info = describe_weights(file)
    if isinstance(info, str):
        spec = MODELS[info]
        scale = spec.arch.get("scale", 4)
        click.echo(f"{file}: vidsr {info} weights (x{scale}, {spec.description})")
        return
    size = f", input a multiple of {info.multiple_of} px" if info.multiple_of > 1 else ""
    size += f", at least {info.minimum} px" if info.minimum > 1 else ""
    click.echo(
        f"{file}: {info.architecture} ({info.purpose}), x{info.scale}, "
        f"{info.parameters / 1e6:.2f} M parameters, precisions {'/'.join(info.precisions)}{size}"
    )


# Commands that live in their own modules; they import nothing back from this one.
from .compare import compare_command as _compare  # noqa: E402
from .train.cli import evaluate as _evaluate  # noqa: E402
from .train.cli import export as _export  # noqa: E402
from .train.cli import train as _train  # noqa: E402
from .watch_cli import jobs as _jobs  # noqa: E402
from .watch_cli import watch as _watch  # noqa: E402

for _command in (_watch, _jobs, _train, _evaluate, _export, _compare):
    main.add_command(_command)


if __name__ == "__main__":
    main()
