"""Turn a training checkpoint into the small fp16 state_dict that ships in vidsr/weights/.

`vidsr export RUN/last.pt --model srresnet -o vidsr/weights/srresnet.pt` takes the EMA weights
(what inference uses), checks they fit the registry's architecture for that model, stores every
floating tensor as fp16 and prints the sha256 and the WeightsRecord line for vidsr/weights.py.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import OutputError, WeightsError
from ..models import MODELS
from ..weights import _read_state, load_generator, sha256_of, split_checkpoint


@dataclass(frozen=True)
class Exported:
    path: Path
    sha256: str
    size: int
    tensors: int
    max_rel_change: (
        float  # worst tensor's max|fp16 - fp32| / max|fp32|: the cost of halving the file
    )


def export_weights(src: Path, model: str, dst: Path, *, force: bool = False) -> Exported:
    if model not in MODELS or not MODELS[model].trainable:
        trainable = [n for n, s in MODELS.items() if s.trainable]
        raise WeightsError(f"cannot export for {model!r}; choose from {', '.join(trainable)}")
    state, arch = split_checkpoint(_read_state(Path(src)))
    wanted = MODELS[model].arch
    differs = {k: v for k, v in arch.items() if k in wanted and wanted[k] != v}
    if differs:
        raise WeightsError(
            f"{src} was trained with {differs}, but model {model!r} is {wanted}: "
            "shipped weights must fit the registry's architecture"
        )
    # Load once in fp32 through the same path inference uses: a bad fit fails here, not at ship.
    load_generator(model, src)
    state = {k.removeprefix("module."): v for k, v in state.items()}
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
    dst = Path(dst)
    if dst.exists() and not force:
        raise OutputError(f"{dst} exists; pass --force to replace it")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp{os.getpid()}")
    try:
        torch.save(half, tmp)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    return Exported(dst, sha256_of(dst), dst.stat().st_size, len(half), worst)
