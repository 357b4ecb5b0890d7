"""Resume: a run killed anywhere (kill -9 included) and run again ends with the output of an
unbroken run: the same frames at the same pts, the same audio packets, the same decoded pixels."""

from __future__ import annotations

import hashlib
import os
import random
import re
import subprocess
import sys
import threading
from pathlib import Path

import av
import pytest
from click.testing import CliRunner
from media import interrupted, make_clip

from vidsr.cli import main
from vidsr.config import EncodeConfig, UpscaleConfig
from vidsr.errors import Cancelled, OutputError
from vidsr.jobs import report
from vidsr.jobs.batch import BatchRunner
from vidsr.jobs.watch import WatchConfig, Watcher
from vidsr.media.probe import probe
from vidsr.media.segments import SegmentMuxer
from vidsr.media.staging import TEMP_MARKER
from vidsr.upscale import pipeline
from vidsr.upscale.resume import WorkFolder, work_path

REPO = Path(__file__).resolve().parents[1]
X264_1 = {"threads": "1"}  # one thread: x264's output is the same on every run
PER = 23  # frames in a 1 s segment of make_clip's clips (VFR: 23.4 fps on average)


def config(**kw) -> UpscaleConfig:
    kw.setdefault("segment_seconds", 1.0)  # PER frames: a 300-frame clip is 14 segments
    encode = EncodeConfig(codec=kw.pop("codec", "libx264"), options=kw.pop("options", X264_1))
    return UpscaleConfig(model=kw.pop("model", "bicubic"), device="cpu", encode=encode, **kw)


@pytest.fixture(scope="module")
def clip300(tmp_path_factory):
    path = tmp_path_factory.mktemp("c300") / "in.mp4"
    make_clip(path, frames=300, vfr=True, audio=True)
    return path


@pytest.fixture(scope="module")
def clip60(tmp_path_factory):
    path = tmp_path_factory.mktemp("c60") / "in.mp4"
    make_clip(path, frames=60, vfr=True, audio=True)
    return path


def contents(path: Path) -> dict:
    """What must match between a resumed and an unbroken output."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        tags = (int(v.codec_context.colorspace), int(v.codec_context.color_primaries),
                int(v.codec_context.color_trc), int(v.codec_context.color_range))  # fmt: skip
        frames = [
            (f.pts, hashlib.sha256(f.to_ndarray(format="rgb24").tobytes()).hexdigest())
            for f in c.decode(v)
        ]
    with av.open(str(path)) as c:
        audio = [bytes(p) for p in c.demux(audio=0) if p.size]
    with av.open(str(path)) as c:
        video = [bytes(p) for p in c.demux(video=0) if p.size]
    return {"frames": frames, "audio": audio, "video": video, "tags": tags}


def source_pts_and_audio(path: Path) -> tuple[list[int], list[bytes]]:
    with av.open(str(path)) as c:
        pts = [f.pts for f in c.decode(video=0)]
    with av.open(str(path)) as c:
        audio = [bytes(p) for p in c.demux(audio=0) if p.size]
    return pts, audio


def test_the_clips_have_the_segment_length_the_tests_assume(clip60, clip300):
    for clip in (clip60, clip300):
        assert pipeline.segment_frames(probe(clip), 1.0) == PER


@pytest.fixture(scope="module")
def ref300(clip300, tmp_path_factory) -> Path:
    """An unbroken run of the 300-frame clip."""
    dst = tmp_path_factory.mktemp("ref") / "ref.mp4"
    BatchRunner(config()).run_one(clip300, dst)
    return dst


@pytest.fixture(scope="module")
def reference300(ref300):
    return contents(ref300)


# -- kill -9 -------------------------------------------------------------------------------------

KILLABLE = """
import sys, time
from pathlib import Path
from vidsr.jobs.batch import BatchRunner
from vidsr.config import EncodeConfig, UpscaleConfig
config = UpscaleConfig(model="bicubic", device="cpu", segment_seconds=1.0,
                       encode=EncodeConfig(options={"threads": "1"}))
def progress(done, total):
    print("frame", done, flush=True)
    time.sleep(0.01)
BatchRunner(config).run_one(Path(sys.argv[1]), Path(sys.argv[2]), progress=progress)
print("finished", flush=True)
"""


def _run_until(script: Path, src: Path, dst: Path, at: int) -> None:
    """Start a run and kill -9 it once it reports `at` frames done (or let it finish)."""
    proc = subprocess.Popen(
        [sys.executable, str(script), str(src), str(dst)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        for line in proc.stdout:
            if line.startswith("frame") and int(line.split()[1]) >= at:
                proc.kill()
                break
    finally:
        proc.kill()
        proc.wait(timeout=30)


def test_kill_9_at_random_points_then_rerun_gives_the_unbroken_output(
    clip300, reference300, tmp_path
):
    script = tmp_path / "killable.py"
    script.write_text(KILLABLE)
    dst = tmp_path / "out.mp4"
    points = sorted(random.Random(16).sample(range(5, 295), 3)) + [300]  # 300: at the join
    print("kill -9 after frames", points)
    for at in points:
        _run_until(script, clip300, dst, at)
    if not dst.exists():  # the last kill came before the target was renamed into place
        result = BatchRunner(config()).run_one(clip300, dst)
        # Finished segments are kept, not redone; the one being finished at the kill may be lost.
        assert result.resumed_frames >= PER * (299 // PER - 1)
    assert contents(dst) == reference300
    pts, audio = source_pts_and_audio(clip300)
    assert [t for t, _ in reference300["frames"]] == pts  # every frame at its source pts
    assert reference300["audio"] == audio
    assert not work_path(dst).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["killable.py", "out.mp4"]


# -- interruptions in process ----------------------------------------------------------------------


@pytest.mark.parametrize("codec, suffix", [("libx264", ".mp4"), ("ffv1", ".mkv")])
def test_stopped_runs_resume_to_the_same_frames(clip60, tmp_path, codec, suffix):
    cfg = config(codec=codec, options=X264_1 if codec == "libx264" else {})
    ref = tmp_path / f"ref{suffix}"
    BatchRunner(cfg).run_one(clip60, ref)
    dst = tmp_path / f"out{suffix}"
    for at in (7, 31, 52):  # inside the first segment, mid-way, in the last
        interrupted(clip60, dst, cfg, at)
        assert not dst.exists()
    seen = []
    result = BatchRunner(cfg).run_one(clip60, dst, progress=lambda d, t: seen.append(d))
    assert seen[0] == result.resumed_frames == 2 * PER  # the bar starts at the frames kept
    assert result.frames == 60
    assert contents(dst) == contents(ref)


def test_a_run_stopped_while_joining_only_joins_again(clip60, tmp_path, monkeypatch):
    ref = tmp_path / "ref.mp4"
    BatchRunner(config()).run_one(clip60, ref)
    dst = tmp_path / "out.mp4"
    real = SegmentMuxer.copy

    def stopped(self):
        real(self)
        raise KeyboardInterrupt  # Ctrl-C after every packet is written, before the rename

    monkeypatch.setattr(SegmentMuxer, "copy", stopped)
    with pytest.raises(KeyboardInterrupt):
        BatchRunner(config()).run_one(clip60, dst)
    monkeypatch.undo()
    assert not dst.exists() and not [p for p in tmp_path.iterdir() if TEMP_MARKER in p.name]
    decoded = []
    monkeypatch.setattr(pipeline, "run_stages", lambda *a, **k: decoded.append(1))
    result = BatchRunner(config()).run_one(clip60, dst)
    assert decoded == [] and result.resumed_frames == 60  # no frame decoded again
    assert contents(dst) == contents(ref)


def test_a_damaged_last_segment_is_redone_and_strays_are_removed(clip60, tmp_path):
    ref = tmp_path / "ref.mp4"
    BatchRunner(config()).run_one(clip60, ref)
    dst = tmp_path / "out.mp4"
    interrupted(clip60, dst, config(), 2 * PER + 5)  # segments 1 and 2 done
    work = work_path(dst)
    segments = sorted(work.glob("seg-*"))
    assert [p.name for p in segments] == ["seg-000001.mp4", "seg-000002.mp4"]
    data = segments[1].read_bytes()
    segments[1].write_bytes(data[: len(data) // 2] + bytes(len(data) - len(data) // 2))
    (work / "seg-000003.mp4").write_bytes(b"renamed just before a kill, never journalled")
    (work / f".seg-000004{TEMP_MARKER}-99999.mp4").write_bytes(b"a dead writer's")
    result = BatchRunner(config()).run_one(clip60, dst)
    assert result.resumed_frames == PER  # segment 2 did not decode to its frames: redone
    assert contents(dst) == contents(ref)
    assert not work.exists()


def test_a_damaged_journal_starts_over_and_says_so(clip60, tmp_path):
    dst = tmp_path / "out.mp4"
    interrupted(clip60, dst, config(), 30)
    (work_path(dst) / "journal.sqlite").write_bytes(b"garbage garbage garbage " * 100)
    notes = []
    result = BatchRunner(config()).run_one(clip60, dst, warn=notes.append)
    assert notes == ["out.mp4: the journal in .out.mp4.vidsr-work is damaged; starting over"]
    assert result.resumed_frames == 0 and result.frames == 60
    assert not work_path(dst).exists()


# -- what the journal depends on -----------------------------------------------------------------


def test_a_changed_model_starts_over_and_says_why(clip60, tmp_path):
    dst = tmp_path / "out.mp4"
    interrupted(clip60, dst, config(), 30)
    notes = []
    cancel = threading.Event()
    runner = BatchRunner(config(model="fast"), cancel=cancel)
    with pytest.raises(Cancelled):
        runner.run_one(clip60, dst, warn=notes.append, progress=lambda d, t: cancel.set())
    assert [n for n in notes if "starting over" in n] == [
        "out.mp4: the model changed (bicubic -> fast); starting over "
        f"({PER} frames of an earlier run discarded)"
    ]


def test_a_changed_preset_starts_over_and_no_resume_too(clip60, tmp_path):
    dst = tmp_path / "out.mp4"
    plain = UpscaleConfig(model="bicubic", device="cpu")
    # The CLI's own segments are 10 s: this clip is one. Make them 25 frames for the test.
    with _segment_frames(25):
        interrupted(clip60, dst, plain, 30)
        r = CliRunner().invoke(main, ["upscale", str(clip60), "-o", str(dst), "--model",
                                      "bicubic", "--preset", "fast"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "the encoder settings changed; starting over" in r.output
    assert "resuming" not in r.output
    dst.unlink()
    with _segment_frames(25):
        interrupted(clip60, dst, plain, 30)
        r = CliRunner().invoke(main, ["upscale", str(clip60), "-o", str(dst), "--model",
                                      "bicubic", "--no-resume"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "--no-resume; starting over (25 frames" in r.output
    assert "resumed" not in r.output


class _segment_frames:
    def __init__(self, n: int):
        self.n, self.real = n, pipeline.segment_frames

    def __enter__(self):
        pipeline.segment_frames = lambda info, seconds, prep=None: self.n

    def __exit__(self, *exc):
        pipeline.segment_frames = self.real


def test_the_same_command_says_it_resumes(clip60, tmp_path):
    dst = tmp_path / "out.mp4"
    with _segment_frames(25):
        interrupted(clip60, dst, UpscaleConfig(model="bicubic", device="cpu"), 30)
        r = CliRunner().invoke(main, ["upscale", str(clip60), "-o", str(dst), "--model",
                                      "bicubic"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "out.mp4: resuming after frame 25 (1 segment(s) kept in .out.mp4.vidsr-work)" in r.output
    assert "60 frames" in r.output and "resumed after frame 25" in r.output


def test_a_second_run_on_the_same_target_is_refused(clip60, tmp_path):
    dst = tmp_path / "out.mp4"
    with WorkFolder.open(dst, {"format": "test"}):
        with pytest.raises(OutputError, match="another vidsr run is writing"):
            BatchRunner(config()).run_one(clip60, dst)
    assert not work_path(dst).exists()  # the holder had no segment: nothing is kept


def test_a_run_stopped_before_its_first_segment_leaves_nothing(clip60, tmp_path):
    dst = tmp_path / "out.mp4"
    interrupted(clip60, dst, config(), 3)
    assert list(tmp_path.iterdir()) == []


# -- the watcher ---------------------------------------------------------------------------------

KILLABLE_WATCH = """
import sys, time
from vidsr.jobs.report import LogLines
from vidsr.upscale import pipeline
pipeline.segment_frames = lambda info, seconds, prep=None: 10
real = LogLines.__call__
def slow(self, done, total):
    print("frame", done, flush=True)
    time.sleep(0.05)
    return real(self, done, total)
LogLines.__call__ = slow
from vidsr.cli import main
main(sys.argv[1:], prog_name="vidsr")
"""


def test_the_watcher_resumes_a_job_killed_mid_way(clip60, tmp_path, monkeypatch):
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    (inbox / "clip.mp4").write_bytes(clip60.read_bytes())
    script = tmp_path / "watch.py"
    script.write_text(KILLABLE_WATCH)
    cmd = [sys.executable, str(script), "watch", str(inbox), "-o", str(out), "--once",
           "--stable-secs", "0.1", "--model", "bicubic", "--device", "cpu"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        for line in proc.stdout:
            if line.startswith("frame") and int(line.split()[1]) >= 35:
                break
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert not (out / "clip_x4.mp4").exists()
    monkeypatch.setattr(pipeline, "segment_frames", lambda info, seconds, prep=None: 10)
    monkeypatch.setattr(report, "LOG_EVERY", 0.0)  # a progress line at every batch
    upscale = UpscaleConfig(model="bicubic", device="cpu")
    Watcher(WatchConfig(inbox=inbox, out=out, once=True, stable_secs=0.1, upscale=upscale)).run()
    log = (out / ".vidsr" / "watch.log").read_text()
    assert re.search(r"clip_x4.mp4: resuming after frame (30|40) ", log), log
    assert "model bicubic, device cpu" in log
    assert re.search(r"clip.mp4: 60/60 frames \(100%\), [\d.]+ fps, ETA 0:00", log), log
    ref = tmp_path / "ref.mp4"
    BatchRunner(upscale).run_one(inbox / "clip.mp4", ref)
    assert contents(out / "clip_x4.mp4") == contents(ref)
    assert not work_path(out / "clip_x4.mp4").exists()


# -- seams -----------------------------------------------------------------------------------------


def test_seams_cost_what_a_keyframe_at_the_same_place_costs(clip300, ref300, tmp_path):
    """A seam is a keyframe: on the whole as big as the keyframes an unbroken encode puts at the
    same frames, and the frames after them no bigger either (one keyframe varies by +-30% in
    both, with x264's rate control)."""
    seg = ref300  # segments of PER frames
    whole = tmp_path / "whole.mp4"
    keyed = {**X264_1, "x264-params": f"keyint={PER}:min-keyint={PER}:scenecut=0"}
    BatchRunner(config(segment_seconds=0, options=keyed)).run_one(clip300, whole)

    def packets(path):
        with av.open(str(path)) as c:
            return sorted((p.pts, p.size, p.is_keyframe) for p in c.demux(video=0) if p.size)

    a, b = packets(seg), packets(whole)
    assert [p[0] for p in a] == [p[0] for p in b]  # no frame repeated or missing at a seam
    seams = range(PER, 300, PER)
    assert all(a[i][2] and b[i][2] for i in seams)  # both put keyframes there

    def at_seams(packets, after):  # the keyframes (after=0) or the 3 frames after them (1)
        return sum(
            p[1] for i in seams for p in packets[i + after : i + after + (3 if after else 1)]
        )

    assert at_seams(a, 0) <= 1.1 * at_seams(b, 0)
    assert at_seams(a, 1) <= 1.1 * at_seams(b, 1)
    assert sum(p[1] for p in a) <= 1.05 * sum(p[1] for p in b)
