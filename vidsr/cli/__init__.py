"""The `vidsr` command line: a thin click group. Options become a frozen config; one core call runs.

Failures are handled once, in VidsrGroup: a VidsrError (or a click usage error) is one line on
stderr and its exit code, Ctrl-C and SIGTERM stop cleanly with 130 and 143. Every command
lives in its own module here (upscale, watch and jobs, serve, train/eval/export, compare, bench, the
catalog: models, presets, sample); the upscale options are declared once (vidsr.config.OPTIONS)
and vidsr.cli.options puts them on each command that takes them.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any

import click

from .. import __version__
from ..errors import VidsrError
from .bench import bench
from .catalog import models, presets, sample
from .compare import compare
from .evaluate import evaluate
from .probe import probe
from .serve import serve
from .train import export, train
from .upscale import upscale
from .watch import jobs, watch


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


@click.group(
    cls=VidsrGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="vidsr")
@click.option("--offline", is_flag=True, help="Never touch the network (VIDSR_OFFLINE=1): a "
              "community model not downloaded yet is one line on where to put it.")  # fmt: skip
def main(offline: bool) -> None:
    """vidsr: 4x video super-resolution (SRResNet / SRGAN) keeping audio, timestamps, colour."""
    if offline:
        os.environ["VIDSR_OFFLINE"] = "1"


# Each command lives in the module of its name and imports nothing back from this one.
for _command in (upscale, watch, serve, jobs, train, evaluate, export, compare, bench, sample,
                 presets, models, probe):  # fmt: skip
    main.add_command(_command)


if __name__ == "__main__":
    main()
