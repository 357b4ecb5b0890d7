"""The command line through click's CliRunner: options, folder input, messages and exit codes."""

import av
import pytest
from click.testing import CliRunner
from media import make_clip, make_subtitled_mkv, read_video

from vidsr.cli import main
from vidsr.models import weights as weights_mod


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "in.mp4"
    make_clip(path, frames=8, audio=True)
    return path


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_help_lists_every_upscale_flag():
    r = run("upscale", "--help")
    assert r.exit_code == 0
    for flag in (
        "--output",
        "--model",
        "--weights",
        "--overwrite",
        "--device",
        "--precision",
        "--quiet",
    ):
        assert flag in r.output


def test_upscale_prints_what_it_chose_and_one_summary_line(clip, tmp_path):
    out = tmp_path / "o.mp4"
    r = run("upscale", clip, "-o", out, "--model", "bicubic")
    assert r.exit_code == 0, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 2, r.output
    for word in ("model bicubic", "device cpu", "precision fp32", "batch 1", "scale 4x", "libx264"):
        assert word in lines[0], lines[0]
    assert "8 frames" in lines[1] and "fps" in lines[1]
    assert read_video(out)["frames"] == 8


def test_quiet_prints_nothing(clip, tmp_path):
    r = run("upscale", clip, "-o", tmp_path / "o.mp4", "--model", "bicubic", "--quiet")
    assert r.exit_code == 0 and r.output == ""


def test_missing_weights_message_says_what_to_do(clip, tmp_path, monkeypatch):
    monkeypatch.setattr(weights_mod, "SHIPPED", {})  # a build without the weights files
    r = run("upscale", clip, "-o", tmp_path / "o.mp4", "--model", "srresnet")
    assert r.exit_code != 0
    assert "--weights" in r.output and "vidsr train" in r.output
    assert not (tmp_path / "o.mp4").exists()


def test_existing_output_needs_overwrite(clip, tmp_path):
    out = tmp_path / "o.mp4"
    out.write_bytes(b"precious")
    r = run("upscale", clip, "-o", out, "--model", "bicubic")
    assert r.exit_code != 0 and "--overwrite" in r.output
    assert out.read_bytes() == b"precious"
    r = run("upscale", clip, "-o", out, "--model", "bicubic", "--overwrite")
    assert r.exit_code == 0 and read_video(out)["frames"] == 8


def test_folder_input_writes_every_video_into_the_output_folder(clip, tmp_path):
    inbox = tmp_path / "in"
    inbox.mkdir()
    for name in ("a.mp4", "b.mkv"):
        (inbox / name).write_bytes(clip.read_bytes()) if name.endswith("mp4") else make_clip(
            inbox / name, frames=5, audio=False
        )
    (inbox / "notes.txt").write_text("not a video")
    r = run("upscale", inbox, "-o", tmp_path / "out", "--model", "bicubic")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_x4.mp4", "b_x4.mkv"]
    assert read_video(tmp_path / "out" / "b_x4.mkv")["frames"] == 5


def test_folder_with_a_broken_video_goes_on_and_exits_non_zero(clip, tmp_path):
    inbox = tmp_path / "in"
    inbox.mkdir()
    (inbox / "good.mp4").write_bytes(clip.read_bytes())
    (inbox / "broken.mp4").write_text("garbage")
    r = run("upscale", inbox, "-o", tmp_path / "out", "--model", "bicubic")
    assert r.exit_code == 1
    assert "broken.mp4" in r.output and "1 failed" in r.output
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["good_x4.mp4"]


def test_unknown_device_and_precision_are_errors(clip, tmp_path):
    r = run("upscale", clip, "-o", tmp_path / "o.mp4", "--model", "bicubic", "--device", "tpu")
    assert r.exit_code != 0 and "unknown device" in r.output
    r = run("upscale", clip, "-o", tmp_path / "o.mp4", "--model", "bicubic", "--precision", "fp8")
    assert r.exit_code != 0 and "unknown precision" in r.output
    assert not (tmp_path / "o.mp4").exists()


def test_subtitles_are_copied_into_mkv_and_reported_for_mp4(tmp_path):
    src = tmp_path / "sub.mkv"
    lines = make_subtitled_mkv(src)
    r = run("upscale", src, "--model", "bicubic")
    assert r.exit_code == 0, r.output
    with av.open(str(tmp_path / "sub_x4.mkv")) as c:
        assert c.streams.subtitles[0].metadata.get("language") == "eng"
        got = [bytes(p) for p in c.demux(c.streams.subtitles[0]) if p.size]
    assert got == lines
    r = run("upscale", src, "-o", tmp_path / "sub.mp4", "--model", "bicubic")
    assert r.exit_code == 0 and "cannot hold srt subtitles" in r.output
