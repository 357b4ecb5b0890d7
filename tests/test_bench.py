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
