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
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from .config import EncodeConfig, UpscaleConfig
from .errors import VidsrError

AUTO = "auto"


def _choice(*allowed: str):
    def check(v: Any) -> str:
        if not isinstance(v, str) or v not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}")
        return v

    return check


def _model(v: Any) -> str:
    from .models import MODELS

    return _choice(*MODELS)(v)


def _batch(v: Any) -> int | str:
    if v == AUTO:
        return v
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError('expected a positive integer or "auto"')
    return v


def _tile(v: Any) -> int | str:
    if v in (AUTO, "off"):
        return v
    if isinstance(v, bool) or not isinstance(v, int) or v < 16:
        raise ValueError('expected "auto", "off" or a tile size of at least 16 pixels')
    return v


def _codec(v: Any) -> str:
    from .media.encode import CODECS

    return _choice(*CODECS)(v)


def _crf(v: Any) -> int | None:
    if v == AUTO:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 63:
        raise ValueError('expected an integer from 0 to 63, or "auto"')
    return v


def _encoder_preset(v: Any) -> str | None:
    if v == AUTO:
        return None
    if isinstance(v, bool) or not isinstance(v, (str, int)):
        raise ValueError('expected a name (x264: "veryfast"), a number (svtav1: 8) or "auto"')
    return str(v)


def _pix_fmt(v: Any) -> str | None:
    import av

    if v in ("source", AUTO):
        return None
    try:
        av.VideoFormat(v)
    except (TypeError, ValueError):
        raise ValueError('expected "source" or an FFmpeg pixel format (yuv420p10le)') from None
    return v


def _container(v: Any) -> str:
    from .media.encode import CONTAINERS

    ext = v if isinstance(v, str) and v.startswith(".") else f".{v}"
    if ext not in CONTAINERS:
        raise ValueError(f"expected one of {', '.join(e[1:] for e in CONTAINERS)}")
    return ext


def _description(v: Any) -> str:
    if not isinstance(v, str) or not v.strip() or "\n" in v.strip():
        raise ValueError("expected a one-line description")
    return v.strip()


# key -> validator returning the normalised value (None: "auto", the codec's own default)
KEYS = {
    "description": _description,
    "model": _model,
    "precision": _choice("auto", "fp32", "bf16", "fp16"),
    "batch_size": _batch,
    "tile": _tile,
    "codec": _codec,
    "crf": _crf,
    "encoder_preset": _encoder_preset,
    "pix_fmt": _pix_fmt,
    "container": _container,
}
# Values that belong to one codec: an explicit --codec that differs from the preset's drops them.
CODEC_KEYS = ("crf", "encoder_preset", "pix_fmt")


@dataclass(frozen=True)
class Preset:
    name: str
    source: str  # the file it came from, for messages
    description: str
    values: dict[str, Any]  # validated option values by KEYS name; absent keys are not set

    def describe(self) -> str:
        """The preset as `vidsr presets show` prints it: TOML the user could copy and edit."""
        lines = [f"# {self.name}: {self.source}", f"description = {_toml(self.description)}"]
        lines += [
            f"{k} = {_toml('source' if k == 'pix_fmt' and v is None else v)}"
            for k, v in self.values.items()
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
    for key, raw in data.items():
        if key not in KEYS:
            raise VidsrError(f"preset {source}: unknown key {key!r}; known keys: {', '.join(KEYS)}")
        try:
            values[key] = KEYS[key](raw)
        except ValueError as e:
            raise VidsrError(f"preset {source}: bad value {raw!r} for {key!r}: {e}") from None
    if "description" not in values:
        raise VidsrError(f"preset {source}: missing key 'description' (one line)")
    description = values.pop("description")
    preset = Preset(name, source, description, values)
    # A preset must describe something that can run: ProRes into .webm fails here, by file name.
    from .media.encode import check_encode

    check_encode(_encode_of(values), values.get("container", ".mkv"), where=f"preset {source}")
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


def _encode_of(values: dict[str, Any]) -> EncodeConfig:
    return EncodeConfig(
        codec=values.get("codec", EncodeConfig.codec),
        crf=values.get("crf"),
        preset=values.get("encoder_preset"),
        pix_fmt=values.get("pix_fmt"),
    )


_UPSCALE_FIELDS = {f.name for f in fields(UpscaleConfig)}


def build_config(preset: str | Path | Preset | None = None, **given: Any) -> UpscaleConfig:
    """An UpscaleConfig from a preset and explicit values; `None` in `given` means "not given".

    Precedence: explicit value > preset value > UpscaleConfig/EncodeConfig default. An explicit
    `codec` other than the preset's drops the preset's crf, encoder_preset and pix_fmt (they
    belong to the preset's codec). `encode`, when given, replaces every encoder setting.
    """
    values: dict[str, Any] = dict(load_preset(preset).values) if preset is not None else {}
    given = {k: v for k, v in given.items() if v is not None}
    if "codec" in given and given["codec"] != values.get("codec", given["codec"]):
        for key in CODEC_KEYS:
            values.pop(key, None)
    values.update(given)
    encode = values.pop("encode", None)
    options = values.pop("options", None)
    if encode is None:
        encode = _encode_of(values)
        if options:
            encode = EncodeConfig(**{**encode.__dict__, "options": dict(options)})
    for key in ("codec", "crf", "encoder_preset", "pix_fmt"):
        values.pop(key, None)
    if "container" in values:
        values["container"] = _container(values["container"])
    unknown = set(values) - _UPSCALE_FIELDS
    if unknown:
        raise TypeError(f"unknown option(s): {', '.join(sorted(unknown))}")
    return UpscaleConfig(**values, encode=encode)


__all__ = ["KEYS", "Preset", "build_config", "builtin_names", "builtin_presets", "load_preset"]
