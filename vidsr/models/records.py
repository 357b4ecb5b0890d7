"""One record per built-in model, in the spirit of torchvision's Weights enums: what network it
is (architecture and its arguments, scale, value range), the weights file that ships for it (name
and sha256) and what those weights score. Plain data, no torch: the option table and help texts
read the names from here, vidsr.models builds the networks, vidsr.models.weights reads the files,
and the README's model table is checked against the scores (tests/test_shipped.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WEIGHTS_DIR = Path(__file__).parents[1] / "weights"  # vidsr/weights, shipped in the wheel


@dataclass(frozen=True)
class Scores:
    """`vidsr eval` of the shipped weights (fp32, 4-px shave, Y of BT.601): Set5 and Set14 PSNR-Y
    in dB on clean LR, Set14 with the `web` and `legacy` compressed mixes, and the Set14 grid
    index (a pattern locked to the sub-pixel phase; natural images 0.01-0.02)."""

    set5: float
    set14: float
    web: float
    legacy: float
    grid: float


@dataclass(frozen=True)
class ModelRecord:
    name: str  # what --model takes
    network: str  # the class vidsr.models builds: "srresnet" (SRResNet) or "bicubic"
    arch: dict[str, Any] = field(default_factory=dict)  # its keyword arguments
    description: str = ""
    file: str | None = None  # the shipped weights, in vidsr/weights/; None: none ship
    sha256: str = ""
    made: str = ""  # how the shipped weights were trained (training/RESULTS.md has the rest)
    scores: Scores | None = None
    value_range: tuple[float, float] = (0.0, 1.0)  # what pixel 0 and full scale mean, in and out

    @property
    def trainable(self) -> bool:
        """Has weights to learn (bicubic has none)."""
        return self.network != "bicubic"

    @property
    def scale(self) -> int:
        return int(self.arch.get("scale", 4))

    @property
    def path(self) -> Path | None:
        return WEIGHTS_DIR / self.file if self.file else None


FAST_ARCH = {"blocks": 8, "channels": 48, "scale": 4, "upsample": "shuffle"}
SRRESNET_ARCH = {"blocks": 16, "channels": 64, "scale": 4}

# Made with the recipes in vidsr/train/recipes/ and `vidsr export`; the scores are
# `vidsr eval --model NAME --data Set5|Set14 [--degrade web|legacy] --json`, no --weights.
RECORDS: dict[str, ModelRecord] = {
    r.name: r
    for r in (
        ModelRecord(
            "srresnet",
            "srresnet",
            SRRESNET_ARCH,
            "SRResNet trained with MSE: faithful, no invented texture",
            "srresnet.pt",
            "0e5a2a2451d9b254e5078d4418cf29cfd3585edc96f2d18e232723c45534909b",
            "recipe srresnet, 11.6k steps (MSE), then 1k steps of L1 at 128 px crops with a"
            " warm-up + cosine from 2e-4, on the 2-core CPU",
            Scores(set5=30.56, set14=27.53, web=25.65, legacy=26.02, grid=0.027),
        ),
        ModelRecord(
            "srgan",
            "srresnet",
            SRRESNET_ARCH,
            "SRGAN generator (SRResNet trained with VGG + adversarial loss): sharper texture",
            "srgan.pt",
            "5205da033551b9068f193bf567cd8f8d5f5f8b042ae35303e91e48ec8df50d0b",
            "from srresnet: L1 pixel + 0.2 VGG16 conv2_2 (before ReLU) + 1e-2 RaGAN + 200"
            " lowpass + 2 grid, 300 steps on the 2-core CPU",
            Scores(set5=29.75, set14=27.07, web=25.22, legacy=25.55, grid=0.037),
        ),
        ModelRecord(
            "fast",
            "srresnet",
            FAST_ARCH,
            "8 blocks x 48 channels, one PixelShuffle(4): about 7x faster than SRResNet",
            "fast.pt",
            "467551206c78a66755f07bcaeec14b32a41f88e519d7364fc4617c10e826211c",
            "recipe fast at lr 5e-4, 17.4k steps (MSE), then 1.5k steps of L1 with a warm-up +"
            " cosine from 2e-4, then 3k more at 128 px crops, on the 2-core CPU",
            Scores(set5=30.73, set14=27.65, web=25.64, legacy=26.01, grid=0.027),
        ),
        ModelRecord(
            "real",
            "srresnet",
            FAST_ARCH,  # fine-tuned from the fast weights: the two must stay one network
            "the fast network trained on compressed, noisy LR (recipe real): smooths blocking"
            " and ringing instead of sharpening them",
            "real.pt",
            "6c36ebb2e3700bc77eea67a0d35e5e700650af66f27aaf3cae5b4fd2e01a9f04",
            "recipe real from the shipped fast (--degrade real, three quarters compressed"
            " once), 500 steps of L1 on the 2-core CPU",
            Scores(set5=30.09, set14=27.26, web=25.70, legacy=26.06, grid=0.029),
        ),
        ModelRecord(
            "bicubic",
            "bicubic",
            {"scale": 4},
            "bicubic interpolation (a = -0.5), the baseline; no weights",
            scores=Scores(set5=28.43, set14=26.09, web=25.09, legacy=25.33, grid=0.005),
        ),
    )
}

BUILTIN_MODELS = tuple(RECORDS)
TRAINED_MODELS = tuple(name for name, r in RECORDS.items() if r.trainable)

__all__ = [
    "BUILTIN_MODELS",
    "RECORDS",
    "TRAINED_MODELS",
    "WEIGHTS_DIR",
    "ModelRecord",
    "Scores",
]
