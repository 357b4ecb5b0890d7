"""A VGG feature extractor of our own, with torchvision's state-dict keys (`features.0.weight`).

torchvision cannot be imported here, and the perceptual loss needs only the conv trunk, so the
trunk is rebuilt from the layer table; torchvision's own vgg19-dcbb9e9d.pth loads into it as is.
The input is RGB in [0, 1]; the ImageNet normalisation happens inside, once.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from ..errors import VidsrError

# Channel counts of each conv; "M" is a 2x2 max-pool (torchvision's "cfgs" D and E).
# fmt: off
LAYOUTS: dict[str, tuple[int | str, ...]] = {
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M"),
    "vgg19": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"),
}
# fmt: on

# phi_i,j of the SRGAN paper: after the ReLU of conv j in block i, as an index into `features`.
LAYERS: dict[str, tuple[str, int]] = {
    "vgg19_54": ("vgg19", 36),  # the paper's VGG54: features[:36]
    "vgg19_22": ("vgg19", 9),  # the paper's VGG22
    "vgg16_53": ("vgg16", 30),
    "vgg16_22": ("vgg16", 9),
}

# Where torchvision keeps its ImageNet weights; we read the same cache file.
WEIGHT_FILES = {
    "vgg19": "vgg19-dcbb9e9d.pth",
    "vgg16": "vgg16-397923af.pth",
}
WEIGHT_URL = "https://download.pytorch.org/models/{}"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def make_features(layout: tuple[int | str, ...], until: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    c_in = 3
    for v in layout:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c_in, int(v), 3, padding=1), nn.ReLU(inplace=True)]
            c_in = int(v)
    return nn.Sequential(*layers[:until])


class VGGFeatures(nn.Module):
    """phi(x) for RGB x in [0, 1]: a frozen, eval-mode VGG trunk cut after `layer`."""

    def __init__(self, *, layer: str = "vgg19_54", before_relu: bool = False):
        super().__init__()
        if layer not in LAYERS:
            raise VidsrError(f"unknown VGG layer {layer!r}; choose from {', '.join(LAYERS)}")
        self.arch, until = LAYERS[layer]
        # ESRGAN takes the conv's output before its ReLU: denser features, and brightness that
        # the activation would clip is still seen.
        self.features = make_features(LAYOUTS[self.arch], until - 1 if before_relu else until)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
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
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHT_FILES[arch]


def load_vgg(
    layer: str = "vgg19_54", weights: str | Path | None = None, *, before_relu: bool = False
) -> VGGFeatures:
    """VGGFeatures with ImageNet weights: `weights` FILE, the torch hub cache, or a download.

    weights="random" keeps the random initialisation: for tests only, never for a real run.
    """
    vgg = VGGFeatures(layer=layer, before_relu=before_relu)
    if weights is not None and str(weights) == "random":
        return vgg
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise VidsrError(f"--vgg-weights file not found: {path}")
    else:
        path = hub_weight_path(vgg.arch)
        if not path.is_file():
            _download(vgg.arch, path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
        raise VidsrError(f"cannot read VGG weights {path}: {type(e).__name__}") from None
    vgg.load_trunk(state)
    return vgg


def _download(arch: str, path: Path) -> None:
    name = WEIGHT_FILES[arch]
    offline = os.environ.get("VIDSR_OFFLINE") == "1"
    try:
        if offline:
            raise OSError("VIDSR_OFFLINE=1")
        torch.hub.load_state_dict_from_url(
            WEIGHT_URL.format(name), model_dir=str(path.parent), progress=False, file_name=name
        )
    except Exception:  # noqa: BLE001 - no network, proxy, DNS: all mean "bring the file yourself"
        raise VidsrError(
            f"the content loss needs ImageNet {arch} weights and none could be downloaded: "
            f"put torchvision's {name} at {path} (or pass --vgg-weights FILE; "
            f"source: {WEIGHT_URL.format(name)})"
        ) from None
