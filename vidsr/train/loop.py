"""The training loop: SRResNet (pixel MSE) or SRGAN (VGG content + adversarial), one code path.

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
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader

from .. import weights as weights_mod
from ..config import TrainConfig
from ..engine import cpu_has_fast_bf16, resolve_device
from ..errors import InputError, VidsrError
from ..models import MODELS, build_discriminator, build_model
from ..weights import split_checkpoint
from .benchmark import inference_engine, load_benchmark, mean_score, score_pairs
from .checkpoint import load_checkpoint, plain, save_checkpoint
from .data import PairDataset, StepSampler, extract_frames, min_image_size, scan_images
from .degrade import build_degradation
from .ema import ModelEma
from .losses import (
    GAN_LOSSES,
    PIXEL_LOSSES,
    ContentLoss,
    discriminator_loss,
    generator_adversarial,
    grid_loss,
    pixel_loss,
)
from .plots import sample_grid, stack_panels, to_uint8, write_curves
from .vgg import load_vgg

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
    if precision not in ("fp32", "bf16", "fp16"):
        raise VidsrError(f"unknown precision {precision!r}; choose from auto, fp32, bf16, fp16")
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


def _load_init(cfg: TrainConfig) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    path = cfg.init
    what = f"--init weights {path}"
    shipped = path is not None and str(path) == "shipped"
    if shipped or (path is None and cfg.needs_init):
        source = cfg.init_from or cfg.model
        record = weights_mod.SHIPPED.get(source)
        if record is None or not record.path.is_file():
            if shipped:
                raise VidsrError(f"--init shipped: no {source} weights ship with vidsr")
            raise VidsrError(
                f"this recipe starts from trained {source} weights and none ship yet: "
                f"pass --init FILE (e.g. the last.pt of a `vidsr train --recipe {source}` run)"
            )
        path, what = record.path, f"the shipped {source} weights {record.path}"
        if weights_mod.sha256_of(path) != record.sha256:
            raise VidsrError(f"{what} are damaged (sha256 mismatch): reinstall vidsr")
    if path is None:
        return None
    if not Path(path).is_file():
        raise VidsrError(f"--init file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise VidsrError(f"cannot read {what}: {type(e).__name__}") from None
    state, arch = split_checkpoint(obj)
    return {k.removeprefix("module."): v for k, v in state.items()}, arch


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
            rows = [json.loads(line) for line in self.log_path.read_text().splitlines() if line]
            self.history = [r for r in rows if r["step"] <= start_step]
            self.log_path.write_text("".join(json.dumps(r) + "\n" for r in self.history))
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
        loss_keys = tuple(
            k
            for k in ("loss_g", "loss_d", "pixel", "content", "adv", "grid")
            if any(k in r for r in self.history)
        )
        a, b = self.out / ".loss.png", self.out / ".psnr.png"
        write_curves(a, self.history, keys=loss_keys, title="training loss", log_y=True)
        panels = [a]
        if any("val_psnr_y" in r for r in self.history):
            write_curves(b, self.history, keys=("val_psnr_y",), title="validation PSNR-Y (dB)")
            panels.append(b)
        if "adv" in loss_keys and any("val_grid" in r for r in self.history):
            c = self.out / ".grid.png"
            write_curves(c, self.history, keys=("val_grid", "val_detail"),
                         title="validation grid index and detail")  # fmt: skip
            panels.append(c)
        stack_panels(panels, self.out / "curves.png")
        for p in panels:
            p.unlink()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


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
    out = cfg.out
    ckpt_path = out / "last.pt"
    if ckpt_path.exists() and not cfg.resume:
        raise VidsrError(
            f"{ckpt_path} exists: pass --resume to continue it, or choose another --out"
        )
    resumed = load_checkpoint(ckpt_path) if cfg.resume and ckpt_path.exists() else None
    if cfg.resume and resumed is None:
        _say(dd, console, f"no checkpoint in {out}: starting at step 0")
    start = int(resumed["step"]) if resumed else 0

    device = resolve_device(cfg.device)
    if dd.enabled and device.type == "cuda":
        device = torch.device("cuda", dd.local_rank)
        torch.cuda.set_device(device)
    precision = resolve_train_precision(cfg.precision, device)
    autocast = (
        torch.autocast(device.type, dtype=_DTYPES[precision])
        if precision != "fp32"
        else nullcontext()
    )
    torch.manual_seed(cfg.seed)

    # Everything a flag can get wrong fails here, before any data work.
    init = None if resumed else _load_init(cfg)
    weights = {"pixel": cfg.pixel_weight, "content": cfg.content_weight}
    weights["adversarial"] = cfg.adversarial_weight
    if any(w < 0 for w in weights.values()) or not any(w > 0 for w in weights.values()):
        raise VidsrError(
            "loss weights must be >= 0 and at least one > 0 (--pixel-weight, --content-weight, "
            f"--adversarial-weight); got {', '.join(f'{k} {w:g}' for k, w in weights.items())}"
        )
    for key, allowed in (
        ("pixel_loss", PIXEL_LOSSES), ("gan_loss", GAN_LOSSES), ("lr_schedule", ("step", "cosine"))
    ):  # fmt: skip
        if getattr(cfg, key) not in allowed:
            raise VidsrError(f"{key} {getattr(cfg, key)!r}: choose from {', '.join(allowed)}")
    vgg = None
    if cfg.content_weight > 0:
        vgg = load_vgg(cfg.vgg, cfg.vgg_weights, before_relu=cfg.vgg_before_relu)

    # -- data
    if not cfg.data and not cfg.video:
        raise InputError("no training data: pass --data DIR (images) and/or --video DIR (footage)")
    report = scan_images(list(cfg.data), min_size=min_image_size(cfg.crop, cfg.hr_downscale))
    files = list(report.images)
    if cfg.video:
        cache = cfg.frame_cache or out / "frames"
        if dd.main:  # rank 0 decodes; the others find the cache complete after the barrier
            frames, failed = extract_frames(
                list(cfg.video), cache, cap=cfg.frames_per_video, min_lines=cfg.min_video_lines
            )
        dd.barrier()
        if not dd.main:
            frames, failed = extract_frames(
                list(cfg.video), cache, cap=cfg.frames_per_video, min_lines=cfg.min_video_lines
            )
        frame_report = scan_images(frames, min_size=min_image_size(cfg.crop, cfg.hr_downscale))
        files += frame_report.images
        _say(dd, console, f"video: {len(frames)} frames sampled, {len(failed)} videos unreadable")
    _say(dd, console, f"data: {report.summary()}")
    if not files:
        raise InputError(f"no usable training images ({report.summary()}; crop {cfg.crop})")

    # -- networks
    arch = {**MODELS[cfg.model].arch, **cfg.arch}
    if resumed:
        arch = dict(resumed["arch"])
    elif init is not None:
        arch = {**arch, **init[1]}
    scale = int(arch.get("scale", 4))
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    g = build_model(cfg.model, **arch)
    if init is not None:
        try:
            g.load_state_dict(init[0])
        except RuntimeError as e:
            raise VidsrError(
                f"the init weights do not fit {cfg.model} {arch}: {str(e).splitlines()[0]}"
            ) from None
    g = g.to(device, memory_format=fmt).train()
    ema = ModelEma(g, decay=cfg.ema_decay)
    d = None
    if cfg.adversarial_weight > 0:
        d = build_discriminator(**cfg.discriminator).to(device, memory_format=fmt).train()
    content = None
    if vgg is not None:
        content = ContentLoss(vgg).to(device, memory_format=fmt)
    opt_g = torch.optim.Adam(g.parameters(), lr=cfg.lr, betas=tuple(cfg.betas))
    opt_d = torch.optim.Adam(d.parameters(), lr=cfg.lr, betas=tuple(cfg.betas)) if d else None
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    if resumed:
        g.load_state_dict(resumed["generator"])
        ema.load_state_dict(resumed["ema"])
        opt_g.load_state_dict(resumed["opt_g"])
        if d is not None and resumed.get("discriminator") is not None:
            d.load_state_dict(resumed["discriminator"])
            opt_d.load_state_dict(resumed["opt_d"])
        if resumed.get("scaler"):
            scaler.load_state_dict(resumed["scaler"])
        if resumed.get("rng") is not None:
            torch.set_rng_state(resumed["rng"])
    g_train: nn.Module = g
    d_train: nn.Module | None = d
    if dd.enabled:
        ids = [device.index] if device.type == "cuda" else None
        g_train = DDP(g, device_ids=ids)
        d_train = DDP(d, device_ids=ids) if d is not None else None

    dataset = PairDataset(
        files,
        crop=cfg.crop,
        scale=scale,
        hr_downscale=cfg.hr_downscale,
        extra_downscales=tuple(cfg.extra_downscales),
        crop_tries=cfg.crop_tries,
        degrade=build_degradation(cfg.degrade),
        seed=cfg.seed,
    )
    sampler = StepSampler(
        len(dataset), seed=cfg.seed, rank=dd.rank, world=dd.world,
        start=start * cfg.batch_size * dd.world,
    )  # fmt: skip
    loader = DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        sampler=sampler,
        num_workers=cfg.workers,
        pin_memory=device.type == "cuda",
        worker_init_fn=_ignore_sigint if cfg.workers else None,
        persistent_workers=False,
    )
    val_pairs = load_benchmark(cfg.val, scale=scale) if cfg.val and dd.main else []

    def checkpoint(step: int) -> None:
        if not dd.main:
            return
        save_checkpoint(
            ckpt_path,
            {
                "model": cfg.model,
                "arch": arch,
                "generator": g.state_dict(),
                "ema": ema.state_dict(),
                "discriminator": d.state_dict() if d is not None else None,
                "opt_g": opt_g.state_dict(),
                "opt_d": opt_d.state_dict() if opt_d is not None else None,
                "scaler": scaler.state_dict(),
                "sched_g": {"kind": "step", "milestones": list(cfg.lr_milestones),
                            "gamma": cfg.lr_gamma},
                "sched_d": {"kind": "step", "milestones": list(cfg.lr_milestones),
                            "gamma": cfg.lr_gamma},
                "step": step,
                "config": plain(cfg),
                "rng": torch.get_rng_state(),
            },
        )  # fmt: skip

    def validate(step: int) -> dict[str, float]:
        if not val_pairs:
            return {}
        engine = inference_engine(ema.module, device=str(device), precision="fp32")
        score = mean_score([s for _, _, s in score_pairs(engine, val_pairs)])
        if cfg.keep_snapshots and dd.main:
            snap = out / "snapshots" / f"ema_{step:07d}.pt"
            snap.parent.mkdir(exist_ok=True)
            save_checkpoint(snap, {"model": cfg.model, "arch": arch, "ema": ema.state_dict(),
                                   "step": step})  # fmt: skip
        drift = max(abs(c) for c in score.colour)
        _say(dd, console, f"step {step}: val PSNR-Y {score.psnr_y:.3f} dB, SSIM-Y "
             f"{score.ssim_y:.4f}, grid index {score.grid_index:.3f}, detail {score.detail:.3f}, "
             f"colour shift {drift:.2f}")  # fmt: skip
        return {"val_psnr_y": score.psnr_y, "val_ssim_y": score.ssim_y,
                "val_grid": score.grid_index, "val_detail": score.detail,
                "val_colour": drift}  # fmt: skip

    def samples(step: int, lr_u8: torch.Tensor, hr_u8: torch.Tensor) -> None:
        if not dd.main:
            return
        with torch.no_grad():
            sr = ema.module(to_model_range(lr_u8[:4], device, cfg.channels_last))
        grid = sample_grid(lr_u8[:4].cpu(), to_uint8(sr), hr_u8[:4].cpu())
        grid.save(out / "samples" / f"step_{step:07d}.png")

    run = Run(cfg, start, dd.main)
    progress = _progress(console, dd.main and not cfg.quiet)
    task = progress.add_task("train", total=cfg.steps, completed=start, info="")
    step = start
    lr_u8 = hr_u8 = None
    last: dict[str, float] = {}
    t0, s0 = time.perf_counter(), start
    with StopFlag() as stop, progress:
        batches = iter(loader)
        while step < cfg.steps:
            lr_now = lr_at(cfg, step)
            for opt in (opt_g, opt_d):
                for group in opt.param_groups if opt is not None else ():
                    group["lr"] = lr_now
            lr_u8, hr_u8 = next(batches)
            x = to_model_range(lr_u8, device, cfg.channels_last)
            y = to_model_range(hr_u8, device, cfg.channels_last)
            with autocast:
                sr = g_train(x)
            losses: dict[str, float] = {}
            if d_train is not None:
                # Real and fake in one forward: DDP allows one forward per backward.
                with autocast:
                    logits = d_train(torch.cat([y, sr.detach()])).float()
                loss_d = discriminator_loss(*logits.chunk(2), kind=cfg.gan_loss)
                opt_d.zero_grad(set_to_none=True)
                scaler.scale(loss_d).backward()
                if cfg.grad_clip > 0:
                    scaler.unscale_(opt_d)
                    nn.utils.clip_grad_norm_(d.parameters(), cfg.grad_clip)
                scaler.step(opt_d)
                losses["loss_d"] = loss_d.item()
            with autocast:
                loss_g = torch.zeros((), device=device)
                if cfg.pixel_weight > 0:
                    pixel = pixel_loss(cfg.pixel_loss, sr, y)
                    loss_g = loss_g + cfg.pixel_weight * pixel
                    losses["pixel"] = pixel.item()
                if cfg.grid_weight > 0:
                    grid = grid_loss(sr, y)
                    loss_g = loss_g + cfg.grid_weight * grid
                    losses["grid"] = grid.item()
                if content is not None:
                    c = content(sr, y).float()
                    loss_g = loss_g + cfg.content_weight * c
                    losses["content"] = c.item()
                if d is not None:
                    # The bare D, frozen: G's step must neither train D nor wake D's DDP hooks.
                    d.requires_grad_(False)
                    real_logits = None
                    if cfg.gan_loss == "ragan":
                        with torch.no_grad():
                            real_logits = d(y).float()
                    adv = generator_adversarial(d(sr).float(), real_logits, kind=cfg.gan_loss)
                    loss_g = loss_g + cfg.adversarial_weight * adv
                    losses["adv"] = adv.item()
            opt_g.zero_grad(set_to_none=True)
            scaler.scale(loss_g).backward()
            if d is not None:
                d.requires_grad_(True)
            if cfg.grad_clip > 0:
                scaler.unscale_(opt_g)
                nn.utils.clip_grad_norm_(g.parameters(), cfg.grad_clip)
            scaler.step(opt_g)
            scaler.update()
            ema.update(g, step)
            step += 1
            losses["loss_g"] = loss_g.item()
            if not math.isfinite(losses["loss_g"]):
                raise VidsrError(f"loss became {losses['loss_g']} at step {step}; lower --lr")
            last = losses

            rate = (step - s0) / max(time.perf_counter() - t0, 1e-9)
            info = " ".join(f"{k} {v:.4g}" for k, v in losses.items())
            progress.update(task, completed=step, info=f"{info}  {rate:.2f} it/s")
            row: dict[str, Any] = {}
            if step % cfg.log_every == 0 or step == cfg.steps:
                row = {"step": step, "lr": lr_now, **losses}
            if cfg.val_every and step % cfg.val_every == 0 and step < cfg.steps:
                row = {"step": step, "lr": lr_now, **losses, **validate(step)}
            if row:
                run.record(row)
            if cfg.sample_every and step % cfg.sample_every == 0:
                samples(step, lr_u8, hr_u8)
            if cfg.ckpt_every and step % cfg.ckpt_every == 0 and step < cfg.steps:
                checkpoint(step)
                run.curves()
            if _stop_requested(stop, dd, device):
                break

    interrupted = step < cfg.steps
    final = {} if interrupted else validate(step)
    if final:
        run.record({"step": step, **last, **final})
    checkpoint(step)
    if lr_u8 is not None:
        samples(step, lr_u8, hr_u8)
    run.curves()
    run.close()
    if interrupted:
        _say(dd, console, f"stopped at step {step}; checkpoint {ckpt_path} (continue: --resume)")
    else:
        _say(dd, console, f"done: step {step}, checkpoint {ckpt_path}")
    return {"step": step, "interrupted": interrupted, "checkpoint": ckpt_path, **last, **final}


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
