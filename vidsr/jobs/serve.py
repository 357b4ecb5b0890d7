"""The job queue behind `vidsr serve`: the watcher (vidsr.jobs.watch), driven from a web page.

Not a second queue: a JobQueue *is* a Watcher on the same SQLite journal, with the same runner,
engine cache, resume, temp-file-and-rename outputs and crash recovery. What it adds:

- jobs asked for by hand (an upload, a file chosen under a --root), each with its own options:
  a preset and overrides (model, outscale, codec, crf, span), checked by the option table's own
  parsers (vidsr.config.OPTIONS) and stored with the job in the journal;
- cancel, retry and remove, as commands that the watcher's loop thread runs (it alone touches
  the journal), each job with its own cancel event;
- live progress (frames, fps, ETA) and a snapshot of the journal for the page, versioned, so a
  page can wait for a change instead of asking again and again;
- a log per job (OUT/.vidsr/logs/): its first-line summary, warnings, progress and outcome.

The loop runs in a thread of its own; the web server (vidsr.web) only reads snapshots and sends
commands. Torch and PyAV are imported by the watcher as usual; nothing here needs the web extra.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import OPTION_NAMES, OPTIONS, WEIGHT_SUFFIXES, UpscaleConfig, build_upscale_config
from ..errors import ConfigError, OutputError, VidsrError
from ..media.probe import VideoInfo
from ..models.records import ALL_MODELS
from ..upscale.pipeline import UpscaleResult
from .batch import VIDEO_EXTENSIONS, BatchRunner, default_output, output_tag
from .journal import Job, journal_path
from .presets import Preset, builtin_names, load_preset, resolve_options
from .report import human_seconds
from .watch import WatchConfig, Watcher, _inside

log = logging.getLogger("vidsr.jobs.watch")  # the watcher's log: one log file for both

# What a job added by hand may set on top of its preset; the rest is the server's.
JOB_FIELDS = ("model", "outscale", "codec", "crf", "start", "duration")
USER_CANCEL = "cancelled from the page (no output written)"
SUMMARY = "summary: "  # marks the run's first line in a job's log


class FieldErrors(VidsrError):
    """Bad job options: a message per field (model, crf, ...), shown next to that field."""

    exit_code = 2

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


class PathRefused(VidsrError):
    """A path from a request that is not inside the allowed folders."""

    exit_code = 2


def job_id(path: str) -> str:
    """A short stable id for a journal row (its key is the input's absolute path)."""
    return hashlib.sha1(path.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def confine(roots: list[Path], root: int, rel: str) -> Path:
    """`rel` under roots[root], resolved: refused if absolute, if it has a `..` part, or if it
    (through any symlink) ends up outside that root."""
    if not 0 <= root < len(roots):
        raise PathRefused("no such root")
    if rel in ("", "."):
        return roots[root]
    pure = Path(rel)
    if pure.is_absolute() or rel.startswith(("/", "\\")) or ".." in pure.parts or "\\" in rel:
        raise PathRefused(f"{rel!r}: give a path relative to the root, without '..'")
    try:
        resolved = (roots[root] / pure).resolve(strict=True)
    except (OSError, RuntimeError):
        raise PathRefused(f"{rel!r}: no such file or folder") from None
    if not _inside(resolved, roots[root]):
        raise PathRefused(f"{rel!r} leads outside the root")
    return resolved


@dataclass(frozen=True)
class JobOptions:
    """A job's own options: a shipped preset (or none) and overrides as the user typed them."""

    preset: str | None = None
    overrides: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"preset": self.preset, "overrides": self.overrides}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> JobOptions | None:
        if not text:
            return None
        data = json.loads(text)
        return cls(data.get("preset"), dict(data.get("overrides") or {}))


def _field_of(option: str) -> str:
    """The field name of a ConfigError's option (`--crf` -> crf)."""
    for opt in OPTIONS:
        if option in opt.flags or option == opt.name:
            return opt.name
    return option.lstrip("-").replace("-", "_")


def resolve_job(
    base: dict[str, Any], options: JobOptions, roots: list[Path], source_suffix: str
) -> UpscaleConfig:
    """The config a job runs with: the server's option values, then the job's preset, then its
    overrides (an explicit codec drops the preset's codec-bound values, as on the command line).
    FieldErrors names every bad field; a model file must lie under a root."""
    errors: dict[str, str] = {}
    preset: Preset | None = None
    if options.preset:
        if options.preset not in builtin_names():
            errors["preset"] = f"unknown preset; choose from {', '.join(builtin_names())}"
        else:
            preset = load_preset(options.preset)
    given: dict[str, Any] = {}
    for key, raw in options.overrides.items():
        if key not in JOB_FIELDS:
            errors[key] = f"not an option a job may set ({', '.join(JOB_FIELDS)})"
            continue
        text = str(raw).strip()
        if not text:
            continue
        if key == "model" and text not in ALL_MODELS:
            if not text.lower().endswith(WEIGHT_SUFFIXES) or not any(
                _inside(Path(text).resolve(), r) for r in roots
            ):
                errors[key] = (
                    f"unknown model {text!r}: a built-in or community name, or a model file "
                    "under a --root"
                )
                continue
        try:
            given[key] = OPTION_NAMES[key].parse(text)
        except ValueError as e:
            errors[key] = str(e)
    if errors:
        raise FieldErrors(errors)
    merged = {**base, **(preset.values if preset else {})}
    values = resolve_options(Preset("job", "job", "", merged), given)
    try:
        config = build_upscale_config(values)
    except ConfigError as e:
        message = str(e).split(": ", 1)[-1]
        raise FieldErrors({_field_of(e.option): message}) from None
    if config.encode.codec != "auto":
        from ..media.encode import check_encode

        suffix = default_output(Path(f"x{source_suffix}"), Path("."), config.container).suffix
        try:
            check_encode(config.encode, suffix)
        except VidsrError as e:
            raise FieldErrors({"codec": str(e)}) from None
    return config


@dataclass(frozen=True)
class ServeConfig:
    out: Path
    values: dict[str, Any]  # the server's upscale option values (the CLI's flags and --preset)
    inbox: Path | None = None
    roots: tuple[Path, ...] = ()
    recursive: bool = False
    stable_secs: float = 5.0
    max_attempts: int = 1  # a person is watching: a failure is shown, Retry is one click away
    retry_delay: float = 2.0
    jobs: int = 1


class _Either:
    """Set when either event is: a job stops for a shutdown or for its own Cancel button."""

    def __init__(self, *events: threading.Event):
        self.events = events

    def is_set(self) -> bool:
        return any(e.is_set() for e in self.events)


class _Meter:
    """progress(done, total) -> the page's frames, fps and ETA, and a line in the job's log."""

    def __init__(self, key: str, owner: JobQueue):
        self.key, self.queue = key, owner
        self.first: int | None = None
        self.t0 = self.logged = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if self.first is None:
            self.first, self.t0 = done, now
        elapsed = now - self.t0
        fps = (done - self.first) / elapsed if elapsed > 0 and done > self.first else None
        eta = (total - done) / fps if fps and total else None
        self.queue._set_progress(self.key, {"done": done, "total": total, "fps": fps, "eta": eta})
        if now - self.logged >= 5 and fps:
            self.logged = now
            left = f", ETA {human_seconds(eta)}" if eta is not None else ""
            self.queue.job_log(self.key, f"{done}/{total or '?'} frames, {fps:.2f} fps{left}")


class _JobReporter:
    """What the batch runner says about one job goes to that job's log; its first info line
    (the run's one-line description) is the job's summary."""

    def __init__(self, key: str, owner: JobQueue):
        self.key, self.queue = key, owner

    def info(self, msg: str) -> None:
        if self.key in self.queue._summaries:
            self.queue.job_log(self.key, msg)
        else:
            self.queue._summaries[self.key] = msg
            self.queue.job_log(self.key, SUMMARY + msg)

    def warn(self, msg: str) -> None:
        self.queue.job_log(self.key, f"warning: {msg}")


class JobQueue(Watcher):
    """The watcher with jobs added by hand, per-job options and cancel, progress and a log."""

    def __init__(self, config: ServeConfig):
        self.serve = config
        self.roots = [r.resolve() for r in config.roots]
        self.base = build_upscale_config(config.values)
        watch = WatchConfig(
            inbox=config.inbox,
            out=config.out,
            upscale=self.base,
            stable_secs=config.stable_secs,
            recursive=config.recursive,
            max_attempts=config.max_attempts,
            retry_delay=config.retry_delay,
            jobs=config.jobs,
            poll=config.inbox is None,
        )
        super().__init__(watch)
        self.uploads = self.out / ".vidsr" / "uploads"
        self.logs = self.out / ".vidsr" / "logs"
        self._engines = self.runner.engines  # every job's runner shares the preflight's cache
        self._commands: queue.Queue[tuple[Callable[[], Any], Future]] = queue.Queue()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._version = 0
        self._jobs: list[Job] = []
        self._progress: dict[str, dict] = {}
        self._summaries: dict[str, str] = {}
        self._job_cancel: dict[str, threading.Event] = {}
        self._user_cancelled: set[str] = set()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    # -- life ------------------------------------------------------------------------------------

    def start(self) -> None:
        """Run the loop in a thread; returns once the journal is open and recovered (or raises
        what stopped it: another server on this folder, missing weights, ...)."""
        self._thread = threading.Thread(target=self._main, name="vidsr-serve-queue", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self.error is not None:
            raise self.error

    def _main(self) -> None:
        try:
            self.run()
        except BaseException as e:  # noqa: BLE001 - handed to start() or shown by the page
            self.error = e
            if self._ready.is_set():  # before that, start() raises it: said once, by the CLI
                log.error("the job queue stopped: %s", e)
        finally:
            self._ready.set()
            while not self._commands.empty():
                _, future = self._commands.get_nowait()
                future.set_exception(OutputError("the server is stopping"))

    def close(self, timeout: float | None = None) -> None:
        """Stop: the job in flight is abandoned with no output and resumes on the next start."""
        self.stop.set()
        self.cancel.set()
        self._wake.put(None)
        with self._changed:  # pages waiting for news hear of the stop now
            self._version += 1
            self._changed.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _check(self) -> None:
        for root in self.roots:
            if not root.is_dir():
                raise OutputError(f"--root {root} is not a folder")
        super()._check()

    def _recover(self) -> None:
        super()._recover()
        self.uploads.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        for part in self.uploads.glob(".upload-*.part"):  # one server per folder: all are stale
            part.unlink(missing_ok=True)
        self._publish()
        self._ready.set()

    # -- the loop thread -------------------------------------------------------------------------

    def _wait(self, seconds: float) -> None:
        self._run_commands()
        self._publish()
        super()._wait(seconds)

    def _run_commands(self) -> None:
        answers: list[tuple[Future, bool, Any]] = []
        while True:
            try:
                command, future = self._commands.get_nowait()
            except queue.Empty:
                break
            if not future.set_running_or_notify_cancel():
                continue
            try:
                answers.append((future, True, command()))
            except BaseException as e:  # noqa: BLE001 - the caller gets it
                answers.append((future, False, e))
        if answers:
            self._publish()  # a page that hears "added" finds the job in the list at once
        for future, ok, value in answers:
            (future.set_result if ok else future.set_exception)(value)

    def _publish(self) -> None:
        jobs = self.journal.jobs()
        with self._changed:
            if jobs != self._jobs:
                self._jobs = jobs
                self._version += 1
                self._changed.notify_all()

    def _set_progress(self, key: str, progress: dict | None) -> None:
        with self._changed:
            if progress is None:
                self._progress.pop(key, None)
            else:
                self._progress[key] = progress
            self._version += 1
            self._changed.notify_all()

    def submit(self, command: Callable[[], Any]) -> Future:
        """Run `command` in the loop thread (the one that may touch the journal)."""
        future: Future = Future()
        if not self.alive:
            future.set_exception(OutputError("the job queue is not running"))
            return future
        self._commands.put((command, future))
        self._wake.put(None)
        return future

    # -- what the page sees ----------------------------------------------------------------------

    def wait_change(self, version: int, timeout: float) -> int:
        """Block until the state is newer than `version` (or the timeout); the current version."""
        with self._changed:
            self._changed.wait_for(lambda: self._version != version, timeout=timeout)
            return self._version

    def snapshot(self) -> tuple[int, list[dict]]:
        with self._lock:
            version, jobs, progress = self._version, list(self._jobs), dict(self._progress)
        return version, [self._describe(j, progress.get(j.path)) for j in jobs]

    def find(self, jid: str) -> Job | None:
        with self._lock:
            return next((j for j in self._jobs if job_id(j.path) == jid), None)

    def _origin(self, path: Path) -> str:
        if _inside(path, self.uploads):
            return "upload"
        if self.inbox is not None and _inside(path, self.inbox):
            return "inbox"
        return "root"

    def _describe(self, job: Job, progress: dict | None) -> dict:
        options = JobOptions.from_json(job.options)
        return {
            "id": job_id(job.path),
            "name": job.name,
            "origin": self._origin(Path(job.path)),
            "state": job.state,
            "attempts": job.attempts,
            "error": job.last_error
            and job.last_error.replace(job.path, job.name),  # no server paths
            "output": Path(job.output).name if job.output else None,
            "frames": job.frames,
            "fps": job.fps,
            "preset": options.preset if options else None,
            "overrides": options.overrides if options else {},
            "summary": self._summary(job.path),
            "progress": progress if job.state == "running" else None,
            "queued_at": job.queued_at,
            "finished_at": job.finished_at,
        }

    def _summary(self, key: str) -> str | None:
        """The job's one-line description of its run (from its log, after a restart)."""
        if key not in self._summaries:
            found = None
            try:
                with open(self.log_path(key), encoding="utf-8") as f:
                    for line in f:  # the last run's
                        if line[9:].startswith(SUMMARY):
                            found = line[9 + len(SUMMARY) :].strip()
            except OSError:
                pass
            if found is None:
                return None
            self._summaries[key] = found
        return self._summaries[key]

    def log_path(self, key: str) -> Path:
        return self.logs / f"{job_id(key)}.log"

    def job_log(self, key: str, line: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        text = "".join(ch if ch.isprintable() else " " for ch in line)
        try:
            with open(self.log_path(key), "a", encoding="utf-8") as f:
                f.write(f"{stamp} {text}\n")
        except OSError as e:
            log.warning("cannot write the log of a job: %s", e)

    # -- commands (run in the loop thread through submit) ----------------------------------------

    def add(self, src: Path, name: str, options: JobOptions) -> str:
        """Queue `src` with its options; its id. The options were checked (resolve_job)."""
        st = src.stat()
        key = str(src)
        if self.journal.add(key, name, st.st_size, st.st_mtime_ns, options.to_json()) == "busy":
            raise OutputError(f"{name} is running now; cancel it first")
        self._summaries.pop(key, None)
        self.log_path(key).unlink(missing_ok=True)
        self.job_log(key, f"queued ({options.preset or 'server defaults'}"
                     f"{''.join(f', {k}={v}' for k, v in options.overrides.items())})")  # fmt: skip
        log.info("%s: queued from the page", name)
        self._wake.put(None)
        return job_id(key)

    def cancel_job(self, key: str) -> str:
        job = self.journal.get(key)
        if job is None:
            raise OutputError("no such job")
        if job.state == "queued":
            self.journal.give_up(key, USER_CANCEL)
            self.job_log(key, USER_CANCEL)
            return "failed"
        if job.state != "running":
            raise OutputError(f"the job is {job.state}, not queued or running")
        with self._lock:
            self._user_cancelled.add(key)
            self._job_cancel.setdefault(key, threading.Event()).set()
        return "cancelling"

    def retry_job(self, key: str) -> None:
        if not self.journal.retry(key):
            raise OutputError("only a failed, skipped or done job can run again")
        self._summaries.pop(key, None)
        self.job_log(key, "queued again")
        self._wake.put(None)

    def remove_job(self, key: str) -> None:
        job = self.journal.get(key)
        if job is None or not self.journal.remove(key):
            raise OutputError("a running job cannot be removed; cancel it first")
        src = Path(key)
        if _inside(src, self.uploads):  # our own copy of an upload goes with its job
            src.unlink(missing_ok=True)
            if src.parent != self.uploads:
                try:
                    src.parent.rmdir()
                except OSError:
                    pass
        self.log_path(key).unlink(missing_ok=True)
        self._summaries.pop(key, None)

    # -- the watcher's hooks ---------------------------------------------------------------------

    def config_of(self, job: Job) -> UpscaleConfig:
        options = JobOptions.from_json(job.options)
        if options is None:
            return self.base
        return resolve_job(self.serve.values, options, self.roots, Path(job.path).suffix)

    def _default_target(self, job: Job, src: Path) -> Path:
        if self.inbox is not None and _inside(src, self.inbox) and not job.options:
            return super()._default_target(job, src)
        config = self.config_of(job)
        return default_output(Path(src.name), self.out, config.container, output_tag(config))

    def _consider(self, path: Path, known: dict[str, tuple[int, int]] | None = None) -> None:
        if self.inbox is not None and _inside(path, self.inbox):
            return super()._consider(path, known)
        job = self.journal.get(str(path))  # a file added by hand changed while it waited
        if job is None or job.state != "queued" or not path.is_file():
            return
        st = path.stat()
        if (st.st_size, st.st_mtime_ns) != (job.size, job.mtime_ns):
            self.journal.add(str(path), job.name, st.st_size, st.st_mtime_ns, job.options)

    def _upscale(
        self, job: Job, src: Path, dst: Path, info: VideoInfo, overwrite: bool
    ) -> UpscaleResult:
        key = job.path
        with self._lock:
            mine = self._job_cancel.setdefault(key, threading.Event())
        try:
            config = self.config_of(job)
            cancel = _Either(self.cancel, mine)
            runner = BatchRunner(
                config, reporter=_JobReporter(key, self), cancel=cancel, engines=self._engines
            )
            self.job_log(key, f"upscaling -> {dst.name} (attempt {job.attempts + 1})")
            dst.parent.mkdir(parents=True, exist_ok=True)
            meter = _Meter(key, self)
            result = runner.run_one(src, dst, info=info, overwrite=overwrite, progress=meter)
            self.job_log(key, f"done: {result.frames} frames at {result.fps:.2f} fps -> {dst.name}")
            return result
        except VidsrError as e:
            self.job_log(key, f"stopped: {e}")
            raise
        finally:
            with self._lock:
                self._job_cancel.pop(key, None)
            self._set_progress(key, None)

    def _abandoned(self, key: str, name: str) -> None:
        with self._lock:
            by_user = key in self._user_cancelled
            self._user_cancelled.discard(key)
        if not by_user:
            return super()._abandoned(key, name)
        self.journal.give_up(key, USER_CANCEL)
        self.job_log(key, USER_CANCEL)
        log.info("%s: %s", name, USER_CANCEL)


def list_folder(folder: Path) -> list[dict]:
    """The folders and videos in `folder` for the page's file chooser (no dotfiles)."""
    entries = []
    try:
        children = sorted(os.scandir(folder), key=lambda e: (not e.is_dir(), e.name.lower()))
    except OSError:
        return []
    for entry in children:
        if entry.name.startswith("."):
            continue
        try:
            is_dir = entry.is_dir()
            if not is_dir and Path(entry.name).suffix.lower() not in VIDEO_EXTENSIONS:
                continue
            size = None if is_dir else entry.stat().st_size
        except OSError:
            continue
        entries.append({"name": entry.name, "dir": is_dir, "size": size})
    return entries


def model_files(roots: list[Path], limit: int = 200) -> list[dict]:
    """Model files under the roots (what a job's model field may name), a bounded walk."""
    found: list[dict] = []
    for i, root in enumerate(roots):
        for dirpath, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if name.lower().endswith(WEIGHT_SUFFIXES):
                    path = Path(dirpath) / name
                    found.append({"root": i, "path": str(path), "name": name})
                    if len(found) >= limit:
                        return found
    return found


__all__ = [
    "FieldErrors",
    "JOB_FIELDS",
    "JobOptions",
    "JobQueue",
    "PathRefused",
    "ServeConfig",
    "confine",
    "job_id",
    "journal_path",
    "list_folder",
    "model_files",
    "resolve_job",
]
