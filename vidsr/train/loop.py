"""The training loop: SRResNet (pixel loss) or SRGAN (VGG content + adversarial), one code path.

A run: `_train` sets it up in order (`_open_run` finds the checkpoint to resume and checks the
config against the one it stored; `_load_init` reads the weights a new run starts from;
`_scan_data` finds the training images; `_build` makes the networks, optimisers and EMA, one
TrainState), then `_run` is the loop itself, read top to bottom: schedule, step, log, validate,
samples, checkpoint. A step is `_discriminator_step`, then `_generator_step` over the generator's
loss terms (pixel, grid, content, adversarial).

AMP and DDP are objects that may be no-ops (nanoGPT's habit): `autocast` is a nullcontext in fp32,
the GradScaler is disabled unless fp16, and `g_train` is the bare model unless torchrun started us.
Rank 0 alone reads video, writes checkpoints, samples, curves and logs.
"""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader

from ..errors import InputError, VidsrError, WeightsError
from ..media.staging import atomic_path, write_text
from ..models import MODELS, build_discriminator, build_model
from ..models import weights as weights_mod
from ..models.weights import LoadedWeights, check_arch, fit_state
from ..quality.scoring import inference_engine, load_benchmark, mean_score, score_pairs
from ..upscale.engine import cpu_has_fast_bf16, resolve_device
from .checkpoint import load_checkpoint, plain, save_checkpoint
from .config import TrainConfig
from .crops import CropCache, is_crop_cache, open_crops
from .data import PairDataset, StepSampler, extract_frames, min_image_size, scan_images
from .degrade import build_degradation
from .ema import ModelEma
from .losses import (
    ContentLoss,
    discriminator_loss,
    generator_adversarial,
    grid_loss,
    lowpass_loss,
    pixel_loss,
)
from .plots import curves_image, sample_grid, stack_panels, to_uint8
from .recipe import CONFIG_FILE, config_toml, make_config, resume_changes, stored_values

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def setup_dist(device: str) -> Dist:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; NCCL on GPUs, gloo on CPUs."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    use_cuda = device != "cpu" and torch.cuda.is_available()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def resolve_train_precision(precision: str, device: torch.device) -> str:
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if cpu_has_fast_bf16() else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise VidsrError("fp16 training needs a CUDA device; use bf16 or fp32 on the CPU")
    return precision


def lr_at(cfg: TrainConfig, step: int) -> float:
    """The learning rate of `step`: a linear warm-up, then step decay or a cosine to lr_final.

    step: lr times lr_gamma for every milestone (a fraction of steps) already passed.
    cosine: from lr at the end of the warm-up to lr * lr_final at `steps`.
    """
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "cosine":
        span = max(1, cfg.steps - cfg.warmup_steps)
        t = min(1.0, (step - cfg.warmup_steps) / span)
        return cfg.lr * (cfg.lr_final + (1 - cfg.lr_final) * 0.5 * (1 + math.cos(math.pi * t)))
    passed = sum(step >= int(m * cfg.steps) for m in cfg.lr_milestones)
    return cfg.lr * cfg.lr_gamma**passed


def to_model_range(x: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    # Training batches only; inference goes through Engine.to_input (it folds BatchNorm).
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = x.to(device, non_blocking=True).float().div_(255.0)
    return x.contiguous(memory_format=fmt)


def _ignore_sigint(_worker: int) -> None:
    # Ctrl-C reaches the whole process group; the main process alone decides to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class StopFlag:
    """SIGINT/SIGTERM ask for a checkpoint and a clean exit at the end of the current step."""

    def __init__(self) -> None:
        self.set = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.set = True

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


@dataclass
class TrainState:
    """Everything the steps read or change: the networks, their optimisers and the step count."""

    cfg: TrainConfig
    dd: Dist
    device: torch.device
    autocast: AbstractContextManager
    arch: dict[str, Any]
    g: nn.Module
    g_train: nn.Module  # g, or g under DDP
    ema: ModelEma
    opt_g: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    d: nn.Module | None = None  # only when the adversarial weight is > 0
    d_train: nn.Module | None = None
    opt_d: torch.optim.Optimizer | None = None
    content: ContentLoss | None = None  # only when the content weight is > 0
    step: int = 0

    @property
    def ckpt_path(self) -> Path:
        return self.cfg.out / "last.pt"


class Run:
    """Rank 0's record of a run: log.jsonl, curves, samples, optional TensorBoard."""

    def __init__(self, cfg: TrainConfig, start_step: int, main: bool):
        self.out, self.main = cfg.out, main
        self.log_path = self.out / "log.jsonl"
        self.history: list[dict[str, Any]] = []
        self.tb = None
        if not main:
            return
        (self.out / "samples").mkdir(parents=True, exist_ok=True)
        if self.log_path.exists():  # drop what a killed run logged past its last checkpoint
            self.history = [r for r in _log_rows(self.log_path) if r["step"] <= start_step]
            write_text(self.log_path, "".join(json.dumps(r) + "\n" for r in self.history))
        if cfg.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(self.out / "tb"))
            except ImportError:
                print("vidsr: tensorboard is not installed (pip install 'vidsr[train]'); skipping")

    def record(self, row: dict[str, Any]) -> None:
        if not self.main:
            return
        self.history.append(row)
        with open(self.log_path, "a") as f:
            f.write(json.dumps(row) + "\n")
        if self.tb is not None:
            for k, v in row.items():
                if k != "step":
                    self.tb.add_scalar(k, v, row["step"])

    def curves(self) -> None:
        if not self.main or not self.history:
            return
        h = self.history
        loss_keys = tuple(
            k
            for k in ("loss_g", "loss_d", "pixel", "content", "adv", "grid", "lowpass")
            if any(k in r for r in h)
        )
        panels = [curves_image(h, keys=loss_keys, title="training loss", log_y=True)]
        if any("val_psnr_y" in r for r in h):
            panels.append(curves_image(h, keys=("val_psnr_y",), title="validation PSNR-Y (dB)"))
        if "adv" in loss_keys and any("val_grid" in r for r in h):
            panels.append(curves_image(h, keys=("val_grid", "val_detail"),
                                       title="validation grid index and detail"))  # fmt: skip
        with atomic_path(self.out / "curves.png") as tmp:
            stack_panels(panels).save(tmp)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _log_rows(path: Path) -> list[dict[str, Any]]:
    """log.jsonl's rows; a line torn by a kill mid-write is dropped, not fatal."""
    rows = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int):
            rows.append(row)
    return rows


def train(cfg: TrainConfig, *, console=None) -> dict[str, Any]:
    """Run `cfg` to cfg.steps (or to a SIGINT); returns a summary. Works alone or under torchrun."""
    dd = setup_dist(cfg.device)
    try:
        return _train(cfg, dd, console)
    finally:
        if dd.enabled and dist.is_initialized():
            dist.destroy_process_group()


def _say(dd: Dist, console, msg: str) -> None:
    if dd.main and console is not None:
        console.print(msg)


def _train(cfg: TrainConfig, dd: Dist, console) -> dict[str, Any]:
    say = lambda msg: _say(dd, console, msg)  # noqa: E731
    # Everything a flag or a file can get wrong fails here, before any data work.
    resumed = _open_run(cfg, say)
    device, precision = _device(cfg, dd)
    torch.manual_seed(cfg.seed)
    init = None if resumed else _load_init(cfg)
    content = _content_loss(cfg)
    degrade = _degradation(cfg)
    st = _build(cfg, dd, device, precision, resumed, init, content)
    files = _scan_data(cfg, dd, say)
    loader = _loader(st, files, degrade)
    val_pairs = load_benchmark(cfg.val, scale=int(st.arch["scale"])) if cfg.val and dd.main else []
    if dd.main:
        write_text(cfg.out / CONFIG_FILE, config_toml(cfg))
    return _run(st, loader, val_pairs, say, console)


def _open_run(cfg: TrainConfig, say) -> LoadedWeights | None:
    """The checkpoint a --resume continues (its stored config checked against `cfg`), or None."""
    ckpt_path = cfg.out / "last.pt"
    if ckpt_path.exists() and not cfg.resume:
        raise VidsrError(
            f"{ckpt_path} exists: pass --resume to continue it, or choose another --out"
        )
    if not cfg.resume:
        return None
    if not ckpt_path.exists():
        say(f"no checkpoint in {cfg.out}: starting at step 0")
        return None
    resumed = load_checkpoint(ckpt_path)
    stored = resumed.checkpoint.get("config")
    if stored is not None:  # older checkpoints did not store one: flags and recipe, as before
        for line in resume_changes(make_config(stored_values(stored, lambda _: None)), cfg):
            say(line)
    return resumed


def _device(cfg: TrainConfig, dd: Dist) -> tuple[torch.device, str]:
    device = resolve_device(cfg.device)
    if dd.enabled and device.type == "cuda":
        device = torch.device("cuda", dd.local_rank)
        torch.cuda.set_device(device)
    return device, resolve_train_precision(cfg.precision, device)


def _load_init(cfg: TrainConfig) -> LoadedWeights | None:
    """The weights a new run starts from: --init FILE, --init shipped, or the recipe's init_from."""
    shipped = cfg.init is not None and str(cfg.init) == "shipped"
    if not shipped and not (cfg.init is None and cfg.needs_init):
        return weights_mod.read_weights(cfg.init) if cfg.init is not None else None
    source = cfg.init_from or cfg.model
    record = weights_mod.SHIPPED.get(source)
    if record is None or not record.path.is_file():
        if shipped:
            raise VidsrError(f"--init shipped: no {source} weights ship with vidsr")
        raise VidsrError(
            f"this recipe starts from trained {source} weights and none ship yet: "
            f"pass --init FILE (e.g. the last.pt of a `vidsr train --recipe {source}` run)"
        )
    return weights_mod.read_shipped(source)


def _content_loss(cfg: TrainConfig) -> ContentLoss | None:
    if cfg.content_weight <= 0:
        return None
    from .vgg import load_vgg

    return ContentLoss(load_vgg(cfg.vgg, cfg.vgg_weights, before_relu=cfg.vgg_before_relu))


def _degradation(cfg: TrainConfig):
    try:
        return build_degradation(cfg.degrade)
    except ValueError as e:
        raise VidsrError(f"train: {e}") from None


def _scan_data(cfg: TrainConfig, dd: Dist, say) -> list[Path] | CropCache:
    """The usable training images: the --data folders' and frames sampled from --video; or a
    crop cache `vidsr train prepare` made, which is then the whole of the data."""
    if not cfg.data and not cfg.video:
        raise InputError("no training data: pass --data DIR (images) and/or --video DIR (footage)")
    if any(is_crop_cache(d) for d in cfg.data):
        if len(cfg.data) > 1 or cfg.video:
            raise InputError(
                "a prepared crop cache is the whole of the data: give it as the only --data "
                "(vidsr train prepare takes --data and --video)"
            )
        cache = open_crops(cfg.data[0])
        factors = tuple(dict.fromkeys((cfg.hr_downscale, *cfg.extra_downscales)))
        said = ", ".join(map(str, cache.factors))
        say(f"data: {cache.count} tiles of {cache.tile} px from {cache.sources} pictures "
            f"(prepared cache {cache.path}, shrunk by {said})")  # fmt: skip
        if set(factors) != set(cache.factors):
            say(f"note: the cache's pictures were shrunk by {said} when it was prepared; "
                "--hr-downscale and extra_downscales do not apply to it")  # fmt: skip
        return cache
    min_size = min_image_size(cfg.crop, cfg.hr_downscale)
    report = scan_images(list(cfg.data), min_size=min_size)
    files = list(report.images)
    if cfg.video:
        frames, failed = _video_frames(cfg, dd)
        files += scan_images(frames, min_size=min_size).images
        say(f"video: {len(frames)} frames sampled, {len(failed)} videos unreadable")
    say(f"data: {report.summary()}")
    if not files:
        raise InputError(f"no usable training images ({report.summary()}; crop {cfg.crop})")
    return files


def _video_frames(cfg: TrainConfig, dd: Dist) -> tuple[list[Path], list[Path]]:
    cache = cfg.frame_cache or cfg.out / "frames"

    def extract():
        return extract_frames(
            list(cfg.video), cache, cap=cfg.frames_per_video, min_lines=cfg.min_video_lines
        )

    if dd.main:  # rank 0 decodes; the others find the cache complete after the barrier
        found = extract()
    dd.barrier()
    return found if dd.main else extract()


def _build(cfg, dd, device, precision, resumed, init, content) -> TrainState:
    """The networks, optimisers and EMA of a run: fresh, from `init`, or as `resumed` left them."""
    arch = {**MODELS[cfg.model].arch, **cfg.arch}
    if resumed is not None or init is not None:
        arch.update((resumed or init).arch)  # a checkpoint stores the whole architecture
    arch = check_arch(arch, f"the {cfg.model} run")
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    g = build_model(cfg.model, **arch)
    if init is not None:
        fit_state(g, init.state, f"the init weights {init.path} do not fit {cfg.model} {arch}")
    g = g.to(device, memory_format=fmt).train()
    if cfg.freeze_bn:
        # Fine-tuning: BatchNorm keeps the statistics the network was trained with. Left in train
        # mode, small GAN/degraded batches move the running averages away from what the batches
        # themselves are normalised with, and the eval-mode network (what ships) drifts in colour
        # and brightness while the training loss sees none of it.
        for m in g.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
    autocast = nullcontext()
    if precision != "fp32":
        autocast = torch.autocast(device.type, dtype=_DTYPES[precision])
    st = TrainState(
        cfg=cfg, dd=dd, device=device, autocast=autocast, arch=arch, g=g, g_train=g,
        ema=ModelEma(g, decay=cfg.ema_decay),
        opt_g=torch.optim.Adam(g.parameters(), lr=cfg.lr, betas=tuple(cfg.betas)),
        scaler=torch.amp.GradScaler(device.type, enabled=precision == "fp16"),
    )  # fmt: skip
    if cfg.adversarial_weight > 0:
        st.d = st.d_train = build_discriminator(**cfg.discriminator).to(device, memory_format=fmt)
        st.opt_d = torch.optim.Adam(st.d.train().parameters(), lr=cfg.lr, betas=tuple(cfg.betas))
    if content is not None:
        st.content = content.to(device, memory_format=fmt)
    if resumed is not None:
        _restore(st, resumed)
    if dd.enabled:
        ids = [device.index] if device.type == "cuda" else None
        st.g_train = DDP(st.g, device_ids=ids)
        st.d_train = DDP(st.d, device_ids=ids) if st.d is not None else None
    return st


def _restore(st: TrainState, resumed: LoadedWeights) -> None:
    """Networks, optimisers, scaler, RNG and step as the checkpoint left them, or one line."""
    ckpt = resumed.checkpoint
    try:
        st.g.load_state_dict(ckpt["generator"])
        st.ema.load_state_dict(ckpt["ema"])
        st.opt_g.load_state_dict(ckpt["opt_g"])
        if st.d is not None and ckpt.get("discriminator") is not None:
            st.d.load_state_dict(ckpt["discriminator"])
            st.opt_d.load_state_dict(ckpt["opt_d"])
        if ckpt.get("scaler"):
            st.scaler.load_state_dict(ckpt["scaler"])
        if ckpt.get("rng") is not None:
            torch.set_rng_state(ckpt["rng"])
    except (RuntimeError, ValueError, KeyError, TypeError, AttributeError) as e:
        first = str(e).splitlines()[0][:200] if str(e) else ""
        raise WeightsError(
            f"{resumed.path} cannot be resumed ({type(e).__name__}: {first})"
        ) from None
    st.step = int(ckpt["step"])


def _loader(st: TrainState, data: list[Path] | CropCache, degrade) -> DataLoader:
    cfg, dd = st.cfg, st.dd
    cache = data if isinstance(data, CropCache) else None
    dataset = PairDataset(
        [] if cache else data, crop=cfg.crop, scale=int(st.arch["scale"]),
        hr_downscale=cfg.hr_downscale, extra_downscales=tuple(cfg.extra_downscales),
        crop_tries=cfg.crop_tries, degrade=degrade, seed=cfg.seed, tiles=cache,
    )  # fmt: skip
    sampler = StepSampler(
        len(dataset), seed=cfg.seed, rank=dd.rank, world=dd.world,
        start=st.step * cfg.batch_size * dd.world,
    )  # fmt: skip
    return DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        sampler=sampler,
        num_workers=cfg.workers,
        pin_memory=st.device.type == "cuda",
        worker_init_fn=_ignore_sigint if cfg.workers else None,
        persistent_workers=False,
    )


# -- one step -----------------------------------------------------------------------------------


def _set_lr(st: TrainState) -> float:
    lr_now = lr_at(st.cfg, st.step)
    for opt in (st.opt_g, st.opt_d):
        for group in opt.param_groups if opt is not None else ():
            group["lr"] = lr_now
    return lr_now


def train_step(st: TrainState, lr_u8: torch.Tensor, hr_u8: torch.Tensor) -> dict[str, float]:
    """One optimiser step of D (when there is one), then of G; the EMA follows G."""
    x = to_model_range(lr_u8, st.device, st.cfg.channels_last)
    y = to_model_range(hr_u8, st.device, st.cfg.channels_last)
    with st.autocast:
        sr = st.g_train(x)
    losses: dict[str, float] = {}
    if st.d is not None:
        losses["loss_d"] = _discriminator_step(st, y, sr.detach())
    losses.update(_generator_step(st, sr, y))
    st.ema.update(st.g, st.step)
    st.step += 1
    if not math.isfinite(losses["loss_g"]):
        raise VidsrError(f"loss became {losses['loss_g']} at step {st.step}; lower --lr")
    return losses


def _optimise(st: TrainState, loss: torch.Tensor, opt, net: nn.Module) -> None:
    opt.zero_grad(set_to_none=True)
    st.scaler.scale(loss).backward()
    if st.cfg.grad_clip > 0:
        st.scaler.unscale_(opt)
        nn.utils.clip_grad_norm_(net.parameters(), st.cfg.grad_clip)
    st.scaler.step(opt)


def _discriminator_step(st: TrainState, real: torch.Tensor, fake: torch.Tensor) -> float:
    # Real and fake in one forward: DDP allows one forward per backward.
    with st.autocast:
        logits = st.d_train(torch.cat([real, fake])).float()
    loss = discriminator_loss(*logits.chunk(2), kind=st.cfg.gan_loss)
    _optimise(st, loss, st.opt_d, st.d)
    return loss.item()


def _generator_terms(st: TrainState, sr: torch.Tensor, y: torch.Tensor) -> dict[str, tuple]:
    """(weight, loss) of each loss family the run uses, by its log name."""
    cfg, terms = st.cfg, {}
    if cfg.pixel_weight > 0:
        terms["pixel"] = (cfg.pixel_weight, pixel_loss(cfg.pixel_loss, sr, y))
    if cfg.grid_weight > 0:
        terms["grid"] = (cfg.grid_weight, grid_loss(sr, y))
    if cfg.lowpass_weight > 0:
        terms["lowpass"] = (cfg.lowpass_weight, lowpass_loss(sr, y))
    if st.content is not None:
        terms["content"] = (cfg.content_weight, st.content(sr, y).float())
    if st.d is not None:
        terms["adv"] = (cfg.adversarial_weight, _adversarial_term(st, sr, y))
    return terms


def _adversarial_term(st: TrainState, sr: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # The bare D, frozen: G's step must neither train D nor wake D's DDP hooks (thawed after G's
    # backward, in _generator_step).
    st.d.requires_grad_(False)
    real_logits = None
    if st.cfg.gan_loss == "ragan":
        with torch.no_grad():
            real_logits = st.d(y).float()
    return generator_adversarial(st.d(sr).float(), real_logits, kind=st.cfg.gan_loss)


def _generator_step(st: TrainState, sr: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    with st.autocast:
        terms = _generator_terms(st, sr, y)
        loss = torch.zeros((), device=st.device)
        for weight, value in terms.values():
            loss = loss + weight * value
    _optimise(st, loss, st.opt_g, st.g)
    if st.d is not None:
        st.d.requires_grad_(True)
    st.scaler.update()
    return {**{k: v.item() for k, (_, v) in terms.items()}, "loss_g": loss.item()}


# -- what a run writes --------------------------------------------------------------------------


def _validate(st: TrainState, val_pairs, say) -> dict[str, float]:
    """PSNR-Y, SSIM-Y, grid index, detail and colour shift of the EMA weights, printed."""
    if not val_pairs:
        return {}
    engine = inference_engine(st.ema.module, device=str(st.device), precision="fp32")
    score = mean_score([s for _, _, s in score_pairs(engine, val_pairs)])
    if st.cfg.keep_snapshots and st.dd.main:
        snap = st.cfg.out / "snapshots" / f"ema_{st.step:07d}.pt"
        save_checkpoint(snap, {"model": st.cfg.model, "arch": st.arch,
                               "ema": st.ema.state_dict(), "step": st.step})  # fmt: skip
    drift = max(abs(c) for c in score.colour)
    say(f"step {st.step}: val PSNR-Y {score.psnr_y:.3f} dB, SSIM-Y {score.ssim_y:.4f}, "
        f"grid index {score.grid_index:.3f}, detail {score.detail:.3f}, "
        f"colour shift {drift:.2f}")  # fmt: skip
    return {"val_psnr_y": score.psnr_y, "val_ssim_y": score.ssim_y, "val_grid": score.grid_index,
            "val_detail": score.detail, "val_colour": drift}  # fmt: skip


def _write_samples(st: TrainState, lr_u8: torch.Tensor, hr_u8: torch.Tensor) -> None:
    if not st.dd.main:
        return
    from torchvision.utils import save_image

    with torch.no_grad():
        sr = st.ema.module(to_model_range(lr_u8[:4], st.device, st.cfg.channels_last))
    grid = sample_grid(lr_u8[:4].cpu(), to_uint8(sr), hr_u8[:4].cpu())
    save_image(grid, st.cfg.out / "samples" / f"step_{st.step:07d}.png")


def _write_checkpoint(st: TrainState) -> None:
    if not st.dd.main:
        return
    save_checkpoint(st.ckpt_path, {
        "model": st.cfg.model,
        "arch": st.arch,
        "generator": st.g.state_dict(),
        "ema": st.ema.state_dict(),
        "discriminator": st.d.state_dict() if st.d is not None else None,
        "opt_g": st.opt_g.state_dict(),
        "opt_d": st.opt_d.state_dict() if st.opt_d is not None else None,
        "scaler": st.scaler.state_dict(),
        "step": st.step,
        "config": plain(st.cfg),
        "rng": torch.get_rng_state(),
    })  # fmt: skip


# -- the loop -----------------------------------------------------------------------------------


class _Timer:
    def __init__(self):
        self.total, self.count = 0.0, 0

    def __enter__(self):
        self._t = time.perf_counter()

    def __exit__(self, *exc):
        self.total += time.perf_counter() - self._t
        self.count += 1


class Clock:
    """Seconds a step waited for its batch (data_s) and took to run (step_s), averaged over the
    steps since the last log line: where a run's time goes, in log.jsonl."""

    def __init__(self):
        self.data, self.step = _Timer(), _Timer()

    def take(self) -> dict[str, float]:
        timers = (("data_s", self.data), ("step_s", self.step))
        out = {k: round(t.total / t.count, 4) for k, t in timers if t.count}
        self.data, self.step = _Timer(), _Timer()
        return out


def _run(st: TrainState, loader: DataLoader, val_pairs, say, console) -> dict[str, Any]:
    """The loop, in reading order (nanoGPT's train.py is the model): the schedule sets the
    learning rate, one step on the next batch, then at their intervals the log, a validation,
    sample grids and a checkpoint; Ctrl-C (or SIGTERM) ends it after the step in progress. The
    last step is validated and checkpointed after the loop, as an interrupted run is saved."""
    cfg = st.cfg
    run = Run(cfg, st.step, st.dd.main)
    progress = _progress(console, st.dd.main and not cfg.quiet)
    task = progress.add_task("train", total=cfg.steps, completed=st.step, info="")
    batch, last, row = None, {}, {}
    t0, s0 = time.perf_counter(), st.step
    clock = Clock()
    with StopFlag() as stop, progress:
        batches = iter(loader)
        while st.step < cfg.steps:
            lr = _set_lr(st)  # the schedule: warm-up, then steps or a cosine
            with clock.data:
                batch = next(batches)
            with clock.step:
                last = train_step(st, *batch)  # st.step is now this step's number
            step, row = st.step, {"step": st.step, "lr": lr, **last}
            rate = (step - s0) / max(time.perf_counter() - t0, 1e-9)
            info = " ".join(f"{k} {v:.4g}" for k, v in last.items())
            progress.update(task, completed=step, info=f"{info}  {rate:.2f} it/s")
            if step == cfg.steps:
                break
            if cfg.val_every and step % cfg.val_every == 0:
                row.update(_validate(st, val_pairs, say))
            if step % cfg.log_every == 0 or "val_psnr_y" in row:
                run.record({**row, **clock.take()})
            if cfg.sample_every and step % cfg.sample_every == 0:
                _write_samples(st, *batch)
            if cfg.ckpt_every and step % cfg.ckpt_every == 0:
                _write_checkpoint(st)
                run.curves()
            if _stop_requested(stop, st.dd, st.device):
                break
    interrupted = st.step < cfg.steps
    final = {} if interrupted else _validate(st, val_pairs, say)
    if not interrupted:
        run.record({**row, **final})
    _write_checkpoint(st)
    if batch is not None:
        _write_samples(st, *batch)
    run.curves()
    run.close()
    if interrupted:
        say(f"stopped at step {st.step}; checkpoint {st.ckpt_path} (continue: --resume)")
    else:
        say(f"done: step {st.step}, checkpoint {st.ckpt_path}")
    return {"step": st.step, "interrupted": interrupted, "checkpoint": st.ckpt_path,
            **last, **final}  # fmt: skip


def _stop_requested(stop: StopFlag, dd: Dist, device: torch.device) -> bool:
    # Under DDP every rank must leave the loop at the same step, or the next all-reduce hangs.
    if not dd.enabled:
        return stop.set
    flag = torch.tensor([1.0 if stop.set else 0.0], device=device)
    dist.all_reduce(flag)
    return bool(flag.item() > 0)


def _progress(console, enabled: bool):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]train"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        disable=not enabled,
        transient=False,
    )
