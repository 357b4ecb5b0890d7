"""The weights that ship in vidsr/weights/: intact, small, loadable, beat bicubic, offline."""

import functools
import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from tests.media import make_clip, read_video
from vidsr.cli import main
from vidsr.errors import VidsrError, WeightsError
from vidsr.jobs.presets import load_preset
from vidsr.models import MODELS, build_model
from vidsr.models import weights as weights_mod
from vidsr.models.records import WEIGHTS_DIR
from vidsr.models.weights import SHIPPED, load_generator, sha256_of
from vidsr.train.loop import Dist

TRAINABLE = [name for name, spec in MODELS.items() if spec.trainable]
SET5 = Path(__file__).resolve().parents[2] / "shared" / "data" / "benchmarks" / "Set5"


def test_every_trainable_model_ships_weights():
    assert sorted(SHIPPED) == sorted(TRAINABLE)
    for name, record in SHIPPED.items():
        assert record.name == name
        assert record.path.parent == WEIGHTS_DIR


@pytest.mark.parametrize("name", TRAINABLE)
def test_shipped_file_is_small_fp16_and_matches_its_record(name):
    record = SHIPPED[name]
    assert record.path.stat().st_size <= 4 * 1024 * 1024
    assert sha256_of(record.path) == record.sha256
    state = torch.load(record.path, map_location="cpu", weights_only=True)
    floats = [v for v in state.values() if v.is_floating_point()]
    assert floats and all(v.dtype == torch.float16 for v in floats)
    # The state_dict fits the registry's architecture exactly (strict load, no extra arch kwargs).
    model, got = load_generator(name)
    assert got is record
    net = build_model(name)
    if hasattr(net, "fuse"):  # a reparameterisable network ships folded: one conv per layer
        net.fuse()
    assert set(state) == set(net.state_dict())
    assert not model.training


def test_damaged_shipped_file_is_refused(tmp_path, monkeypatch):
    record = SHIPPED["srresnet"]
    data = bytearray(record.path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / record.file).write_bytes(bytes(data))
    import vidsr.models.records as records_mod

    monkeypatch.setattr(records_mod, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(WeightsError, match="damaged"):
        load_generator("srresnet")
    (tmp_path / record.file).unlink()
    with pytest.raises(WeightsError, match="missing"):
        load_generator("srresnet")


def test_model_without_a_record_asks_for_weights(monkeypatch):
    monkeypatch.setattr(weights_mod, "SHIPPED", {})
    with pytest.raises(WeightsError, match="--weights"):
        load_generator("srresnet")


def test_fast_preset_uses_the_real_time_model():
    assert load_preset("fast").values["model"] == "rt"


def test_default_upscale_runs_offline_with_no_flags(tmp_path):
    src = tmp_path / "in.mp4"
    make_clip(src, width=48, height=32, frames=3)
    result = CliRunner().invoke(main, ["upscale", str(src)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = read_video(tmp_path / "in_x4.mp4")
    assert (out["frames"], out["width"], out["height"]) == (3, 192, 128)


@functools.cache
def _set5_psnr(model: str) -> float:
    result = CliRunner().invoke(main, ["eval", "--model", model, "--data", str(SET5), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)["psnr_y"]


@pytest.mark.skipif(not SET5.is_dir(), reason=f"benchmark data not found at {SET5}")
@pytest.mark.parametrize("name", TRAINABLE)
def test_shipped_model_beats_bicubic_on_set5(name):
    # MSE-trained models must clearly beat bicubic (28.43 dB); SRGAN trades PSNR for texture but
    # must not fall below it.
    margin = 0.0 if name == "srgan" else 1.0
    assert _set5_psnr(name) >= _set5_psnr("bicubic") + margin


def test_package_data_carries_the_shipped_files():
    import fnmatch

    import tomllib

    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["vidsr"]
    for record in SHIPPED.values():
        assert any(fnmatch.fnmatch(f"weights/{record.file}", p) for p in patterns), record.file


def test_srgan_and_finetune_recipes_start_from_shipped_weights():
    from vidsr.train.loop import _load_init
    from vidsr.train.recipe import build_config

    for recipe, source in (("srgan", "srresnet"), ("finetune", "srgan")):
        loaded = _load_init(build_config(recipe))
        assert loaded.kind == "shipped" and loaded.record is SHIPPED[source]
        shipped = torch.load(SHIPPED[source].path, map_location="cpu", weights_only=True)
        assert loaded.state.keys() == shipped.keys()
        assert all(torch.equal(loaded.state[k], shipped[k]) for k in shipped)


@pytest.mark.parametrize("recipe", ["fast", "finetune", "srgan", "srresnet"])
def test_init_shipped_works_for_every_recipe(recipe):
    """--init shipped starts from the recipe's init_from (else its own model) and fits it."""
    from vidsr.train.loop import _build, _load_init
    from vidsr.train.recipe import build_config, recipe_names

    assert recipe in recipe_names()
    cfg = build_config(recipe, init=Path("shipped"), device="cpu")
    loaded = _load_init(cfg)
    assert loaded.record is SHIPPED[cfg.init_from or cfg.model]
    st = _build(cfg, Dist(), torch.device("cpu"), "fp32", None, loaded, None)
    assert torch.equal(st.g.state_dict()["head.0.weight"], loaded.state["head.0.weight"].float())
    assert torch.equal(st.ema.state_dict()["head.0.weight"], st.g.state_dict()["head.0.weight"])


def test_recipe_init_from_names_the_shipped_weights(tmp_path):
    from vidsr.train.loop import _load_init
    from vidsr.train.recipe import build_config

    recipe = tmp_path / "r.toml"
    recipe.write_text('model = "srgan"\nneeds_init = true\ninit_from = "srresnet"\n')
    assert _load_init(build_config(recipe)).record is SHIPPED["srresnet"]
    recipe.write_text('model = "srgan"\nneeds_init = true\ninit_from = "nothing"\n')
    with pytest.raises(VidsrError, match="trained nothing weights"):
        _load_init(build_config(recipe))


def test_the_readme_model_table_says_what_the_records_say():
    """README, Models: each row's Set5 / Set14, web / legacy and grid index are the record's."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    rows = {}
    for line in readme.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[0].startswith("`") and cells[2][:2].isdigit():
            rows[cells[0].split("`")[1]] = cells
    assert set(rows) == set(MODELS)
    for name, record in MODELS.items():
        _, _, clean, mixes, grid, _ = rows[name]
        s = record.scores
        assert [float(v) for v in clean.split("/")] == [s.set5, s.set14], name
        assert [float(v) for v in mixes.split("/")] == [s.web, s.legacy], name
        assert float(grid) == s.grid, name
