"""`vidsr watch` and `vidsr jobs`: the folder watcher and its journal, on the command line.

Kept apart from vidsr.watch so that `vidsr --help` does not import torch and PyAV.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .cli import friendly_errors


def _on_done(ctx, param, value: str) -> tuple[str, Path | None]:
    if value in ("keep", "delete"):
        return value, None
    if value.startswith("move:") and len(value) > len("move:"):
        return "move", Path(value[len("move:") :])
    raise click.BadParameter("use keep, delete or move:DIR")


@click.command()
@click.argument("inbox", type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "-o",
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="Folder for the upscaled videos; the journal and log go in OUT/.vidsr/.",
)
@click.option(
    "--model",
    default=None,
    help="srresnet, srgan, fast or bicubic (default: the preset's, or srgan).",
)
@click.option("--preset", default=None, help="A preset name or TOML file (as for `vidsr upscale`).")
@click.option(
    "--weights",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="A state_dict or `vidsr train` checkpoint instead of the shipped weights.",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option(
    "--precision", default=None, help="auto, fp32, bf16 or fp16 (default: the preset's, or auto)."
)
@click.option(
    "--stable-secs",
    type=click.FloatRange(min=0),
    default=5.0,
    show_default=True,
    help="A file is taken once its size and mtime have not changed for this long.",
)
@click.option("--recursive", is_flag=True, help="Watch subfolders too; outputs mirror them.")
@click.option(
    "--max-attempts",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Tries per file before it is marked failed.",
)
@click.option(
    "--retry-delay",
    type=click.FloatRange(min=0),
    default=2.0,
    show_default=True,
    help="Seconds before the first retry; doubles after each failure.",
)
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Files processed at the same time.",
)
@click.option(
    "--once",
    is_flag=True,
    help="Process what is in INBOX now (waiting for it to settle), then exit; "
    "exit code 1 if any file failed.",
)
@click.option(
    "--drain",
    is_flag=True,
    help="On SIGINT/SIGTERM finish the current file instead of abandoning it.",
)
@click.option(
    "--on-done",
    default="keep",
    show_default=True,
    callback=_on_done,
    metavar="keep|delete|move:DIR",
    help="What to do with an original once upscaled.",
)
@click.option(
    "--poll", is_flag=True, help="Rescan instead of relying on file events (network filesystems)."
)
@friendly_errors
def watch(
    inbox,
    out,
    model,
    preset,
    weights,
    device,
    precision,
    stable_secs,
    recursive,
    max_attempts,
    retry_delay,
    jobs,
    once,
    drain,
    on_done,
    poll,
):
    """Upscale every video that lands in INBOX into OUT, once, surviving crashes and restarts.

    SIGINT/SIGTERM stop within seconds with exit code 0: the file in progress is abandoned with
    no partial output (or finished, with --drain) and runs again on the next start.
    """
    from .presets import build_config
    from .watch import WatchConfig
    from .watch import watch as run_watch

    # A preset's model and precision apply unless given here; resolved once, up front, so the
    # watcher checks the weights of the model it will really run.
    resolved = build_config(preset, model=model, precision=precision)
    model, precision = resolved.model, resolved.precision
    action, move_to = on_done
    config = WatchConfig(
        inbox=inbox,
        out=out,
        model=model,
        preset=preset,
        weights=weights,
        device=device,
        precision=precision,
        stable_secs=stable_secs,
        recursive=recursive,
        max_attempts=max_attempts,
        retry_delay=retry_delay,
        jobs=jobs,
        once=once,
        drain=drain,
        on_done=action,
        move_to=move_to,
        poll=poll,
    )
    summary = run_watch(config)
    if once and summary.failed and not summary.stopped_by_signal:
        sys.exit(1)


_STATE_STYLE = {"done": "green", "failed": "red", "running": "cyan", "queued": "yellow"}


@click.command()
@click.option(
    "-o",
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="The output folder of a `vidsr watch`.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the journal as JSON.")
@friendly_errors
def jobs(out, as_json):
    """Show the job journal of a watched output folder: file, state, attempts, error, fps."""
    from .journal import Journal, journal_path

    with Journal(journal_path(out), readonly=True) as journal:
        rows = journal.jobs()
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in rows], indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("file", "state", "attempts", "error", "fps")
    for r in rows:
        style = _STATE_STYLE.get(r.state, "")
        fps = f"{r.fps:.1f}" if r.fps is not None else ""
        table.add_row(r.name, f"[{style}]{r.state}[/]", str(r.attempts), r.last_error or "", fps)
    Console().print(table)
