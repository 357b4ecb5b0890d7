"""Colour and bit depth: matrices and ranges both ways, 10-bit end to end, HDR tags, rotation.

Every check upscales with the parameter-free bicubic model, decodes the output with its own tags,
shrinks it back by 4 with area averaging and compares with the source as decoded with its tags.
"""

from fractions import Fraction

import av
import numpy as np
import pytest
from media import make_clip

import vidsr
from vidsr.config import UpscaleConfig
from vidsr.media.probe import probe
from vidsr.upscale.pipeline import precision_for

# (matrix, primaries, transfer) as FFmpeg numbers
BT601 = (6, 6, 6)  # smpte170m
BT709 = (1, 1, 1)
BT2020 = (9, 9, 14)  # bt2020nc, bt2020, bt2020-10
PQ, HLG = 16, 18


def decoded(path, fmt="rgb24") -> np.ndarray:
    """All frames as RGB, converted with the file's own matrix and range tags."""
    with av.open(str(path)) as c:
        cc = c.streams.video[0].codec_context
        return np.stack(
            [
                f.to_ndarray(
                    format=fmt,
                    src_colorspace=int(cc.colorspace),
                    src_color_range=int(cc.color_range),
                    interpolation=av.video.reformatter.Interpolation.BICUBIC
                    | av.video.reformatter.Interpolation.ACCURATE_RND
                    | av.video.reformatter.Interpolation.FULL_CHR_H_INT,
                )
                for f in c.decode(video=0)
            ]
        ).astype(np.float64)


def shrink(frames: np.ndarray, k: int = 4) -> np.ndarray:
    n, h, w, c = frames.shape
    return frames.reshape(n, h // k, k, w // k, k, c).mean(axis=(2, 4))


@pytest.mark.parametrize("space", [BT601, BT709, BT2020], ids=["bt601", "bt709", "bt2020"])
@pytest.mark.parametrize("full", [False, True], ids=["limited", "full"])
def test_colour_round_trip(space, full, tmp_path):
    matrix, primaries, trc = space
    src, dst = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_clip(
        src, width=64, height=48, frames=3, vfr=False, audio=False,
        colorspace=matrix, color_primaries=primaries, color_trc=trc, color_range=2 if full else 1,
    )  # fmt: skip
    vidsr.upscale_video(src, dst, model="bicubic")
    out = probe(dst)
    assert (out.colorspace, out.color_primaries, out.color_trc) == space
    assert out.color_range == (2 if full else 1)
    mae = np.abs(shrink(decoded(dst)) - decoded(src)).mean()
    print(f"colour MAE {matrix=} {full=}: {mae:.3f} levels")
    assert mae < 4.0


def _write_10bit(path, codec="libx265", *, frames=3, trc=1, primaries=1, matrix=1, params=""):
    """A smooth 10-bit gradient that 8 bits cannot hold, HEVC (or another 10-bit codec)."""
    w, h = 64, 48
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    with av.open(str(path), "w") as out:
        v = out.add_stream(codec, rate=25)
        v.width, v.height, v.pix_fmt = w, h, "yuv420p10le"
        cc = v.codec_context
        cc.color_primaries, cc.color_trc, cc.colorspace, cc.color_range = primaries, trc, matrix, 1
        v.time_base = cc.time_base = Fraction(1, 25)
        opts = {"preset": "ultrafast", "crf": "4"}
        if codec == "libx265":
            opts["x265-params"] = "log-level=error" + (f":{params}" if params else "")
        v.options = opts
        for i in range(frames):
            rgb = np.stack(
                [16000 + 300 * x + 20 * i, 20000 + 400 * y, 30000 + 150 * (x + y)], axis=-1
            ).astype(np.uint16)
            f = av.VideoFrame.from_ndarray(rgb, format="rgb48le")
            f = f.reformat(format="yuv420p10le", dst_colorspace=matrix, dst_color_range=1)
            f.pts = i
            out.mux(v.encode(f))
        out.mux(v.encode(None))


def test_10bit_hevc_stays_10bit_and_keeps_its_gradients(tmp_path):
    src, dst = tmp_path / "in10.mkv", tmp_path / "out10.mkv"
    _write_10bit(src)
    assert probe(src).bit_depth == 10
    vidsr.upscale_video(src, dst, model="bicubic")
    out = probe(dst)
    assert out.pix_fmt == "yuv420p10le" and out.bit_depth == 10
    assert (out.colorspace, out.color_primaries, out.color_trc, out.color_range) == (1, 1, 1, 1)
    a, b = decoded(dst, "rgb48le") / 64, decoded(src, "rgb48le") / 64  # in 10-bit levels
    mae = np.abs(shrink(a) - b).mean()
    print(f"10-bit MAE: {mae:.3f} (10-bit levels)")
    assert mae < 4.0
    # An 8-bit detour would leave (almost) every 10-bit level a multiple of 4.
    levels = np.round(a).astype(int)
    assert np.mean(levels % 4 != 0) > 0.5


def test_deep_sources_do_not_run_in_bf16(tmp_path):
    src = tmp_path / "in10.mkv"
    _write_10bit(src, frames=1)
    info = probe(src)
    assert precision_for(UpscaleConfig(model="srresnet", device="cpu"), info) == "fp32"
    forced = UpscaleConfig(model="srresnet", device="cpu", precision="bf16")
    assert precision_for(forced, info) == "bf16"  # a precision the user forces is kept


@pytest.mark.parametrize("codec", ["libx264", "libx265"])
def test_hdr10_tags_and_metadata_pass_through(codec, tmp_path):
    src, dst = tmp_path / "pq.mkv", tmp_path / "out.mkv"
    _write_10bit(
        src, frames=2, trc=PQ, primaries=9, matrix=9,
        params="master-display=G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)"
        "L(10000000,1):max-cll=1000,400",
    )  # fmt: skip
    source = probe(src)
    assert source.mastering_display is not None and source.content_light == (1000, 400)
    vidsr.upscale_video(src, dst, model="bicubic", codec=codec)
    out = probe(dst)
    assert (out.color_trc, out.color_primaries, out.colorspace) == (PQ, 9, 9)
    assert out.bit_depth == 10
    assert out.content_light == (1000, 400)
    md, want = out.mastering_display, source.mastering_display
    assert md is not None
    assert md.red == pytest.approx(want.red, abs=1e-4)
    assert md.white == pytest.approx(want.white, abs=1e-4)
    assert md.max_luminance == pytest.approx(1000) and md.min_luminance == pytest.approx(1e-4)


def test_hlg_transfer_tag_passes_through(tmp_path):
    src, dst = tmp_path / "hlg.mkv", tmp_path / "out.mkv"
    _write_10bit(src, frames=2, trc=HLG, primaries=9, matrix=9)
    vidsr.upscale_video(src, dst, model="bicubic", codec="libsvtav1", encoder_preset="12")
    out = probe(dst)
    assert (out.color_trc, out.color_primaries, out.colorspace, out.bit_depth) == (HLG, 9, 9, 10)


def test_an_8bit_only_encoder_says_the_depth_is_lost(tmp_path):
    src, dst = tmp_path / "in10.mkv", tmp_path / "out.webm"
    _write_10bit(src, frames=1)
    if any("10" in f.name for f in av.Codec("libvpx-vp9", "w").video_formats):
        pytest.skip("this libvpx writes 10-bit")
    result = vidsr.upscale_video(src, dst, model="bicubic", codec="libvpx-vp9")
    assert probe(dst).bit_depth == 8
    assert any("cannot write 10-bit" in w for w in result.warnings)


def test_rotation_is_kept(tmp_path):
    src, dst = tmp_path / "rot.mp4", tmp_path / "out.mp4"
    with av.open(str(src), "w") as out:
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        v.set_display_rotation(90)
        for i in range(2):
            f = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 90, np.uint8), format="rgb24")
            f.pts = i
            out.mux(v.encode(f))
        out.mux(v.encode(None))
    assert probe(src).rotation == 90
    vidsr.upscale_video(src, dst, model="bicubic")
    out = probe(dst)
    assert out.rotation == 90 and (out.width, out.height) == (256, 192)
