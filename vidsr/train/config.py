"""One training run's configuration (`vidsr train`): a recipe in vidsr/train/recipes/ fills it,
flags override it, and every value is checked here, once."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from ..config import PRECISIONS, parse_device
from ..errors import VidsrError


@dataclass(frozen=True)
class TrainConfig:
    """One training run (`vidsr train`): a recipe in training/ fills it, flags override it.

    Field names are the recipe's TOML keys; vidsr.train.recipe rejects any other key. Every value
    is checked here, once, whether it came from a flag, a recipe or a resumed run's stored config.
    """

    model: str = "srresnet"  # registry name written into the checkpoint
    arch: dict[str, int | str] = field(default_factory=dict)  # overrides of the registry's arch
    data: tuple[Path, ...] = ()  # image folders, read recursively
    video: tuple[Path, ...] = ()  # footage folders: frames are sampled from every video
    out: Path = Path("run")
    steps: int = 100_000
    batch_size: int = 16
    crop: int = 96  # HR crop; LR is crop / scale
    lr: float = 1e-4
    lr_milestones: tuple[float, ...] = ()  # fractions of `steps` where lr is multiplied by lr_gamma
    lr_gamma: float = 0.1
    lr_schedule: str = "step"  # step (lr_milestones) or cosine (to lr_final over `steps`)
    warmup_steps: int = 0  # linear warm-up from ~0 to lr over these steps
    lr_final: float = 0.0  # cosine: the fraction of lr reached at `steps`
    betas: tuple[float, float] = (0.9, 0.999)
    pixel_loss: str = "mse"  # mse, l1 or charbonnier
    pixel_weight: float = 1.0  # the pixel loss on SR against HR
    content_weight: float = 0.0  # MSE on VGG features (scaled by 1/12.75)
    adversarial_weight: float = 0.0  # > 0 trains the discriminator too
    vgg: str = "vgg19_54"  # feature layer: vgg19_54, vgg19_22, vgg16_53 ...
    vgg_weights: Path | None = None
    vgg_before_relu: bool = False  # ESRGAN: features taken before the activation
    gan_loss: str = "bce"  # bce (the paper's -log D) or ragan (relativistic average, ESRGAN)
    grid_weight: float = 0.0  # penalises a pattern locked to the sub-pixel phase (grid index)
    lowpass_weight: float = 0.0  # L1 of 4x-pooled SR vs HR: colour and brightness, not texture
    freeze_bn: bool = False  # fine-tuning: BatchNorm keeps the init's statistics in training too
    discriminator: dict[str, int] = field(default_factory=dict)
    init: Path | None = None  # start from these weights (state_dict, checkpoint, or "shipped")
    needs_init: bool = False  # no --init: start from the shipped weights of `init_from`, or refuse
    init_from: str = ""  # registry name of the shipped weights a needs_init run starts from
    resume: bool = False
    val: Path | None = None  # benchmark-layout folder for PSNR-Y / SSIM-Y
    val_every: int = 1000
    ckpt_every: int = 1000
    sample_every: int = 1000
    log_every: int = 10
    ema_decay: float = 0.999
    grad_clip: float = 1.0  # max gradient norm; 0 disables
    precision: str = "auto"  # auto, fp32, bf16, fp16 (fp16 adds a GradScaler)
    channels_last: bool = True
    device: str = "auto"
    workers: int = 2
    seed: int = 0
    degrade: str = "none"  # none, video, real or chain (vidsr.train.degrade)
    hr_downscale: int = 1  # shrink source images by this factor before cropping (noisy photos)
    extra_downscales: tuple[int, ...] = ()  # also use every image shrunk by these factors
    crop_tries: int = 1  # draw this many crops and keep the most detailed (flat sky teaches little)
    min_video_lines: int = 0  # skip footage below this height (its blocking would be learnt)
    keep_snapshots: bool = False  # keep the EMA weights of every validation in OUT/snapshots/
    frames_per_video: int = 64
    frame_cache: Path | None = None  # where sampled video frames are kept; None: OUT/frames
    tensorboard: bool = False
    quiet: bool = False

    # (field, lowest value, whether the lowest itself is refused): impossible values fail here,
    # before a run folder, a data scan or a network exists.
    BOUNDS: ClassVar[tuple[tuple[str, float, bool], ...]] = (
        ("steps", 0, True),
        ("batch_size", 0, True),
        ("crop", 0, True),
        ("lr", 0.0, True),
        ("lr_gamma", 0.0, True),
        ("warmup_steps", 0, False),
        ("lr_final", 0.0, False),
        ("pixel_weight", 0.0, False),
        ("content_weight", 0.0, False),
        ("adversarial_weight", 0.0, False),
        ("grid_weight", 0.0, False),
        ("lowpass_weight", 0.0, False),
        ("val_every", 0, False),
        ("ckpt_every", 0, False),
        ("sample_every", 0, False),
        ("log_every", 0, True),
        ("ema_decay", 0.0, False),
        ("grad_clip", 0.0, False),
        ("workers", 0, False),
        ("hr_downscale", 0, True),
        ("crop_tries", 0, True),
        ("min_video_lines", 0, False),
        ("frames_per_video", 0, True),
        ("seed", 0, False),
    )
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {
        "pixel_loss": ("mse", "l1", "charbonnier"),  # vidsr.train.losses.PIXEL_LOSSES
        "gan_loss": ("bce", "ragan"),  # vidsr.train.losses.GAN_LOSSES
        "lr_schedule": ("step", "cosine"),
        "precision": tuple(p for p in PRECISIONS if p != "int8"),  # int8 is for inference
    }

    def __post_init__(self) -> None:
        try:
            parse_device(self.device)  # the upscale option's parser: one rule, one message
        except ValueError as e:
            raise VidsrError(f"train: device: {e}") from None
        for name, low, strict in self.BOUNDS:
            value = getattr(self, name)
            if type(value) not in (int, float) or not math.isfinite(value):
                raise VidsrError(f"train: {name} must be a number, got {value!r}")
            if value < low or (strict and value == low):
                raise VidsrError(
                    f"train: {name} must be {'>' if strict else '>='} {low:g}, got {value}"
                )
        for name, allowed in self.CHOICES.items():
            if getattr(self, name) not in allowed:
                raise VidsrError(
                    f"train: {name} {getattr(self, name)!r}: choose from {', '.join(allowed)}"
                )
        for name, values, low, high in (
            ("lr_milestones", self.lr_milestones, 0.0, 1.0),  # fractions of steps
            ("betas", self.betas, 0.0, 0.999999),
            ("extra_downscales", self.extra_downscales, 1, 16),
        ):
            if not all(type(v) in (int, float) and low <= v <= high for v in values):
                raise VidsrError(
                    f"train: {name} must hold numbers in [{low}, {high}], got {values}"
                )
        if len(self.betas) != 2 or not 0.0 <= self.lr_final <= 1.0 or self.ema_decay > 1.0:
            raise VidsrError(
                f"train: betas needs two values, lr_final and ema_decay lie in [0, 1]; got "
                f"betas {self.betas}, lr_final {self.lr_final}, ema_decay {self.ema_decay}"
            )
        weights = {k: getattr(self, f"{k}_weight") for k in ("pixel", "content", "adversarial")}
        if not any(w > 0 for w in weights.values()):
            raise VidsrError(
                "loss weights must be >= 0 and at least one > 0 (--pixel-weight, --content-weight, "
                f"--adversarial-weight); got {', '.join(f'{k} {w:g}' for k, w in weights.items())}"
            )
        from ..models import MODELS
        from ..models.weights import DISCRIMINATOR_LIMITS, check_arch

        trainable = [name for name, spec in MODELS.items() if spec.trainable]
        if self.model not in trainable:
            raise VidsrError(f"train: model {self.model!r}: choose from {', '.join(trainable)}")
        check_arch(self.arch, "train config")
        check_arch(self.discriminator, "train config (discriminator)", DISCRIMINATOR_LIMITS)
