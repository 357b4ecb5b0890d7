"""Turn a training checkpoint into the small fp16 state_dict that ships in vidsr/weights/.

`vidsr export RUN/last.pt --model srresnet -o vidsr/weights/srresnet.pt` takes the EMA weights
(what inference uses), checks they fit the registry's architecture for that model, stores every
floating tensor as fp16 and prints the sha256 and the WeightsRecord line for vidsr/weights.py.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import OutputError, WeightsError
from ..models import MODELS, build_model
from ..weights import _read_state, sha256_of, split_checkpoint


def _default(model: str, key: str):
    """The builder's own default for an architecture keyword the registry does not list."""
    param = inspect.signature(MODELS[model].builder).parameters.get(key)
    return param.default if param is not None else None


@dataclass(frozen=True)
class Exported:
    path: Path
    sha256: str
    size: int
    tensors: int
    # The worst tensor's max|fp16 - fp32| / max|fp32|: what halving the file costs.
    max_rel_change: float


def export_weights(src: Path, model: str, dst: Path, *, force: bool = False) -> Exported:
    if model not in MODELS or not MODELS[model].trainable:
        trainable = [n for n, s in MODELS.items() if s.trainable]
        raise WeightsError(f"cannot export for {model!r}; choose from {', '.join(trainable)}")
    state, arch = split_checkpoint(_read_state(Path(src)))
    # The shipped file carries no architecture: it must load strictly into the registry's model.
    wanted = build_model(model)
    ckpt_arch = {**MODELS[model].arch, **arch}
    differs = {k: v for k, v in arch.items() if MODELS[model].arch.get(k, _default(model, k)) != v}
    state = {k.removeprefix("module."): v for k, v in state.items()}
    try:
        wanted.load_state_dict(
            {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
        )
    except RuntimeError:
        differs = differs or {"state_dict": "keys or shapes"}
    if differs:
        raise WeightsError(
            f"{src} was trained with {ckpt_arch}, which differs from the registry's {model!r} "
            f"in {differs}: shipped weights must fit the registry's architecture"
        )
    half: dict[str, torch.Tensor] = {}
    worst = 0.0
    for key, value in state.items():
        if value.is_floating_point():
            if not torch.isfinite(value).all():
                raise WeightsError(f"{src}: {key} holds non-finite values (NaN or inf)")
            h = value.detach().to(torch.float16).contiguous()
            if not torch.isfinite(h).all():
                raise WeightsError(f"{key} does not fit in fp16 (values up to {value.abs().max()})")
            scale = float(value.float().abs().max()) or 1.0
            worst = max(worst, float((h.float() - value.float()).abs().max()) / scale)
            half[key] = h
        else:
            half[key] = value.detach().clone()
    dst = Path(dst)
    if dst.exists() and not force:
        raise OutputError(f"{dst} exists; pass --force to replace it")
    tmp = dst.with_name(f".{dst.name}.tmp{os.getpid()}")
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        torch.save(half, tmp)
        os.replace(tmp, dst)
    except OSError as e:
        raise OutputError(f"cannot write {dst}: {e.strerror or e}") from None
    finally:
        with contextlib.suppress(OSError):  # NotADirectoryError where the parent is a file
            tmp.unlink(missing_ok=True)
    return Exported(dst, sha256_of(dst), dst.stat().st_size, len(half), worst)
