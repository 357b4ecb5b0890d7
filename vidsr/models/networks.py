"""The networks behind the records: the class each record's `network` names, and
`build_model(name, **kw)`, an untrained network (weights come from vidsr.models.weights)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .bicubic import Bicubic
from .discriminator import Discriminator
from .ecbsr import RealTimeSR
from .records import RECORDS, ModelRecord
from .srresnet import SRResNet

# The classes behind the records' `network` names.
NETWORKS: dict[str, Callable[..., nn.Module]] = {
    "srresnet": SRResNet,
    "ecbsr": RealTimeSR,
    "bicubic": Bicubic,
}
# The registry: one record per model (vidsr.models.records), by the name --model takes.
MODELS: dict[str, ModelRecord] = RECORDS


def builder_of(name: str) -> Callable[..., nn.Module]:
    return NETWORKS[MODELS[name].network]


def build_model(name: str, **kw: Any) -> nn.Module:
    """A fresh network for a registry name; keyword arguments override its default architecture."""
    try:
        record = MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; choose from {', '.join(MODELS)}") from None
    return NETWORKS[record.network](**{**record.arch, **kw})


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
    "NETWORKS",
    "Bicubic",
    "Discriminator",
    "RealTimeSR",
    "SRResNet",
    "build_discriminator",
    "builder_of",
    "build_model",
    "fold_batchnorm",
]
