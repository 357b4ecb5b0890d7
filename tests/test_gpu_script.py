"""benchmarks/gpu.sh on the CPU: --dry-run checks its own wiring and writes the skeleton, so the
day a GPU is lent the one command runs right the first time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_check  # noqa: E402


def script(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHON=sys.executable)
    return subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu.sh"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def dry(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu") / "out"
    run = script("--dry-run", str(out))
    return run, out


@pytest.mark.slow  # the dry run of every step: about 25 s on 2 cores
def test_dry_run_checks_every_step_and_prints_what_it_would_run(dry):
    run, out = dry
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    printed = run.stdout
    assert "pip install -q --no-index --no-deps" in printed  # the carried wheels
    assert f"-m pytest -m gpu -p no:cacheprovider {ROOT / 'tests' / 'test_gpu.py'}" in printed
    for model in ("srresnet", "fast"):
        for size in ("320x180", "960x540"):
            for precision in ("fp16", "bf16"):
                want = (
                    f"-m vidsr bench --model {model} --size {size} --device cuda "
                    f"--precision {precision} --batch-size auto"
                )
                assert want in printed
    assert "bench_step.py bf16 cuda 30 --batch 16 --json" in printed
    assert "bench_step.py bf16 cuda 30 --batch 64 --json" in printed
    assert "gpu_check.py --worker compile" in printed and "--worker codec" in printed
    data = json.loads((out / "results.json").read_text())
    assert data["dry_run"] is True and data["finished"]
    statuses = {s["name"]: s["status"] for s in data["steps"]}
    assert len(statuses) == 3 + 8 + 1 + 2 + 1
    assert all(s.startswith("ok") for s in statuses.values()), statuses


@pytest.mark.slow  # shares the dry run above
def test_dry_run_results_hold_the_real_parsers_output(dry):
    _, out = dry
    data = json.loads((out / "results.json").read_text())
    assert data["env"]["torch"] and set(data["env"]["nvenc"]) == {
        "h264_nvenc",
        "hevc_nvenc",
        "av1_nvenc",
    }
    assert data["peak"]["bf16_tflops"] > 0 and data["peak"]["device"] == "cpu"
    gpu_tests = (ROOT / "tests" / "test_gpu.py").read_text().count("\ndef test_")
    assert data["tests"]["counts"]["collected"] >= gpu_tests >= 10
    bench = data["bench"][0]  # the tiny CPU run of `vidsr bench`, through the same parser
    assert bench["model"] == "bicubic" and bench["model_fps"] > 0 and bench["pipeline_fps"] > 0
    assert [r["codec"] for r in data["codecs"] if "codec" in r][:1] == ["libx264"]
    assert data["train"][0]["it_per_s"] > 0
    md = (out / "results.md").read_text()
    assert "| model | input | precision | compile |" in md and "| step | status |" in md
    assert "dry run" in md


def test_model_costs_are_counted_from_the_layers():
    per_px = {m: gpu_check.flops_per_pixel(m) for m in ("srresnet", "fast")}
    assert abs(per_px["srresnet"] / 1e6 - 4.44) < 0.01  # DESIGN.md's number
    assert 0.7e6 < per_px["fast"] < 0.85e6  # 8 blocks x 48 channels, one shuffle


def test_rows_get_tflops_fraction_of_peak_and_targets():
    data = {"flops_per_pixel": {"srresnet": 4.44e6}, "peak": {"bf16_tflops": 800.0}, "bench": []}
    row = {"model": "srresnet", "size": "960x540", "precision": "fp16", "compile": "eager"}
    row = gpu_check.model_row(data, {**row, "model_fps": 200.0, "encode_fps": 30.0})
    assert row["tflops"] == round(200 * 4.44e6 * 960 * 540 / 1e12, 2) and row["of_peak"] == 0.575
    assert "pipeline_vs_bound" not in row  # no pipeline measured
    row = gpu_check.model_row(data, {**row, "pipeline_fps": 25.0})
    assert row["pipeline_vs_bound"] == round(25 / 30, 3)
    data["bench"] = [row]
    t = gpu_check.targets(data)
    assert t["srresnet_960x540_fp16_of_peak"]["met"] is True
    assert t["pipeline_vs_min_model_encode"]["met"] is False


def test_pytest_summary_is_parsed():
    results = gpu_check.Results.__new__(gpu_check.Results)
    results.data = {"tests": {}}
    text = "FAILED tests/test_gpu.py::test_x - AssertionError\n2 failed, 9 passed, 1 skipped in 3s"
    note = gpu_check.record_tests(results, [], text, [])
    assert results.data["tests"]["counts"] == {"failed": 2, "passed": 9, "skipped": 1}
    assert results.data["tests"]["failed"] == ["tests/test_gpu.py::test_x"] and "9 passed" in note
    with pytest.raises(ValueError):
        gpu_check.record_tests(results, [], "no tests ran", [])


def test_a_step_that_hangs_is_killed_with_its_children_and_keeps_what_it_streamed(tmp_path):
    runner = gpu_check.Runner(tmp_path / "log.txt")
    seen: list[dict] = []
    child = (
        "import json, subprocess, time\n"
        f"print({gpu_check.MARK!r} + json.dumps({{'row': 1}}), flush=True)\n"
        "p = subprocess.Popen(['sleep', '60'])\n"
        "print('grandchild', p.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    t = time.monotonic()
    rc, text, records = runner.run([sys.executable, "-c", child], 3, seen.append)
    assert rc is None and time.monotonic() - t < 15  # timed out, not waited for
    assert records == seen == [{"row": 1}]
    pid = int(text.split("grandchild ")[1].split()[0])
    time.sleep(0.2)
    stat = Path(f"/proc/{pid}/stat")
    assert not stat.exists() or stat.read_text().split()[2] == "Z"  # gone (or a reaped zombie)
    assert "grandchild" in (tmp_path / "log.txt").read_text()


def test_usage_errors_are_one_line():
    run = script()
    assert run.returncode == 2 and "usage: benchmarks/gpu.sh OUTDIR" in run.stderr
    run = script("/tmp/x", "--frobnicate")
    assert run.returncode == 2 and "unknown option --frobnicate" in run.stderr


def test_prepare_device_fetches_binary_wheels_for_the_device_python():
    env = dict(os.environ, PYTHON=sys.executable)
    run = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "prepare_device.sh"), "--print"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    cmd = run.stdout
    assert "pip download" in cmd and "--only-binary=:all:" in cmd and "--no-deps" in cmd
    assert "--python-version 3.12" in cmd and "--platform manylinux_2_28_x86_64" in cmd
    assert str(ROOT / ".device" / "wheels" / "cp312") in cmd
    for name in ("av", "spandrel", "watchfiles"):
        assert f" {name}" in cmd
    ignored = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", ".device/wheels"])
    assert ignored.returncode == 0  # the wheels never become part of the tree


@pytest.mark.slow  # trains, scores and exports in miniature: about 27 s
def test_gpu_train_dry_run_trains_scores_and_exports(tmp_path):
    """benchmarks/gpu_train.sh --dry-run: every step of the GPU training call, in miniature."""
    out = tmp_path / "out"
    env = dict(os.environ, PYTHON=sys.executable)
    run = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_train.sh"), str(out), "--dry-run",
         "--models", "fast"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "pip install -q --no-index --no-deps" in run.stdout  # the carried wheels
    results = json.loads((out / "results.json").read_text())
    fast = results["models"]["fast"]
    assert "error" not in fast, fast
    assert fast["train"]["steps"] == 2 and fast["train"]["step_s"] > 0
    for name in ("Set5", "Set14"):
        assert fast["before"][name]["psnr_y"] > 0 and fast["after"][name]["psnr_y"] > 0
    assert fast["ships"] in ("yes", "no")
    assert (out / "fast.pt").stat().st_size > 100_000  # the fp16 export
    table = (out / "results.md").read_text()
    assert "| fast | 2 |" in table and "Set5 before -> after" in table
    bad = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_train.sh")], capture_output=True,
                         text=True, env=env, timeout=60)  # fmt: skip
    assert bad.returncode == 2 and "usage" in bad.stderr
