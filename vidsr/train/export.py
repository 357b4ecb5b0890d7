"""Turn a training checkpoint into the small fp16 state_dict that ships in vidsr/weights/.

`vidsr export RUN/last.pt --model srresnet -o vidsr/weights/srresnet.pt` takes the EMA weights
(what inference uses), checks they fit the registry's architecture for that model, folds a
reparameterisable network (rt) into its inference form (one 3x3 conv per layer), stores every
floating tensor as fp16 and prints the sha256 and the WeightsRecord line for vidsr/weights.py.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import OutputError, WeightsError
from ..media.staging import save_torch
from ..models import MODELS, build_model, builder_of
from ..models.weights import fit_state, read_weights, sha256_of


def _default(model: str, key: str):
    """The builder's own default for an architecture keyword the registry does not list."""
    param = inspect.signature(builder_of(model)).parameters.get(key)
    return param.default if param is not None else None


@dataclass(frozen=True)
class Exported:
    path: Path
    sha256: str
    size: int
    tensors: int
    # The worst tensor's max|fp16 - fp32| / max|fp32|: what halving the file costs.
    max_rel_change: float


def _halve(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], float]:
    """Every floating tensor as fp16, and the worst relative rounding that cost."""
    half: dict[str, torch.Tensor] = {}
    worst = 0.0
    for key, value in state.items():
        if value.is_floating_point():
            h = value.detach().to(torch.float16).contiguous()
            if not torch.isfinite(h).all():
                raise WeightsError(f"{key} does not fit in fp16 (values up to {value.abs().max()})")
            scale = float(value.float().abs().max()) or 1.0
            worst = max(worst, float((h.float() - value.float()).abs().max()) / scale)
            half[key] = h
        else:
            half[key] = value.detach().clone()
    return half, worst


def export_weights(src: Path, model: str, dst: Path, *, force: bool = False) -> Exported:
    if model not in MODELS or not MODELS[model].trainable:
        trainable = [n for n, s in MODELS.items() if s.trainable]
        raise WeightsError(f"cannot export for {model!r}; choose from {', '.join(trainable)}")
    loaded = read_weights(src)  # checked: tensors only, finite, arch within bounds
    state, arch = loaded.state, loaded.arch
    # The shipped file carries no architecture: it must load strictly into the registry's model.
    ckpt_arch = {**MODELS[model].arch, **arch}
    differs = {k: v for k, v in arch.items() if MODELS[model].arch.get(k, _default(model, k)) != v}
    if not differs:
        try:
            fit_state(build_model(model), state, "")
        except WeightsError:
            differs = {"state_dict": "keys or shapes"}
    if differs:
        raise WeightsError(
            f"{src} was trained with {ckpt_arch}, which differs from the registry's {model!r} "
            f"in {differs}: shipped weights must fit the registry's architecture"
        )
    net = build_model(model)
    if hasattr(net, "fuse"):  # a reparameterisable network ships folded: one conv per layer
        state = fit_state(net, state, f"{src} does not fit {model!r}").fuse().state_dict()
    half, worst = _halve(state)
    dst = Path(dst)
    if dst.exists() and not force:
        raise OutputError(f"{dst} exists; pass --force to replace it")
    save_torch(half, dst)
    return Exported(dst, sha256_of(dst), dst.stat().st_size, len(half), worst)
