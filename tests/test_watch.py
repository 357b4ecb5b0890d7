"""`vidsr watch`: stable files only, every file once, failures contained, crashes survived.

In-process runs use --once (or a watcher thread stopped by its event); the crash and signal
tests run `vidsr watch` in a subprocess whose jobs are slowed by a test-only wrapper script.
"""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from media import make_clip, read_video

from vidsr.cli import main
from vidsr.config import UpscaleConfig
from vidsr.errors import InputError
from vidsr.jobs.batch import BatchRunner
from vidsr.jobs.journal import Journal, journal_path
from vidsr.jobs.watch import WatchConfig, Watcher, is_ignored_name
from vidsr.media.staging import TEMP_MARKER

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Bytes of a 12-frame and an 8-frame 64x48 H.264 mp4."""
    folder = tmp_path_factory.mktemp("clips")
    out = {}
    for frames in (12, 8):
        make_clip(folder / f"c{frames}.mp4", frames=frames, vfr=False, audio=False)
        out[frames] = (folder / f"c{frames}.mp4").read_bytes()
    return out


@pytest.fixture
def calls(monkeypatch):
    """Record (input name, its size at the moment the upscale starts) for every job."""
    seen = []
    real = BatchRunner.run_one

    def recording(self, src, dst, *args, **kwargs):
        seen.append((Path(src).name, Path(src).stat().st_size))
        return real(self, src, dst, *args, **kwargs)

    monkeypatch.setattr(BatchRunner, "run_one", recording)
    return seen


def config(inbox, out, **kw):
    base = dict(stable_secs=0.2, once=True, retry_delay=0.05)
    upscale = UpscaleConfig(model="bicubic", device="cpu")
    return WatchConfig(inbox=inbox, out=out, upscale=upscale, **{**base, **kw})


def rows(out):
    with Journal(journal_path(out), readonly=True) as j:
        return {r.name: r for r in j.jobs()}


def stray_files(out):
    return [p for p in out.rglob("*") if TEMP_MARKER in p.name]


def test_ignored_names():
    for name in (
        "a.mp4.part",
        "b.tmp",
        "c.mp4.crdownload",
        ".d.mp4",
        "e.txt",
        f"f{TEMP_MARKER}.mp4",
    ):
        assert is_ignored_name(name), name
    assert not is_ignored_name("clip.MKV")


def test_three_files_then_restart_redoes_nothing_and_a_changed_input_is_redone(
    tmp_path, clips, calls
):
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    for name in ("a.mp4", "b.mp4", "c.mov"):
        (inbox / name).write_bytes(clips[12])
    for name in (".hidden.mp4", "d.mp4.part", "e.tmp", "notes.txt"):
        (inbox / name).write_bytes(clips[12])

    summary = Watcher(config(inbox, out)).run()
    assert (summary.done, summary.failed) == (3, 0)
    assert sorted(rows(out)) == ["a.mp4", "b.mp4", "c.mov"]
    for name in ("a_x4.mp4", "b_x4.mp4", "c_x4.mov"):
        assert read_video(out / name)["frames"] == 12
    assert (out / ".vidsr" / "watch.log").read_text().count(": done") == 3
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*_x4.*")}

    assert Watcher(config(inbox, out)).run().done == 0
    assert len(calls) == 3
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*_x4.*")} == stamps

    (inbox / "a.mp4").write_bytes(clips[8])
    assert Watcher(config(inbox, out)).run().done == 1
    assert calls[-1][0] == "a.mp4" and len(calls) == 4
    assert read_video(out / "a_x4.mp4")["frames"] == 8
    assert rows(out)["a.mp4"].state == "done"
    assert stray_files(out) == []


@pytest.mark.parametrize("poll", [False, True], ids=["events", "poll"])
def test_a_file_written_in_two_halves_is_taken_only_when_complete(tmp_path, clips, calls, poll):
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    watcher = Watcher(config(inbox, out, once=False, stable_secs=0.4, poll=poll))
    thread = threading.Thread(target=watcher.run)
    thread.start()
    try:
        data, half = clips[12], len(clips[12]) // 2
        with open(inbox / "clip.mp4", "wb") as f:
            f.write(data[:half])
        time.sleep(1.5)  # longer than --stable-secs: the half file settles, but does not probe
        with open(inbox / "clip.mp4", "ab") as f:
            f.write(data[half:])
        deadline = time.monotonic() + 20
        while not (out / "clip_x4.mp4").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        watcher.stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()
    assert calls == [("clip.mp4", len(data))]
    assert read_video(out / "clip_x4.mp4")["frames"] == 12
    assert rows(out)["clip.mp4"].state == "done"


def test_a_file_that_fails_is_retried_then_failed_while_others_finish(tmp_path, clips, monkeypatch):
    real = BatchRunner.run_one

    def failing(self, src, dst, **kw):  # a job that fails every time it runs (a decoder crash)
        if Path(src).name == "broken.mp4":
            raise InputError(f"{src}: decoding failed: boom")
        return real(self, src, dst, **kw)

    monkeypatch.setattr(BatchRunner, "run_one", failing)
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    (inbox / "broken.mp4").write_bytes(clips[12])
    (inbox / "notavideo.mp4").write_text("not a video\n")
    (inbox / "good1.mp4").write_bytes(clips[12])
    (inbox / "good2.mp4").write_bytes(clips[8])
    runner = CliRunner()
    args = ["watch", str(inbox), "--out", str(out), "--model", "bicubic", "--once"]
    args += ["--stable-secs", "0.2", "--max-attempts", "2", "--retry-delay", "0.05"]
    r = runner.invoke(main, args)
    assert r.exit_code == 1, r.output  # --once reports a failed file in its exit code
    assert isinstance(r.exception, SystemExit)  # handled: no exception escaped the command

    r = runner.invoke(main, ["jobs", "--out", str(out), "--json"])
    assert r.exit_code == 0
    jobs = {j["name"]: j for j in json.loads(r.output)}
    assert jobs["broken.mp4"]["state"] == "failed" and jobs["broken.mp4"]["attempts"] == 2
    # Taken only when it opens as a video: not retried, no attempt spent, not a failure.
    skipped = jobs["notavideo.mp4"]
    assert (skipped["state"], skipped["attempts"]) == ("skipped", 0)
    assert "not a readable video" in skipped["last_error"]
    assert jobs["good1.mp4"]["state"] == jobs["good2.mp4"]["state"] == "done"
    assert jobs["good1.mp4"]["fps"] > 0
    r = runner.invoke(main, ["jobs", "--out", str(out)])
    assert r.exit_code == 0 and "broken.mp4" in r.output and "failed" in r.output
    assert not (out / "broken_x4.mp4").exists()


def test_recursive_mirrors_folders_never_takes_its_own_outputs_and_moves_originals(
    tmp_path, clips, calls
):
    inbox = tmp_path / "in"
    out, done = inbox / "out", inbox / "originals"  # both inside the inbox on purpose
    (inbox / "sub").mkdir(parents=True)
    (inbox / "sub" / "x.mp4").write_bytes(clips[12])
    out.mkdir()
    (out / "old.mp4").write_bytes(clips[12])
    summary = Watcher(config(inbox, out, recursive=True, on_done="move", move_to=done)).run()
    assert summary.done == 1 and calls == [("x.mp4", len(clips[12]))]
    assert read_video(out / "sub" / "x_x4.mp4")["frames"] == 12
    assert (done / "sub" / "x.mp4").exists() and not (inbox / "sub" / "x.mp4").exists()
    assert Watcher(config(inbox, out, recursive=True, on_done="move", move_to=done)).run().done == 0


SLOW_WATCH = """
import sys, time
from vidsr.jobs.batch import BatchRunner

real = BatchRunner.run_one

def slow(self, *args, **kwargs):
    kwargs["progress"] = lambda done, total: time.sleep({delay})
    return real(self, *args, **kwargs)

BatchRunner.run_one = slow
from vidsr.cli import main
main(sys.argv[1:], prog_name="vidsr")
"""


def start_slow_watcher(tmp_path, inbox, out, *extra, delay=0.4):
    """`vidsr watch` in a subprocess whose jobs take about 12 * delay seconds."""
    script = tmp_path / "slow_watch.py"
    script.write_text(SLOW_WATCH.format(delay=delay))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, str(script), "watch", str(inbox), "--out", str(out)]
    cmd += ["--model", "bicubic", "--device", "cpu", "--stable-secs", "0.2", *extra]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def wait_for_running_job(proc, out, timeout=30):
    """Until the journal says running and the temporary output exists."""
    db = journal_path(out)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read().decode()
        if db.exists() and stray_files(out):
            with sqlite3.connect(db) as c:
                states = [s for (s,) in c.execute("SELECT state FROM jobs")]
            if states == ["running"]:
                return
        time.sleep(0.05)
    proc.kill()
    pytest.fail("the job never started: " + proc.stdout.read().decode())


def test_kill_9_mid_job_then_restart_completes_with_no_stray_files(tmp_path, clips):
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    (inbox / "clip.mp4").write_bytes(clips[12])
    proc = start_slow_watcher(tmp_path, inbox, out)
    wait_for_running_job(proc, out)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert stray_files(out) and not (out / "clip_x4.mp4").exists()

    summary = Watcher(config(inbox, out)).run()
    assert summary.done == 1
    assert read_video(out / "clip_x4.mp4")["frames"] == 12
    assert stray_files(out) == []
    job = rows(out)["clip.mp4"]
    assert (job.state, job.attempts) == ("done", 2)  # the killed run counted as an attempt


@pytest.mark.parametrize("drain", [False, True])
def test_sigterm_stops_promptly_with_exit_0(tmp_path, clips, drain):
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    (inbox / "clip.mp4").write_bytes(clips[12])
    proc = start_slow_watcher(tmp_path, inbox, out, *(["--drain"] if drain else []), delay=0.2)
    wait_for_running_job(proc, out)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(timeout=15)
    output = proc.stdout.read().decode()
    assert rc == 0, output
    assert time.monotonic() - t0 < (8 if drain else 5)
    assert "Traceback" not in output
    assert stray_files(out) == []
    job = rows(out)["clip.mp4"]
    if drain:  # finished, not abandoned
        assert job.state == "done" and read_video(out / "clip_x4.mp4")["frames"] == 12
    else:  # abandoned: no output, back in the queue, the attempt not counted
        assert (job.state, job.attempts) == ("queued", 0)
        assert not (out / "clip_x4.mp4").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["watch", "{tmp}/missing", "--out", "{tmp}/out"], "is not a folder"),
        (["watch", "{tmp}", "--out", "{tmp}"], "must not be the inbox"),
        (["watch", "{tmp}", "--out", "{tmp}/o", "--model", "nope"], "unknown model"),
        (["watch", "{tmp}", "--out", "{tmp}/o", "--on-done", "bin"], "keep, delete or move:DIR"),
        (["watch", "{tmp}", "--out", "{tmp}/o", "--jobs", "0"], "--jobs"),
        (["jobs", "--out", "{tmp}"], "no job journal"),
    ],
)
def test_bad_usage_is_one_line_and_non_zero(tmp_path, args, message):
    r = CliRunner().invoke(main, [a.format(tmp=tmp_path) for a in args])
    assert r.exit_code != 0
    assert message in r.output
    assert isinstance(r.exception, SystemExit)  # handled: no exception escaped the command


def test_an_output_folder_deleted_while_watching_is_recreated_with_its_journal(tmp_path, clips):
    import shutil

    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    (inbox / "a.mp4").write_bytes(clips[12])
    watcher = Watcher(config(inbox, out, once=False, stable_secs=0.2, poll=True))
    thread = threading.Thread(target=watcher.run)
    thread.start()

    def until(check, what):
        deadline = time.monotonic() + 30
        while not check():
            assert time.monotonic() < deadline, what
            time.sleep(0.1)

    try:
        log = out / ".vidsr" / "watch.log"
        # the output lands a moment before the job is recorded done: wait for the record
        until(lambda: log.exists() and "a.mp4: done" in log.read_text(), "a.mp4 done")
        shutil.rmtree(out)  # the user tidies up (or an other program does) while it runs
        (inbox / "b.mp4").write_bytes(clips[8])
        until(lambda: (out / "b_x4.mp4").exists(), "b.mp4 done into the recreated folder")
        until(lambda: "b.mp4: done" in (out / ".vidsr" / "watch.log").read_text(), "logged")
    finally:
        watcher.stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()
    log = (out / ".vidsr" / "watch.log").read_text()
    assert "was deleted" in log
    # the journal came along: a.mp4 stays done (its output went with the folder, by the user's
    # hand), b.mp4 is done, and a restart redoes neither nor renames b's output
    assert {n: r.state for n, r in rows(out).items()} == {"a.mp4": "done", "b.mp4": "done"}
    assert Watcher(config(inbox, out)).run().done == 0
    assert sorted(p.name for p in out.iterdir()) == [".vidsr", "b_x4.mp4"]
