"""`vidsr serve`: the job queue of `vidsr watch` behind a local web page (vidsr.web).

Kept apart from vidsr.web so that `vidsr --help` imports neither FastAPI nor torch.
"""

from __future__ import annotations

import socket
from pathlib import Path

import click

from ..config import parse_memory
from ..errors import ConfigError, VidsrError
from .options import options_from, upscale_options


def _size(ctx, param, value: str) -> int:
    try:
        return parse_memory(value)
    except ValueError as e:
        raise click.BadParameter(str(e).replace("at least 64M", "a size"), ctx, param) from None


@click.command(context_settings={"show_default": True})
@click.option("-o", "--out", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="Folder for the upscaled videos; the journal, logs and uploads go in "
              "OUT/.vidsr/.")  # fmt: skip
@click.option("--host", default="127.0.0.1",
              help="Address to listen on; anything but loopback needs a token.")  # fmt: skip
@click.option("--port", type=click.IntRange(0, 65535), default=8765, help="Port (0: any free).")
@click.option("--inbox", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Also watch this folder, as `vidsr watch INBOX` does; its jobs show on the "
              "page.")  # fmt: skip
@click.option("--root", "roots", multiple=True, type=click.Path(path_type=Path, file_okay=False,
              exists=True), help="A folder whose videos (and model files) the page may choose; "
              "repeat for more. Nothing outside the roots is offered or accepted.")  # fmt: skip
@click.option("--token", default=None, envvar="VIDSR_TOKEN",
              help="Every request must carry it. Generated and printed when the address is "
              "not loopback and none is given.  [env: VIDSR_TOKEN]")  # fmt: skip
@click.option("--max-upload", default="20G", callback=_size, metavar="SIZE",
              help="Largest file an upload may be.")  # fmt: skip
@upscale_options(exclude=("overwrite", "skip_existing", "ray", "quiet"))
@click.option("--max-attempts", type=click.IntRange(min=1), default=1,
              help="Tries per job before it is marked failed (Retry on the page runs it "
              "again).")  # fmt: skip
@click.option("--jobs", type=click.IntRange(min=1), default=1,
              help="Jobs run at the same time.")  # fmt: skip
@click.option("--stable-secs", type=click.FloatRange(min=0), default=5.0,
              help="With --inbox: a file is taken once it has held still this long.")  # fmt: skip
@click.pass_context
def serve(ctx, out, host, port, inbox, roots, token, max_upload, max_attempts, jobs, stable_secs,
          **params):  # fmt: skip
    """A local web page for the job queue: drop or choose videos, pick a preset, watch progress,
    look at a before/after crop, download the results.

    The queue is `vidsr watch`'s: the same journal in OUT/.vidsr (restarts resume), the same
    runner and outputs. The upscale options below are every job's defaults; the page may choose
    a preset and override model, outscale, codec, crf and the span per job.
    """
    try:
        import fastapi  # noqa: F401
        import jinja2  # noqa: F401
        import uvicorn
    except ImportError:
        raise VidsrError("vidsr serve needs the web extra: pip install 'vidsr[web]'") from None
    from ..jobs.serve import JobQueue, ServeConfig
    from ..web.app import create_app, is_loopback, token_for

    loopback, token = is_loopback(host), token_for(host, token)
    values = options_from(ctx, params)
    config = ServeConfig(out=out, values=values, inbox=inbox, roots=tuple(roots),
                         max_attempts=max_attempts, jobs=jobs, stable_secs=stable_secs)  # fmt: skip
    queue = JobQueue(config)
    sock = _bind(host, port)
    app = create_app(queue, token=token, loopback=loopback, max_upload=max_upload)
    queue.start()  # the journal opens (or another server holds it: one line, exit) first
    try:
        shown = f"[{host}]" if ":" in host else host
        url = f"http://{shown}:{sock.getsockname()[1]}/"
        click.echo(f"vidsr serve: {url}" + (f"?token={token}" if token else ""), err=True)
        server = uvicorn.Server(
            uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=3, lifespan="off")
        )
        server.run(sockets=[sock])
    finally:
        queue.close()
        sock.close()
    if queue.error is not None and not isinstance(queue.error, KeyboardInterrupt):
        raise queue.error


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, opened before the queue starts: a port in use is one line."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as e:
        sock.close()
        raise ConfigError("--port", f"cannot listen on {host}:{port}: {e.strerror}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock
