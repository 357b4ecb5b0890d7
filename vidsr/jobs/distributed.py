"""Scale-out on Ray (the optional extra `vidsr[ray]`): every file of a batch, and every segment of
a long video, is a task on the workers of a Ray cluster.

The work is done by `Worker` actors, one per GPU (one per CPU where the cluster has no GPU). Each
holds a BatchRunner, so engines are built once per worker, and every task is the batch driver's
own `plan`, `run_segment` or `run_one`: there is no second copy of the per-file logic. A long
video becomes one task per resume segment (vidsr.upscale.resume): the driver holds the target's work
folder and journals each segment as its task returns, and a last task (`run_one`) finds every
segment journalled and joins them into the target with the source's pts, audio and subtitles,
as a local run does. A task whose worker dies is retried by Ray on the restarted worker (engines
are built again there); journalled segments are never redone, by this run or a rerun.

Every node must see the inputs, the weights and the output folder at the same paths (a shared
filesystem) and run the same vidsr. The driver is the only process that writes a journal.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import queue
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..config import AUTO, UpscaleConfig
from ..errors import Cancelled, ConfigError, VidsrError
from ..media.images import is_image
from ..media.probe import VideoInfo, probe
from ..media.span import Window, expected_frames, span_window
from ..upscale.pipeline import Progress, SegmentPlan, SegmentResult, UpscaleResult, segment_frames
from ..upscale.resume import WorkFolder
from .batch import BatchRunner
from .report import settle

INSTALL = "pip install 'vidsr[ray]'"
RETRIES = 3  # restarts of a worker that died, and retries of the task it was running
REPORT_EVERY = 0.5  # seconds between progress reports, worker to board and board to bar
POLL = 0.25  # seconds the driver waits on its tasks before it looks at progress and Ctrl-C

_task_ids = itertools.count(1)


def import_ray():
    """The ray module; without the extra, one line that says how to get it."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray", f"Ray is not installed: {INSTALL}") from None
    return ray


class RemoteError(VidsrError):
    """A worker's VidsrError, rebuilt on the driver with its message and exit code."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
# Ray takes the machine's network address as its node's, even when told 127.0.0.1, except where
# this is off (meant for laptops: no firewall prompts); then every server and the driver use the
# loopback address. Its children read the variable, this process Ray's constant of it.
_LOOPBACK_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def is_loopback(address: str) -> bool:
    """An address on this machine only: `auto` (a local instance) or a 127.0.0.1 / ::1 head."""
    if address == AUTO:
        return True
    host = address.removeprefix("ray://").rsplit(":", 1)[0]
    return host in _LOOPBACK_HOSTS


@contextlib.contextmanager
def loopback_only() -> Iterator[None]:
    """Ray's servers and this driver on 127.0.0.1 only, for a cluster that is this machine:
    nothing listens on the network, and a head started with --node-ip-address 127.0.0.1 is
    joined where it is (not at the machine's network address, where nothing answers)."""
    from ray._private import ray_constants

    before = os.environ.get(_LOOPBACK_ONLY), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[_LOOPBACK_ONLY] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        if before[0] is None:
            os.environ.pop(_LOOPBACK_ONLY, None)
        else:
            os.environ[_LOOPBACK_ONLY] = before[0]
        ray_constants.ENABLE_RAY_CLUSTER = before[1]


@contextlib.contextmanager
def connected(address: str) -> Iterator:
    """Ray, connected: `auto` starts a local instance (every GPU and CPU of this machine), an
    address joins that cluster. A session the caller already opened is used and left open."""
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    # Workers' output stays in Ray's logs: what they say comes back with each task's outcome.
    options = {"log_to_driver": False, "logging_level": logging.WARNING}
    if address == AUTO:
        options.update(address="local", include_dashboard=False)
    else:
        options["address"] = address
        _send_token()
    handlers = _signal_handlers()
    with loopback_only() if is_loopback(address) else contextlib.nullcontext():
        try:
            ray.init(**options)
        except Exception as e:  # noqa: BLE001 - ConnectionError, RuntimeError, ValueError
            where = (
                "start Ray here" if address == AUTO else f"connect to the Ray cluster at {address}"
            )
            raise ConfigError("--ray", f"cannot {where}: {_reason(e)}") from None
        finally:
            # Ray's core worker takes SIGTERM for itself and dies on it; the CLI's handler stops
            # the run cleanly instead (its work folders journalled, exit code 143)
            for signum, handler in handlers.items():
                signal.signal(signum, handler)
        try:
            yield ray
        finally:
            ray.shutdown()


def _send_token() -> None:
    """Joining a cluster: Ray (2.5x on) starts heads with token authentication, and a driver
    that has the token (RAY_AUTH_TOKEN, or the file `ray start` wrote) still sends none unless
    its auth mode says so: Ray's own helper turns it on where a token is there. A RAY_AUTH_MODE
    the user set is left as it is."""
    try:
        from ray._private.authentication import authentication_token_setup as auth
    except ImportError:  # a Ray without token authentication
        return
    quiet = logging.getLogger(auth.__name__)
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # "token authentication is enabled": that is the point
    try:
        auth.maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    finally:
        quiet.setLevel(level)


def _signal_handlers() -> dict[int, object]:
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}


def _reason(e: BaseException) -> str:
    """One line for a Ray failure: the worker's own exception where Ray carries one."""
    cause = getattr(e, "cause", None)
    if isinstance(cause, BaseException):
        text = str(cause).strip().splitlines()
        return f"{type(cause).__name__}: {text[-1] if text else ''}"[:300]
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return (lines[-1] if lines else type(e).__name__)[:300]


def worker_slots(resources: dict[str, float], config: UpscaleConfig) -> tuple[int, dict]:
    """How many workers, and what each asks Ray for: one GPU where the cluster has GPUs (and the
    device is not cpu), else one CPU. Ray sets CUDA_VISIBLE_DEVICES, so `cuda` is its GPU."""
    gpus = int(resources.get("GPU", 0))
    if gpus and config.device != "cpu":
        return gpus, {"num_gpus": 1, "num_cpus": 1}
    return max(1, int(resources.get("CPU", 1))), {"num_cpus": 1}


# -- what travels between the driver and the workers -------------------------------------------


@dataclass(frozen=True)
class Task:
    kind: str  # "start" (plan, or the whole file), "segment", "join" or "preflight"
    job: int
    src: Path
    dst: Path
    overwrite: bool | None = None
    info: VideoInfo | None = None  # a segment's: its source, probed once by "start"
    window: Window | None = None
    index: int = 0  # a segment's, from 1
    id: int = field(default_factory=lambda: next(_task_ids))


@dataclass
class Outcome:
    result: UpscaleResult | None = None  # "start" that ran the whole file, or "join"
    plan: SegmentPlan | None = None  # "start": the segments to run
    segment: SegmentResult | None = None
    error: str | None = None
    exit_code: int = 1
    cancelled: bool = False
    lines: list[tuple[str, str]] = field(default_factory=list)  # (warn | info, text) said there

    def check(self) -> Outcome:
        if self.cancelled:
            raise Cancelled(self.error or "cancelled")
        if self.error is not None:
            raise RemoteError(self.error, self.exit_code)
        return self


class Board:
    """A Ray actor: frames done per task, by job, for the driver's progress bar."""

    def __init__(self) -> None:
        self._done: dict[int, dict[int, tuple[int, int]]] = {}

    def report(self, job: int, index: int, done: int, total: int) -> None:
        self._done.setdefault(job, {})[index] = (done, total)

    def frames(self, job: int) -> tuple[int, int]:
        """(frames done, the total a whole-file task announced) of one job."""
        tasks = self._done.get(job, {}).values()
        return sum(d for d, _ in tasks), max((t for _, t in tasks), default=0)

    def forget(self, job: int) -> None:
        self._done.pop(job, None)


class _Reports:
    """A task's progress(done, total), sent to the board at most every REPORT_EVERY seconds."""

    def __init__(self, board, task: Task):
        self.board, self.job, self.index = board, task.job, task.index
        self.last = 0.0
        self.state: tuple[int, int] | None = None

    def __call__(self, done: int, total: int) -> None:
        self.state = (done, total)
        now = time.monotonic()
        if now - self.last >= REPORT_EVERY:
            self.last = now
            with contextlib.suppress(Exception):  # progress never fails a task
                self.board.report.remote(self.job, self.index, done, total)

    def flush(self) -> None:
        """The last count, on the board before the outcome reaches the driver."""
        if self.state is not None:
            import ray

            with contextlib.suppress(Exception):
                ray.get(self.board.report.remote(self.job, self.index, *self.state), timeout=10)


class Worker:
    """A Ray actor, one per GPU (or CPU): a BatchRunner whose engines serve all its tasks.

    `stop` and `status` run in the "control" concurrency group, beside a running task."""

    def __init__(self, config: UpscaleConfig, board: str) -> None:
        import ray
        import torch

        # by name: a handle among the constructor's arguments would stop Ray from restarting it
        board = ray.get_actor(board)
        assigned = ray.get_runtime_context().get_assigned_resources()
        if not assigned.get("GPU"):
            # its share of the node, not every core: the other workers run beside it
            torch.set_num_threads(max(1, int(assigned.get("CPU", 1))))
        self.board = board
        self.cancel = threading.Event()
        self.runner = BatchRunner(config, reporter=self, cancel=self.cancel)
        self._lines: list[tuple[str, str]] = []
        self._current: Task | None = None
        self._stopped: set[int] = set()
        self._lock = threading.Lock()

    # The runner's reporter: what it says goes back to the driver with the outcome.
    def warn(self, msg: str) -> None:
        self._lines.append(("warn", msg))

    def info(self, msg: str) -> None:
        self._lines.append(("info", msg))

    def run(self, task: Task) -> Outcome:
        with self._lock:
            self._current = task
            self._lines = []
            self.cancel.clear()
            if task.id in self._stopped:
                self.cancel.set()
        progress = _Reports(self.board, task)
        try:
            outcome = self._run(task, progress)
        except VidsrError as e:
            outcome = Outcome(error=str(e), exit_code=e.exit_code,
                              cancelled=isinstance(e, Cancelled))  # fmt: skip
        finally:
            with self._lock:
                self._current = None
            progress.flush()
        outcome.lines = self._lines
        return outcome

    def _run(self, task: Task, progress: Progress) -> Outcome:
        runner, src, dst, overwrite = self.runner, task.src, task.dst, task.overwrite
        if task.kind == "preflight":
            runner.preflight()
            return Outcome()
        if task.kind == "segment":
            return Outcome(segment=runner.run_segment(
                src, dst, task.info, task.window, task.index, overwrite=overwrite,
                progress=progress,
            ))  # fmt: skip
        if task.kind == "start":
            plan = runner.plan(src, dst, overwrite=overwrite)
            if plan is not None:
                return Outcome(plan=plan)
            return Outcome(result=runner.run_one(src, dst, overwrite=overwrite, progress=progress))
        return Outcome(result=runner.run_one(src, dst, overwrite=overwrite))  # join

    def stop(self, task_id: int) -> None:
        """Cancel that task (running now, or when it starts): it ends with Cancelled."""
        with self._lock:
            if self._current is not None and self._current.id == task_id:
                self.cancel.set()
            else:
                self._stopped.add(task_id)

    def status(self) -> tuple[int, str | None]:
        """(pid, what it runs now): a look at a busy cluster, and how a test kills a worker."""
        task = self._current
        what = None if task is None else f"{task.kind} {task.index} of {task.src.name}"
        return os.getpid(), what


# -- the driver --------------------------------------------------------------------------------


class _Pool:
    """The workers: a task takes an idle one and gives it back; one that died for good leaves."""

    def __init__(self, workers: list):
        self.workers = workers
        self._idle: queue.SimpleQueue = queue.SimpleQueue()
        for w in workers:
            self._idle.put(w)
        self._alive = len(workers)
        self._lock = threading.Lock()

    def take(self, timeout: float | None) -> object | None:
        if self._alive == 0:
            raise VidsrError("every Ray worker died; see the Ray logs (/tmp/ray/session_latest)")
        try:
            return self._idle.get(timeout=timeout) if timeout else self._idle.get_nowait()
        except queue.Empty:
            return None

    def give(self, worker) -> None:
        self._idle.put(worker)

    def lose(self, worker) -> None:
        with self._lock:
            self._alive -= 1


class RayRunner:
    """BatchRunner's `run_one` and `run_many` (and `preflight`), with Ray workers doing the work.

    `workers` caps their number (default: one per GPU, or per CPU, of the cluster)."""

    def __init__(
        self,
        config: UpscaleConfig,
        *,
        reporter=None,
        cancel: threading.Event | None = None,
        workers: int | None = None,
    ):
        self.config = config
        self.reporter = reporter
        self.cancel = cancel or threading.Event()
        self._session = contextlib.ExitStack()
        self.ray = ray = self._session.enter_context(connected(config.ray or AUTO))
        try:
            count, resources = worker_slots(ray.cluster_resources(), config)
            count = min(count, workers) if workers else count
            board = f"vidsr-board-{uuid.uuid4().hex}"
            self.board = ray.remote(Board).options(name=board, num_cpus=0, max_restarts=-1).remote()
            actor = ray.remote(concurrency_groups={"control": 1})(Worker).options(
                **resources, max_restarts=RETRIES, max_task_retries=RETRIES
            )
            self.pool = _Pool([actor.remote(config, board) for _ in range(count)])
        except BaseException:
            self._session.close()
            raise
        self._jobs = itertools.count(1)

    @property
    def workers(self) -> list:
        return self.pool.workers

    def close(self) -> None:
        """End the workers (their CPUs and GPUs are free again at once) and disconnect, which
        stops a Ray instance this runner started."""
        for actor in [*self.pool.workers, self.board]:
            with contextlib.suppress(Exception):  # already gone
                self.ray.kill(actor)
        self.pool.workers = []
        self._session.close()

    def __enter__(self) -> RayRunner:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def preflight(self) -> None:
        """Fail once, up front, for what would fail every file (unknown model, missing weights)
        and for a worker that cannot start (vidsr missing on a node)."""
        job = ClusterJob(self, 0, Path("-"), Path("-"), None, None)
        job.call(job.task("preflight"))

    def run_one(
        self,
        src: Path,
        dst: Path,
        *,
        info: VideoInfo | None = None,
        overwrite: bool | None = None,
        progress: Progress | None = None,
    ) -> UpscaleResult:
        """One job, as BatchRunner.run_one (the watcher calls this); `info` is probed again
        where the job runs."""
        return ClusterJob(self, next(self._jobs), Path(src), Path(dst), overwrite, progress).run()

    def run_many(
        self, jobs: list[tuple[Path, Path]], totals: list[int] | None = None
    ) -> list[UpscaleResult]:
        """Every job, one file per worker at a time and a long file's segments on every idle
        one, under one progress bar; failures settled as BatchRunner.run_many settles them
        (vidsr.jobs.report.settle). `totals`: the frames expected of each job, for the bar
        until a job knows."""
        done, expected = [0] * len(jobs), list(totals or [0] * len(jobs))
        results: list[UpscaleResult | None] = [None] * len(jobs)

        def progress_of(i: int) -> Progress:
            def progress(n: int, total: int) -> None:
                done[i], expected[i] = n, total or expected[i]

            return progress

        n, w = len(jobs), len(self.workers)
        label = f"{n} file{'s' * (n > 1)} on {w} Ray worker{'s' * (w > 1)}"
        with self.reporter.track(Path(label)) as bar:
            pool = ThreadPoolExecutor(len(self.workers), thread_name_prefix="vidsr-ray-job")
            try:
                futures = {
                    pool.submit(self.run_one, src, dst, progress=progress_of(i)): i
                    for i, (src, dst) in enumerate(jobs)
                }
                pending = set(futures)
                while pending:
                    finished, pending = wait(pending, timeout=POLL, return_when=FIRST_COMPLETED)
                    for future in finished:
                        i = futures[future]
                        results[i] = settle(jobs[i], len(jobs), self.reporter, future.result)
                        done[i] = expected[i] = results[i].frames  # what it had, exactly
                    if bar is not None and (any(done) or finished):
                        # the bar's first count is its baseline: an earlier run's frames, not speed
                        bar(sum(done), sum(expected))
            except BaseException:
                self.cancel.set()  # the job threads stop their tasks and close their journals
                raise
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
        if len(jobs) > 1:
            self.reporter.totals(results)
        return results


class ClusterJob:
    """One file on the cluster: a "start" task (the whole file, or its plan), then one task per
    segment the work folder lacks, then a "join" task."""

    def __init__(self, runner: RayRunner, number: int, src: Path, dst: Path,
                 overwrite: bool | None, progress: Progress | None):  # fmt: skip
        self.runner, self.ray, self.number = runner, runner.ray, number
        self.src, self.dst, self.overwrite, self.progress = src, dst, overwrite, progress
        self.resumed = self.total = 0
        self.warnings: list[str] = []
        self._reported = 0.0
        self._stopping: set[int] = set()

    def task(self, kind: str, **kw) -> Task:
        return Task(kind, self.number, self.src, self.dst, self.overwrite, **kw)

    def run(self) -> UpscaleResult:
        try:
            outcome = self.call(self.task("start"))
            if outcome.plan is None:
                return outcome.result
            # timed from the plan on, as a local run is timed from its probe on
            return self._segmented(outcome.plan, time.perf_counter())
        finally:
            with contextlib.suppress(Exception):
                self.runner.board.forget.remote(self.number)

    def call(self, task: Task) -> Outcome:
        """One task on the first idle worker, waited for."""
        worker = self._take(wait=True)
        if worker is None:
            raise Cancelled(f"cancelled: {self.src}")
        inflight = {worker.run.remote(task): (worker, task)}
        while inflight:
            for _, outcome, error in self._wait(inflight):
                if error is not None:
                    raise error
                return outcome.check()
        raise Cancelled(f"cancelled: {self.src}")  # pragma: no cover - the loop returns

    def _segmented(self, plan: SegmentPlan, t0: float) -> UpscaleResult:
        self._say("info", plan.description)
        self.total = plan.frames
        with WorkFolder.open(
            self.dst, plan.identity, resume=self.runner.config.resume, note=self._note,
            sparse=True,
        ) as work:  # fmt: skip
            self.resumed = work.frames_done
            if self.progress is not None:
                self.progress(self.resumed, self.total)  # kept frames show at once, as done
            if work.segments:
                self._say("info", f"{self.dst.name}: resuming: {len(work.segments)} of "
                          f"{len(plan.windows)} segments kept in {work.path.name}")  # fmt: skip
            encoded, repeated, corrupt = self._run_segments(plan, work)
            if len(work.segments) == len(plan.windows):
                work.mark_complete()  # else the join goes on from the unbroken run, in order
        if repeated + corrupt:
            self._note(f"the source is damaged: {repeated + corrupt} frame(s) damaged "
                       f"({repeated} repeat the last good frame)")  # fmt: skip
        joined = self.call(self.task("join")).result
        seconds = time.perf_counter() - t0
        fresh = encoded + joined.frames - joined.resumed_frames
        return replace(
            joined, seconds=seconds, fps=fresh / seconds if seconds else 0.0,
            resumed_frames=self.resumed, corrupt_frames=repeated + corrupt + joined.corrupt_frames,
            warnings=self.warnings + joined.warnings,
        )  # fmt: skip

    def _run_segments(self, plan: SegmentPlan, work: WorkFolder) -> tuple[int, int, int]:
        """The missing segments on every idle worker, journalled as they return. After a
        failure the segments in flight are still waited for and kept; then it is raised."""
        kept = {s.index for s in work.segments}
        todo = [i for i in range(1, len(plan.windows) + 1) if i not in kept]
        inflight: dict = {}
        failure: BaseException | None = None
        counts = [0, 0, 0]  # frames encoded, repeated, corrupt
        while todo or inflight:
            while todo and failure is None and not self.runner.cancel.is_set():
                worker = self._take(wait=not inflight)
                if worker is None:
                    break
                i = todo.pop(0)
                task = self.task("segment", info=plan.info, window=plan.windows[i - 1], index=i)
                inflight[worker.run.remote(task)] = (worker, task)
            if not inflight:
                break
            for _, outcome, error in self._wait(inflight):
                try:
                    if error is not None:
                        raise error
                    self._add(work, outcome.check().segment, counts)
                except BaseException as e:  # noqa: BLE001 - the first one is raised below
                    failure = failure or e
        if failure is not None:
            raise failure
        if self.runner.cancel.is_set():
            raise Cancelled(f"cancelled: {self.src}")
        return counts[0], counts[1], counts[2]

    def _add(self, work: WorkFolder, result: SegmentResult, counts: list[int]) -> None:
        self.warnings.extend(result.warnings)
        counts[1] += result.repeated_frames
        counts[2] += result.corrupt_frames
        if result.segment is not None:
            work.add(result.segment)
            counts[0] += result.segment.frames

    def _take(self, *, wait: bool):
        """An idle worker; with `wait`, until one is free (None if cancelled meanwhile)."""
        pool = self.runner.pool
        while not self.runner.cancel.is_set():
            worker = pool.take(POLL if wait else None)
            if worker is not None or not wait:
                return worker
        return None

    def _wait(self, inflight: dict) -> list[tuple[Task, Outcome | None, BaseException | None]]:
        """The tasks that are done after at most POLL seconds (taken out of `inflight`, their
        workers given back); reports progress, and stops the tasks once cancelled."""
        ray = self.ray
        if self.runner.cancel.is_set():
            self._stop(inflight)
        ready, _ = ray.wait(list(inflight), num_returns=1, timeout=POLL)
        if ready:
            ready, _ = ray.wait(list(inflight), num_returns=len(inflight), timeout=0)
        done = []
        for ref in ready:
            worker, task = inflight.pop(ref)
            done.append((task, *self._outcome(ref, worker, task)))
        self._report()
        return done

    def _outcome(self, ref, worker, task: Task):
        exceptions = self.ray.exceptions
        try:
            outcome = self.ray.get(ref)
        except exceptions.RayActorError as e:  # it died more often than Ray restarts it
            self.runner.pool.lose(worker)
            if getattr(e, "actor_init_failed", False):
                why = f"a Ray worker could not start ({_reason(e)})"
            else:
                why = f"its Ray worker died {RETRIES + 1} times (its node's Ray logs say why)"
            return None, VidsrError(f"{self.src.name}: {why}")
        except exceptions.RayError as e:
            self.runner.pool.give(worker)
            return None, VidsrError(f"{self.src.name}: a Ray worker failed: {_reason(e)}")
        self.runner.pool.give(worker)
        for kind, text in outcome.lines:
            if kind == "warn" or task.kind != "join":  # the join's "resuming" is not news
                self._say(kind, text)
        return outcome, None

    def _stop(self, inflight: dict) -> None:
        for worker, task in inflight.values():
            if task.id not in self._stopping:
                self._stopping.add(task.id)
                worker.stop.options(concurrency_group="control").remote(task.id)

    def _report(self) -> None:
        now = time.monotonic()
        if self.progress is None or now - self._reported < REPORT_EVERY:
            return
        self._reported = now
        try:
            done, total = self.ray.get(self.runner.board.frames.remote(self.number), timeout=5)
        except Exception:  # noqa: BLE001 - a lost board costs the bar, not the job
            return
        self.progress(self.resumed + done, self.total or total)

    def _note(self, msg: str) -> None:
        self.warnings.append(msg)
        self._say("warn", msg)

    def _say(self, kind: str, msg: str) -> None:
        reporter = self.runner.reporter
        if reporter is not None:
            getattr(reporter, kind)(msg)


# -- entry points ------------------------------------------------------------------------------


def estimate(src: Path, config: UpscaleConfig) -> tuple[int, int]:
    """(frames, tasks) a job is expected to take, from the driver's probe (0 frames, 1 task
    when it does not probe: its worker will say why)."""
    if is_image(src):
        return 1, 1
    try:
        info = probe(src)
        frames = expected_frames(info, span_window(info, config.start, config.duration))
    except VidsrError:
        return 0, 1
    if not config.segment_seconds:
        return frames, 1
    return frames, max(1, math.ceil(frames / segment_frames(info, config.segment_seconds)))


def run_on_ray(
    jobs: list[tuple[Path, Path]], config: UpscaleConfig, *, reporter
) -> list[UpscaleResult]:
    """`vidsr upscale DIR --ray`: the jobs on the cluster, no more workers than tasks."""
    expected = [estimate(src, config) for src, _ in jobs]
    tasks = sum(t for _, t in expected)
    with RayRunner(config, reporter=reporter, workers=tasks) as runner:
        return runner.run_many(jobs, [frames for frames, _ in expected])


__all__ = ["INSTALL", "RayRunner", "Worker", "import_ray", "run_on_ray", "worker_slots"]
