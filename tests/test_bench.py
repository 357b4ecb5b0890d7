"""`vidsr bench --json`: one line, the agreed keys, plausible values."""

from __future__ import annotations

import json

from click.testing import CliRunner

from vidsr.cli import main

KEYS = {
    "model_fps",
    "pipeline_fps",
    "segmented_fps",
    "decode_fps",
    "encode_fps",
    "steady_off_fps",
    "device",
    "precision",
    "batch_size",
    "size",
    "scale",
}


def test_bench_json_schema():
    args = ["bench", "--model", "bicubic", "--size", "32x24", "--frames", "4", "--device", "cpu"]
    result = CliRunner().invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    data = json.loads(lines[0])
    assert set(data) == KEYS
    assert data["size"] == "32x24" and data["device"] == "cpu" and data["batch_size"] == 1
    assert data["precision"] == "fp32"  # bicubic has no weights: kept exact
    for key in ("model_fps", "pipeline_fps", "segmented_fps", "decode_fps", "encode_fps",
                "steady_off_fps"):  # fmt: skip
        assert isinstance(data[key], float) and data[key] > 0


def test_bench_human_output_says_weights_are_random():
    args = ["bench", "--model", "bicubic", "--size", "16x16", "--frames", "2", "--device", "cpu"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "random weights" in result.output and "pipeline fps" in result.output
    assert "segmented fps" in result.output and "segmented / pipeline" in result.output
    assert "temporal auto" in result.output and "with / without --temporal" in result.output
    off = CliRunner().invoke(main, [*args, "--temporal", "off"])
    assert off.exit_code == 0, off.output
    assert "temporal off" in off.output and "with / without" not in off.output


def test_bench_rejects_bad_size():
    result = CliRunner().invoke(main, ["bench", "--size", "big", "--json"])
    assert result.exit_code != 0 and "WIDTHxHEIGHT" in result.output


def test_bench_profile_accounts_for_the_run():
    """--profile: each stage's CPU time alone, and a pipeline and a segmented run whose model
    thread's sections (work and waits) add up to the run's wall time."""
    args = ["bench", "--model", "rt", "--size", "64x48", "--frames", "8", "--device", "cpu",
            "--precision", "fp32", "--temporal", "off", "--repeat", "1"]  # fmt: skip
    result = CliRunner().invoke(main, [*args, "--profile", "--json"])
    assert result.exit_code == 0, result.output
    profile = json.loads(result.output)["profile"]
    assert profile["cores"] >= 1
    assert set(profile["alone_cpu_ms"]) == {"decode", "model", "colour conversion + encode"}
    assert all(v > 0 for v in profile["alone_cpu_ms"].values())
    for name in ("pipeline", "segmented"):
        run = profile[name]
        sections = run["sections_ms"]
        for section in ("decode (and clean-up)", "model", "colour conversion", "encode"):
            assert sections[section] > 0, (name, section)
        model_thread = sum(v for k, v in sections.items() if k.startswith("model"))
        # the model thread's sections cover its whole loop: all of the run but set-up and join
        assert 0.5 * run["wall_ms"] <= model_thread <= 1.05 * run["wall_ms"], (name, run)
    assert profile["segmented"]["sections_ms"]["join"] > 0
    assert profile["segmented"]["sections_ms"]["segment finish (own thread)"] > 0
    assert "join" not in profile["pipeline"]["sections_ms"]
    human = CliRunner().invoke(main, [*args, "--profile"])
    assert human.exit_code == 0, human.output
    assert "where the time goes" in human.output and "at best" in human.output


def test_stage_clock_sums_sections_across_threads():
    import threading
    import time

    from vidsr.upscale.profile import StageClock

    clock = StageClock()

    def work():
        with clock("a"):
            time.sleep(0.05)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with clock("b"):
        pass
    clock.stop()
    assert clock.calls == {"a": 2, "b": 1}
    assert 0.1 <= clock.seconds["a"] < 0.5  # both threads' time, though they overlapped
    assert clock.wall >= 0.05
    assert clock.per_frame_ms(2)["a"] == 1000 * clock.seconds["a"] / 2
