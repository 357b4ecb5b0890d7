"""`vidsr watch` and `vidsr jobs`: the folder watcher and its journal, on the command line.

Kept apart from vidsr.jobs.watch so that `vidsr --help` does not import torch and PyAV.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .options import options_from, upscale_options


def _on_done(ctx, param, value: str) -> tuple[str, Path | None]:
    if value in ("keep", "delete"):
        return value, None
    if value.startswith("move:") and len(value) > len("move:"):
        return "move", Path(value[len("move:") :])
    raise click.BadParameter("use keep, delete or move:DIR")


@click.command(context_settings={"show_default": True})
@click.argument("inbox", type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "-o",
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="Folder for the upscaled videos; the journal and log go in OUT/.vidsr/.",
)
@upscale_options(exclude=("overwrite", "skip_existing"))
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
@click.pass_context
def watch(ctx, inbox, out, on_done, **params):
    """Upscale every video that lands in INBOX into OUT, once, surviving crashes and restarts.

    Every upscale option (and --preset) works as for `vidsr upscale`. SIGINT/SIGTERM stop within
    seconds with exit code 0: the file in progress is abandoned with no partial output (or
    finished, with --drain) and runs again on the next start.
    """
    from ..config import build_upscale_config
    from ..jobs.watch import WatchConfig
    from ..jobs.watch import watch as run_watch

    upscale = build_upscale_config(options_from(ctx, params))
    action, move_to = on_done
    config = WatchConfig(inbox=inbox, out=out, upscale=upscale, on_done=action, move_to=move_to,
                         **params)  # fmt: skip
    summary = run_watch(config)
    if config.once and summary.failed and not summary.stopped_by_signal:
        sys.exit(1)


_STATE_STYLE = {
    "done": "green",
    "failed": "red",
    "running": "cyan",
    "queued": "yellow",
    "skipped": "dim",
}


@click.command()
@click.option(
    "-o",
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="The output folder of a `vidsr watch`.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the journal as JSON.")
def jobs(out, as_json):
    """Show the job journal of a watched output folder: file, state, attempts, error, fps."""
    from ..errors import OutputError
    from ..jobs.journal import Journal, JournalDamaged, journal_path

    try:
        with Journal(journal_path(out), readonly=True) as journal:
            rows = journal.jobs()
    except JournalDamaged as e:
        raise OutputError(
            f"{e}; the next `vidsr watch INBOX --out {out}` moves it aside and rebuilds it "
            "from the outputs there"
        ) from None
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in rows], indent=2))
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table("file", "state", "attempts", "error", "fps")
    for r in rows:
        style = _STATE_STYLE.get(r.state, "")
        fps = f"{r.fps:.1f}" if r.fps is not None else ""
        state = Text(r.state, style=style)  # Text, not markup: names may hold [brackets]
        table.add_row(Text(r.name), state, str(r.attempts), Text(r.last_error or ""), fps)
    Console().print(table)
