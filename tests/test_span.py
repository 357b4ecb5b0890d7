"""--start/--duration: that span only, frame-exact, with its audio and subtitles."""

from __future__ import annotations

import threading
from fractions import Fraction
from pathlib import Path

import av
import pytest
from click.testing import CliRunner
from media import (
    decoded_numbers,
    make_clip,
    make_subtitled_mkv,
    numbered,
    pattern,
    read_video,
    vfr_pts,
)

from vidsr.cli import main
from vidsr.config import UpscaleConfig, parse_time
from vidsr.errors import Cancelled, ConfigError, InputError
from vidsr.jobs.batch import BatchRunner
from vidsr.media.decode import FrameReader
from vidsr.media.probe import probe
from vidsr.media.span import SpanReader, Window, span_window


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("span") / "in.mp4"
    make_clip(path, frames=60, vfr=True, audio=True)
    return path


def source_ms(path: Path) -> list[float]:
    return read_video(path)["pts_ms"]


def audio_packets(path: Path) -> list[tuple[float, float, bytes]]:
    """(start s, end s, payload) of every audio packet."""
    with av.open(str(path)) as c:
        return [
            (float(p.pts * p.time_base), float((p.pts + p.duration) * p.time_base), bytes(p))
            for p in c.demux(audio=0)
            if p.size
        ]


@pytest.mark.parametrize(
    "text, seconds",
    [("90", 90.0), (2.5, 2.5), ("1:30", 90.0), ("01:02:03.250", 3723.25), ("0:00:05.5", 5.5),
     ("0", 0.0), (" 7 ", 7.0)],
)  # fmt: skip
def test_times_are_seconds_or_hh_mm_ss(text, seconds):
    assert parse_time(text) == seconds


@pytest.mark.parametrize("text", ["-1", "1:60", "1:2:3:4", "abc", "", "1::2", "1.5:30", True])
def test_bad_times_are_refused(text):
    with pytest.raises(ValueError, match="HH:MM:SS|at least 0"):
        parse_time(text)


def test_a_bad_start_is_one_error_line():
    r = run("upscale", "x.mp4", "--start", "1:75")
    assert r.exit_code == 2 and "--start" in r.output and "HH:MM:SS" in r.output
    with pytest.raises(ConfigError, match="--duration"):
        UpscaleConfig(duration=0)


def test_start_and_duration_keep_that_span_frame_exactly(clip, tmp_path):
    out = tmp_path / "span.mp4"
    r = run("upscale", clip, "-o", out, "--model", "bicubic", "--start", "0.5", "--duration", "1")
    assert r.exit_code == 0, r.output
    wanted = [t for t in source_ms(clip) if 500 <= t < 1500]
    assert wanted[0] > 500  # VFR: no frame falls on the start
    # shifted so that the first frame is where the source's first frame is (0), not 66 ms later
    assert source_ms(out) == [t - wanted[0] for t in wanted]
    assert f"{len(wanted)} frames" in r.output


def test_the_span_audio_is_the_source_packets_inside_it(clip, tmp_path):
    out = tmp_path / "span.mkv"
    r = run("upscale", clip, "-o", out, "--model", "bicubic", "--start", "00:00:00.5",
            "--duration", "1")  # fmt: skip
    assert r.exit_code == 0, r.output
    source = audio_packets(clip)
    first = next(t for t in source_ms(clip) if t >= 500) / 1000  # the span's first frame
    inside = [data for start, _, data in source if first <= start < 1.5]
    got = audio_packets(out)
    assert [data for _, _, data in got] == inside  # copied, not re-encoded
    packet = source[1][1] - source[1][0]  # 1024 samples at 48 kHz
    assert 0 <= got[0][0] < packet  # starts within one packet of the first frame
    end = 1.5 - first  # the span's end, on the output's clock
    assert end <= got[-1][1] < end + packet + 0.002  # ends within one packet after the span


def test_duration_alone_and_start_alone(clip, tmp_path):
    first = tmp_path / "first.mp4"
    assert (
        run("upscale", clip, "-o", first, "--model", "bicubic", "--duration", "0.3").exit_code == 0
    )
    assert source_ms(first) == [t for t in source_ms(clip) if t < 300]
    rest = tmp_path / "rest.mp4"
    assert run("upscale", clip, "-o", rest, "--model", "bicubic", "--start", "2").exit_code == 0
    kept = [t for t in source_ms(clip) if t >= 2000]
    assert source_ms(rest) == [t - kept[0] for t in kept]


def test_a_span_past_the_end_is_an_input_error(clip, tmp_path):
    r = run("upscale", clip, "-o", tmp_path / "o.mp4", "--model", "bicubic", "--start", "1:00")
    assert r.exit_code == InputError.exit_code
    assert "no frame" in r.output and "--start/--duration" in r.output
    assert list(tmp_path.iterdir()) == []


def test_subtitles_in_the_span_are_kept_and_one_showing_at_its_start_is_cut(tmp_path):
    src = tmp_path / "subs.mkv"
    make_subtitled_mkv(src, frames=10, show=100)  # "line i" at i * 40 ms for 100 ms, i = 0, 3, 6
    out = tmp_path / "o.mkv"
    r = run("upscale", src, "-o", out, "--model", "bicubic", "--start", "0.13", "--duration", "0.2")
    assert r.exit_code == 0, r.output
    with av.open(str(out)) as c:
        subs = [(bytes(p), p.pts, p.duration) for p in c.demux(subtitles=0) if p.size]
    # The span's first frame is at 160 ms. Line 3 showed from 120 to 220 ms: it now starts with
    # that frame (shifted to 0) and shows for the 60 ms it had left.
    assert subs == [(b"line 3", 0, 60), (b"line 6", 80, 100)]
    assert source_ms(out) == [0.0, 40.0, 80.0, 120.0, 160.0]  # frames 4..8 (160..320 ms)


def test_a_span_resumes_to_the_same_output(clip, tmp_path):
    cfg = UpscaleConfig(model="bicubic", device="cpu", start=0.4, duration=1.5,
                        segment_seconds=0.4)  # fmt: skip
    ref = tmp_path / "ref.mp4"
    BatchRunner(cfg).run_one(clip, ref)
    out = tmp_path / "out.mp4"
    cancel = threading.Event()
    with pytest.raises(Cancelled):
        BatchRunner(cfg, cancel=cancel).run_one(
            clip, out, progress=lambda d, t: d >= 20 and cancel.set()
        )
    result = BatchRunner(cfg).run_one(clip, out)
    assert result.resumed_frames > 0
    assert read_video(out) == read_video(ref)
    assert audio_packets(out) == audio_packets(ref)


def _keyed_clip(path: Path, frames: int = 60, gop: int = 10) -> None:
    """A clip with a keyframe every `gop` frames: a seek can land on any of them."""
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        v.time_base = v.codec_context.time_base = Fraction(1, 1000)
        v.options = {"preset": "ultrafast", "g": str(gop), "keyint_min": str(gop)}
        for i in range(frames):
            f = av.VideoFrame.from_ndarray(pattern(i, 64, 48), format="rgb24")
            f.pts, f.time_base = i * 40, Fraction(1, 1000)
            out.mux(v.encode(f))
        out.mux(v.encode(None))


def _frames(reader) -> list[tuple[int, bytes]]:
    with reader:
        return [(t, f.tobytes()) for b in reader for f, t in zip(b.frames, b.pts, strict=True)]


def test_a_seek_is_checked_and_a_late_one_reads_from_the_start(tmp_path, monkeypatch):
    src = tmp_path / "keyed.mp4"
    _keyed_clip(src)
    info = probe(src)
    every = _frames(FrameReader(info, batch_size=4))
    assert len(every) == 60
    first, end = every[25][0] - 1, every[45][0]  # from between two frames to a frame
    window = Window(info.time_base, first=first, end=end)
    assert _frames(SpanReader(info, window, batch_size=3)) == every[25:45]
    real = FrameReader.seek
    late = every[40][0] - every[25][0]
    monkeypatch.setattr(FrameReader, "seek", lambda self, t: real(self, t + late))  # an index off
    assert _frames(SpanReader(info, window, batch_size=3)) == every[25:45]


def test_a_raw_stream_without_timestamps_is_read_from_the_start(tmp_path):
    src = tmp_path / "raw.h264"
    with av.open(str(src), "w", format="h264") as out:
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        v.options = {"preset": "ultrafast", "g": "5"}
        for i in range(20):
            f = av.VideoFrame.from_ndarray(pattern(i, 64, 48), format="rgb24")
            f.pts = i
            out.mux(v.encode(f))
        out.mux(v.encode(None))
    info = probe(src)
    every = _frames(FrameReader(info))
    with FrameReader(info) as reader:
        assert reader.seek(every[12][0]) is False  # no timestamps: nothing to seek by
    window = Window(info.time_base, first=every[12][0])
    assert _frames(SpanReader(info, window, batch_size=2)) == every[12:]


def test_the_window_of_a_span(clip):
    info = probe(clip)
    w = span_window(info, 0.5, 1.0)
    # 1/16000 time base: the end is 1.5 s, the first frame the one at 566 ms, not 500 ms
    assert (w.first, w.end, w.offset) == (9056, 24000, 9056)
    assert span_window(info, None, None) is None
    assert span_window(info, None, 2).first is None


def late_first_frame_clip(path: Path, frames: int = 150) -> list[int]:
    """H.264 whose first frame shows at 42 ms (pts 42 + 40 k), as after an encoder delay."""
    tb = Fraction(1, 1000)
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        v.time_base = v.codec_context.time_base = tb
        v.options = {"preset": "ultrafast"}
        for i in range(frames):
            f = av.VideoFrame.from_ndarray(numbered(i), format="rgb24").reformat(format="yuv420p")
            f.pts, f.time_base = 42 + 40 * i, tb
            out.mux(v.encode(f))
        out.mux(v.encode(None))
    return [42 + 40 * i for i in range(frames)]


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_start_counts_from_the_first_frame(tmp_path, suffix):
    src = tmp_path / f"late{suffix}"
    late_first_frame_clip(src)
    origin = source_ms(src)[0]
    assert origin == 42
    out = tmp_path / f"o{suffix}"
    r = run("upscale", src, "-o", out, "--model", "bicubic", "--start", "4.17", "--duration", "1")
    assert r.exit_code == 0, r.output
    numbers, _ = decoded_numbers(out)
    # 4.17 s after the first frame is 4.212 s: the frame at 4.242 s (number 105) comes first,
    # not the one at 4.202 s (104, which the source's own clock would pick), and it shows where
    # the source's first frame does
    assert numbers[0] == 105
    assert source_ms(out)[0] == origin
    assert len(numbers) == 25


@pytest.mark.parametrize(
    "flag, value",
    [("--start", "1e308"), ("--start", "99999999999999:00:00"), ("--duration", "1e308"),
     ("--start", "1e15")],
)  # fmt: skip
def test_huge_times_are_one_line_not_a_traceback(clip, tmp_path, flag, value):
    out = tmp_path / "o.mp4"
    r = run("upscale", clip, "-o", out, "--model", "bicubic", flag, value)
    if flag == "--duration":  # longer than the file: the whole of it
        assert r.exit_code == 0, r.output
        assert source_ms(out) == source_ms(clip)
        return
    assert r.exit_code == InputError.exit_code, r.output
    assert (
        "Traceback" not in r.output and r.exception is None or isinstance(r.exception, SystemExit)
    )
    assert "no frame in the --start/--duration span" in r.output
    assert list(tmp_path.iterdir()) == []


def test_progress_ends_at_the_frames_written_when_the_header_overcounts(tmp_path):
    """A VFR AVI's header counts the ticks of its dropped frames (85 here, 40 pictures)."""
    src = tmp_path / "vfr.avi"
    tb = Fraction(1, 50)
    with av.open(str(src), "w") as out:
        v = out.add_stream("mpeg4", rate=50)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        v.time_base = v.codec_context.time_base = tb
        for i, t in enumerate(vfr_pts(40)):
            f = av.VideoFrame.from_ndarray(numbered(i), format="rgb24").reformat(format="yuv420p")
            f.pts, f.time_base = round(t / 20), tb
            out.mux(v.encode(f))
        out.mux(v.encode(None))
    info = probe(src)
    assert info.frames == 85 and info.indexed_frames == 40
    seen = []
    result = BatchRunner(UpscaleConfig(model="bicubic", device="cpu")).run_one(
        src, tmp_path / "o.mkv", progress=lambda d, t: seen.append((d, t))
    )
    assert result.frames == 40
    assert seen[0] == (0, 40)  # the index's count, not the header's 85
    assert seen[-1] == (40, 40)  # and the bar ends full


def test_progress_total_is_corrected_at_the_end_when_the_estimate_is_short(tmp_path):
    """Matroska counts no frames: duration x rate is the estimate, and the end says the truth."""
    src = tmp_path / "vfr.mkv"
    make_clip(src, frames=40, vfr=True, audio=False)
    seen = []
    BatchRunner(UpscaleConfig(model="bicubic", device="cpu")).run_one(
        src.with_suffix(".mkv"), tmp_path / "o.mkv", progress=lambda d, t: seen.append((d, t))
    )
    assert seen[-1] == (40, 40)
    assert all(d <= t for d, t in seen if t)
