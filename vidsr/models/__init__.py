"""The models: one record per built-in model (vidsr.models.records: plain data, what the option
table and help texts read without loading torch) and the networks they build
(vidsr.models.networks, loaded on first use: `from vidsr.models import build_model`).

    net = build_model("srresnet")  # SRResNet(blocks=16, channels=64, scale=4), untrained
"""

from __future__ import annotations

from typing import Any

from .records import BUILTIN_MODELS, RECORDS, TRAINED_MODELS, ModelRecord, Scores

# The registry: one record per model, by the name --model takes.
MODELS: dict[str, ModelRecord] = RECORDS

_NETWORK_NAMES = {
    "NETWORKS",
    "Bicubic",
    "Discriminator",
    "RealTimeSR",
    "SRResNet",
    "build_discriminator",
    "build_model",
    "builder_of",
    "fold_batchnorm",
}


def __getattr__(name: str) -> Any:
    """The torch side (vidsr.models.networks) on first use, so that naming a model does not
    load torch (a CLI's --help, the option table)."""
    if name in _NETWORK_NAMES:
        from . import networks

        return getattr(networks, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BUILTIN_MODELS",
    "MODELS",
    "RECORDS",
    "TRAINED_MODELS",
    "ModelRecord",
    "Scores",
    *sorted(_NETWORK_NAMES),
]
