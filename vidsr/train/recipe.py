"""Recipes: TOML files whose keys are TrainConfig fields. Flags given on the command line win.

Recipes ship inside the package (vidsr/train/recipes/) so `--recipe srgan` works from a wheel;
`--recipe path/to/file.toml` takes any other file.

A run stores the config it resolved (OUT/config.toml, and "config" in every checkpoint). `--resume`
starts from that, not from a recipe: a resumed finetune keeps its GAN loss and its lr. A value given
again that differs is applied with a line saying so when it only steers the run (steps, lr and its
schedule, how often to validate, checkpoint or sample, workers, data folders, device); it is refused
when it would make the rest of the run a different training (RESUME_FIXED: model, architecture,
crop, batch size, losses and their weights, optimiser betas, EMA, seed, augmentation, degradation).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, as a package
    import tomli as tomllib

from ..errors import ConfigError, VidsrError
from .config import TrainConfig

RECIPES_DIR = Path(__file__).parent / "recipes"
DEFAULT_RECIPE = "srresnet"
CONFIG_FILE = "config.toml"
FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}

# What a resumed run must keep: each changes what the weights are being trained towards, or the
# stream of samples (crop, batch, seed, augmentation), so that later steps no longer continue the
# earlier ones.
RESUME_FIXED = (
    "model", "arch", "crop", "batch_size", "pixel_loss", "pixel_weight", "content_weight",
    "adversarial_weight", "grid_weight", "lowpass_weight", "vgg", "vgg_before_relu", "gan_loss",
    "discriminator", "betas", "ema_decay", "seed", "degrade", "hr_downscale", "extra_downscales",
    "crop_tries", "freeze_bn",
)  # fmt: skip
# Not part of a run at all: how this invocation starts (init is unused when resuming) or shows it.
RESUME_IGNORED = ("resume", "out", "init", "needs_init", "init_from", "quiet", "tensorboard")


def recipe_names() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.toml"))


def recipe_path(recipe: str | Path) -> Path:
    path = Path(recipe)
    if path.suffix == ".toml" or path.is_file():
        if not path.is_file():
            raise ConfigError("--recipe", f"recipe file not found: {path}")
        return path
    named = RECIPES_DIR / f"{recipe}.toml"
    if not named.is_file():
        raise ConfigError(
            "--recipe", f"unknown recipe {recipe!r}; choose from {', '.join(recipe_names())}"
        )
    return named


def load_recipe(recipe: str | Path) -> dict[str, Any]:
    """The recipe's keys, every one a TrainConfig field."""
    path = recipe_path(recipe)
    try:
        with open(path, "rb") as f:
            values = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError("--recipe", f"{path} is not valid TOML: {e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError("--recipe", f"cannot read {path}: {e}") from None
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise ConfigError(
            "--recipe", f"{path}: unknown key {unknown[0]!r} (known: {', '.join(sorted(FIELDS))})"
        )
    return values


def _coerce(name: str, kind: str, value: Any) -> Any:
    # Field types are strings (postponed annotations): Paths and tuples are the only conversions.
    if value is None:
        return None
    if kind.startswith("tuple[Path"):
        return tuple(Path(v) for v in (value if isinstance(value, list | tuple) else [value]))
    if "Path" in kind:
        return Path(value)
    if kind.startswith("tuple"):
        if not isinstance(value, list | tuple):
            raise ConfigError(name, f"should be a list, got {value!r}")
        return tuple(value)
    if kind == "float" and type(value) is int:
        return float(value)
    if kind.startswith("dict") and not isinstance(value, dict):
        raise ConfigError(name, f"should be a table, got {value!r}")
    if kind in ("int", "float", "bool", "str") and type(value).__name__ != kind:
        raise ConfigError(name, f"should be {kind}, got {value!r}")
    return value


def make_config(values: dict[str, Any]) -> TrainConfig:
    """A frozen TrainConfig from plain values (a recipe's, flags', a stored config's)."""
    kw = {k: _coerce(k, str(FIELDS[k].type), v) for k, v in values.items() if v is not None}
    return TrainConfig(**kw)


def build_config(recipe: str | Path, **overrides: Any) -> TrainConfig:
    """The recipe's values, then every override that is not None, as a frozen TrainConfig."""
    values = load_recipe(recipe)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return make_config(values)


def config_toml(cfg: TrainConfig) -> str:
    """What OUT/config.toml holds: every value of the run (None, TOML has none, is left out)."""
    import tomli_w

    from .checkpoint import plain

    values = {k: v for k, v in plain(cfg).items() if v is not None}
    return "# The resolved config of this run (vidsr train); --resume reads it.\n" + tomli_w.dumps(
        values
    )


def stored_config(out: Path) -> dict[str, Any] | None:
    """The config a run stored: its last.pt's, else its config.toml; None for an older run."""
    from ..models.weights import load_file

    ckpt, toml = Path(out) / "last.pt", Path(out) / CONFIG_FILE
    if ckpt.is_file():
        obj = load_file(ckpt, mmap=True)  # mapped, not read: only the config is wanted here
        if isinstance(obj, dict) and isinstance(obj.get("config"), dict):
            return obj["config"]
    if toml.is_file():
        try:
            return tomllib.loads(toml.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise VidsrError(f"{toml} is not valid TOML ({e}): fix or delete it") from None
    return None


def stored_values(stored: dict[str, Any], say: Callable[[str], Any] = print) -> dict[str, Any]:
    """A stored config's values that this vidsr knows (one written by another version may have
    keys that come or go: those are named, not fatal)."""
    unknown = sorted(set(stored) - set(FIELDS))
    if unknown:
        say(f"resume: the stored config's {', '.join(unknown)} unknown to this vidsr; ignored")
    return {k: v for k, v in stored.items() if k in FIELDS}


def resume_config(
    out: Path, recipe: str | Path | None, flags: dict[str, Any], say: Callable[[str], Any] = print
) -> TrainConfig:
    """`vidsr train --resume`: the run's stored config, then a --recipe given again, then flags.

    A run that stored no config (older vidsr) resumes from the recipe and flags, as it started.
    """
    stored = stored_config(out)
    given = {k: v for k, v in flags.items() if v is not None}
    if stored is None:
        return build_config(recipe or DEFAULT_RECIPE, **given)
    values = stored_values(stored, say)
    if recipe is not None:
        values.update(load_recipe(recipe))
    return make_config({**values, **given})


def resume_changes(stored: TrainConfig, cfg: TrainConfig) -> list[str]:
    """A line for each value `cfg` changes in a resumed run; VidsrError for any RESUME_FIXED."""
    changed = [
        (k, getattr(stored, k), getattr(cfg, k))
        for k in FIELDS
        if k not in RESUME_IGNORED and getattr(stored, k) != getattr(cfg, k)
    ]
    fixed = [f"{k} {_show(a)} -> {_show(b)}" for k, a, b in changed if k in RESUME_FIXED]
    if fixed:
        raise VidsrError(
            f"--resume cannot change {'; '.join(fixed)} (the run was trained with the first; "
            f"start a new --out, or --init {cfg.out / 'last.pt'} to begin a new run from it)"
        )
    return [f"resume: {k} {_show(a)} -> {_show(b)} (applied)" for k, a, b in changed]


def _show(value: Any) -> str:
    from .checkpoint import plain

    return repr(plain(value))
