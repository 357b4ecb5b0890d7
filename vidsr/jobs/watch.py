"""Folder-watching batch mode: every video dropped into an inbox is upscaled once, unattended.

Trust comes from three rules. A file is taken only after its size and mtime have held still for
`stable_secs` (and the job itself first probes it as a video), so a copy in progress is never
read. All state lives in the SQLite journal (vidsr.jobs.journal), written before and after each job,
so a crash loses at most the job in flight, which is redone on restart. Jobs run through the one
batch driver (vidsr.jobs.batch), whose outputs are written to a temp file renamed into place, so DIR
never holds a half-written video. An existing file in DIR is never overwritten unless it is this
input's own earlier output: a name another input (or an unknown file) holds gets a distinct name
(`clip_x4-2.mkv`), logged. A file that does not open as a video is `skipped`, not retried, until
it changes. A damaged journal is moved aside and rebuilt from the outputs that exist.

File events (watchfiles) only wake the loop early; a periodic rescan is the ground truth, and
with --poll (network filesystems, where events do not arrive) the rescan is all there is.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..config import UpscaleConfig
from ..errors import Cancelled, InputError, OutputError, VidsrError
from ..media.probe import VideoInfo, probe
from ..media.staging import is_temp_name, remove_stale
from ..upscale.pipeline import UpscaleResult
from .batch import VIDEO_EXTENSIONS, default_output, output_tag
from .journal import Job, Journal, JournalDamaged, journal_path
from .report import LogLines
from .runner import open_runner

log = logging.getLogger("vidsr.jobs.watch")

# What downloaders and copiers write while they work; the real name appears when they finish.
PARTIAL_SUFFIXES = (".part", ".tmp", ".crdownload", ".partial", ".download")
RESCAN_SECS = 30.0  # with file events, a full rescan still runs this often in case one was missed


@dataclass(frozen=True)
class WatchConfig:
    inbox: Path | None  # None: no folder to watch (vidsr serve without --inbox)
    out: Path
    upscale: UpscaleConfig = field(default_factory=UpscaleConfig)  # what every job runs with
    stable_secs: float = 5.0
    recursive: bool = False
    max_attempts: int = 3
    retry_delay: float = 2.0  # first retry after this, doubling each time
    jobs: int = 1
    once: bool = False
    drain: bool = False
    on_done: str = "keep"  # keep, delete or move
    move_to: Path | None = None  # for on_done == "move"
    poll: bool = False


@dataclass(frozen=True)
class WatchSummary:
    done: int
    failed: int
    stopped_by_signal: bool


def is_ignored_name(name: str) -> bool:
    """Dotfiles, partial downloads, our own temp files and non-video extensions."""
    lower = name.lower()
    return (
        name.startswith(".")
        or lower.endswith(PARTIAL_SUFFIXES)
        or is_temp_name(name)
        or Path(lower).suffix not in VIDEO_EXTENSIONS
    )


def output_for(
    src: Path, inbox: Path, out: Path, container: str | None = None, tag: str = "x4"
) -> Path:
    """DIR/<subfolders of src under the inbox>/<stem>_x4<ext> (ext: .mkv if we cannot write it)."""
    rel = src.relative_to(inbox)
    return default_output(Path(rel.name), out / rel.parent, container, tag)


def _printable(text: str) -> str:
    """File names may hold CR, LF and other controls: escaped, one log line stays one line."""
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


class _EscapeControls(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return _printable(super().format(record))


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


@contextlib.contextmanager
def _exclusive(lock_file: Path) -> Iterator[None]:
    """One watcher per output folder: two would run the same job and fight over its temp file."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks here; trust the user
        yield
        return
    with open(lock_file, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise OutputError(
                "another `vidsr watch` or `vidsr serve` is already writing into "
                f"{lock_file.parent.parent}"
            ) from None
        yield


@contextlib.contextmanager
def _log_to(log_file: Path, *, console: bool, quiet: bool = False) -> Iterator[None]:
    handlers: list[logging.Handler] = [logging.FileHandler(log_file, encoding="utf-8")]
    handlers[0].setFormatter(_EscapeControls("%(asctime)s %(levelname)s %(message)s"))
    if console:
        handlers.append(logging.StreamHandler())
        handlers[1].setFormatter(_EscapeControls("%(message)s"))
        handlers[1].setLevel(logging.WARNING if quiet else logging.INFO)
    old_level, old_propagate = log.level, log.propagate
    log.setLevel(logging.DEBUG)
    log.propagate = False
    for h in handlers:
        log.addHandler(h)
    try:
        yield
    finally:
        for h in handlers:
            log.removeHandler(h)
            h.close()
        log.setLevel(old_level)
        log.propagate = old_propagate


class Watcher:
    """The loop: notice files, wait for them to settle, queue them, run them, record the result.

    Only the main thread touches the journal; worker threads just run the batch driver's
    `run_one` and hand back a result or an exception through their futures.
    """

    def __init__(self, config: WatchConfig):
        self.config = config
        self.inbox = config.inbox.resolve() if config.inbox is not None else None
        self.out = config.out.resolve()
        self.move_to = config.move_to.resolve() if config.move_to else None
        self.stop = threading.Event()  # take no new work
        self.cancel = threading.Event()  # abandon the work in flight
        self._wake: queue.Queue[str | None] = queue.Queue()  # changed paths, or None: look again
        self._events_stop = threading.Event()
        self._events_alive = False
        self._pending: dict[str, tuple[int, int, float]] = {}  # path -> size, mtime, still since
        self._running: dict[Future, tuple[str, Path]] = {}
        self._done = self._failed = 0
        self._signalled = False
        self.journal: Journal | None = None
        self._state = contextlib.ExitStack()  # the lock, log and journal in DIR/.vidsr
        # the same jobs, run here or by Ray workers (then every worker has a file)
        self.runner = open_runner(config.upscale, reporter=_LogReporter(), cancel=self.cancel)
        self.jobs = max(config.jobs, len(getattr(self.runner, "workers", ())))
        self._tag = output_tag(config.upscale)

    # -- set-up ----------------------------------------------------------------------------------

    def _check(self) -> None:
        c = self.config
        if self.inbox is not None and not self.inbox.is_dir():
            raise InputError(f"inbox {c.inbox} is not a folder")
        if self.inbox is not None and _inside(self.inbox, self.out):
            raise OutputError(f"--out {c.out} must not be the inbox or contain it")
        if self.move_to is not None and _inside(self.move_to, self.out):
            raise OutputError("--on-done move:DIR must not be inside --out")
        if c.max_attempts < 1 or c.jobs < 1:
            raise InputError("--max-attempts and --jobs must be at least 1")
        # Fail now, once, rather than on every file: missing or damaged weights.
        self.runner.preflight()

    def _recover(self) -> None:
        assert self.journal is not None
        for job in self.journal.recover(max_attempts=self.config.max_attempts):
            log.warning("%s: was running when the last watcher stopped; queued again", job.name)
        # Only the temp files of dead writers: a `vidsr upscale` writing here now keeps its own.
        remove_stale(self.out, recursive=True, log=log.info)

    def _open_journal(self) -> Journal:
        """The journal; a damaged one is moved aside and rebuilt from the outputs in DIR."""
        path = journal_path(self.out)
        try:
            return Journal(path)
        except JournalDamaged as e:
            aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
            for suffix in ("", "-wal", "-shm"):
                src = Path(f"{path}{suffix}")
                if src.exists():
                    os.replace(src, f"{aside}{suffix}")
            log.warning("%s; moved aside to %s and rebuilt from the outputs in %s", e, aside.name,
                        self.out)  # fmt: skip
            journal = Journal(path)
            self._adopt_outputs(journal)
            return journal

    def _adopt_outputs(self, journal: Journal) -> None:
        """Inputs whose output already exists count as done: a lost journal redoes no work."""
        for src in self._scan():
            dst = output_for(src, self.inbox, self.out, self.config.upscale.container, self._tag)
            if dst.is_file():
                st = src.stat()
                name = str(src.relative_to(self.inbox))
                journal.adopt(str(src), name, st.st_size, st.st_mtime_ns, str(dst))
                log.info("%s: its output %s exists; counted as done", name, dst.name)

    # -- noticing files --------------------------------------------------------------------------

    def _eligible(self, path: Path) -> bool:
        if self.inbox is None or not _inside(path, self.inbox) or path == self.inbox:
            return False
        if _inside(path, self.out) or (self.move_to is not None and _inside(path, self.move_to)):
            return False
        rel = path.relative_to(self.inbox)
        if not self.config.recursive and len(rel.parts) > 1:
            return False
        if any(p.startswith(".") for p in rel.parts[:-1]) or is_ignored_name(path.name):
            return False
        return path.is_file()  # a FIFO or device with a video's name would block the reader

    def _scan(self) -> Iterator[Path]:
        if self.inbox is None:
            return
        for root, dirs, files in os.walk(self.inbox):
            here = Path(root)
            # Pruning DIR here (not only filtering) keeps us from walking our own outputs.
            dirs[:] = [
                d
                for d in dirs
                if self.config.recursive
                and not d.startswith(".")
                and not _inside(here / d, self.out)
                and not (self.move_to is not None and _inside(here / d, self.move_to))
            ]
            for name in files:
                path = here / name
                if self._eligible(path):
                    yield path

    def _consider(self, path: Path, known: dict[str, tuple[int, int]] | None = None) -> None:
        """Start (or restart) the stability clock of a file that may be new work."""
        key = str(path)
        try:
            st = path.stat()
        except OSError:
            self._pending.pop(key, None)
            return
        version = (st.st_size, st.st_mtime_ns)
        if known is not None:
            seen = known.get(key)
        else:
            job = self.journal.get(key)
            seen = (job.size, job.mtime_ns) if job else None
        if seen == version:
            self._pending.pop(key, None)
        elif self._pending.get(key, (None, None))[:2] != version:
            self._pending[key] = (*version, time.monotonic())

    def _rescan(self) -> None:
        known = self.journal.versions()
        for path in self._scan():
            self._consider(path, known)

    def _settle(self) -> None:
        """Queue the pending files that have held still long enough."""
        now = time.monotonic()
        for key, (size, mtime, since) in list(self._pending.items()):
            path = Path(key)
            try:
                st = path.stat()
            except OSError:
                del self._pending[key]
                continue
            if (st.st_size, st.st_mtime_ns) != (size, mtime):
                self._pending[key] = (st.st_size, st.st_mtime_ns, now)
            elif now - since >= self.config.stable_secs:
                name = str(path.relative_to(self.inbox))
                outcome = self.journal.offer(key, name, size, mtime)
                if outcome == "queued":
                    log.info("%s: queued", name)
                if outcome != "busy":  # busy: a job runs on the old version; look again later
                    del self._pending[key]

    def _events(self) -> None:
        """Background thread: turn file-system events into wake-ups with paths."""
        import watchfiles

        try:
            for changes in watchfiles.watch(
                self.inbox,
                watch_filter=None,
                recursive=self.config.recursive,
                stop_event=self._events_stop,
                debounce=400,
                step=50,
                rust_timeout=500,
                raise_interrupt=False,
            ):
                for _, p in changes:
                    self._wake.put(p)
        except Exception as e:  # noqa: BLE001 - any watcher trouble: rescans carry on alone
            log.warning("file events unavailable (%s); polling the inbox instead", e)
        finally:
            self._events_alive = False

    # -- running jobs ----------------------------------------------------------------------------

    def _start_due(self, pool: ThreadPoolExecutor) -> None:
        for job in self.journal.due(time.time()):
            if len(self._running) >= self.jobs:
                return
            src = Path(job.path)
            try:
                st = src.stat()
            except OSError:
                self.journal.give_up(job.path, "the input file is gone")
                log.warning("%s: the input file is gone", job.name)
                continue
            if (st.st_size, st.st_mtime_ns) != (job.size, job.mtime_ns):
                self._consider(src)  # it changed since it settled: wait for it again
                continue
            self.journal.start(job.path)
            info = self._probe(job, src)
            if info is None:
                continue
            dst = self._target_for(job, src)
            # Replace an existing output only when it is this input's own earlier result.
            overwrite = job.output == str(dst)
            log.info("%s: upscaling -> %s (attempt %d)", job.name, dst, job.attempts + 1)
            future = pool.submit(self._upscale, job, src, dst, info, overwrite)
            future.add_done_callback(lambda _: self._wake.put(None))
            self._running[future] = (job.path, dst)

    def _probe(self, job: Job, src: Path) -> VideoInfo | None:
        """The file's VideoInfo, or None: skipped (not a video) without costing an attempt.

        Part of "stable": a copy that paused longer than --stable-secs may not open yet; it is
        looked at again as soon as it changes.
        """
        try:
            return probe(src)
        except InputError as e:
            self.journal.skip(job.path, str(e))
            log.warning("%s: skipped, it does not open as a video (%s); taken again when it "
                        "changes", job.name, e)  # fmt: skip
            return None

    def _target_for(self, job: Job, src: Path) -> Path:
        """The output name: this input's own earlier output, else the first name nobody holds."""
        if job.output and _inside(Path(job.output), self.out):
            return Path(job.output)
        base = self._default_target(job, src)
        dst, n = base, 1
        while self.journal.owner_of(str(dst)) not in (None, job.path) or dst.exists():
            n += 1
            dst = base.with_name(f"{base.stem}-{n}{base.suffix}")
        if dst != base:
            owner = self.journal.owner_of(str(base))
            held = f"held by {Path(owner).name}" if owner else "an existing file"
            log.warning("%s: %s is %s; writing %s", job.name, base.name, held, dst.name)
        return dst

    def _default_target(self, job: Job, src: Path) -> Path:
        """Where a job's output goes unless that name is taken (vidsr serve: its own rule)."""
        return output_for(src, self.inbox, self.out, self.config.upscale.container, self._tag)

    def _upscale(
        self, job: Job, src: Path, dst: Path, info: VideoInfo, overwrite: bool
    ) -> UpscaleResult:
        dst.parent.mkdir(parents=True, exist_ok=True)
        progress = LogLines(job.name, emit=log.info)  # frames, fps, ETA
        return self.runner.run_one(src, dst, info=info, overwrite=overwrite, progress=progress)

    def _collect(self) -> None:
        for future in [f for f in self._running if f.done()]:
            key, dst = self._running.pop(future)
            job = self.journal.get(key)
            name = job.name if job else key
            try:
                result = future.result()
            except Cancelled:
                self._abandoned(key, name)
                continue
            except Exception as e:  # noqa: BLE001 - one bad file must never stop the watcher
                if not isinstance(e, VidsrError):
                    log.debug("%s: unexpected error", name, exc_info=e)
                message = str(e) if isinstance(e, VidsrError) else f"{type(e).__name__}: {e}"
                self._record_failure(key, name, message)
                continue
            self.journal.finish(key, output=str(dst), frames=result.frames, fps=result.fps)
            self._done += 1
            log.info("%s: done, %d frames at %.1f fps -> %s", name, result.frames, result.fps, dst)
            self._after_done(Path(key), name)
            if Path(key).exists():
                self._consider(Path(key))  # it may have changed while it ran

    def _abandoned(self, key: str, name: str) -> None:
        """A job stopped by a shutdown: back to the queue, without counting the attempt."""
        self.journal.requeue(key)
        log.info("%s: abandoned (no output written); it runs again next time", name)

    def _record_failure(self, key: str, name: str, message: str) -> None:
        c = self.config
        state = self.journal.fail(key, message, max_attempts=c.max_attempts, backoff=c.retry_delay)
        job = self.journal.get(key)
        if state == "failed":
            self._failed += 1
            log.error("%s: failed after %d attempt(s): %s", name, job.attempts, message)
        else:
            wait = job.next_try - time.time()
            log.warning(
                "%s: attempt %d failed (%s); retrying in %.0fs",
                name,
                job.attempts,
                message,
                max(0.0, wait),
            )

    def _after_done(self, src: Path, name: str) -> None:
        try:
            if self.config.on_done == "delete":
                src.unlink()
                log.info("%s: original deleted", name)
            elif self.config.on_done == "move" and self.move_to is not None:
                target = self.move_to / src.relative_to(self.inbox)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(src, target)
                log.info("%s: original moved to %s", name, target)
        except OSError as e:
            log.warning("%s: done, but --on-done %s failed: %s", name, self.config.on_done, e)

    # -- the loop --------------------------------------------------------------------------------

    def _on_signal(self, signum, frame) -> None:
        if self.stop.is_set() or not self.config.drain:
            self.cancel.set()  # a second signal abandons the job even with --drain
        self.stop.set()
        self._signalled = True
        self._wake.put(None)

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)

    def _wait(self, seconds: float) -> None:
        """Sleep until the deadline or a wake-up; collect the paths that events reported."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                item = self._wake.get(timeout=left)
            except queue.Empty:
                return
            if item is not None:
                path = Path(item)
                if self._eligible(path):
                    self._consider(path)
            if self._wake.empty():
                return

    def _finished_once(self) -> bool:
        return (
            not self._pending and not self._running and self.journal.count("queued", "running") == 0
        )

    def run(self) -> WatchSummary:
        try:
            return self._run()
        finally:
            self.runner.close()  # a Ray runner's workers and session

    def _run(self) -> WatchSummary:
        self._check()
        with self._signals():
            try:
                self._open_state()
                self._recover()
                self._loop()
                log.info("stopped: %d done, %d failed in this run", self._done, self._failed)
            finally:
                self._state.close()
        return WatchSummary(self._done, self._failed, self._signalled)

    def _open_state(self, carried: Journal | None = None) -> None:
        """DIR/.vidsr: the lock, the log and the journal (`carried` copied in, when given)."""
        state_dir = journal_path(self.out).parent
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"cannot create {state_dir}: {e.strerror}") from None
        state = contextlib.ExitStack()
        try:
            state.enter_context(_exclusive(state_dir / "watch.lock"))
            state.enter_context(
                _log_to(state_dir / "watch.log", console=True, quiet=self.config.upscale.quiet)
            )
            if carried is not None:
                carried.copy_to(journal_path(self.out))
            self.journal = state.enter_context(self._open_journal())
        except BaseException:
            state.close()
            raise
        self._state = state

    def _keep_state(self) -> None:
        """The output folder (or its .vidsr) was deleted under us: the journal and the log would
        go on into deleted files, and a restart would know nothing of this run. Recreate them,
        with the journal's rows copied from the open (deleted) file: nothing is redone."""
        if journal_path(self.out).exists():
            return
        old, state = self.journal, self._state
        state.pop_all()  # the old lock, log and journal stay open until their contents are out
        try:
            self._open_state(carried=old)
        finally:
            old.close()
            state.close()
        log.warning("%s was deleted while watching: recreated, with its journal", self.out)

    def _loop(self) -> None:
        c = self.config
        tick = min(0.5, max(0.05, c.stable_secs / 4))
        use_events = not (c.poll or c.once) and self.inbox is not None
        events = None
        if use_events:
            self._events_alive = True
            events = threading.Thread(target=self._events, daemon=True, name="vidsr-watch-events")
            events.start()
        log.info(
            "watching %s -> %s (%s)",
            self.inbox or "no inbox",
            self.out,
            "once" if c.once else "events" if use_events else "polling",
        )
        self._rescan()
        last_scan = time.monotonic()
        pool = ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="vidsr-job")
        try:
            while True:
                self._keep_state()
                self._collect()
                if self.stop.is_set():
                    if not self._running:
                        break
                    self._wait(tick)
                    continue
                # Without working events (or in poll mode) every pass is a rescan.
                interval = RESCAN_SECS if self._events_alive else max(tick, 1.0)
                if not c.once and time.monotonic() - last_scan >= interval:
                    self._rescan()
                    last_scan = time.monotonic()
                self._settle()
                self._start_due(pool)
                if c.once and self._finished_once():
                    break
                self._wait(tick)
        finally:
            if self._running and not c.drain:
                self.cancel.set()
            pool.shutdown(wait=True)
            self._collect()
            self._events_stop.set()
            if events is not None:
                events.join(timeout=3)


class _LogReporter:
    """The batch driver's warnings go to the watch log."""

    def warn(self, msg: str) -> None:
        log.warning("%s", msg)

    def info(self, msg: str) -> None:
        log.info("%s", msg)


def watch(config: WatchConfig) -> WatchSummary:
    return Watcher(config).run()


__all__ = ["WatchConfig", "WatchSummary", "Watcher", "is_ignored_name", "output_for", "watch"]
