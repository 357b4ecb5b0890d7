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
    network: str  # the class vidsr.models builds: "srresnet", "ecbsr" (RealTimeSR) or "bicubic"
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
RT_ARCH = {"blocks": 4, "channels": 16, "scale": 4}

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
            "616e6f30d08f885dc012205d2f60445ba1ac75fe8554b5d1bd0ccf82c558f089",
            "recipe srresnet, 11.6k steps (MSE), then 1k steps of L1 at 128 px crops with a"
            " warm-up + cosine from 2e-4, then 4k more (L1, 128 px, photos at 1/2 size and 1/3,"
            " video frames of 480+ lines) on the 2-core CPU",
            Scores(set5=30.66, set14=27.65, web=25.66, legacy=26.04, grid=0.024),
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
            "rt",
            "ecbsr",
            RT_ARCH,
            "real-time on a CPU: 4 blocks x 16 channels (ECBSR-style, each block folded into one"
            " 3x3 conv) plus bicubic",
            "rt.pt",
            "7f268bdf7596920ccfb8beaf3b392b870a5caeb621df6595b326681e2446bb1e",
            "recipe rt from scratch, 12k steps of L1 (batch 32, 128 px crops from the prepared"
            " cache), lr 1e-3 cosine, one thread of the 2-core CPU, about an hour",
            Scores(set5=30.54, set14=27.54, web=25.63, legacy=25.97, grid=0.014),
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


@dataclass(frozen=True)
class CommunityRecord:
    """A model file from the community, by name: downloaded on first use (vidsr.models.download)
    and checked against its sha256 before it is used. Facts from the model's own release and
    OpenModelDB's JSON (`source`); the description is ours: what footage it is for."""

    id: str  # what --model takes
    name: str
    author: str
    license: str  # SPDX
    architecture: str  # spandrel's name for it
    scale: int
    description: str
    file: str  # its name in the cache
    size: int  # bytes
    sha256: str
    urls: tuple[str, ...]
    speed: str  # light (a few convolutions per pixel), medium, heavy (RRDB): on a CPU, for video
    source: str = ""  # where the facts were read (OpenModelDB's data/models/*.json)

    @property
    def commercial(self) -> bool:
        """False where the licence forbids commercial use (CC-BY-NC and the like)."""
        return "-NC" not in self.license.upper()


# Chosen for video: light architectures first, permissive licences, files on GitHub releases.
_RELEASES = "https://github.com/xinntao/Real-ESRGAN/releases/download"
COMMUNITY: dict[str, CommunityRecord] = {
    r.id: r
    for r in (
        CommunityRecord(
            "realesr-animevideov3", "RealESR AnimeVideo v3", "xinntao", "BSD-3-Clause",
            "RealESRGAN Compact", 4,
            "anime and cartoons (flat colours, clean lines); made for video, the lightest here",
            "realesr-animevideov3.pth", 2504012,
            "b8a8376811077954d82ca3fcf476f1ac3da3e8a68a4f4d71363008000a18b75d",
            (f"{_RELEASES}/v0.2.5.0/realesr-animevideov3.pth",), "light",
            "data/models/4x-realesr-animevideo-v3.json",
        ),
        CommunityRecord(
            "realesr-general-x4v3", "RealESR General x4 v3", "xinntao", "BSD-3-Clause",
            "RealESRGAN Compact", 4,
            "real footage and photos: cleans compression and noise, then sharpens; small and fast",
            "realesr-general-x4v3.pth", 4885111,
            "8dc7edb9ac80ccdc30c3a5dca6616509367f05fbc184ad95b731f05bece96292",
            (f"{_RELEASES}/v0.2.5.0/realesr-general-x4v3.pth",), "medium",
            "data/models/4x-realesr-general-x4v3.json",
        ),
        CommunityRecord(
            "realesr-general-wdn-x4v3", "RealESR General WDN x4 v3", "xinntao", "BSD-3-Clause",
            "RealESRGAN Compact", 4,
            "the same network trained to denoise harder: grainy or noisy footage, less fine "
            "texture", "realesr-general-wdn-x4v3.pth", 4885111,
            "1641f8c4464b9f097c9fdda5589273713f67cf59f3d909e0bd688f0cee269dca",
            (f"{_RELEASES}/v0.2.5.0/realesr-general-wdn-x4v3.pth",), "medium",
            "data/models/4x-realesr-general-wdn-x4v3.json",
        ),
        CommunityRecord(
            "realesrgan-x4plus", "RealESRGAN x4plus", "xinntao", "BSD-3-Clause", "ESRGAN", 4,
            "the classic Real-ESRGAN for real-world photos and footage: strong restoration, "
            "invented texture; 23 RRDB blocks: a GPU's job for video", "RealESRGAN_x4plus.pth",
            67040989, "4fa0d38905f75ac06eb49a7951b426670021be3018265fd191d2125df9d682f1",
            (f"{_RELEASES}/v0.1.0/RealESRGAN_x4plus.pth",), "heavy",
            "data/models/4x-realesrgan-x4plus.json",
        ),
        CommunityRecord(
            "realesrgan-x2plus", "RealESRGAN x2plus", "xinntao", "BSD-3-Clause", "ESRGAN", 2,
            "Real-ESRGAN at 2x, for sources where 4x is more than wanted (720p to 1440p)",
            "RealESRGAN_x2plus.pth", 67061725,
            "49fafd45f8fd7aa8d31ab2a22d14d91b536c34494a5cfe31eb5d89c2fa266abb",
            (f"{_RELEASES}/v0.2.1/RealESRGAN_x2plus.pth",), "heavy",
            "data/models/2x-realesrgan-x2plus.json",
        ),
        CommunityRecord(
            "realesrgan-x4plus-anime-6b", "RealESRGAN x4plus Anime 6B", "xinntao",
            "BSD-3-Clause", "ESRGAN", 4,
            "Real-ESRGAN with 6 blocks for anime artwork and stills; smaller than x4plus",
            "RealESRGAN_x4plus_anime_6B.pth", 17938799,
            "f872d837d3c90ed2e05227bed711af5671a6fd1c9f7d7e91c911a61f155e99da",
            (f"{_RELEASES}/v0.2.2.4/RealESRGAN_x4plus_anime_6B.pth",), "heavy",
            "data/models/4x-realesrgan-x4plus-anime-6b.json",
        ),
        CommunityRecord(
            "modernspanimation-v1-x2", "ModernSpanimation V1", "TNTwise", "MIT", "SPAN", 2,
            "modern 2D animation at 2x (a SPAN network: fast, keeps line art clean)",
            "2x_ModernSpanimationV1.pth", 15830922,
            "bc6ca08ab1eeb9884a5c43c025eda97a5aa9ccfaa567734f426aedf55cf78327",
            ("https://github.com/TNTwise/Models/releases/download/2x_ModernSpanimationV1/"
             "2x_ModernSpanimationV1.pth",), "light",
            "data/models/2x-ModernSpanimationV1.json",
        ),
        CommunityRecord(
            "nomoswebphoto-realplksr-x4", "4xNomosWebPhoto RealPLKSR", "Philip Hofmann (helaman)",
            "CC-BY-4.0", "PLKSR", 4,
            "web photos and frames with JPEG/WebP damage, lens blur and noise (RealPLKSR)",
            "4xNomosWebPhoto_RealPLKSR.pth", 29683482,
            "a9db66c9b674c6a5025b6ef3bee71a57c33b8605d8a2de0980470f89002efbbe",
            ("https://github.com/Phhofm/models/releases/download/4xNomosWebPhoto_RealPLKSR/"
             "4xNomosWebPhoto_RealPLKSR.pth",), "medium",
            "data/models/4x-NomosWebPhoto-RealPLKSR.json",
        ),
    )
}  # fmt: skip

# The one table `vidsr models` lists: the built-in models, then the community ones.
ALL_MODELS: dict[str, ModelRecord | CommunityRecord] = {**RECORDS, **COMMUNITY}

__all__ = [
    "ALL_MODELS",
    "BUILTIN_MODELS",
    "COMMUNITY",
    "CommunityRecord",
    "RECORDS",
    "TRAINED_MODELS",
    "WEIGHTS_DIR",
    "ModelRecord",
    "Scores",
]
