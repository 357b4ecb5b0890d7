"""What a run says: the line on what was chosen, progress lines where stderr is a log, and
folder re-runs that skip what is done."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from media import make_clip

from vidsr.cli import main

REPO = Path(__file__).resolve().parents[1]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("rep") / "in.mp4"
    make_clip(path, frames=8, audio=True, vfr=False)
    return path


def test_skip_existing_leaves_finished_outputs_and_counts_them(clip, tmp_path):
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    out.mkdir()
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        (inbox / name).write_bytes(clip.read_bytes())
    (out / "a_x4.mp4").write_bytes(b"finished earlier")
    r = run("upscale", inbox, "-o", out, "--model", "bicubic", "--skip-existing")
    assert r.exit_code == 0, r.output
    assert f"{out / 'a_x4.mp4'}: exists, skipped" in r.output
    assert "2 of 3 videos upscaled, 1 skipped (output exists)" in r.output
    assert (out / "a_x4.mp4").read_bytes() == b"finished earlier"
    assert (out / "b_x4.mp4").stat().st_size > 1000 and (out / "c_x4.mp4").exists()
    again = run("upscale", inbox, "-o", out, "--model", "bicubic", "--skip-existing")
    assert again.exit_code == 0 and "0 of 3 videos upscaled, 3 skipped" in again.output
    plain = run("upscale", inbox, "-o", out, "--model", "bicubic")
    assert plain.exit_code == 1 and "3 failed" in plain.output  # without it: exists, not done


def test_skip_existing_and_overwrite_contradict(clip, tmp_path):
    r = run("upscale", clip, "-o", tmp_path / "o.mp4", "--skip-existing", "--overwrite")
    assert r.exit_code == 2 and "--skip-existing" in r.output and "--overwrite" in r.output


SLOW_LOGGED = """
import sys, time
from vidsr.jobs import report
report.LOG_EVERY = 0.3
real = report.LogLines.__call__
def slow(self, done, total):
    real(self, done, total)
    time.sleep(0.25)
report.LogLines.__call__ = slow
from vidsr.cli import main
main(sys.argv[1:], prog_name="vidsr")
"""


def test_a_log_gets_a_first_line_and_progress_lines(clip, tmp_path):
    script = tmp_path / "slow.py"
    script.write_text(SLOW_LOGGED)
    dst = tmp_path / "o.mp4"
    cmd = [sys.executable, str(script), "upscale", str(clip), "-o", str(dst), "--model", "bicubic"]
    r = subprocess.run(cmd, env={**os.environ, "PYTHONPATH": str(REPO)},
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert lines[0].startswith("in.mp4 -> o.mp4: model bicubic, device cpu, precision fp32, ")
    assert "batch 1, scale 4x (256x192), encoder libx264 (crf 18, preset fast, yuv420p)" in lines[0]
    progress = [ln for ln in lines if re.fullmatch(r"in\.mp4: \d/8 frames \(\d+%\), [\d.]+ fps, "
                                                   r"ETA \d+:\d\d", ln)]  # fmt: skip
    assert len(progress) >= 2, r.stderr
    assert "\x1b" not in r.stderr  # no bar, no colour codes in a log
    assert "8 frames" in r.stdout
