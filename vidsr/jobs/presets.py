"""Presets: one word for a speed/quality trade-off, kept as TOML files shipped inside the package.

A preset names the model, precision, batch and tile policy, encoder, crf, encoder speed preset,
pixel-format policy and default container. It only fills defaults: whatever the caller gives
explicitly (a CLI flag, a keyword argument) wins. `build_config` is the one place that rule lives,
so the CLI, the Python API and the watcher resolve presets the same way.

The files live in vidsr/presets/ (the top-level presets/ of a checkout points there), so the
installed package and the checkout read the same bytes.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from ..config import CODEC_BOUND, OPTION_NAMES, OPTIONS, UpscaleConfig, build_upscale_config
from ..errors import VidsrError

# The keys a preset may set: every upscale option a preset is allowed to choose, plus its text.
PRESET_KEYS = tuple(o.name for o in OPTIONS if o.preset)


def _description(v: Any) -> str:
    if not isinstance(v, str) or not v.strip() or "\n" in v.strip():
        raise ValueError("expected a one-line description")
    return v.strip()


@dataclass(frozen=True)
class Preset:
    name: str
    source: str  # the file it came from, for messages
    description: str
    values: dict[str, Any]  # validated option values by KEYS name; absent keys are not set

    def describe(self) -> str:
        """The preset as `vidsr presets show` prints it: TOML the user could copy and edit."""
        lines = [f"# {self.name}: {self.source}", f"description = {_toml(self.description)}"]
        shown = {"pix_fmt": "source", "container": "source"}
        lines += [
            f"{k} = {_toml(shown.get(k) if v is None else v)}" for k, v in self.values.items()
        ]
        return "\n".join(lines)


def _toml(v: Any) -> str:
    if v is None:
        return '"auto"'
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(v)


def _builtin_dir():
    return resources.files("vidsr") / "presets"


def builtin_names() -> list[str]:
    return sorted(p.name[:-5] for p in _builtin_dir().iterdir() if p.name.endswith(".toml"))


def parse_preset(text: str, *, name: str, source: str) -> Preset:
    """Validate a preset's TOML text; VidsrError naming key and `source` at the first problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise VidsrError(f"preset {source}: not valid TOML ({e})") from None
    values: dict[str, Any] = {}
    known = ("description", *PRESET_KEYS)
    for key, raw in data.items():
        if key not in known:
            raise VidsrError(
                f"preset {source}: unknown key {key!r}; known keys: {', '.join(known)}"
            )
        parse = _description if key == "description" else OPTION_NAMES[key].parse
        try:
            values[key] = parse(raw)
        except ValueError as e:
            raise VidsrError(f"preset {source}: bad value {raw!r} for {key!r}: {e}") from None
    if "description" not in values:
        raise VidsrError(f"preset {source}: missing key 'description' (one line)")
    description = values.pop("description")
    preset = Preset(name, source, description, values)
    # A preset must describe something that can run: ProRes into .webm fails here, by file name.
    from ..media.encode import check_encode

    try:
        encode = build_upscale_config(values).encode
    except VidsrError as e:
        raise VidsrError(f"preset {source}: {e}") from None
    check_encode(encode, values.get("container") or ".mkv", where=f"preset {source}")
    return preset


def load_preset(name_or_path: str | Path) -> Preset:
    """A shipped preset by name (`fast`), or a preset file (`my.toml`)."""
    if isinstance(name_or_path, Preset):
        return name_or_path
    text = str(name_or_path)
    path = Path(text)
    if path.suffix == ".toml" or path.exists() or "/" in text or "\\" in text:
        try:
            data = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise VidsrError(f"no such preset file: {path}") from None
        except (OSError, UnicodeDecodeError) as e:
            raise VidsrError(f"cannot read preset file {path}: {e}") from None
        return parse_preset(data, name=path.stem, source=str(path))
    resource = _builtin_dir() / f"{text}.toml"
    if not resource.is_file():
        raise VidsrError(
            f"unknown preset {text!r}; choose from {', '.join(builtin_names())} "
            "or give a .toml file"
        )
    return parse_preset(resource.read_text(encoding="utf-8"), name=text, source=f"{text}.toml")


def builtin_presets() -> list[Preset]:
    return [load_preset(name) for name in builtin_names()]


def resolve_options(preset: Preset | None, given: dict[str, Any]) -> dict[str, Any]:
    """Option values by precedence: given (not None) > preset > the option's default.

    An explicit codec other than the preset's drops the preset's crf, encoder preset and pixel
    format: they were chosen for the preset's codec.
    """
    values = dict(preset.values) if preset is not None else {}
    given = {k: v for k, v in given.items() if v is not None}
    if "codec" in given and given["codec"] != values.get("codec", given["codec"]):
        for key in CODEC_BOUND:
            values.pop(key, None)
    values.update(given)
    return values


def build_config(preset: str | Path | Preset | None = None, **given: Any) -> UpscaleConfig:
    """An UpscaleConfig from a preset and explicit values; `None` in `given` means "not given"."""
    loaded = load_preset(preset) if preset is not None else None
    return build_upscale_config(resolve_options(loaded, given))


__all__ = [
    "PRESET_KEYS",
    "Preset",
    "resolve_options",
    "build_config",
    "builtin_names",
    "builtin_presets",
    "load_preset",
]
