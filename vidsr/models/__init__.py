"""The model registry: an explicit dict from name to a builder and its default architecture.

`build_model(name, **kw)` returns an untrained network; weights come from vidsr.models.weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .bicubic import Bicubic
from .discriminator import Discriminator
from .srresnet import SRResNet


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Callable[..., nn.Module]
    arch: dict[str, Any] = field(default_factory=dict)  # default keyword arguments of builder
    trainable: bool = True  # False: parameter-free, needs no weights
    description: str = ""


FAST_ARCH = {"blocks": 8, "channels": 48, "scale": 4, "upsample": "shuffle"}

MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "srresnet",
            SRResNet,
            {"blocks": 16, "channels": 64, "scale": 4},
            description="SRResNet trained with MSE: faithful, no invented texture",
        ),
        ModelSpec(
            "srgan",
            SRResNet,
            {"blocks": 16, "channels": 64, "scale": 4},
            description="SRGAN generator (SRResNet trained with VGG + adversarial loss): "
            "sharper texture",
        ),
        ModelSpec(
            "fast",
            SRResNet,
            FAST_ARCH,
            description="8 blocks x 48 channels, one PixelShuffle(4): "
            "about 7x faster than SRResNet",
        ),
        ModelSpec(
            "real",
            SRResNet,
            FAST_ARCH,  # fine-tuned from the fast weights: the two must stay one network
            description="the fast network trained on compressed, noisy LR (recipe real): "
            "smooths blocking and ringing instead of sharpening them",
        ),
        ModelSpec(
            "bicubic",
            Bicubic,
            {"scale": 4},
            trainable=False,
            description="bicubic interpolation (a = -0.5), the baseline; no weights",
        ),
    )
}


def build_model(name: str, **kw: Any) -> nn.Module:
    """A fresh network for a registry name; keyword arguments override its default architecture."""
    try:
        spec = MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; choose from {', '.join(MODELS)}") from None
    return spec.builder(**{**spec.arch, **kw})


def build_discriminator(**kw: Any) -> Discriminator:
    return Discriminator(**kw)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every BatchNorm2d that directly follows a Conv2d inside a Sequential into that conv.

    Inference only (uses running statistics); the model is modified in place and returned.
    """
    model.eval()
    for module in model.modules():
        if not isinstance(module, nn.Sequential):
            continue
        children = list(module.children())
        for i in range(len(children) - 1):
            conv, bn = children[i], children[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                module[i] = fuse_conv_bn_eval(conv, bn)
                module[i + 1] = nn.Identity()
    return model


__all__ = [
    "MODELS",
    "ModelSpec",
    "Bicubic",
    "Discriminator",
    "SRResNet",
    "build_discriminator",
    "build_model",
    "fold_batchnorm",
]
