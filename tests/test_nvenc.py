"""NVENC encoders: --crf as constant quality, p1..p7 presets, 10-bit, and the refusal where the
encoder cannot open (on this machine: no NVIDIA driver, so the refusal is what runs for real).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest
from click.testing import CliRunner

from vidsr.cli import main
from vidsr.config import EncodeConfig
from vidsr.errors import OutputError
from vidsr.media import encode
from vidsr.media.encode import (
    NVENC,
    check_encode,
    choose_pix_fmt,
    encoder_options,
    nvenc_unavailable,
    resolve_codec,
)
from vidsr.media.probe import VideoInfo


def info(pix_fmt: str = "yuv420p", bit_depth: int = 8) -> VideoInfo:
    return VideoInfo(
        path=Path("in.mp4"),
        container="mp4",
        width=64,
        height=48,
        pix_fmt=pix_fmt,
        bit_depth=bit_depth,
        time_base=Fraction(1, 1000),
        average_rate=Fraction(25),
        frames=0,
        duration=None,
        codec="h264",
    )


def needs_no_nvenc(codec: str = "hevc_nvenc") -> None:
    reason = nvenc_unavailable(codec)
    if reason is None:
        pytest.skip(f"{codec} opens on this machine: the refusal path cannot be exercised here")


@pytest.mark.parametrize("codec", NVENC)
def test_crf_is_constant_quality_and_presets_are_p1_to_p7(codec):
    opts = encoder_options(EncodeConfig(codec=codec, crf=19, preset="p7"), info(), 2160)
    assert opts == {"rc": "vbr", "cq": "19", "b": "0", "preset": "p7"}
    # Defaults: a slightly higher cq and a faster preset above 1080 lines, as for x264.
    small = encoder_options(EncodeConfig(codec=codec), info(), 720)
    big = encoder_options(EncodeConfig(codec=codec), info(), 2160)
    assert small["rc"] == big["rc"] == "vbr" and small["b"] == big["b"] == "0"
    assert int(big["cq"]) == int(small["cq"]) + 2
    assert (small["preset"], big["preset"]) == ("p5", "p4")
    # Extra options still win over the mapping.
    extra = EncodeConfig(codec=codec, crf=30, options={"rc": "constqp", "qp": "20"})
    assert encoder_options(extra, info(), 720)["rc"] == "constqp"


@pytest.mark.parametrize(
    "cfg, words",
    [
        (EncodeConfig(codec="h264_nvenc", crf=0), "out of range for h264_nvenc (1..51)"),
        (EncodeConfig(codec="hevc_nvenc", preset="veryfast"), "p1, p2, p3, p4, p5, p6, p7"),
    ],
)
def test_bad_nvenc_settings_are_refused_by_name(cfg, words):
    with pytest.raises(OutputError) as e:
        check_encode(cfg, ".mp4")
    assert words in str(e.value) and "\n" not in str(e.value)


def test_a_crf_no_codec_takes_is_refused_where_the_config_is_built():
    from vidsr.errors import ConfigError

    with pytest.raises(ConfigError, match="out of range"):
        EncodeConfig(codec="av1_nvenc", crf=64)


@pytest.mark.parametrize("codec", NVENC)
def test_an_encoder_that_cannot_open_is_refused_in_one_line(codec):
    needs_no_nvenc(codec)
    with pytest.raises(OutputError) as e:
        check_encode(EncodeConfig(codec=codec, crf=20, preset="p4"), ".mkv")
    msg = str(e.value)
    assert f"encoder {codec} cannot open here (" in msg and "NVIDIA" in msg and "\n" not in msg
    assert nvenc_unavailable(codec) in msg  # FFmpeg's own reason, e.g. "Cannot load libcuda.so.1"


def test_upscale_with_nvenc_is_refused_before_any_work(tmp_path, monkeypatch):
    from media import make_clip

    import vidsr.jobs.batch

    needs_no_nvenc("hevc_nvenc")
    src = tmp_path / "in.mp4"
    make_clip(src, frames=3, audio=False)

    def no_engine(*a, **k):
        raise AssertionError("an engine was built before the encoder was checked")

    monkeypatch.setattr(vidsr.jobs.batch, "build_engine", no_engine)
    out = tmp_path / "out.mp4"
    args = ["upscale", str(src), "-o", str(out), "--model", "bicubic", "--codec", "hevc_nvenc"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 3, r.output
    assert r.output.count("\n") == 1 and "hevc_nvenc cannot open here" in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


def test_ten_bit_sources_take_p010_on_nvenc_and_stay_planar_elsewhere():
    ten = info("yuv420p10le", 10)
    assert choose_pix_fmt("hevc_nvenc", ten, None) == "p010le"
    assert choose_pix_fmt("av1_nvenc", info("yuv422p10le", 10), None) == "p210le"
    assert choose_pix_fmt("libx265", ten, None) == "yuv420p10le"
    assert choose_pix_fmt("libx264", ten, None) == "yuv420p10le"
    assert choose_pix_fmt("hevc_nvenc", info(), None) == "yuv420p"


def test_ten_bit_falls_back_to_8_bit_only_where_the_gpu_refuses_it(monkeypatch):
    opened = {"yuv420p"}  # a GPU whose H.264 encoder takes 8 bits only (all but the newest)
    monkeypatch.setattr(
        encode, "nvenc_unavailable", lambda c, p, *a: None if p in opened else "unsupported"
    )
    notes: list[str] = []
    cfg = EncodeConfig(codec="h264_nvenc")
    assert encode.nvenc_pix_fmt(cfg, "p010le", 256, 192, {}, notes.append) == "yuv420p"
    assert "cannot encode p010le" in notes[0] and "yuv420p" in notes[0]
    # Asked for by name: never silently changed.
    with pytest.raises(OutputError, match="cannot encode p010le at 256x192"):
        encode.nvenc_pix_fmt(EncodeConfig(codec="h264_nvenc", pix_fmt="p010le"), "p010le",
                              256, 192, {}, notes.append)  # fmt: skip
    opened.add("p010le")
    assert encode.nvenc_pix_fmt(cfg, "p010le", 256, 192, {}, notes.append) == "p010le"
    opened.clear()
    with pytest.raises(OutputError, match="use libx265"):
        encode.nvenc_pix_fmt(cfg, "yuv420p", 256, 192, {}, notes.append)


def test_auto_takes_hevc_nvenc_where_it_opens_else_libx264(monkeypatch):
    assert resolve_codec("libx265") == ("libx265", "")
    real = nvenc_unavailable("hevc_nvenc")
    codec, note = resolve_codec("auto")
    if real is None:
        assert codec == "hevc_nvenc" and "hevc_nvenc" in note
    else:
        assert codec == "libx264" and "libx264" in note and real in note
    monkeypatch.setattr(encode, "nvenc_unavailable", lambda *a, **k: None)
    assert resolve_codec("auto", ".mkv")[0] == "hevc_nvenc"
    codec, note = resolve_codec("auto", ".webm")  # WebM cannot hold HEVC
    assert codec == "libx264" and "HEVC" in note


def test_the_probe_answers_for_software_encoders_too():
    assert nvenc_unavailable("libx264") is None  # opening is what is tested, not the name
    assert nvenc_unavailable("no_such_encoder") == "not in this FFmpeg build"
