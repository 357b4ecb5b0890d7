"""Ray: a folder, and a long video cut into its resume segments, on a local two-worker cluster
give the files a local run writes; a worker killed mid-segment loses and doubles nothing."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import av
import pytest
from click.testing import CliRunner
from media import make_clip

import vidsr
from vidsr.cli import main
from vidsr.config import EncodeConfig, UpscaleConfig
from vidsr.errors import VidsrError
from vidsr.jobs.batch import BatchRunner, plan_jobs
from vidsr.jobs.distributed import loopback_only
from vidsr.jobs.presets import parse_preset
from vidsr.jobs.report import Reporter
from vidsr.media.probe import probe
from vidsr.media.segments import Segment
from vidsr.media.staging import TEMP_MARKER
from vidsr.upscale.pipeline import segment_frames
from vidsr.upscale.resume import WorkFolder, work_path

REPO = Path(__file__).resolve().parents[1]
SEGMENT_SECONDS = 0.5  # 12 frames of make_clip's clips: the long one is 10 segment tasks
LONG = "long.mp4"


def config(**kw) -> UpscaleConfig:
    # x264 on one thread: the same frames give the same bytes, so outputs compare exactly
    encode = EncodeConfig(codec="libx264", options={"threads": "1"})
    kw.setdefault("device", "cpu")
    return UpscaleConfig(model="bicubic", segment_seconds=SEGMENT_SECONDS, encode=encode, **kw)


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster on 127.0.0.1 with two CPU workers, for every test here."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'vidsr[ray]')")
    # Ray's socket paths must stay short: a temp dir of its own directly under /tmp
    temp = tempfile.mkdtemp(prefix="vr", dir="/tmp")
    with loopback_only():  # every server and worker on 127.0.0.1: a test talks to no network
        try:
            ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp, log_to_driver=False)
        except Exception as e:  # noqa: BLE001 - any reason Ray cannot start here skips, said
            shutil.rmtree(temp, ignore_errors=True)
            pytest.skip(f"a local Ray cluster cannot start here: {e}")
        try:
            assert all(n["NodeManagerAddress"] == "127.0.0.1" for n in ray.nodes())
            yield ray
        finally:
            ray.shutdown()
            shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Three short clips and a long one, and what a local run makes of them."""
    root = tmp_path_factory.mktemp("dist")
    inbox = root / "in"
    inbox.mkdir()
    for i, frames in enumerate((8, 10, 12)):
        make_clip(inbox / f"clip{i}.mp4", frames=frames)
    make_clip(inbox / LONG, frames=120)
    local = root / "local"
    said = io.StringIO()
    with contextlib.redirect_stdout(said):
        BatchRunner(config(), reporter=Reporter()).run_many(plan_jobs(inbox, local))
    return inbox, local, summaries(said.getvalue(), local)


def summaries(text: str, out: Path) -> dict[str, tuple[int, str]]:
    """Output name -> (frames, size) from the summary lines a run prints."""
    found = re.findall(r"^(.+?): (\d+) frames in [\d.]+ s \([\d.]+ fps\), (.+)$", text, re.M)
    return {Path(p).relative_to(out).as_posix(): (int(n), size) for p, n, size in found}


def contents(path: Path) -> dict:
    """Frames (pts and a hash of the decoded pixels), video and audio packets."""
    with av.open(str(path)) as c:
        frames = [
            (f.pts, hashlib.sha256(f.to_ndarray(format="rgb24").tobytes()).hexdigest())
            for f in c.decode(video=0)
        ]
    with av.open(str(path)) as c:
        packets = [(p.stream.type, p.pts, bytes(p)) for p in c.demux() if p.size]
    return {"frames": frames, "packets": packets}


def assert_same_as_local(out: Path, local: Path) -> None:
    names = sorted(p.name for p in local.iterdir())
    assert sorted(p.name for p in out.iterdir()) == names  # no work folder, no temp file
    for name in names:
        assert contents(out / name) == contents(local / name), name


class WorkerSpy:
    """What the workers run, looked at every few milliseconds while a job is on the cluster."""

    def __init__(self, runner, kill: str | None = None):
        self.runner, self.kill = runner, kill
        self.seen: set[tuple[int, str]] = set()
        self.killed: tuple[int, str] | None = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._look, daemon=True)

    def _look(self) -> None:
        import ray

        while not self.done.is_set():
            for worker in self.runner.workers:
                with contextlib.suppress(ray.exceptions.RayError):
                    pid, what = ray.get(worker.status.options(concurrency_group="control")
                                        .remote(), timeout=5)  # fmt: skip
                    if what is None:
                        continue
                    self.seen.add((pid, what))
                    if self.kill and self.killed is None and re.fullmatch(self.kill, what):
                        os.kill(pid, signal.SIGKILL)  # as the OOM killer or a lost node would
                        self.killed = (pid, what)
            time.sleep(0.02)


def run_watched(runner, jobs, kill: str | None = None):
    watch = WorkerSpy(runner, kill)
    watch.thread.start()
    try:
        results = runner.run_many(jobs)
    finally:
        watch.done.set()
        watch.thread.join()
    return results, watch


@pytest.mark.slow  # the cluster tests take about 45 s together on 2 cores
def test_a_folder_and_a_long_video_on_two_workers_match_a_local_run(cluster, folder, tmp_path):
    from vidsr.jobs.distributed import RayRunner, estimate

    inbox, local, local_said = folder
    out = tmp_path / "out"
    jobs = plan_jobs(inbox, out)
    totals = [estimate(src, config())[0] for src, _ in jobs]
    said = io.StringIO()
    with contextlib.redirect_stdout(said), RayRunner(config(ray="auto"), reporter=Reporter(),
                                                     workers=2) as runner:  # fmt: skip
        assert len(runner.workers) == 2
        results, watch = run_watched(runner, jobs)
    assert not any(r.error for r in results)
    assert_same_as_local(out, local)
    assert summaries(said.getvalue(), out) == local_said  # the same summary, file by file
    segments = {what for _, what in watch.seen if what.startswith("segment") and LONG in what}
    assert len(segments) >= 2, watch.seen  # the long clip ran as segment tasks...
    assert len({pid for pid, what in watch.seen if LONG in what}) == 2  # ...on both workers
    assert sum(totals) == sum(r.frames for r in results) == 150


@pytest.mark.slow  # the cluster tests take about 45 s together on 2 cores
def test_a_worker_killed_mid_segment_loses_and_doubles_nothing(cluster, folder, tmp_path):
    from vidsr.jobs.distributed import RayRunner

    inbox, local, _ = folder
    out = tmp_path / "out"
    with RayRunner(config(ray="auto"), reporter=Reporter(quiet=True), workers=2) as runner:
        results, watch = run_watched(
            runner, plan_jobs(inbox, out), kill=rf"segment [3-7] of {LONG}"
        )
        assert watch.killed is not None, f"no segment task was seen running: {watch.seen}"
        import ray

        pids = {ray.get(w.status.options(concurrency_group="control").remote())[0]
                for w in runner.workers}  # fmt: skip
    assert watch.killed[0] not in pids  # Ray restarted the killed worker...
    assert not any(r.error for r in results)  # ...and ran its segment again there
    assert_same_as_local(out, local)  # every frame once, at its pts, the same pixels and audio


@pytest.mark.slow  # the cluster tests take about 45 s together on 2 cores
def test_cli_upscale_and_the_api_take_ray(cluster, folder, tmp_path):
    inbox, local, _ = folder
    small = tmp_path / "small"
    small.mkdir()
    shutil.copy(inbox / "clip0.mp4", small)
    shutil.copy(inbox / "clip1.mp4", small)
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["upscale", str(small), "-o", str(out), "--model", "bicubic",
                                  "--device", "cpu", "-q", "--ray"])  # fmt: skip
    assert r.exit_code == 0, r.output
    for name in ("clip0_x4.mp4", "clip1_x4.mp4"):  # x264 on all threads: the same pts
        pts = [[t for t, _ in contents(p / name)["frames"]] for p in (out, local)]
        assert pts[0] == pts[1]
    dst = tmp_path / "api.mp4"
    result = vidsr.upscale_video(inbox / "clip2.mp4", dst, model="bicubic", device="cpu",
                                 ray="auto")  # fmt: skip
    assert result.frames == 12 and dst.is_file()


@pytest.mark.slow  # the cluster tests take about 45 s together on 2 cores
def test_watch_joins_a_running_cluster_by_its_address(cluster, folder, tmp_path):
    """`vidsr watch INBOX --out OUT --ray ADDRESS` from another process: a second driver."""
    inbox, local, _ = folder
    watched = tmp_path / "inbox"
    watched.mkdir()
    for name in ("clip1.mp4", LONG):
        shutil.copy(inbox / name, watched)
    out = tmp_path / "done"
    address = cluster.get_runtime_context().gcs_address
    proc = subprocess.run(
        [sys.executable, "-m", "vidsr", "watch", str(watched), "--out", str(out), "--once",
         "--stable-secs", "0", "--model", "bicubic", "--device", "cpu", "--ray", address],
        env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    for name in ("clip1_x4.mp4", "long_x4.mp4"):  # x264 on all threads: the same pts
        pts = [[t for t, _ in contents(p / name)["frames"]] for p in (out, local)]
        assert pts[0] == pts[1]
    assert "long.mp4: done, 120 frames" in (out / ".vidsr" / "watch.log").read_text()


def test_without_ray_the_flag_says_how_to_install_it(tmp_path, monkeypatch):
    make_clip(tmp_path / "a.mp4", frames=4)
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as where it is missing
    r = CliRunner().invoke(main, ["upscale", str(tmp_path), "-o", str(tmp_path / "o"), "--ray"])
    assert r.exit_code == 2
    assert r.output.strip().splitlines() == [
        "vidsr: error: --ray: Ray is not installed: pip install 'vidsr[ray]'"
    ]
    assert not (tmp_path / "o").exists()  # said before anything was made


def test_the_ray_option_is_checked_and_not_for_presets():
    assert UpscaleConfig(ray="head:6379").ray == "head:6379"
    assert UpscaleConfig(ray="ray://10.0.0.2:10001").ray == "ray://10.0.0.2:10001"
    for bad in ("nowhere", "http://head:6379", "head:port"):
        with pytest.raises(VidsrError, match="--ray"):
            UpscaleConfig(ray=bad)
    with pytest.raises(VidsrError, match="--device"):
        UpscaleConfig(ray="auto", device="cuda:1")
    with pytest.raises(VidsrError, match="unknown key 'ray'"):
        parse_preset('description = "x"\nray = "auto"\n', name="x", source="x.toml")


def test_a_sparse_work_folder_keeps_segments_after_a_gap(tmp_path):
    """A distributed run journals segments out of order: a rerun keeps all that are intact; a
    sequential one keeps the unbroken run from the first, as it always did."""
    dst = tmp_path / "out.mp4"
    identity = {"job": "1"}
    with WorkFolder.open(dst, identity) as work:
        for index in (1, 2, 4, 5):
            seg = work.path / f"seg-{index:06d}.mp4"
            make_clip(seg, frames=3 + index, audio=False)
            first = 1000 * index
            work.add(Segment(index, seg.name, 3 + index, first, first + 9, seg.stat().st_size))
    (work.path / "seg-000005.mp4").write_bytes(b"torn")  # its size no longer matches
    with WorkFolder.open(dst, identity, sparse=True) as work:
        assert [s.index for s in work.segments] == [1, 2, 4]
    with WorkFolder.open(dst, identity) as work:
        assert [s.index for s in work.segments] == [1, 2]
    assert work_path(dst).is_dir()
    assert not any(TEMP_MARKER in p.name for p in work_path(dst).iterdir())


def test_the_long_clip_is_the_number_of_segments_the_tests_assume(folder):
    inbox, _, _ = folder
    assert segment_frames(probe(inbox / LONG), SEGMENT_SECONDS) == 12  # 120 frames: 10 tasks


def test_workers_ask_for_one_gpu_each_where_the_cluster_has_gpus():
    from vidsr.jobs.distributed import worker_slots

    gpus = {"CPU": 64.0, "GPU": 8.0}
    assert worker_slots(gpus, config(device="auto")) == (8, {"num_gpus": 1, "num_cpus": 1})
    assert worker_slots(gpus, config(device="cuda")) == (8, {"num_gpus": 1, "num_cpus": 1})
    assert worker_slots(gpus, config(device="cpu")) == (64, {"num_cpus": 1})
    assert worker_slots({"CPU": 2.0}, config(device="auto")) == (2, {"num_cpus": 1})


SIGTERM_AFTER_INIT = """
import os, signal, sys, time
got = []
signal.signal(signal.SIGTERM, lambda *a: got.append(1))
from vidsr.jobs.distributed import connected
with connected("auto"):
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.5)
print("handled" if got else "lost", flush=True)
"""


@pytest.mark.slow  # starts a Ray instance of its own
def test_ray_does_not_take_sigterm_from_the_cli(cluster, tmp_path):
    """Ray's core worker installs a SIGTERM handler that kills the driver; the CLI's own one
    (a clean stop: journals closed, exit 143) must still be the one that runs."""
    temp = tempfile.mkdtemp(prefix="vs", dir="/tmp")  # Ray's sockets need a short path
    try:
        proc = subprocess.run(
            [sys.executable, "-c", SIGTERM_AFTER_INIT],
            env={**os.environ, "PYTHONPATH": str(REPO), "RAY_TMPDIR": temp},
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    assert proc.stdout.strip() == "handled", (proc.returncode, proc.stderr[-2000:])


@pytest.mark.slow  # a head of its own: about 20 s
def test_a_head_started_on_loopback_is_joined_on_loopback(tmp_path):
    """`ray start --head --node-ip-address 127.0.0.1`, then `vidsr upscale --ray 127.0.0.1:PORT`:
    the driver registers on 127.0.0.1 too (it took the machine's network address, where
    nothing answered), and nothing of the cluster listens beyond loopback."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'vidsr[ray]')")
    ray_cli = Path(sys.executable).with_name("ray")
    temp = tempfile.mkdtemp(prefix="vh", dir="/tmp")
    port = 6400 + os.getpid() % 500
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  # the head on loopback only
    env.pop("RAY_AUTH_MODE", None)
    start = subprocess.run(
        [str(ray_cli), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
         "--temp-dir", temp, "--num-cpus", "1", "--include-dashboard", "false",
         "--disable-usage-stats"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    try:
        if start.returncode != 0:
            pytest.skip(f"ray start cannot run here: {start.stderr.strip()[-300:]}")
        make_clip(tmp_path / "a.mp4", frames=6, audio=False)
        user_env = {k: v for k, v in os.environ.items()
                    if k not in ("RAY_AUTH_MODE", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")}  # fmt: skip
        run = subprocess.run(
            [sys.executable, "-m", "vidsr", "upscale", str(tmp_path / "a.mp4"), "-o",
             str(tmp_path / "o.mp4"), "--model", "bicubic", "--device", "cpu", "-q",
             "--ray", f"127.0.0.1:{port}"],
            env={**user_env, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
            timeout=180,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr[-2000:]
        assert (tmp_path / "o.mp4").is_file()
        listening = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True).stdout
        own = [line for line in listening.splitlines() if f":{port} " in line]
        assert own and all("127.0.0.1" in line for line in own), own
    finally:
        subprocess.run([str(ray_cli), "stop", "--force"], env=env, capture_output=True,
                       timeout=60)  # fmt: skip
        shutil.rmtree(temp, ignore_errors=True)
