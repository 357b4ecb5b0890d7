"""An exponential moving average of a network's whole state_dict (timm's ModelEmaV3 habit).

Buffers count too: BatchNorm running statistics are averaged alongside the weights (integer
buffers such as num_batches_tracked are copied), so the EMA copy is a complete model for eval.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class ModelEma:
    def __init__(self, model: nn.Module, *, decay: float = 0.999, warmup: bool = True):
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = decay
        self.warmup = warmup

    def decay_at(self, step: int) -> float:
        # Early on the average would be mostly the random init; the warm-up lets it follow quickly.
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + step) / (10 + step))

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        d = self.decay_at(step)
        for e, m in zip(
            self.module.state_dict().values(), model.state_dict().values(), strict=True
        ):
            if e.is_floating_point():
                e.lerp_(m.detach().to(e.dtype), 1.0 - d)
            else:
                e.copy_(m)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.module.load_state_dict(state)
