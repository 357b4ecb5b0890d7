"""The container x codec matrix: every output vidsr offers, from the sources people have.

Every cell upscales a tiny numbered clip (64x48, each picture shows its frame number; bicubic
model) in segments of 10 frames, so that each output is joined from at least 3 segments, and
checks what a user relies on: the output decodes to the end with every source frame once, in
order, at its source pts; the video packets carry pts and dts with dts rising across the seams
(where the container stores dts: MP4 and MOV; Matroska keeps pts only); audio is the source's
packets where the container takes them and re-encoded with a warning where not; the pictures
equal a one-segment run (ffv1) or come within a PSNR bound of it (lossy codecs); and a run
stopped in the middle, then run again, gives the unbroken run's file.

The cells, and why these:
- codec x container (`test_every_codec_in_every_container_it_takes`): all 16 pairs the
  containers take (NVENC cannot open without an NVIDIA GPU: tests/test_nvenc.py), from one
  source with B-frames and AAC; the pairs a container refuses are refused before any work.
- sources (`test_sources`): CFR and VFR, H.264 with B-frames (b-pyramid), open GOPs in MPEG-TS,
  packed-B MPEG-4 in AVI, and the audio kinds aac, ac3, mp3, opus, pcm and none, plus an SRT
  track, each into .mkv with x264 (the pair that failed) and one more container that treats that
  source differently (re-encodes its audio or drops its subtitles).
- resume (`test_a_stopped_run_resumes_to_the_unbroken_file`): one cell per encoder family,
  stopped at two points then finished.
Run alone with `pytest -m matrix`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pytest
from media import decoded_numbers, interrupted, make_packed_bframes_avi, make_source, numbered

from vidsr.config import EncodeConfig, UpscaleConfig
from vidsr.errors import OutputError
from vidsr.jobs.batch import BatchRunner
from vidsr.media.codecs import CODECS, CONTAINERS, NVENC
from vidsr.media.encode import check_encode
from vidsr.upscale.resume import work_path

pytestmark = pytest.mark.matrix

FRAMES = 30
SEGMENT = 0.4  # seconds: 10 frames at 25 fps, so 30 frames make 3 segments
# Options that make each encoder's output the same on every run (one thread): a resumed file
# can then be compared byte for byte with an unbroken one.
SAME_EVERY_RUN = {
    "libx264": {"threads": "1"},
    "libx265": {"x265-params": "pools=none:frame-threads=1:log-level=none"},
    "libsvtav1": {"svtav1-params": "lp=1"},
    "libvpx-vp9": {"threads": "1", "row-mt": "0"},
    "ffv1": {"threads": "1"},
    "prores_ks": {"threads": "1"},
}
LOSSLESS = ("ffv1",)
PSNR_BOUND = 30.0  # dB against the one-segment run: a seam costs a keyframe, not a picture


def cells() -> list[tuple[str, str]]:
    """Every (extension, encoder) the containers take, NVENC aside."""
    out = []
    for ext in (".mp4", ".mkv", ".mov", ".webm"):
        for codec in CODECS:
            if codec in NVENC:
                continue
            try:
                check_encode(EncodeConfig(codec=codec), ext)
            except OutputError:
                continue
            out.append((ext, codec))
    return out


def config(codec: str, *, segment: float = SEGMENT) -> UpscaleConfig:
    encode = EncodeConfig(codec=codec, options=SAME_EVERY_RUN[codec])
    return UpscaleConfig(model="bicubic", device="cpu", segment_seconds=segment, encode=encode)


@dataclass
class Video:
    numbers: list[int]
    pts_ms: list[float]
    pictures: list[np.ndarray]


def video_of(path: Path) -> Video:
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        base = stream.time_base
        frames = list(c.decode(stream))
    pictures = [f.to_ndarray(format="rgb24") for f in frames]
    numbers, pts = decoded_numbers(path)
    return Video(numbers, [round(float(p * base) * 1000, 3) for p in pts], pictures)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def packets(path: Path, kind: str) -> list[bytes]:
    with av.open(str(path)) as c:
        streams = [s for s in c.streams if s.type == kind]
        return [bytes(p) for p in c.demux(*streams) if p.size] if streams else []


def check_video_packets(path: Path) -> None:
    """MP4/MOV store a dts per packet: each packet has both stamps and dts rises strictly."""
    if path.suffix in (".mkv", ".webm"):
        return  # Matroska stores pts only; decoding in order (video_of) is the check there
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        stamps = [(p.pts, p.dts) for p in c.demux(stream) if p.size]
    assert all(pts is not None and dts is not None for pts, dts in stamps), stamps
    dts = [d for _, d in stamps]
    assert all(b > a for a, b in zip(dts, dts[1:], strict=False)), dts
    assert all(d <= p for p, d in stamps), stamps


def check_output(src: Path, dst: Path, result, *, reference: Path | None, codec: str) -> Video:
    source = video_of(src)
    out = video_of(dst)
    assert out.numbers == list(range(len(source.numbers))), "every frame once, in order"
    # sorted: a packed-B AVI's decoder hands its pictures out with the stamps of their chunks,
    # which vidsr puts back in order (tests/test_media_hardening.py)
    assert out.pts_ms == sorted(source.pts_ms), "every frame at its source pts"
    check_video_packets(dst)
    src_audio, out_audio = packets(src, "audio"), packets(dst, "audio")
    reencoded = [w for w in result.warnings if "re-encoded" in w]
    if src_audio and not reencoded:
        assert out_audio == src_audio, "audio packets copied one for one"
    elif src_audio:
        assert out_audio, "re-encoded audio is there"
        assert audio_seconds(dst) >= audio_seconds(src) - 0.05
    else:
        assert not out_audio
    if reference is not None:
        ref = video_of(reference)
        assert len(ref.pictures) == len(out.pictures)
        worst = min(psnr(a, b) for a, b in zip(ref.pictures, out.pictures, strict=True))
        if codec in LOSSLESS:
            assert worst == float("inf"), "lossless: the same pictures as a one-segment run"
        else:
            assert worst >= PSNR_BOUND, f"{worst:.1f} dB against the one-segment run"
    assert not work_path(dst).exists()
    return out


def audio_seconds(path: Path) -> float:
    with av.open(str(path)) as c:
        s = c.streams.audio[0]
        last = [p for p in c.demux(s) if p.size][-1]
        return float((last.pts + (last.duration or 0)) * last.time_base)


@pytest.fixture(scope="module")
def bframes_aac(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("src") / "bframes.mp4"
    make_source(path, frames=FRAMES, bframes=3, audio="aac")
    return path


def test_the_matrix_has_every_pair_the_containers_take():
    got = cells()
    assert len(got) == 16, got
    assert (".mkv", "libx264") in got and (".mkv", "libx265") in got
    # The pairs FFmpeg's list allows but the muxer refuses at its header (MOV takes VP9 and AV1
    # in its list, only MP4 writes them): refused before any work, in one line.
    for codec in ("libsvtav1", "libvpx-vp9"):
        with pytest.raises(OutputError, match=r"\.mov files cannot hold"):
            check_encode(EncodeConfig(codec=codec), ".mov")


@pytest.mark.parametrize("ext, codec", cells())
def test_every_codec_in_every_container_it_takes(bframes_aac, tmp_path, ext, codec):
    one = tmp_path / f"one{ext}"
    BatchRunner(config(codec, segment=0)).run_one(bframes_aac, one)
    dst = tmp_path / f"out{ext}"
    result = BatchRunner(config(codec)).run_one(bframes_aac, dst)
    assert result.error is None
    check_output(bframes_aac, dst, result, reference=one, codec=codec)


def _avi(path: Path) -> None:
    make_packed_bframes_avi(path, frames=FRAMES, audio="mp3")


SOURCES = {
    # name: (file name, how to make it, the second output that treats it differently)
    "cfr-bframes-aac": ("a.mp4", dict(bframes=3, audio="aac"), (".webm", "libvpx-vp9")),
    "vfr-bframes-opus-srt": ("b.mkv", dict(vfr=True, bframes=3, audio="opus", subtitles=True),
                             (".mp4", "libx265")),
    "open-gop-ac3-ts": ("c.ts", dict(bframes=2, open_gop=True, audio="ac3"), (".mov", "libx264")),
    "packed-b-mpeg4-mp3-avi": ("d.avi", _avi, (".mp4", "libx264")),
    "vfr-pcm-mov": ("e.mov", dict(vfr=True, audio="pcm"), (".webm", "libsvtav1")),
    "no-audio": ("f.mp4", dict(audio=None), (".mov", "prores_ks")),
}  # fmt: skip


@pytest.mark.parametrize("name", SOURCES)
def test_sources(tmp_path, name):
    filename, make, second = SOURCES[name]
    src = tmp_path / filename
    make(src) if callable(make) else make_source(src, frames=FRAMES, **make)
    for ext, codec in ((".mkv", "libx264"), second):
        dst = tmp_path / f"out-{codec}{ext}"
        result = BatchRunner(config(codec)).run_one(src, dst)
        assert result.error is None
        check_output(src, dst, result, reference=None, codec=codec)
        if name == "vfr-bframes-opus-srt":
            subs = packets(dst, "subtitle")
            assert subs == packets(src, "subtitle") if ext == ".mkv" else subs == []
            if ext != ".mkv":
                assert any("srt subtitles" in w and "dropped" in w for w in result.warnings)


def contents(path: Path) -> dict:
    """What must match between a resumed and an unbroken output."""
    video = video_of(path)
    return {
        "pts": video.pts_ms,
        "pictures": [hashlib.sha256(p.tobytes()).hexdigest() for p in video.pictures],
        "video": packets(path, "video"),
        "audio": packets(path, "audio"),
        "subtitles": packets(path, "subtitle"),
    }


RESUME_CELLS = [(".mkv", "libx264"), (".mkv", "libx265"), (".mp4", "libsvtav1"),
                (".webm", "libvpx-vp9"), (".mkv", "ffv1"), (".mov", "prores_ks")]  # fmt: skip


@pytest.mark.parametrize("ext, codec", RESUME_CELLS)
def test_a_stopped_run_resumes_to_the_unbroken_file(tmp_path, ext, codec):
    src = tmp_path / "vfr.mkv"
    make_source(src, frames=FRAMES, vfr=True, bframes=3, audio="opus", subtitles=True)
    whole = tmp_path / f"whole{ext}"
    BatchRunner(config(codec)).run_one(src, whole)
    dst = tmp_path / f"out{ext}"
    for at in (4, 17):  # inside the first segment, then in the second
        interrupted(src, dst, config(codec), at)
        assert not dst.exists()
    result = BatchRunner(config(codec)).run_one(src, dst)
    assert result.resumed_frames == 10  # the first segment was kept
    assert contents(dst) == contents(whole)
    check_output(src, dst, result, reference=None, codec=codec)


@pytest.mark.parametrize("codec", ["libx264", "libx265"])
def test_a_300_frame_clip_into_mkv_keeps_every_frame_at_its_pts(tmp_path, codec):
    """The report's own case: 12 s (two segments of the default 10 s) into .mkv."""
    src = tmp_path / "long.mp4"
    make_source(src, frames=300, bframes=3, audio="aac", width=96, height=64)
    dst = tmp_path / "long_x4.mkv"
    encode = EncodeConfig(codec=codec, options=SAME_EVERY_RUN[codec])
    result = BatchRunner(UpscaleConfig(model="bicubic", device="cpu", encode=encode)).run_one(
        src, dst
    )
    assert result.error is None and result.frames == 300
    source, out = video_of(src), video_of(dst)
    assert out.numbers == source.numbers == [i % 256 for i in range(300)]
    assert out.pts_ms == source.pts_ms
    assert packets(dst, "audio") == packets(src, "audio")


def test_every_extension_vidsr_writes_is_in_the_matrix():
    assert {ext for ext, _ in cells()} | {".m4v"} == set(CONTAINERS)


def test_a_stopped_run_of_an_mpeg_ts_source_resumes_to_the_unbroken_file(tmp_path):
    """MPEG-TS seeks land on any packet, not a keyframe (an MPEG-2 GOP here is 12 frames, a
    segment 10): decoding from there gave concealed pictures until the next keyframe."""
    src = tmp_path / "broadcast.ts"
    with av.open(str(src), "w") as out:
        v = out.add_stream("mpeg2video", rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        v.codec_context.gop_size, v.codec_context.max_b_frames = 12, 2
        v.codec_context.bit_rate = 2_000_000
        for i in range(FRAMES):
            f = av.VideoFrame.from_ndarray(numbered(i), format="rgb24").reformat(format="yuv420p")
            f.pts = i
            out.mux(v.encode(f))
        out.mux(v.encode(None))
    whole = tmp_path / "whole.mkv"
    BatchRunner(config("ffv1")).run_one(src, whole)
    dst = tmp_path / "out.mkv"
    for at in (13, 24):
        interrupted(src, dst, config("ffv1"), at)
    result = BatchRunner(config("ffv1")).run_one(src, dst)
    assert result.resumed_frames == 20
    assert contents(dst) == contents(whole)
