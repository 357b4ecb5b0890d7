"""`vidsr compare`: one frame through several models, its most detailed crops side by side.

The crops are where the source has the most high-pass energy (vidsr.quality.metrics.high_pass): flat
sky shows no difference between models, texture and edges do. Only the crops (plus the network's
receptive field around them, as vidsr.upscale.tiling pads a tile) go through each model, so a 4K
frame costs what a few small tiles cost, and every panel equals that region of a full-frame upscale.
Every panel is at output scale. With `--reference` (the same frame at 4x), each label also carries
the crop's PSNR-Y against it, and the reference's crops are shown last.

The command is vidsr.cli.compare; torch, PyAV and the models load only when it runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from ..config import parse_time as parse_start
from ..errors import ConfigError, InputError, OutputError

GAP = 2  # the separator between panels, in pixels
BACKGROUND = (200, 200, 200)  # separators and frame
LABEL_BG = (24, 24, 24)
LABEL_FG = (255, 255, 255)
TITLE_BG = (48, 48, 48)


def parse_time(text: str) -> float:
    """--at: seconds or [HH:]MM:SS[.ms], by the parser --start uses (vidsr.config.parse_time)."""
    try:
        return parse_start(text)
    except ValueError as e:
        raise ConfigError("--at", str(e)) from None


@dataclass(frozen=True)
class Contender:
    """A model to compare: a registry name, optionally with a weights file, and its label."""

    label: str
    model: str
    weights: Path | None = None


def default_contenders() -> list[Contender]:
    """Bicubic (the baseline) and every built-in model whose weights ship with vidsr."""
    from ..models import MODELS
    from ..models.weights import SHIPPED

    baselines = [n for n, spec in MODELS.items() if not spec.trainable]
    trained = [n for n, spec in MODELS.items() if spec.trainable and n in SHIPPED]
    return [Contender(n, n) for n in baselines + trained]


def parse_models(text: str) -> list[Contender]:
    """`bicubic,fast,run/last.pt,srgan=other.pt`: names (built-in or community), weights files
    and NAME=FILE entries."""
    from ..models import MODELS
    from ..models.records import COMMUNITY

    entries = [e.strip() for e in text.split(",") if e.strip()]
    if not entries:
        raise ConfigError("--models", "name at least one model")
    contenders = []
    for entry in entries:
        if entry in MODELS or entry in COMMUNITY:  # a community model is fetched when built
            contenders.append(Contender(entry, entry))
            continue
        name, sep, file = entry.partition("=")
        if sep and name in MODELS:
            if not MODELS[name].trainable:
                raise ConfigError("--models", f"the {name} model takes no weights")
            contenders.append(Contender(f"{name} ({Path(file).name})", name, Path(file)))
            continue
        path = Path(entry)
        if not path.is_file():
            raise ConfigError(
                "--models",
                f"{entry!r} is neither a model ({', '.join(MODELS)}) nor a weights file",
            )
        contenders.append(_contender_for_file(path))
    return contenders


def _contender_for_file(path: Path) -> Contender:
    """The built-in architecture a weights file fits. srresnet and srgan share one network (fast
    and real another), so a file that fits both is labelled by its name alone (NAME=FILE names
    it)."""
    from ..errors import WeightsError
    from ..models import MODELS
    from ..models.weights import load_generator

    fits, failures = [], set()
    for name, spec in MODELS.items():
        if not spec.trainable:
            continue
        try:
            load_generator(name, path)
        except WeightsError as e:
            failures.add(str(e))  # a misfit names the model; an unreadable file reads the same
            continue
        fits.append(name)
    if not fits:
        trainable = ", ".join(n for n, s in MODELS.items() if s.trainable)
        reason = failures.pop() if len(failures) == 1 else (
            f"{path} fits none of the built-in networks ({trainable})")  # fmt: skip
        raise ConfigError("--models", reason)
    label = path.name if len(fits) > 1 else f"{path.name} ({fits[0]})"
    return Contender(label, fits[0], path)


# -- the frame -----------------------------------------------------------------------------------


def load_frame(path: Path, at: float | None) -> tuple:
    """(RGB uint8 (H, W, 3), the time it was taken at or None) of an image or a video frame."""
    from ..media.images import is_image, read_image, to_8bit

    path = Path(path)
    if not path.exists():
        raise InputError(f"no such file: {path}")
    if is_image(path):
        pic = read_image(path)
        return (to_8bit(pic) if pic.bit_depth > 8 else pic).rgb, None
    from ..media.probe import probe

    info = probe(path)
    duration = info.duration or 0.0
    t = duration / 2 if at is None else at
    if info.duration is not None and t > duration:
        raise InputError(f"--at {t:g} s is past the end of {path.name} ({duration:.2f} s)")
    return _frame_at(info, t), t


def _frame_at(info, t: float):
    """The frame on screen at `t` seconds from the start: seek to the keyframe before, decode on."""
    import av

    from ..media.decode import _SWS

    with av.open(str(info.path)) as container:
        stream = container.streams.video[0]
        start = float(stream.start_time * stream.time_base) if stream.start_time else 0.0
        target = start + t
        container.seek(int(target / stream.time_base), stream=stream, backward=True)
        shown = None
        for frame in container.decode(stream):
            if shown is not None and frame.time is not None and frame.time > target + 1e-6:
                break
            shown = frame
        if shown is None:
            raise InputError(f"{info.path}: no frame could be decoded at {t:g} s")
        return shown.to_ndarray(
            format="rgb24",
            src_colorspace=info.matrix,
            src_color_range=2 if info.full_range else 1,
            interpolation=_SWS,
        )


def detailed_crops(rgb, size: int, count: int) -> list[tuple[int, int]]:
    """Top-left (y, x) of the `count` non-overlapping size x size windows with the most
    high-pass energy of luma, best first."""
    import numpy as np

    from .metrics import high_pass, rgb_to_y

    energy = high_pass(rgb_to_y(rgb)) ** 2
    c = np.pad(energy.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = c[size:, size:] - c[:-size, size:] - c[size:, :-size] + c[:-size, :-size]
    chosen: list[tuple[int, int]] = []
    for _ in range(count):
        y, x = np.unravel_index(int(np.argmax(sums)), sums.shape)
        if not np.isfinite(sums[y, x]):
            break  # no room left for another crop that does not overlap
        chosen.append((int(y), int(x)))
        sums[max(0, y - size + 1) : y + size, max(0, x - size + 1) : x + size] = -np.inf
    return chosen


def upscale_region(engine, rgb, y: int, x: int, size: int):
    """The size x size crop at (y, x), upscaled with its receptive field around it as context."""
    import numpy as np
    import torch

    h, w = rgb.shape[:2]
    pad, s = engine.pad, engine.scale
    y0, x0 = max(0, y - pad), max(0, x - pad)
    y1, x1 = min(h, y + size + pad), min(w, x + size + pad)
    window = torch.from_numpy(np.ascontiguousarray(rgb[y0:y1, x0:x1]))[None]
    out = engine(window)[0].cpu().numpy()
    return out[(y - y0) * s : (y - y0 + size) * s, (x - x0) * s : (x - x0 + size) * s]


# -- the picture ---------------------------------------------------------------------------------


@dataclass
class Panel:
    label: str
    crop: tuple[int, int]  # (y, x) in source pixels
    image: object  # (P, P, 3) uint8 at output scale
    psnr_y: float | None = None
    box: tuple[int, int] = (0, 0)  # (left, top) of the image in the sheet


@dataclass
class Comparison:
    output: Path
    size: tuple[int, int]  # (width, height) of the sheet
    crop_size: int  # in source pixels
    scale: int
    time: float | None
    panels: list[Panel] = field(default_factory=list)  # row-major: crops x contenders


def _font(px: int):
    from PIL import ImageFont

    return ImageFont.load_default(size=px)  # Pillow's bundled FreeType face: no system fonts


def _fit(draw, text: str, font, width: int) -> str:
    """`text`, cut with an ellipsis where it would not fit in `width` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def compose(panels: list[Panel], columns: int, title: str):
    """Panels in a grid, each under its label bar, thin separators between; sets Panel.box."""
    import numpy as np
    from PIL import Image, ImageDraw

    side = panels[0].image.shape[0]
    rows = math.ceil(len(panels) / columns)
    font_px = max(13, min(26, side // 14))
    font = _font(font_px)
    label_h = font_px + 10
    title_h = font_px + 14
    width = columns * side + (columns + 1) * GAP
    height = title_h + rows * (label_h + side) + (rows + 1) * GAP
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    draw.rectangle((0, 0, width - 1, title_h - 1), fill=TITLE_BG)
    draw.text((GAP + 6, title_h // 2), _fit(draw, title, font, width - 12), font=font,
              fill=LABEL_FG, anchor="lm")  # fmt: skip
    for i, panel in enumerate(panels):
        r, c = divmod(i, columns)
        left = GAP + c * (side + GAP)
        top = title_h + GAP + r * (label_h + side + GAP)
        draw.rectangle((left, top, left + side - 1, top + label_h - 1), fill=LABEL_BG)
        text = panel.label if panel.psnr_y is None else f"{panel.label}  {panel.psnr_y:.2f} dB"
        draw.text((left + 6, top + label_h // 2), _fit(draw, text, font, side - 12), font=font,
                  fill=LABEL_FG, anchor="lm")  # fmt: skip
        panel.box = (left, top + label_h)
        sheet.paste(Image.fromarray(np.ascontiguousarray(panel.image)), panel.box)
    return np.asarray(sheet)


def compare(
    input: Path,
    *,
    at: float | None = None,
    contenders: list[Contender] | None = None,
    output: Path | None = None,
    reference: Path | None = None,
    crops: int = 2,
    crop_size: int = 96,
    device: str = "auto",
    overwrite: bool = False,
) -> Comparison:
    """Write the comparison sheet of `input` (an image, or the frame at `at` of a video)."""
    from ..config import UpscaleConfig
    from ..jobs.batch import EngineCache
    from ..media.images import Picture, write_image
    from .metrics import psnr, rgb_to_y

    input = Path(input)
    output = Path(output) if output is not None else input.with_name(f"{input.stem}_compare.png")
    if crops < 1 or crop_size < 8:
        raise ConfigError("--crops" if crops < 1 else "--crop-size", "too small")
    contenders = contenders or default_contenders()
    rgb, t = load_frame(input, at)  # a bad input is reported as such before the output
    if output.exists() and not overwrite:
        raise OutputError(f"{output} exists; pass --overwrite to replace it")
    engines = EngineCache()
    built = [(c, engines.get(UpscaleConfig(model=c.model, weights=c.weights, device=device)))
             for c in contenders]  # fmt: skip
    scale = built[0][1].scale
    ref = _reference(reference, rgb, scale, t)
    size = min(crop_size, rgb.shape[0], rgb.shape[1])
    panels = []
    for y, x in detailed_crops(rgb, size, crops):
        want = None if ref is None else ref[y * scale : (y + size) * scale,
                                             x * scale : (x + size) * scale]  # fmt: skip
        for c, engine in built:
            image = upscale_region(engine, rgb, y, x, size)
            score = None if want is None else psnr(rgb_to_y(image), rgb_to_y(want))
            panels.append(Panel(c.label, (y, x), image, score))
        if want is not None:
            panels.append(Panel("reference", (y, x), want))
    columns = len(built) + (ref is not None)
    when = f" at {t:.2f} s" if t is not None else ""
    title = (f"{input.name}{when}: {rgb.shape[1]}x{rgb.shape[0]}, {scale}x, "
             f"crops of {size}x{size} px, most detail first")  # fmt: skip
    sheet = compose(panels, columns, title)
    write_image(Picture(sheet), output, overwrite=overwrite)
    return Comparison(output, (sheet.shape[1], sheet.shape[0]), size, scale, t, panels)


def _reference(path: Path | None, rgb, scale: int, t: float | None):
    if path is None:
        return None
    ref, _ = load_frame(Path(path), t)
    h, w = rgb.shape[:2]
    if ref.shape[:2] != (h * scale, w * scale):
        raise InputError(
            f"--reference {Path(path).name} is {ref.shape[1]}x{ref.shape[0]}; "
            f"it must be {scale}x the input ({w * scale}x{h * scale})"
        )
    return ref


# -- before and after, for the page of `vidsr serve` ---------------------------------------------


@dataclass
class BeforeAfter:
    before: object  # (P*s, P*s, 3) uint8: the crop enlarged by a plain bicubic resize
    after: object  # the same crop through the model, at 1:1
    crop: tuple[int, int]  # (y, x) in source pixels
    size: int  # the crop's side in source pixels
    scale: int
    time: float | None


def before_after(input: Path, config, *, at: float | None = None, crop_size: int = 128,
                 engines=None) -> BeforeAfter:  # fmt: skip
    """The most detailed crop of the frame at `at` (the middle by default), enlarged by bicubic
    and by `config`'s model at the model's own scale: what a before/after slider shows."""
    import numpy as np
    from PIL import Image

    from ..config import UpscaleConfig
    from ..jobs.batch import EngineCache

    rgb, t = load_frame(Path(input), at)
    size = min(crop_size, rgb.shape[0], rgb.shape[1])
    ((y, x),) = detailed_crops(rgb, size, 1)
    model = UpscaleConfig(model=config.model, weights=config.weights, device=config.device)
    engine = (engines or EngineCache()).get(model)
    after = upscale_region(engine, rgb, y, x, size)
    side = size * engine.scale
    crop = Image.fromarray(np.ascontiguousarray(rgb[y : y + size, x : x + size]))
    before = np.asarray(crop.resize((side, side), Image.Resampling.BICUBIC))
    return BeforeAfter(before, after, (y, x), size, engine.scale, t)
