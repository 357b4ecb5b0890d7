"""The media layer on files that used to go wrong (issue 12): packed B-frames, frame sizes an
encoder cannot take, truncated sources, FIFOs, second video streams, dangling symlinks, full disks.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import threading
import time
from fractions import Fraction

import av
import pytest
from click.testing import CliRunner
from media import (
    decoded_numbers,
    make_clip,
    make_packed_bframes_avi,
    number_of,
    numbered,
    pattern,
)

import vidsr
from vidsr.cli import main
from vidsr.config import EncodeConfig
from vidsr.errors import InputError, OutputError
from vidsr.media.decode import FrameReader
from vidsr.media.encode import TEMP_MARKER, check_output_path, plan_encode
from vidsr.media.probe import probe


def read_all(path):
    """Every frame FrameReader hands out: (frame numbers, pts), and the reader."""
    numbers, pts = [], []
    with FrameReader(probe(path), batch_size=3) as reader:
        for batch in reader:
            numbers += [number_of(f) for f in batch.frames]
            pts += batch.pts
    return numbers, pts, reader


def packet_pts(path):
    with av.open(str(path)) as c:
        return sorted(p.pts for p in c.demux(c.streams.video[0]) if p.size)


def strictly_increasing(values):
    return all(a < b for a, b in zip(values, values[1:], strict=False))


def upscale_cli(src, dst):
    return CliRunner().invoke(main, ["upscale", str(src), "-o", str(dst), "--model", "bicubic"])


def leftovers(folder, *keep):
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


# -- item 0: no decoded picture is thrown away for its timestamp ---------------------------------


@pytest.mark.parametrize("bframes", [1, 2, 3])
def test_packed_bframes_avi_keeps_every_picture(tmp_path, bframes):
    src = tmp_path / "xvid.avi"
    make_packed_bframes_avi(src, frames=30, bframes=bframes)
    shown, labels = decoded_numbers(src)
    # The file as FFmpeg decodes it: pictures in display order, their pts labels out of order.
    assert shown == list(range(30)) and labels != sorted(labels)
    numbers, pts, reader = read_all(src)
    assert numbers == list(range(30))  # every picture, once, in order
    assert strictly_increasing(pts) and pts == packet_pts(src)
    assert reader.decoded_frames == 30 and reader.repeated_frames == 0
    assert reader.damage_summary() is None  # a clean file is not called damaged


def test_packed_bframes_avi_upscales_every_picture(tmp_path):
    src = tmp_path / "xvid.avi"
    make_packed_bframes_avi(src, frames=30, bframes=2)
    dst = tmp_path / "xvid_x4.mkv"
    result = vidsr.upscale_video(src, dst, model="bicubic")
    numbers, pts = decoded_numbers(dst)
    assert numbers == list(range(30)) and result.frames == 30
    assert strictly_increasing(pts)
    assert result.corrupt_frames == 0
    assert not [w for w in result.warnings if "damaged" in w or "truncated" in w]


def _mpeg4_with_swapped_pts(path, frames=30):
    """MPEG-4 with B-frames whose packets keep monotonic dts while the pts of some pairs of
    neighbouring pictures are swapped (a muxer that got them wrong)."""
    cc = av.CodecContext.create("mpeg4", "w")
    cc.width, cc.height, cc.pix_fmt = 64, 48, "yuv420p"
    cc.time_base, cc.framerate = Fraction(1, 25), Fraction(25)
    cc.max_b_frames, cc.bit_rate = 2, 2_000_000
    cc.open()
    packets = []
    for i in range(frames):
        f = av.VideoFrame.from_ndarray(numbered(i), format="rgb24").reformat(format="yuv420p")
        f.pts = i
        packets += cc.encode(f)
    packets += cc.encode(None)
    # P-frame k+1 and the B-frame k shown before it: both stay at or after their dts.
    swap = {k: k + 1 for k in range(2, frames - 1, 3)} | {k + 1: k for k in range(2, frames - 1, 3)}
    with av.open(str(path), "w") as out:
        v = out.add_stream("mpeg4", rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        v.time_base = Fraction(1, 25)
        v.codec_context.extradata = cc.extradata
        for p in packets:
            q = av.Packet(bytes(p))
            q.stream, q.time_base, q.is_keyframe = v, Fraction(1, 25), p.is_keyframe
            q.pts, q.dts = swap.get(p.pts, p.pts) + 2, p.dts + 2
            out.mux(q)


@pytest.mark.parametrize("ext", ["mkv", "mp4"])
def test_pts_permuted_with_monotonic_dts_keeps_every_picture(tmp_path, ext):
    src = tmp_path / f"swapped.{ext}"
    _mpeg4_with_swapped_pts(src)
    shown, labels = decoded_numbers(src)
    assert shown == list(range(30)) and labels != sorted(labels)
    numbers, pts, reader = read_all(src)
    assert numbers == list(range(30))
    assert strictly_increasing(pts) and pts == packet_pts(src)
    assert reader.damage_summary() is None


def test_a_repeated_pts_keeps_both_pictures(tmp_path):
    src = tmp_path / "dup.mp4"  # intra-only MJPEG; picture 9 carries picture 8's pts
    cc = av.CodecContext.create("mjpeg", "w")
    cc.width, cc.height, cc.pix_fmt = 64, 48, "yuvj420p"
    cc.time_base = Fraction(1, 25)
    cc.open()
    pts = [i + 5 for i in range(20)]
    pts[9] = pts[8]
    with av.open(str(src), "w") as out:
        v = out.add_stream("mjpeg", rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuvj420p"
        v.time_base = Fraction(1, 25)
        for i in range(20):
            f = av.VideoFrame.from_ndarray(numbered(i), format="rgb24").reformat(format="yuvj420p")
            f.pts = i
            for p in cc.encode(f):
                q = av.Packet(bytes(p))
                q.stream, q.time_base, q.is_keyframe = v, Fraction(1, 25), True
                q.dts, q.pts = i, pts[i]
                out.mux(q)
    numbers, out_pts, reader = read_all(src)
    assert numbers == list(range(20)) and strictly_increasing(out_pts)
    assert reader.repeated_frames == 0


# -- item 1: a frame size the encoder cannot take is refused before any work ---------------------


def test_frame_size_the_encoder_cannot_take_is_one_line(tmp_path):
    src = tmp_path / "wide.mkv"  # 4:4:4 allows the odd width; x4 makes 16388x64
    make_clip(src, width=4097, height=16, frames=2, audio=False, vfr=False, pix_fmt="yuv444p")
    dst = tmp_path / "wide_x4.mkv"
    r = upscale_cli(src, dst)
    assert r.exit_code == OutputError.exit_code, r.output
    assert "Traceback" not in r.output and r.stderr.strip().count("\n") == 0
    assert "16388x64" in r.stderr and "libx264" in r.stderr
    assert leftovers(tmp_path, "wide.mkv") == []


def test_the_plan_asks_the_encoder_about_the_frame_size(tmp_path):
    src = tmp_path / "small.mp4"
    make_clip(src, frames=2, audio=False)
    info = probe(src)
    plan_encode(EncodeConfig(), info, (192, 256), ".mkv")  # 256x192: fine
    huge = dataclasses.replace(info, width=8192, height=8192)
    for codec in ("libx264", "ffv1"):
        with pytest.raises(OutputError, match=rf"{codec} cannot encode 32768x32768"):
            plan_encode(EncodeConfig(codec=codec), huge, (32768, 32768), ".mkv")


# -- item 7: a truncated source says what was announced and what came out ------------------------


def _faststart_mp4(path, frames):
    with av.open(str(path), "w", options={"movflags": "faststart"}) as out:
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        v.options = {"preset": "ultrafast", "crf": "12"}
        for i in range(frames):
            f = av.VideoFrame.from_ndarray(pattern(i, 64, 48), format="rgb24")
            f.pts = i
            out.mux(v.encode(f))
        out.mux(v.encode(None))


def test_truncated_source_says_announced_and_decoded(tmp_path):
    whole = tmp_path / "whole.mp4"
    _faststart_mp4(whole, 50)  # the index first: a cut file still announces 50 frames
    data = whole.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.9)])
    result = vidsr.upscale_video(cut, tmp_path / "cut_x4.mkv", model="bicubic")
    assert 30 < result.frames < 50
    said = [w for w in result.warnings if "announced" in w]
    assert len(said) == 1, result.warnings
    assert f"announced 50 frames, {result.frames} came out" in said[0] and "truncated" in said[0]


@pytest.mark.parametrize("vfr", [False, True])
def test_avi_counting_milliseconds_is_not_called_truncated(tmp_path, vfr):
    # An AVI muxed with a 1/1000 time base announces its length in ticks (2000 for 50 frames).
    src = tmp_path / "ms.avi"
    make_clip(src, frames=50, audio=False, vfr=vfr)
    assert probe(src).frames > 50
    _, _, reader = read_all(src)
    assert reader.frames_out == 50 and not reader.truncated
    assert reader.damage_summary() is None


# -- item 8: a FIFO, socket or device is refused at once -----------------------------------------


def _unblock_later(fifo, after=5.0):
    """Should probe block in open(), a writer that comes and goes releases it: no hang."""

    def release():
        time.sleep(after)
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass  # nobody is reading: nothing to release

    threading.Thread(target=release, daemon=True).start()


def test_fifo_input_is_refused_at_once(tmp_path):
    fifo = tmp_path / "in.mp4"
    os.mkfifo(fifo)
    _unblock_later(fifo)
    t0 = time.monotonic()
    with pytest.raises(InputError, match="FIFO"):
        probe(fifo)
    assert time.monotonic() - t0 < 2.0


def test_socket_and_device_inputs_are_refused(tmp_path):
    sock_path = tmp_path / "in.mkv"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(sock_path))
        with pytest.raises(InputError, match="socket"):
            probe(sock_path)
    with pytest.raises(InputError, match="character device"):
        probe("/dev/null")


# -- item 10: second video stream, dangling symlink, disk full at start --------------------------


def test_second_video_stream_is_named_in_a_warning(tmp_path):
    src = tmp_path / "two.mkv"
    with av.open(str(src), "w") as out:
        streams = []
        for w, h in ((64, 48), (32, 16)):
            v = out.add_stream("libx264", rate=25)
            v.width, v.height, v.pix_fmt = w, h, "yuv420p"
            streams.append(v)
        for i in range(4):
            for v in streams:
                f = av.VideoFrame.from_ndarray(pattern(i, v.width, v.height), format="rgb24")
                f.pts = i
                out.mux(v.encode(f))
        for v in streams:
            out.mux(v.encode(None))
    result = vidsr.upscale_video(src, tmp_path / "two_x4.mkv", model="bicubic")
    said = [w for w in result.warnings if "video stream" in w]
    assert len(said) == 1 and "stream #1" in said[0] and "dropped" in said[0], result.warnings


def test_dangling_symlink_output_is_refused_before_work(tmp_path):
    src = tmp_path / "in.mp4"
    make_clip(src, frames=4, audio=False)
    dst = tmp_path / "out.mkv"
    dst.symlink_to(tmp_path / "gone" / "target.mkv")
    with pytest.raises(OutputError, match="symlink"):
        check_output_path(dst)
    decoded = []
    original = FrameReader.__iter__

    def spy(self):
        decoded.append(self.info.path)
        return original(self)

    FrameReader.__iter__ = spy
    try:
        with pytest.raises(OutputError, match="symlink.*does not exist"):
            vidsr.upscale_video(src, dst, model="bicubic")
    finally:
        FrameReader.__iter__ = original
    assert decoded == []  # refused before a frame was decoded
    assert dst.is_symlink() and not dst.exists()  # the link is left as it was
    assert not [p for p in tmp_path.iterdir() if TEMP_MARKER in p.name]


def test_disk_full_at_start_is_one_line(tmp_path):
    src = tmp_path / "in.mp4"
    make_clip(src, frames=4, audio=False)
    disk = tmp_path / "disk"
    disk.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {r.stderr.strip()}")
    try:
        (disk / "filler").write_bytes(b"\0" * 64 * 1024)  # the disk is full before we start
        with pytest.raises(OutputError, match="disk full"):
            check_output_path(disk / "out.mp4")
        for ext in (".mp4", ".mkv"):  # mp4 writes its header at once, mkv buffers it
            dst = disk / f"out{ext}"
            r = upscale_cli(src, dst)
            assert r.exit_code == OutputError.exit_code, r.output
            assert "Traceback" not in r.output and r.stderr.strip().count("\n") == 0
            assert "disk full" in r.stderr
            assert leftovers(disk) == ["filler"]
        assert subprocess.run(["umount", str(disk)], check=False).returncode == 0  # nothing open
    finally:
        if os.path.ismount(disk):
            subprocess.run(["umount", "-l", str(disk)], check=False)
