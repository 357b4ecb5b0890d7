"""One core for every front end: options declared once, presets as defaults, errors handled once,
temp files of live writers kept and of dead ones removed, signals, and the watcher's policies."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from media import make_clip

import vidsr
from vidsr.cli import main
from vidsr.config import OPTIONS, UpscaleConfig
from vidsr.errors import ConfigError
from vidsr.jobs.journal import Journal, journal_path
from vidsr.jobs.watch import WatchConfig, Watcher
from vidsr.media.staging import TEMP_MARKER, WriterLock, remove_stale, temp_path_for

REPO = Path(__file__).resolve().parents[1]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "in.mp4"
    make_clip(path, frames=8, audio=True, vfr=False)
    return path


def one_error_line(result) -> str:
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit), result.exception  # handled, no traceback
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("vidsr: error:"), result.output
    return lines[0]


# -- options declared once ---------------------------------------------------------------------


def test_upscale_and_watch_take_the_same_upscale_options():
    up = run("upscale", "--help").output
    wa = run("watch", "--help").output
    for opt in OPTIONS:
        assert opt.flags[-1] in up, opt.name
        if opt.name not in ("overwrite", "skip_existing"):  # the watcher decides: distinct names
            assert opt.flags[-1] in wa, opt.name
    for flag in ("--codec", "--crf", "--batch-size", "--tile", "--preset"):
        assert flag in wa


def test_help_shows_the_presets_real_defaults():
    plain = run("upscale", "--help").output
    fast = run("upscale", "--preset", "fast", "--help").output
    assert "[default: fast;" in " ".join(plain.split())
    squashed = " ".join(fast.split())
    assert "[default: rt]" in squashed and "default: 23" in squashed and "veryfast" in squashed


def test_an_explicit_flag_beats_the_preset_and_a_new_codec_drops_its_crf(clip, monkeypatch):
    import vidsr.jobs.runner as runner_mod

    seen = []
    monkeypatch.setattr(runner_mod, "upscale_path", lambda i, o, config: seen.append(config) or [])
    r = run("upscale", clip, "--preset", "quality", "--model", "bicubic", "--codec", "libx264")
    assert r.exit_code == 0, r.output
    (config,) = seen
    assert (config.model, config.precision, config.container) == ("bicubic", "fp32", ".mkv")
    # quality's crf 16 and "slow" were chosen for libx265: the explicit libx264 drops them
    assert (config.encode.codec, config.encode.crf, config.encode.preset) == ("libx264", None, None)
    r = run("upscale", clip, "--preset", "quality", "--crf", "20")
    assert r.exit_code == 0, r.output
    assert (seen[-1].encode.codec, seen[-1].encode.crf) == ("libx265", 20)


def test_api_takes_the_same_options_and_refuses_unknown_ones(clip, tmp_path):
    with pytest.raises(TypeError, match="unknown upscale option"):
        vidsr.upscale_video(clip, tmp_path / "o.mp4", model="bicubic", colour="blue")
    with pytest.raises(ConfigError, match="--tile"):
        vidsr.upscale_video(clip, tmp_path / "o.mp4", model="bicubic", tile=3)
    assert not (tmp_path / "o.mp4").exists()


@pytest.mark.parametrize(
    "args, words",
    [
        (["--model", "nope"], "unknown model 'nope'"),
        (["--batch-size", "0"], "--batch-size"),
        (["--tile", "huge"], "--tile"),
        (["--device", "tpu"], "unknown device"),
        (["--model", "bicubic", "--weights", "w.pt"], "takes no weights"),
    ],
)
def test_bad_values_are_one_line_before_any_work(clip, tmp_path, args, words):
    out = tmp_path / "o.mp4"
    line = one_error_line(run("upscale", clip, "-o", out, *args))
    assert words in line
    assert not out.exists()


def test_the_same_config_error_type_from_every_front_end():
    with pytest.raises(ConfigError, match="unknown model"):
        UpscaleConfig(model="nope")
    with pytest.raises(ConfigError, match="unknown model"):
        WatchConfig(inbox=Path("."), out=Path("o"), upscale=UpscaleConfig(model="nope"))


def test_sub_clis_import_on_their_own():
    for module in ("vidsr.cli.train", "vidsr.cli.evaluate", "vidsr.cli.watch", "vidsr.cli"):
        r = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True,
                           text=True, env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
        assert r.returncode == 0, r.stderr


def test_quiet_hides_progress_not_warnings(tmp_path):
    src = tmp_path / "sub.mkv"
    from media import make_subtitled_mkv

    make_subtitled_mkv(src)
    r = run("upscale", src, "-o", tmp_path / "o.mp4", "--model", "bicubic", "-q")
    assert r.exit_code == 0, r.output
    assert "warning:" in r.output and "cannot hold" in r.output  # SRT into .mp4
    assert "frames in" not in r.output  # the summary line is hidden


# -- temp files: live writers kept, dead ones removed ------------------------------------------


def test_a_live_writers_temp_file_survives_a_sweep_a_dead_ones_does_not(tmp_path):
    live = temp_path_for(tmp_path / "a_x4.mp4")
    lock = WriterLock(live)  # as VideoWriter holds it while FFmpeg writes
    dead = tmp_path / f".b_x4{TEMP_MARKER}-999999.mp4"
    dead.write_bytes(b"left by kill -9")
    try:
        assert remove_stale(tmp_path) == [dead]
        assert live.exists() and not dead.exists()
    finally:
        lock.release()
    assert remove_stale(tmp_path) == [live]


def test_watch_start_keeps_the_temp_file_of_an_upscale_writing_into_out(tmp_path, clip):
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    out.mkdir()
    live = temp_path_for(out / "other_x4.mp4")
    lock = WriterLock(live)
    try:
        cfg = WatchConfig(inbox=inbox, out=out, once=True, stable_secs=0.1,
                          upscale=UpscaleConfig(model="bicubic", device="cpu"))  # fmt: skip
        Watcher(cfg).run()
        assert live.exists()
    finally:
        lock.release()


# The CLI with its progress (stderr is no terminal here: LogLines) slowed to 0.3 s a frame and
# each frame said on stdout, so that the test can stop it mid-way.
SLOW_UPSCALE = """
import sys, time
from vidsr.jobs.report import LogLines
real = LogLines.__call__
def slow(self, done, total):
    print("frame", done, flush=True)
    time.sleep(0.3)
    return real(self, done, total)
LogLines.__call__ = slow
from vidsr.cli import main
main(sys.argv[1:], prog_name="vidsr")
"""


def _slow_upscale(tmp_path, src, dst):
    script = tmp_path / "slow.py"
    script.write_text(SLOW_UPSCALE)
    cmd = [sys.executable, str(script), "upscale", str(src), "-o", str(dst), "--model", "bicubic"]
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    for line in proc.stdout:  # the first report is the frames kept (0): wait for one written
        if line.startswith("frame") and int(line.split()[1]) >= 1:
            return proc
    raise AssertionError(proc.stderr.read())


def test_sigterm_mid_upscale_is_a_message_exit_143_and_nothing_left(tmp_path, clip):
    dst = tmp_path / "out" / "o.mp4"
    dst.parent.mkdir()
    proc = _slow_upscale(tmp_path, clip, dst)
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(timeout=20)
    err = proc.stderr.read()
    assert rc == 143, err
    assert "Traceback" not in err and "SIGTERM" in err
    assert list(dst.parent.iterdir()) == []


def test_kill_9_leaves_a_temp_file_that_the_next_run_removes(tmp_path, clip):
    dst = tmp_path / "out" / "o.mp4"
    dst.parent.mkdir()
    proc = _slow_upscale(tmp_path, clip, dst)
    proc.kill()
    proc.wait(timeout=10)
    left = [p for p in dst.parent.rglob("*") if TEMP_MARKER in p.name]  # in the work folder
    assert left and not dst.exists()
    r = run("upscale", clip, "-o", dst, "--model", "bicubic")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in dst.parent.iterdir()) == ["o.mp4"]


# -- the watcher's policies --------------------------------------------------------------------


def _watch_once(inbox, out, **kw):
    cfg = WatchConfig(inbox=inbox, out=out, once=True, stable_secs=0.1, retry_delay=0.05,
                      upscale=UpscaleConfig(model="bicubic", device="cpu"), **kw)  # fmt: skip
    return Watcher(cfg).run()


def test_name_clashes_get_distinct_outputs_never_an_overwrite_hint(tmp_path, clip):
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    (inbox / "clash.mkv").write_bytes(clip.read_bytes())
    (inbox / "clash.ts").write_bytes(clip.read_bytes())  # .ts -> .mkv too: the same name
    out.mkdir()
    (out / "stranger_x4.mkv").write_bytes(b"a file we did not write")
    (inbox / "stranger.mkv").write_bytes(clip.read_bytes())
    summary = _watch_once(inbox, out)
    assert (summary.done, summary.failed) == (3, 0)
    names = sorted(p.name for p in out.glob("*.mkv"))
    assert names == ["clash_x4-2.mkv", "clash_x4.mkv", "stranger_x4-2.mkv", "stranger_x4.mkv"]
    assert (out / "stranger_x4.mkv").read_bytes() == b"a file we did not write"
    log = (out / ".vidsr" / "watch.log").read_text()
    assert "--overwrite" not in log and "held by clash" in log


def test_a_bit_flipped_journal_is_one_line_for_jobs_and_rebuilt_by_watch(tmp_path, clip):
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    (inbox / "a.mp4").write_bytes(clip.read_bytes())
    assert _watch_once(inbox, out).done == 1
    done_at = (out / "a_x4.mp4").stat().st_mtime_ns
    db = journal_path(out)
    with sqlite3.connect(db) as c:
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(db.read_bytes())
    data[0:16] = b"garbage garbage!"  # the SQLite header
    db.write_bytes(bytes(data))

    line = one_error_line(run("jobs", "--out", out))
    assert "damaged" in line and "vidsr watch" in line

    summary = _watch_once(inbox, out)
    assert summary.done == 0  # rebuilt from the outputs: nothing redone
    assert (out / "a_x4.mp4").stat().st_mtime_ns == done_at
    assert list((out / ".vidsr").glob("jobs.sqlite.damaged-*"))
    with Journal(db, readonly=True) as j:
        assert [(r.name, r.state) for r in j.jobs()] == [("a.mp4", "done")]


def test_a_fifo_in_the_inbox_is_not_taken(tmp_path, clip):
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    os.mkfifo(inbox / "pipe.mp4")
    (inbox / "a.mp4").write_bytes(clip.read_bytes())
    t0 = time.monotonic()
    summary = _watch_once(inbox, out)
    assert summary.done == 1 and time.monotonic() - t0 < 30
    with Journal(journal_path(out), readonly=True) as j:
        assert [r.name for r in j.jobs()] == ["a.mp4"]


def test_control_characters_in_names_stay_on_one_log_line(tmp_path, clip):
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    (inbox / "evil\nname\r.mp4").write_bytes(clip.read_bytes())
    assert _watch_once(inbox, out).done == 1
    log = (out / ".vidsr" / "watch.log").read_text()
    for line in log.splitlines():
        assert line[:4].isdigit(), f"a log line that is not a record: {line!r}"  # timestamped
    assert "evil\\nname\\r.mp4" in log


def test_the_watcher_builds_one_engine_for_all_jobs(tmp_path, clip, monkeypatch):
    import vidsr.jobs.batch as batch_mod

    built = []
    real = batch_mod.build_engine
    monkeypatch.setattr(batch_mod, "build_engine", lambda *a: built.append(a) or real(*a))
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        (inbox / name).write_bytes(clip.read_bytes())
    assert _watch_once(inbox, out).done == 3
    assert len(built) == 1


def test_dangling_symlink_output_is_refused_before_work(tmp_path, clip, monkeypatch):
    dst = tmp_path / "o.mp4"
    dst.symlink_to(tmp_path / "nowhere" / "x.mp4")
    import vidsr.jobs.batch as batch_mod

    started = []
    monkeypatch.setattr(batch_mod, "build_engine", lambda *a: started.append(a))
    line = one_error_line(run("upscale", clip, "-o", dst, "--model", "bicubic"))
    assert "dangling" in line and started == []  # no model was even loaded


def test_codec_auto_says_what_it_took(clip, tmp_path):
    out = tmp_path / "o.mp4"
    r = run("upscale", clip, "-o", out, "--model", "bicubic", "--codec", "auto", "-q")
    assert r.exit_code == 0, r.output
    assert "--codec auto: libx264" in r.output  # no NVIDIA encoder opens on this machine
    assert out.is_file()


def test_a_frame_size_no_encoder_takes_fails_alone_and_the_folder_goes_on(tmp_path, clip):
    inbox = tmp_path / "in"
    inbox.mkdir()
    make_clip(inbox / "a_wide.mkv", width=4097, height=16, frames=2, audio=False, vfr=False,
              pix_fmt="yuv444p")  # fmt: skip  # x4: 16388x64, past libx264's limit
    (inbox / "b.mp4").write_bytes(clip.read_bytes())
    r = run("upscale", inbox, "-o", tmp_path / "out", "--model", "bicubic")
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit), r.output
    assert "a_wide.mkv" in r.output and "16388x64" in r.output and "Traceback" not in r.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["b_x4.mp4"]
