"""Recipes: TOML files whose keys are TrainConfig fields. Flags given on the command line win.

Recipes ship inside the package (vidsr/train/recipes/) so `--recipe srgan` works from a wheel;
`--recipe path/to/file.toml` takes any other file.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import tomllib

from ..config import TrainConfig
from ..errors import VidsrError

RECIPES_DIR = Path(__file__).parent / "recipes"


def recipe_names() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.toml"))


def recipe_path(recipe: str | Path) -> Path:
    path = Path(recipe)
    if path.suffix == ".toml" or path.is_file():
        if not path.is_file():
            raise VidsrError(f"recipe file not found: {path}")
        return path
    named = RECIPES_DIR / f"{recipe}.toml"
    if not named.is_file():
        raise VidsrError(f"unknown recipe {recipe!r}; choose from {', '.join(recipe_names())}")
    return named


def load_recipe(recipe: str | Path) -> dict[str, Any]:
    path = recipe_path(recipe)
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise VidsrError(f"recipe {path} is not valid TOML: {e}") from None


def _coerce(name: str, kind: str, value: Any) -> Any:
    # Field types are strings (postponed annotations): Paths and tuples are the only conversions.
    if value is None:
        return None
    if kind.startswith("tuple[Path"):
        return tuple(Path(v) for v in (value if isinstance(value, list | tuple) else [value]))
    if "Path" in kind:
        return Path(value)
    if kind.startswith("tuple"):
        return tuple(value)
    if kind == "float" and isinstance(value, int):
        return float(value)
    if kind in ("int", "float", "bool", "str") and type(value).__name__ != kind:
        raise VidsrError(f"{name} should be {kind}, got {value!r}")
    return value


def build_config(recipe: str | Path, **overrides: Any) -> TrainConfig:
    """The recipe's values, then every override that is not None, as a frozen TrainConfig."""
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    values = load_recipe(recipe)
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise VidsrError(
            f"recipe {recipe_path(recipe)}: unknown key {unknown[0]!r} "
            f"(known: {', '.join(sorted(fields))})"
        )
    values.update({k: v for k, v in overrides.items() if v is not None})
    kw = {k: _coerce(k, str(fields[k].type), v) for k, v in values.items()}
    return TrainConfig(**kw)
