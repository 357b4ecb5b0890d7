"""End-to-end upscaling of clips made in the test: size, frames, pts, audio, colour, errors."""

import subprocess
import sys

import av
import pytest
import torch
from media import SHARED_DATA, corrupt_packets, count_packets, make_clip, read_video

import vidsr
from vidsr.errors import InputError, OutputError
from vidsr.media.encode import TEMP_MARKER
from vidsr.models import build_model


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "w.pt"
    torch.manual_seed(0)
    torch.save(build_model("srresnet").state_dict(), path)
    return path


@pytest.fixture(scope="module")
def vfr_clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "in.mp4"
    made = make_clip(path, width=64, height=48, frames=24, vfr=True, audio=True)
    return path, made


def no_temp_files(folder):
    return not [p for p in folder.iterdir() if TEMP_MARKER in p.name]


def test_vfr_clip_with_audio_keeps_everything(vfr_clip, weights, tmp_path):
    src, made = vfr_clip
    dst = tmp_path / "out.mp4"
    result = vidsr.upscale_video(src, dst, model="srresnet", weights=weights)
    assert result.frames == 24 and result.output == dst and result.fps > 0
    out, inp = read_video(dst), read_video(src)
    assert (out["width"], out["height"]) == (256, 192)
    assert out["frames"] == 24
    assert max(abs(a - b) for a, b in zip(out["pts_ms"], made["pts_ms"], strict=True)) < 1.0
    assert count_packets(dst, "audio") == made["audio_packets"] > 0
    for tag in ("colorspace", "color_primaries", "color_trc", "color_range"):
        assert out[tag] == inp[tag], tag
    assert out["colorspace"] == 1  # BT.709, as made
    assert no_temp_files(tmp_path)


def test_audio_packets_are_copied_not_reencoded(vfr_clip, tmp_path):
    src, _ = vfr_clip
    dst = tmp_path / "out.mp4"
    vidsr.upscale_video(src, dst, model="bicubic")

    def payloads(path):
        with av.open(str(path)) as c:
            return [bytes(p) for p in c.demux(c.streams.audio[0]) if p.size]

    assert payloads(dst) == payloads(src)


def test_odd_size_and_mkv(tmp_path):
    src = tmp_path / "odd.mkv"
    make_clip(src, width=63, height=47, frames=6, pix_fmt="yuv444p", audio=False, vfr=False)
    dst = tmp_path / "odd_x4.mkv"
    vidsr.upscale_video(src, dst, model="bicubic")
    out = read_video(dst)
    assert (out["width"], out["height"], out["frames"]) == (252, 188, 6)


def test_default_output_name_and_no_overwrite(vfr_clip, tmp_path):
    src = tmp_path / "clip.mp4"
    src.write_bytes(vfr_clip[0].read_bytes())
    result = vidsr.upscale_video(src, model="bicubic")
    assert result.output == tmp_path / "clip_x4.mp4"
    before = result.output.read_bytes()
    with pytest.raises(OutputError, match="exists"):
        vidsr.upscale_video(src, model="bicubic")
    assert result.output.read_bytes() == before
    vidsr.upscale_video(src, model="bicubic", overwrite=True)
    assert read_video(result.output)["frames"] == 24
    assert no_temp_files(tmp_path)


def test_output_may_not_be_the_input(vfr_clip, tmp_path):
    src = tmp_path / "clip.mp4"
    src.write_bytes(vfr_clip[0].read_bytes())
    with pytest.raises(OutputError, match="input itself"):
        vidsr.upscale_video(src, src, model="bicubic", overwrite=True)
    assert read_video(src)["width"] == 64


def test_corrupt_packets_keep_every_timestamp(tmp_path):
    good = tmp_path / "good.mp4"
    made = make_clip(good, frames=24, audio=False, vfr=True)
    bad = tmp_path / "bad.mp4"
    corrupt_packets(good, bad, (10, 11))
    result = vidsr.upscale_video(bad, tmp_path / "out.mp4", model="bicubic")
    out = read_video(tmp_path / "out.mp4")
    assert out["frames"] == 24
    assert max(abs(a - b) for a, b in zip(out["pts_ms"], made["pts_ms"], strict=True)) < 1.0
    assert result.corrupt_frames >= 1
    assert any("damaged" in w for w in result.warnings)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d / "missing.mp4", "no such file"),
        (
            lambda d: (d / "bad.mp4").write_text("hello, not a video") and d / "bad.mp4",
            "not a readable video",
        ),
        (lambda d: d, "folder"),
    ],
    ids=["missing", "text-file", "folder"],
)
def test_bad_inputs_raise_input_error(tmp_path, make, message):
    src = make(tmp_path)
    with pytest.raises(InputError, match=message):
        vidsr.upscale_video(src, tmp_path / "out.mp4", model="bicubic")
    assert not (tmp_path / "out.mp4").exists()
    assert no_temp_files(tmp_path)


def test_audio_only_file_has_no_video_stream(tmp_path):
    src = tmp_path / "sound.m4a"
    with av.open(str(src), "w") as out:
        a = out.add_stream("aac", rate=48000)
        out.start_encoding()
        frame = av.AudioFrame(format="fltp", layout="stereo", samples=1024)
        for p in frame.planes:
            p.update(bytes(p.buffer_size))
        frame.sample_rate, frame.pts = 48000, 0
        out.mux(a.encode(frame))
        out.mux(a.encode(None))
    with pytest.raises(InputError, match="no video stream"):
        vidsr.upscale_video(src, tmp_path / "out.mp4", model="bicubic")


def test_unwritable_targets(vfr_clip, tmp_path):
    src, _ = vfr_clip
    with pytest.raises(OutputError, match="does not exist"):
        vidsr.upscale_video(src, tmp_path / "nowhere" / "out.mp4", model="bicubic")
    with pytest.raises(OutputError, match="cannot write .txt"):
        vidsr.upscale_video(src, tmp_path / "out.txt", model="bicubic")


def _mount_tmpfs(path, options):
    path.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {r.stderr.strip()}")


def test_full_disk_leaves_nothing_behind(vfr_clip, tmp_path):
    src, _ = vfr_clip
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "size=12k")
    try:
        with pytest.raises(OutputError, match="disk full"):
            vidsr.upscale_video(src, disk / "out.mp4", model="bicubic")
        assert list(disk.iterdir()) == []
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_read_only_folder_is_refused(vfr_clip, tmp_path):
    src, _ = vfr_clip
    ro = tmp_path / "ro"
    _mount_tmpfs(ro, "size=1m,ro")
    try:
        with pytest.raises(OutputError, match="not writable|cannot write"):
            vidsr.upscale_video(src, ro / "out.mp4", model="bicubic")
    finally:
        subprocess.run(["umount", str(ro)], check=False)


def test_cli_error_is_one_line_without_traceback(tmp_path):
    (tmp_path / "bad.mp4").write_text("this is text")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "vidsr",
            "upscale",
            str(tmp_path / "bad.mp4"),
            "-o",
            str(tmp_path / "out.mp4"),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0 and r.stderr.startswith("vidsr: error:")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.mp4"]


def _real_clip(name):
    path = SHARED_DATA / "clips" / name
    if not path.exists():
        print(f"skipping: {path} is absent (../shared/data is not beside this checkout)")
        pytest.skip(f"real clip {path} not available")
    return path


def _cut(src, dst, seconds):
    """The first `seconds` of a real clip, streams copied as they are (audio included)."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        streams = {
            s.index: out.add_stream_from_template(s)
            for s in inp.streams
            if s.type in ("video", "audio")
        }
        for packet in inp.demux(*[s for s in inp.streams if s.index in streams]):
            if packet.dts is None or float(packet.dts * packet.time_base) > seconds:
                continue
            packet.stream = streams[packet.stream.index]
            out.mux(packet)


def test_real_clip_with_six_channel_audio(tmp_path):
    src = tmp_path / "bbb.mp4"
    _cut(_real_clip("bigbuckbunny.mp4"), src, 0.5)
    dst = tmp_path / "bbb_x4.mp4"
    result = vidsr.upscale_video(src, dst, model="bicubic")
    inp, out = read_video(src), read_video(dst)
    assert (out["width"], out["height"]) == (4 * inp["width"], 4 * inp["height"])
    assert out["frames"] == inp["frames"] == result.frames
    assert max(abs(a - b) for a, b in zip(out["pts_ms"], inp["pts_ms"], strict=True)) < 1.0
    with av.open(str(dst)) as c:
        assert c.streams.audio[0].codec_context.channels == 6
    assert count_packets(dst, "audio") == count_packets(src, "audio")


def test_real_small_clip_whole(tmp_path):
    src = _real_clip("carphone_pristine.mp4")
    dst = tmp_path / "carphone_x4.mp4"
    result = vidsr.upscale_video(src, dst, model="bicubic")
    inp, out = read_video(src), read_video(dst)
    assert (out["width"], out["height"]) == (704, 576)
    assert out["frames"] == inp["frames"] == result.frames == 120


def test_audio_the_container_cannot_hold_is_reencoded_to_aac(tmp_path):
    src = tmp_path / "mulaw.mov"
    with av.open(str(src), "w") as out:
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        a = out.add_stream("pcm_mulaw", rate=8000)
        a.layout = "mono"
        out.metadata["title"] = "a title to keep"
        out.start_encoding()
        from media import pattern

        for i in range(10):
            f = av.VideoFrame.from_ndarray(pattern(i, 64, 48), format="rgb24")
            f.pts = i
            out.mux(v.encode(f))
        out.mux(v.encode(None))
        for k in range(4):
            af = av.AudioFrame(format="s16", layout="mono", samples=800)
            af.planes[0].update(bytes(af.planes[0].buffer_size))
            af.sample_rate, af.pts = 8000, k * 800
            out.mux(a.encode(af))
        out.mux(a.encode(None))
    dst = tmp_path / "out.mp4"
    result = vidsr.upscale_video(src, dst, model="bicubic")
    assert any("re-encoded to AAC" in w for w in result.warnings)
    with av.open(str(dst)) as c:
        assert c.streams.audio[0].codec_context.name == "aac"
        assert c.metadata.get("title") == "a title to keep"
        assert sum(1 for p in c.demux(c.streams.audio[0]) if p.size) > 0
