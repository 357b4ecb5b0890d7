"""The web page of `vidsr serve`: FastAPI routes over a JobQueue (vidsr.jobs.serve).

The routes only read the queue's snapshots and send it commands; the queue's loop thread does the
work. Progress reaches the page as server-sent events: one stream per page, a message only when
something changed. Uploads are streamed to disk in chunks under a temporary name and renamed into
place when complete, so an interrupted upload leaves neither a job nor a file.

Security (see Guard): the server binds 127.0.0.1 unless told otherwise; any other address needs a
token on every request (header, cookie, or ?token= once); state changes are POSTs with a header
no cross-site form or image can send and an Origin that must be this server's; every path from a
request is confined to a --root (vidsr.jobs.serve.confine); nothing from a request reaches a
shell.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import io
import ipaddress
import json
import os
import re
import secrets
import shutil
import unicodedata
from pathlib import Path
from urllib.parse import parse_qs, urlencode

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from ..config import OPTION_NAMES
from ..errors import VidsrError
from ..jobs.batch import VIDEO_EXTENSIONS, EngineCache
from ..jobs.serve import (
    JOB_FIELDS,
    FieldErrors,
    JobOptions,
    JobQueue,
    PathRefused,
    confine,
    list_folder,
    model_files,
    resolve_job,
)
from ..models.records import COMMUNITY, RECORDS

HERE = Path(__file__).parent
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")
HEADER = "x-vidsr"  # state-changing requests carry it: a cross-site form or <img> cannot
COOKIE = "vidsr_token"
CHUNK = 1 << 20  # upload chunks are written as they arrive: memory stays at one chunk
FREE_MARGIN = 256 << 20  # an upload must leave this much free on the output disk
SSE_WAIT = 10.0  # seconds between keep-alives when nothing changes
SSE_EVERY = 0.25  # at most this often a message, however fast the frames go


def is_loopback(host: str) -> bool:
    """A listening address that only this machine reaches: localhost, 127.0.0.0/8, ::1."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def token_for(host: str, token: str | None) -> str | None:
    """The token requests must carry: the one given, else a new one for any address but
    loopback, else none."""
    return token or (None if is_loopback(host) else new_token())


def new_token() -> str:
    return secrets.token_urlsafe(24)


def safe_name(name: str) -> str:
    """A file name from the user made harmless: its last part only, no controls, no leading dot,
    letters, digits and `._- ()` kept, at most 120 characters; it must keep a video extension."""
    name = unicodedata.normalize("NFC", name.replace("\\", "/").rsplit("/", 1)[-1])
    name = re.sub(r"[^\w.\- ()]", "_", "".join(ch for ch in name if ch.isprintable()))
    name = name.strip(" .")
    stem, suffix = os.path.splitext(name)
    if suffix.lower() not in VIDEO_EXTENSIONS or not stem:
        raise FieldErrors(
            {"file": f"not a video file name ({', '.join(sorted(VIDEO_EXTENSIONS))})"}
        )
    return stem[:100] + suffix.lower()


class Guard:
    """Every request: the Host must be this server's (no DNS rebinding onto 127.0.0.1), the token
    must match when one is set, and a state change must be a same-origin POST with X-Vidsr."""

    def __init__(self, app, *, token: str | None, loopback: bool):
        self.app, self.token, self.loopback = app, token, loopback

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        hostname = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if self.loopback and hostname not in LOOPBACK_NAMES and not hostname.startswith("127."):
            return await _deny(scope, receive, send, 403, "unexpected Host header")
        method = scope["method"]
        if self.token is not None:
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            given = _bearer(headers.get("authorization")) or _cookie(headers.get("cookie"))
            from_query = (query.get("token") or [None])[0]
            if from_query is not None and method == "GET" and _same(from_query, self.token):
                # once, from the printed URL: a cookie from now on, and the token out of the URL
                rest = urlencode({k: v for k, v in query.items() if k != "token"}, doseq=True)
                location = scope["path"] + (f"?{rest}" if rest else "")
                return await _deny(scope, receive, send, 303, "", location=location,
                                   cookie=self.token)  # fmt: skip
            if given is None or not _same(given, self.token):
                return await _deny(scope, receive, send, 401,
                                   "token required: open the URL vidsr serve printed")  # fmt: skip
        if method not in ("GET", "HEAD"):
            origin = headers.get("origin")
            if method != "POST" or headers.get(HEADER) != "1":
                return await _deny(scope, receive, send, 403, "cross-site request refused")
            if origin is not None and origin not in (f"http://{host}", f"https://{host}"):
                return await _deny(scope, receive, send, 403, "cross-origin request refused")
        return await self.app(scope, receive, send)


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def _bearer(value: str | None) -> str | None:
    if value and value.lower().startswith("bearer "):
        return value[7:].strip()
    return None


def _cookie(value: str | None) -> str | None:
    for part in (value or "").split(";"):
        k, _, v = part.strip().partition("=")
        if k == COOKIE:
            return v
    return None


async def _deny(scope, receive, send, status, text, *, location=None, cookie=None):
    headers = [(b"content-type", b"text/plain; charset=utf-8")]
    if location is not None:
        headers.append((b"location", location.encode("latin-1")))
    if cookie is not None:
        value = f"{COOKIE}={cookie}; HttpOnly; SameSite=Strict; Path=/"
        headers.append((b"set-cookie", value.encode("latin-1")))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": text.encode()})


def _png_data_url(rgb) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def create_app(
    jobs: JobQueue,
    *,
    token: str | None = None,
    loopback: bool = True,
    max_upload: int = 20 << 30,
) -> Guard:
    """The ASGI app (the FastAPI app behind its Guard). The queue is started and closed by the
    caller (vidsr.cli.serve, or a test)."""
    app = FastAPI(title="vidsr", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    templates = Jinja2Templates(directory=HERE / "templates")
    compare_engines = EngineCache()  # apart from the jobs': a look never waits for a job
    roots = jobs.roots

    def field_errors(e: FieldErrors) -> JSONResponse:
        return JSONResponse({"errors": e.errors}, status_code=422)

    def job_or_404(jid: str):
        job = jobs.find(jid)
        if job is None:
            raise HTTPException(404, "no such job")
        return job

    async def command(fn, *args):
        try:
            return await asyncio.wrap_future(jobs.submit(lambda: fn(*args)))
        except VidsrError as e:
            raise HTTPException(409, str(e)) from None

    def options_from(source: dict) -> JobOptions:
        overrides = {k: str(source[k]) for k in JOB_FIELDS if str(source.get(k) or "").strip()}
        unknown = set(source.get("overrides") or {}) - set(JOB_FIELDS)
        if unknown:
            raise FieldErrors({k: "not an option a job may set" for k in sorted(unknown)})
        overrides.update({k: str(v) for k, v in (source.get("overrides") or {}).items() if v})
        return JobOptions(source.get("preset") or None, overrides)

    async def json_body(request: Request) -> dict:
        try:
            body = await request.json()
        except ValueError:
            raise HTTPException(400, "expected a JSON object") from None
        if not isinstance(body, dict):
            raise HTTPException(400, "expected a JSON object")
        return body

    @app.exception_handler(FieldErrors)
    async def _field_errors(request: Request, e: FieldErrors):
        return field_errors(e)

    @app.exception_handler(PathRefused)
    async def _refused(request: Request, e: PathRefused):
        return JSONResponse({"detail": str(e)}, status_code=403)

    from ..jobs.presets import builtin_presets

    presets = builtin_presets()  # read once: the shipped files do not change while serving

    @app.get("/")
    async def index(request: Request):
        return templates.TemplateResponse(
            request,
            "index.html",
            {
                "records": list(RECORDS.values()),
                "community": list(COMMUNITY.values()),
                "presets": presets,
                "roots": [{"index": i, "name": r.name or str(r)} for i, r in enumerate(roots)],
                "fields": [(k, OPTION_NAMES[k]) for k in JOB_FIELDS],
                "base": jobs.base,
                "out": jobs.out.name,
            },
        )

    @app.get("/api/jobs")
    async def list_jobs():
        version, items = jobs.snapshot()
        return {"version": version, "jobs": items}

    @app.get("/api/events")
    async def events(request: Request):
        async def stream():
            version, states = -1, None
            while not jobs.stop.is_set():
                now, items = jobs.snapshot()
                if now != version:
                    version = now
                    yield f"data: {json.dumps({'version': now, 'jobs': items})}\n\n"
                    seen = [(j["id"], j["state"]) for j in items]
                    if seen == states:  # progress only: a fast job's every frame, a few a second
                        await asyncio.sleep(SSE_EVERY)
                    states = seen  # a job that starts or ends is told at once, never skipped
                else:
                    yield ": still here\n\n"
                if await request.is_disconnected():
                    return
                await run_in_threadpool(jobs.wait_change, version, SSE_WAIT)

        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)

    @app.post("/api/check")
    async def check(request: Request):
        """The options of a job about to be uploaded: errors by field, before any byte moves."""
        body = await json_body(request)
        name = safe_name(str(body.get("name", ""))) if body.get("name") else "x.mp4"
        resolve_job(jobs.serve.values, options_from(body), roots, Path(name).suffix)
        return {"ok": True}

    @app.post("/api/upload")
    async def upload(request: Request):
        query = dict(request.query_params)
        name = safe_name(query.get("name", ""))
        options = options_from(query)
        resolve_job(jobs.serve.values, options, roots, Path(name).suffix)  # FieldErrors: 422
        length = request.headers.get("content-length")
        if length is not None and not length.isdigit():
            raise HTTPException(400, "bad Content-Length")
        if length is not None and int(length) > max_upload:
            raise HTTPException(413, f"larger than the upload limit ({max_upload >> 20} MiB)")
        free = shutil.disk_usage(jobs.uploads).free
        if length is not None and int(length) + FREE_MARGIN > free:
            raise HTTPException(507, f"not enough free space for it ({free >> 20} MiB free)")
        stem = secrets.token_hex(8)
        part = jobs.uploads / f".upload-{stem}.part"
        written = 0
        try:
            with open(part, "xb") as f:
                async for chunk in request.stream():
                    written += len(chunk)
                    if written > max_upload:
                        raise HTTPException(413, "larger than the upload limit")
                    await run_in_threadpool(f.write, chunk)
            if written == 0:
                raise HTTPException(400, "the file is empty")
            final = jobs.uploads / stem / name
            final.parent.mkdir()
            os.replace(part, final)
        except (ClientDisconnect, HTTPException, OSError, asyncio.CancelledError) as e:
            part.unlink(missing_ok=True)
            if isinstance(e, ClientDisconnect):  # nobody reads this; no traceback in the log
                return PlainTextResponse("the upload was interrupted", status_code=400)
            if isinstance(e, OSError):
                raise HTTPException(507, f"the upload could not be stored: {e.strerror}") from None
            raise
        try:
            jid = await command(jobs.add, final, name, options)
        except BaseException:
            final.unlink(missing_ok=True)
            final.parent.rmdir()
            raise
        return {"id": jid, "name": name, "bytes": written}

    @app.post("/api/add")
    async def add(request: Request):
        body = await json_body(request)
        try:
            root, rel = int(body.get("root", 0)), str(body.get("path", ""))
        except (TypeError, ValueError):
            raise HTTPException(400, "root must be a number") from None
        src = confine(roots, root, rel)
        if not src.is_file() or src.suffix.lower() not in VIDEO_EXTENSIONS:
            raise FieldErrors({"file": f"{rel}: not a video file"})
        options = options_from(body)
        resolve_job(jobs.serve.values, options, roots, src.suffix)
        name = f"{roots[root].name}/{src.relative_to(roots[root])}"
        return {"id": await command(jobs.add, src, name, options), "name": name}

    @app.get("/api/files")
    async def files(root: int = 0, path: str = ""):
        folder = confine(roots, root, path)
        if not folder.is_dir():
            raise HTTPException(400, "not a folder")
        return {"root": root, "path": path, "entries": list_folder(folder)}

    @app.post("/api/jobs/{jid}/cancel")
    async def cancel(jid: str):
        return {"state": await command(jobs.cancel_job, job_or_404(jid).path)}

    @app.post("/api/jobs/{jid}/retry")
    async def retry(jid: str):
        await command(jobs.retry_job, job_or_404(jid).path)
        return {"state": "queued"}

    @app.post("/api/jobs/{jid}/remove")
    async def remove(jid: str):
        await command(jobs.remove_job, job_or_404(jid).path)
        return {"removed": jid}

    @app.get("/api/jobs/{jid}/output")
    async def output(jid: str):
        job = job_or_404(jid)
        path = Path(job.output) if job.output and job.state == "done" else None
        if path is None or not path.is_file() or jobs.out not in path.resolve().parents:
            raise HTTPException(404, "no output yet")
        return FileResponse(path, filename=path.name)

    @app.get("/api/jobs/{jid}/log")
    async def job_log(jid: str):
        path = jobs.log_path(job_or_404(jid).path)
        text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
        return PlainTextResponse(text)

    @app.get("/api/jobs/{jid}/compare")
    async def compare(jid: str, at: str = ""):
        from ..quality.compare import before_after, parse_time

        job = job_or_404(jid)
        try:
            when = parse_time(at) if at.strip() else None
            config = jobs.config_of(job)
            look = await run_in_threadpool(
                before_after, Path(job.path), config, at=when, engines=compare_engines
            )
        except VidsrError as e:
            return JSONResponse({"errors": {"at": str(e)}}, status_code=422)
        y, x = look.crop
        return {
            "before": _png_data_url(look.before),
            "after": _png_data_url(look.after),
            "crop": {"x": x, "y": y, "size": look.size},
            "scale": look.scale,
            "time": look.time,
            "model": config.model if config.weights is None else config.weights.name,
        }

    @app.get("/api/models")
    async def models():
        def scores(r):
            return None if r.scores is None else vars(r.scores)

        return {
            "builtin": [
                {
                    "name": r.name,
                    "description": r.description,
                    "scale": r.scale,
                    "scores": scores(r),
                }
                for r in RECORDS.values()
            ],
            "community": sorted(COMMUNITY),
            "files": await run_in_threadpool(model_files, roots),
        }

    @app.get("/api/presets")
    async def list_presets():
        return [{"name": p.name, "description": p.description,
                 "values": {k: (v if isinstance(v, str | int | float) or v is None else str(v))
                            for k, v in p.values.items()}}
                for p in presets]  # fmt: skip

    return Guard(app, token=token, loopback=loopback)


__all__ = ["Guard", "create_app", "is_loopback", "new_token", "safe_name", "token_for"]
