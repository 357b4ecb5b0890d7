"""Presets: shipped in checkout and wheel, precedence of explicit values, clear errors; encoder
flags.
"""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from media import make_clip, read_video

import vidsr
from vidsr.cli import main
from vidsr.errors import OutputError, VidsrError
from vidsr.jobs.presets import build_config, builtin_names, load_preset

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = {"fast", "balanced", "quality", "archival", "footage", "old-footage"}


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "in.mp4"
    make_clip(path, width=32, height=24, frames=4, vfr=False, audio=True)
    return path


def test_shipped_presets_load_from_the_checkout():
    assert SHIPPED <= set(builtin_names())
    top = {p.stem for p in (ROOT / "presets").glob("*.toml")}
    assert SHIPPED <= top
    for name in top:  # the top-level files are the packaged ones, and every one is valid
        assert load_preset(ROOT / "presets" / f"{name}.toml").values == load_preset(name).values
    assert load_preset("archival").values["codec"] == "ffv1"


def test_presets_ship_in_the_wheel(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True, cwd=tmp_path,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("vidsr-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        assert {f"vidsr/presets/{n}.toml" for n in SHIPPED} <= names
        z.extractall(tmp_path / "site")
    # Load them from that installed copy, not from the checkout.
    code = (
        "import vidsr.jobs.presets as p; print(p.__file__); "
        "print(' '.join(x.name + '=' + x.values['codec'] for x in p.builtin_presets()))"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env,
        cwd=tmp_path,
    ).stdout.splitlines()  # fmt: skip
    assert out[0].startswith(str(tmp_path / "site"))
    assert "fast=libx264" in out[1] and "archival=ffv1" in out[1]


def test_cli_lists_and_shows_presets():
    r = CliRunner().invoke(main, ["presets"])
    assert r.exit_code == 0
    names = [line.split()[0] for line in r.output.splitlines()]
    assert SHIPPED <= set(names)
    r = CliRunner().invoke(main, ["presets", "show", "quality"])
    assert r.exit_code == 0 and 'codec = "libx265"' in r.output and "description" in r.output
    r = CliRunner().invoke(main, ["presets", "show", "nope"])
    assert r.exit_code != 0 and "unknown preset 'nope'" in r.output


def test_explicit_values_override_the_preset():
    fast = build_config("fast")
    assert (fast.model, fast.batch_size, fast.encode.codec, fast.encode.crf) == (
        "rt", "auto", "libx264", 23,
    )  # fmt: skip
    assert fast.container == ".mp4"
    c = build_config("fast", model="bicubic", crf=30, batch_size=1)
    assert (c.model, c.encode.crf, c.batch_size, c.encode.preset) == ("bicubic", 30, 1, "veryfast")
    # Another codec drops the preset's codec-specific values instead of mixing them in.
    c = build_config("fast", codec="libx265")
    assert (c.encode.codec, c.encode.crf, c.encode.preset) == ("libx265", None, None)
    assert build_config(None).model == "fast"  # no preset: the built-in defaults


def test_api_preset_with_overrides_end_to_end(clip, tmp_path):
    # quality: libx265 into .mkv by default; the output name comes from the preset's container.
    result = vidsr.upscale_video(clip, None, model="bicubic", preset="quality", overwrite=True)
    try:
        assert result.output.suffix == ".mkv"
        with __import__("av").open(str(result.output)) as c:
            assert c.streams.video[0].codec_context.name == "hevc"
    finally:
        result.output.unlink()
    dst = tmp_path / "o.mp4"
    vidsr.upscale_video(clip, dst, model="bicubic", preset="quality", codec="libx264", crf=30)
    assert read_video(dst)["width"] == 128


@pytest.mark.parametrize(
    "text, words",
    [
        ('description = "x"\nmodle = "srgan"\n', ["'modle'", "unknown key"]),
        ('description = "x"\ncrf = "high"\n', ["'crf'", "bad value"]),
        ('description = "x"\nbatch_size = 0\n', ["'batch_size'"]),
        ('description = "x"\ncodec = "h264_magic"\n', ["'codec'"]),
        ('description = "x"\ncodec = "prores_ks"\ncontainer = "webm"\n', ["webm", "prores_ks"]),
        ('description = "x"\ncodec = "ffv1"\ncrf = 10\n', ["ffv1", "crf"]),
        ('model = "srgan"\n', ["'description'"]),
        ("description = \n", ["not valid TOML"]),
    ],
)
def test_bad_preset_files_name_the_key_and_the_file(tmp_path, text, words):
    path = tmp_path / "mine.toml"
    path.write_text(text)
    with pytest.raises(VidsrError) as e:
        load_preset(path)
    msg = str(e.value)
    assert str(path) in msg and "\n" not in msg
    for w in words:
        assert w in msg


def test_cli_bad_preset_is_one_line_and_writes_nothing(clip, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('description = "x"\ntile = "sometimes"\n')
    out = tmp_path / "o.mp4"
    r = CliRunner().invoke(main, ["upscale", str(clip), "-o", str(out), "--preset", str(bad)])
    assert r.exit_code != 0 and not out.exists()
    assert r.output.count("\n") == 1 and "'tile'" in r.output and "bad.toml" in r.output
    assert isinstance(r.exception, SystemExit)  # handled: no exception escaped the command


@pytest.mark.parametrize(
    "args, suffix, words",
    [
        (["--codec", "prores_ks"], ".webm", ".webm files cannot hold prores_ks"),
        (["--codec", "libx264"], ".webm", "cannot hold libx264"),
        (["--codec", "ffv1", "--crf", "10"], ".mkv", "ffv1 takes no crf"),
        (["--codec", "libx264", "--crf", "99"], ".mp4", "out of range"),
        (["--encoder-preset", "warp"], ".mp4", "unknown encoder preset 'warp'"),
        (["--codec", "prores_ks", "--pix-fmt", "yuv420p"], ".mov", "cannot write pixel format"),
        (["--codec", "h264_magic"], ".mp4", "unknown codec"),
    ],
)
def test_impossible_encoder_combinations_fail_before_work(clip, tmp_path, args, suffix, words):
    out = tmp_path / f"o{suffix}"
    # srgan has no shipped weights: an error about the encoder proves nothing was loaded first
    r = CliRunner().invoke(main, ["upscale", str(clip), "-o", str(out), *args])
    assert r.exit_code != 0, r.output
    assert words in r.output and r.output.count("\n") == 1
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "codec, suffix, name",
    [
        ("libx265", ".mp4", "hevc"),
        ("libsvtav1", ".mkv", "av1"),
        ("libvpx-vp9", ".webm", "vp9"),
        ("ffv1", ".mkv", "ffv1"),
        ("prores_ks", ".mov", "prores"),
    ],
)
def test_every_codec_writes_its_container(clip, tmp_path, codec, suffix, name):
    out = tmp_path / f"o{suffix}"
    fast = {"libx265": "ultrafast", "libsvtav1": "12", "libvpx-vp9": "8", "prores_ks": "proxy"}
    r = CliRunner().invoke(
        main,
        ["upscale", str(clip), "-o", str(out), "--model", "bicubic", "--codec", codec, "-q"]
        + (["--encoder-preset", fast[codec]] if codec in fast else []),
    )
    assert r.exit_code == 0, r.output
    with __import__("av").open(str(out)) as c:
        assert c.streams.video[0].codec_context.codec.canonical_name == name
        assert c.streams.audio  # webm gets its audio re-encoded to Opus
    assert read_video(out)["frames"] == 4


def test_encoder_defaults_follow_the_output_size():
    from vidsr.config import EncodeConfig
    from vidsr.media.encode import encoder_options

    info = type("I", (), {"mastering_display": None, "content_light": None})()
    small = encoder_options(EncodeConfig(), info, 720)
    big = encoder_options(EncodeConfig(), info, 2160)
    assert int(big["crf"]) > int(small["crf"]) and big["preset"] == "veryfast"
    vp9 = encoder_options(EncodeConfig(codec="libvpx-vp9", crf=31), info, 720)
    assert vp9["crf"] == "31" and vp9["b"] == "0"  # constant quality, not capped quality
    with pytest.raises(OutputError):
        from vidsr.media.encode import check_encode

        check_encode(EncodeConfig(codec="prores_ks", crf=3), ".mov")
