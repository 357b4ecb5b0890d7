"""The one reader of weights files, and the records of the weights that ship inside the package.

A record names a file in vidsr/weights/, its sha256 (checked at load), the architecture it was
trained with and the pixel range its input and output use. `read_weights` reads any file a user
may hand us (a plain state_dict, an export, a `vidsr train` checkpoint or snapshot) and
`read_shipped` a packaged one; both check what they read (tensors only, finite, an architecture
within bounds) before anything is built. `load_generator` turns either into a ready network.
"""

from __future__ import annotations

import functools
import pickletools
import re
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import WeightsError
from . import MODELS, build_model
from .download import sha256_of
from .records import COMMUNITY, RECORDS, ModelRecord

# What vidsr.train.checkpoint writes: a dict of state_dicts + config + step + this format tag.
CHECKPOINT_FORMAT = "vidsr-checkpoint"
CHECKPOINT_VERSION = 1


# The models whose weights ship in the package (a build without them: an empty dict).
SHIPPED: dict[str, ModelRecord] = {name: r for name, r in RECORDS.items() if r.file}


# Bounds on every architecture value read from a file or a recipe: a checkpoint whose "arch" says
# {"blocks": 10**7} must be refused before it is built (it would take gigabytes), not after.
ARCH_LIMITS: dict[str, range | tuple[str | int, ...]] = {
    "blocks": range(1, 65),
    "channels": range(8, 257),
    "scale": (2, 4, 8),
    "upsample": ("progressive", "shuffle"),
}
DISCRIMINATOR_LIMITS: dict[str, range | tuple[str | int, ...]] = {
    "channels": range(8, 257),
    "blocks": range(1, 13),
    "dense": range(1, 4097),
    "pool": range(1, 17),
}


def _describe(allowed: range | tuple) -> str:
    if isinstance(allowed, range):
        return f"an integer {allowed.start}..{allowed.stop - 1}"
    return "one of " + ", ".join(map(repr, allowed))


def check_arch(arch: Any, where: str, limits: dict = ARCH_LIMITS) -> dict[str, Any]:
    """`arch` as a dict whose every key is known and every value within its bounds, or one line."""
    if not isinstance(arch, dict):
        raise WeightsError(
            f"{where}: arch is a {type(arch).__name__}, not a table of {', '.join(limits)}"
        )
    for key, value in arch.items():
        allowed = limits.get(key)
        if allowed is None:
            raise WeightsError(f"{where}: unknown arch key {key!r} (known: {', '.join(limits)})")
        if isinstance(allowed, range):
            ok = type(value) is int and value in allowed  # bool is not an int here
        else:
            ok = type(value) is type(allowed[0]) and value in allowed
        if not ok:
            shown = repr(value) if len(repr(value)) < 40 else f"{repr(value)[:40]}..."
            raise WeightsError(f"{where}: arch {key} = {shown} is not {_describe(allowed)}")
    return dict(arch)


@dataclass(frozen=True)
class LoadedWeights:
    """What a weights file holds, checked: the generator's tensors and how to build for them."""

    state: dict[str, torch.Tensor]  # the generator's (EMA first), "module." prefixes removed
    arch: dict[str, Any]  # architecture keywords within ARCH_LIMITS; {} when the file says none
    model_name: str | None  # the registry name the file was made for, when it says
    kind: str  # "shipped", "export" (fp16 state_dict), "state_dict" or "checkpoint"
    path: Path
    record: ModelRecord | None = None  # kind "shipped"
    checkpoint: dict[str, Any] | None = None  # kind "checkpoint": the whole dict (for --resume)


def load_file(path: Path, *, mmap: bool = False) -> Any:
    """The file's contents, nothing in it run: safetensors, or torch.load with weights_only (a
    pickle that asks for any global but tensors and dicts is refused); any failure is one line
    that says what the file is, never PyTorch's advice to load it unsafely."""
    path = Path(path)
    if path.is_dir():
        raise WeightsError(f"{path} is a folder, not a weights file")
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    if path.stat().st_size == 0:
        raise WeightsError(f"{path} is empty (0 bytes): not a weights file")
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file as load_safetensors

            return dict(load_safetensors(str(path), device="cpu"))
        _check_archive(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Detected pickle protocol 4 ...": not the user's
            return torch.load(path, map_location="cpu", weights_only=True,
                              mmap=mmap and zipfile.is_zipfile(path))  # fmt: skip
    except WeightsError:
        raise
    except Exception as e:  # noqa: BLE001 - any failure to read is the same user error
        unsafe = _unsafe_global(path)
        if unsafe is not None:
            raise WeightsError(
                f"{path} is not a plain weights file: loading it would run {unsafe}; refused"
            ) from None
        raise WeightsError(
            f"cannot read weights from {path}: not a PyTorch .pt/.pth or .safetensors file "
            f"({_load_failure(e)})"
        ) from None


# What a PyTorch weights file may name: tensors, their storages, the dicts that hold them.
_SAFE_GLOBALS = ("torch.", "collections.OrderedDict", "_codecs.encode", "builtins.")


def _check_archive(path: Path) -> None:
    """A zip (torch.save's format) whose entries stay inside it, with PyTorch's records."""
    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError) as e:
        raise WeightsError(f"{path} is a damaged zip archive, not a weights file ({e})") from None
    outside = next((n for n in names if n.startswith("/") or ".." in Path(n).parts), None)
    if outside is not None:
        raise WeightsError(
            f"{path} is not a weights file: its zip archive names a path outside itself "
            f"({outside!r}); refused"
        )
    if not any(n.endswith("/data.pkl") or n == "data.pkl" for n in names):
        raise WeightsError(f"{path} is a zip archive without PyTorch's records, not a weights file")


def _pickle_bytes(path: Path) -> bytes:
    """The pickle inside a weights file: the file itself, or the archive's data.pkl."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            name = next(n for n in z.namelist() if n.endswith("data.pkl"))
            return z.read(name)
    return path.read_bytes()


def _unsafe_global(path: Path) -> str | None:
    """The first callable the file's pickle would import beyond what weights need, read from
    its opcodes (pickletools runs nothing); None if it names none, or is no pickle at all."""
    try:
        strings: list[str] = []
        for op, arg, _ in pickletools.genops(_pickle_bytes(path)):
            if op.name in ("GLOBAL", "INST"):
                name = str(arg).replace(" ", ".")
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                name = f"{strings[-2]}.{strings[-1]}"
            else:
                if isinstance(arg, str):
                    strings.append(arg)
                continue
            if not name.startswith(_SAFE_GLOBALS):
                return name
    except Exception:  # noqa: BLE001 - not a pickle (random bytes): nothing it would run
        return None
    return None


def _load_failure(e: BaseException) -> str:
    """What torch.load said, without its advice: the unpickler's own reason, else the first
    line, at most 120 characters."""
    text = str(e).strip()
    if "PytorchStreamReader" in text or "central directory" in text:
        return "its archive is damaged or cut short"
    if re.search(r"Unsupported operand \d+", text):
        return "its bytes are no pickle a weights file holds"
    detail = re.search(r"WeightsUnpickler error:\s*(.+?)\s*(?:\n\n|Check the documentation|$)",
                       text, re.S)  # fmt: skip
    reason = detail.group(1) if detail else (text.splitlines()[0] if text else type(e).__name__)
    reason = re.sub(r"\s*\(Could this error message be improved\?.*", "", reason)
    return " ".join(reason.split())[:120]


def _kind(value: Any) -> str:
    return "dict" if isinstance(value, dict) else type(value).__name__  # OrderedDict reads oddly


def check_state(state: Any, where: str) -> dict[str, torch.Tensor]:
    """A non-empty dict of finite tensors, "module." (DDP) prefixes removed, or one line."""
    if not isinstance(state, dict) or not state:
        what = "empty" if isinstance(state, dict) else f"a {_kind(state)}"
        raise WeightsError(f"{where} is {what}, not a state_dict of tensors")
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise WeightsError(f"{where}: {str(key)[:60]!r} is a {_kind(value)}, not a tensor")
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise WeightsError(f"{where}: {key} holds non-finite values (NaN or inf)")
    return {str(k).removeprefix("module."): v for k, v in state.items()}


def _from_checkpoint(obj: Any, path: Path) -> LoadedWeights | None:
    """A `vidsr train` checkpoint or snapshot: "ema" (what inference wants) or "generator"."""
    if not isinstance(obj, dict) or not ({"generator", "ema"} & obj.keys()):
        return None
    key = "ema" if obj.get("ema") is not None else "generator"
    state = check_state(obj.get(key), f"{path} ({key} weights)")
    arch = check_arch(obj.get("arch") or {}, str(path))
    name = obj.get("model")
    if name is not None and not isinstance(name, str):
        raise WeightsError(f"{path}: its model name is a {type(name).__name__}, not a string")
    return LoadedWeights(state, arch, name, "checkpoint", path, checkpoint=obj)


def _from_state_dict(obj: Any, path: Path) -> LoadedWeights | None:
    """A plain state_dict; an export (`vidsr export`) is one in fp16."""
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        return None
    state = check_state(obj, str(path))
    floats = [v for v in state.values() if v.is_floating_point()]
    kind = "export" if floats and all(v.dtype == torch.float16 for v in floats) else "state_dict"
    return LoadedWeights(state, {}, None, kind, path)


def _from_community_layout(obj: Any, path: Path) -> LoadedWeights | None:
    """BasicSR / Real-ESRGAN / chaiNNer layouts ({"params_ema": ...}, {"params": ...},
    {"state_dict": ...}): spandrel's canonical form of the generator's tensors."""
    if not isinstance(obj, dict):
        return None
    from spandrel.__helpers.canonicalize import canonicalize_state_dict

    try:
        state = canonicalize_state_dict(obj)
    except Exception:  # noqa: BLE001 - not a layout spandrel knows either
        return None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        return None
    return LoadedWeights(check_state(state, str(path)), {}, None, "community", path)


# Tried in order; the first that recognises the file reads it. The community layouts go last.
READERS = (_from_checkpoint, _from_state_dict, _from_community_layout)


def read_weights(path: str | Path) -> LoadedWeights:
    """Any weights file a user hands us, checked, or a WeightsError of one line."""
    path = Path(path)
    obj = load_file(path)
    for reader in READERS:
        loaded = reader(obj, path)
        if loaded is not None:
            return loaded
    if isinstance(obj, dict):
        key, value = next(
            ((k, v) for k, v in obj.items() if not isinstance(v, torch.Tensor)), (None, None)
        )
        raise WeightsError(
            f"{path} is neither a state_dict nor a vidsr checkpoint: {str(key)[:60]!r} holds a "
            f"{_kind(value)}, not a tensor"
        )
    raise WeightsError(f"{path} holds a {_kind(obj)}, not a state_dict or checkpoint")


def read_shipped(name: str) -> LoadedWeights:
    """The packaged weights of registry model `name`, sha256-checked."""
    record = SHIPPED.get(name)
    if record is None:
        raise WeightsError(
            f"no trained weights ship for {name!r} yet: pass --weights FILE "
            f"(a state_dict or a `vidsr train` checkpoint), or train them with "
            f"`vidsr train --recipe {name}`"
        )
    path = record.path
    if not path.is_file():
        raise WeightsError(f"shipped weights for {name!r} are missing: {path} (reinstall vidsr)")
    digest = sha256_of(path)
    if digest != record.sha256:
        raise WeightsError(f"shipped weights {path} are damaged (sha256 {digest[:12]}...)")
    loaded = read_weights(path)
    arch = check_arch({**record.arch, **loaded.arch}, str(path))
    return LoadedWeights(loaded.state, arch, name, "shipped", path, record=record)


def fit_state(model: nn.Module, state: dict[str, torch.Tensor], where: str) -> nn.Module:
    """Load `state` strictly into `model` (float tensors cast to the model's fp32), or one line."""
    try:
        model.load_state_dict(
            {k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=True
        )
    except RuntimeError as e:
        missing = len(set(model.state_dict()) - set(state))
        extra = len(set(state) - set(model.state_dict()))
        raise WeightsError(
            f"{where} ({missing} missing and {extra} unexpected keys, or mismatched shapes): "
            f"{str(e).splitlines()[0][:200]}"
        ) from None
    return model


def vidsr_model_of(loaded: LoadedWeights) -> str | None:
    """The registry name a file's weights are for, when it is one of vidsr's own files."""
    if loaded.model_name in MODELS:
        return loaded.model_name
    if loaded.kind == "checkpoint":
        return None
    shapes = {k: tuple(v.shape) for k, v in loaded.state.items()}
    for name, spec in MODELS.items():
        if spec.trainable:
            net = build_model(name)
            forms = [net.state_dict()]
            if hasattr(net, "fuse"):  # a reparameterisable network: its file may be either form
                forms.append(net.fuse().state_dict())
            if any({k: tuple(v.shape) for k, v in f.items()} == shapes for f in forms):
                return name
    return None


def load_network(model: str, weights: str | Path | None) -> tuple[nn.Module, tuple[float, float]]:
    """The network for `--model NAME [--weights FILE]`, or for `--model auto` with a file of
    any kind: vidsr's own (shipped, export, state_dict, training checkpoint) or a community
    model file, built by spandrel (vidsr.models.community); a community model by its id is
    fetched (downloaded once, verified) first. Returns (eval network, value range)."""
    if model in COMMUNITY:
        from .download import fetch

        weights, model = fetch(COMMUNITY[model]), "auto"
    if model != "auto":
        net, record = load_generator(model, weights)
        return net, record.value_range if record is not None else (0.0, 1.0)
    if weights is None:
        raise WeightsError("--model auto needs --weights FILE (or --model FILE)")
    loaded = read_weights(weights)
    name = vidsr_model_of(loaded)
    if name is not None:
        net = build_generator(name, loaded).eval()
        net.registry_name = name  # what the run's first line calls it
        return net, (0.0, 1.0)
    from .community import load_community

    return load_community(loaded.path, loaded.state), (0.0, 1.0)


def scale_of(model: str, weights: str | Path | None = None) -> int:
    """A model's own scale, before anything is built: its record's, or for `--model auto` the
    file's architecture (read, not run; once per file version)."""
    if model in MODELS:
        return MODELS[model].scale
    if model in COMMUNITY:
        return COMMUNITY[model].scale
    if weights is None or not Path(weights).is_file():
        return 4  # nothing to read yet: the load will say what is wrong
    return _file_scale(str(weights), Path(weights).stat().st_mtime_ns)


@functools.cache
def _file_scale(path: str, mtime_ns: int) -> int:
    info = describe_weights(path)
    return MODELS[info].scale if isinstance(info, str) else info.scale


def describe_weights(path: str | Path):
    """What a file is: the registry name of one of vidsr's own files, or a community file's
    vidsr.models.community.ModelInfo (architecture, scale, parameters, precisions)."""
    loaded = read_weights(path)
    name = vidsr_model_of(loaded)
    if name is not None:
        return name
    from .community import load_community

    return load_community(loaded.path, loaded.state).info


def build_generator(name: str, loaded: LoadedWeights) -> nn.Module:
    """Registry model `name` in the file's architecture, holding the file's weights, ready for
    inference: a reparameterisable network (rt) is folded into one conv per layer."""
    model = build_model(name, **loaded.arch)
    model = fit_state(model, loaded.state, f"{loaded.path} does not fit model {name!r}")
    return model.fuse() if hasattr(model, "fuse") else model


def load_generator(
    name: str, weights: str | Path | None = None
) -> tuple[nn.Module, ModelRecord | None]:
    """An eval-mode network for `name` with weights from `weights`, or the shipped file.

    Raises WeightsError when a trainable model has no weights: random weights are never run.
    """
    if name not in MODELS:
        raise WeightsError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    if not MODELS[name].trainable:
        return build_model(name).eval(), None
    loaded = read_shipped(name) if weights is None else read_weights(weights)
    return build_generator(name, loaded).eval(), loaded.record
