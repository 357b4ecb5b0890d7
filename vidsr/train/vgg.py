"""The content loss's feature network: torchvision's VGG19 / VGG16 trunk, cut after one layer.

The trunk comes from `torchvision.models.vgg19` / `vgg16` (built on the meta device, so the 100M
classifier parameters we never use are never allocated) and its ImageNet weights from their
weights enums: where the machine is online they download once into the torch hub cache, as
torchvision users expect; `--vgg-weights FILE` takes any torchvision-keyed state_dict instead
(training/convert_hed_vgg16.py makes one). The input is RGB in [0, 1]; the ImageNet normalisation
happens inside, once.
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn
from torchvision import models

from ..errors import VidsrError

# phi_i,j of the SRGAN paper: after the ReLU of conv j in block i, as an index into `features`.
LAYERS: dict[str, tuple[str, int]] = {
    "vgg19_54": ("vgg19", 36),  # the paper's VGG54: features[:36]
    "vgg19_22": ("vgg19", 9),  # the paper's VGG22
    "vgg16_53": ("vgg16", 30),
    "vgg16_22": ("vgg16", 9),
}
NETWORKS = {"vgg19": models.vgg19, "vgg16": models.vgg16}
IMAGENET = {
    "vgg19": models.VGG19_Weights.IMAGENET1K_V1,
    "vgg16": models.VGG16_Weights.IMAGENET1K_V1,
}
DOWNLOAD_TIMEOUT_S = 30  # a firewalled network would otherwise hang the start of a run


class VGGFeatures(nn.Module):
    """phi(x) for RGB x in [0, 1]: a frozen, eval-mode VGG trunk cut after `layer`."""

    def __init__(self, *, layer: str = "vgg19_54", before_relu: bool = False):
        super().__init__()
        if layer not in LAYERS:
            raise VidsrError(f"unknown VGG layer {layer!r}; choose from {', '.join(LAYERS)}")
        self.arch, until = LAYERS[layer]
        # ESRGAN takes the conv's output before its ReLU: denser features, and brightness that
        # the activation would clip is still seen.
        with torch.device("meta"):
            trunk = NETWORKS[self.arch]().features[: until - 1 if before_relu else until]
        self.features = trunk.to_empty(device="cpu")
        for m in self.features.modules():  # a real (random) init until weights are loaded
            if isinstance(m, nn.Conv2d):
                m.reset_parameters()
        preset = IMAGENET[self.arch].transforms()
        self.register_buffer("mean", torch.tensor(preset.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(preset.std).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGGFeatures:
        return super().train(False)  # a fixed feature map: never in training mode

    def load_trunk(self, state: dict[str, torch.Tensor]) -> None:
        """Load a torchvision-keyed state_dict; classifier and layers past the cut ignored."""
        own = self.features.state_dict()
        trunk = {
            k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")
        }
        missing = [k for k in own if k not in trunk]
        if missing:
            raise VidsrError(
                f"the VGG weights lack {len(missing)} tensors the {self.arch} trunk needs "
                f"(first: features.{missing[0]}); is it a torchvision {self.arch} state_dict?"
            )
        try:
            self.features.load_state_dict({k: trunk[k] for k in own})
        except RuntimeError as e:
            raise VidsrError(
                f"VGG weights do not fit {self.arch}: {str(e).splitlines()[0]}"
            ) from None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features((x - self.mean) / self.std)  # (N, 3, H, W) -> (N, 512, H/16, W/16)


def hub_weight_path(arch: str) -> Path:
    """Where torchvision keeps (and looks for) the ImageNet weights of `arch`."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(IMAGENET[arch].url).name


def load_vgg(
    layer: str = "vgg19_54", weights: str | Path | None = None, *, before_relu: bool = False
) -> VGGFeatures:
    """VGGFeatures with ImageNet weights: `weights` FILE, or torchvision's (hub cache/download).

    weights="random" keeps the random initialisation: for tests only, never for a real run.
    """
    vgg = VGGFeatures(layer=layer, before_relu=before_relu)
    if weights is not None and str(weights) == "random":
        return vgg
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise VidsrError(f"--vgg-weights file not found: {path}")
        state = _read(path)
    else:
        state = _imagenet_state(vgg.arch)
    if not isinstance(state, dict):
        raise VidsrError(f"VGG weights hold a {type(state).__name__}, not a state_dict")
    vgg.load_trunk(state)
    return vgg


def _read(path: Path) -> dict[str, torch.Tensor]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
        raise VidsrError(f"cannot read VGG weights {path}: {type(e).__name__}") from None


def _imagenet_state(arch: str) -> dict[str, torch.Tensor]:
    """torchvision's ImageNet weights: from the hub cache, else downloaded into it (once)."""
    cached, weights = hub_weight_path(arch), IMAGENET[arch]
    if cached.is_file():
        return _read(cached)
    try:
        if os.environ.get("VIDSR_OFFLINE") == "1":
            raise OSError("VIDSR_OFFLINE=1")
        # torch.hub announces every download on stdout; offline that would be a second line.
        with _socket_timeout(DOWNLOAD_TIMEOUT_S), contextlib.redirect_stdout(io.StringIO()):
            state = weights.get_state_dict(progress=False, check_hash=True, weights_only=True)
    except Exception as e:  # noqa: BLE001 - no network, proxy, DNS, hash: "bring the file"
        reason = str(e).splitlines()[0][:80] if str(e) else type(e).__name__
        raise VidsrError(
            f"the content loss needs ImageNet {arch} weights and they could not be downloaded "
            f"({reason}): pass --vgg-weights FILE (a torchvision {arch} state_dict), or put "
            f"{weights.url} at {cached}"
        ) from None
    print(f"vidsr: downloaded {weights.url} to {cached} (torchvision's cache)", file=sys.stderr)
    return state


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    # torch.hub opens the URL without a timeout; the default one applies to the sockets it opens.
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)
