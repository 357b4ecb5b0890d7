"""Frozen configurations: what the CLI (or a preset, or a caller) decided, handed to the core."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .models.records import ALL_MODELS, BUILTIN_MODELS, COMMUNITY

AUTO = "auto"
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
DEVICES = ("auto", "cpu", "cuda")
MIN_TILE = 16  # input pixels: below this the context dwarfs a tile's core (vidsr.upscale.tiling)


# -- parsers: one per option, for CLI strings, TOML values and Python arguments alike ------------
# Each returns the normalised value or raises ValueError with what was expected.


def _choice(*allowed: str) -> Callable[[Any], str]:
    def parse(v: Any) -> str:
        if not isinstance(v, str) or v not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}, got {v!r}")
        return v

    return parse


def _int(v: Any) -> int:
    if isinstance(v, bool):
        raise ValueError(f"expected a number, got {v!r}")
    if isinstance(v, int):
        return v
    if isinstance(v, str) and v.strip().lstrip("+-").isdigit():
        return int(v)
    raise ValueError(f"expected a number, got {v!r}")


WEIGHT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors")
DEFAULT_MODEL = "fast"  # what `vidsr upscale clip.mp4` runs (README, Models, says why)


def names(items: tuple[str, ...] | list[str], last: str = "or") -> str:
    """'a, b, c or d' for a help text."""
    return ", ".join(items[:-1]) + f" {last} {items[-1]}" if len(items) > 1 else "".join(items)


def parse_model(v: Any) -> str | None:
    """A built-in name, a community model's id (downloaded on first use), "auto" (the
    architecture of --weights), or a model file's path."""
    if v is None:
        return None
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, str) and (v in ALL_MODELS or v == AUTO):
        return v
    if isinstance(v, str) and (v.lower().endswith(WEIGHT_SUFFIXES) or Path(v).is_file()):
        return v
    raise ValueError(
        f"unknown model {v!r}; choose from {', '.join(BUILTIN_MODELS)}, a community model "
        "(`vidsr models` lists them), or give a model file"
    )


def parse_outscale(v: Any) -> float | None:
    if v is None or v == AUTO:
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"expected a number (2, 1.5), got {v!r}") from None
    if not 0.25 <= x <= 16:
        raise ValueError(f"expected a factor from 0.25 to 16, got {v!r}")
    return x


def parse_device(v: Any) -> str:
    if isinstance(v, str) and (v in DEVICES or (v.startswith("cuda:") and v[5:].isdigit())):
        return v
    raise ValueError(f"unknown device {v!r}; choose from {', '.join(DEVICES)} or cuda:N")


def parse_precision(v: Any) -> str:
    if v not in PRECISIONS:
        raise ValueError(f"unknown precision {v!r}; choose from {', '.join(PRECISIONS)}")
    return v


def parse_batch(v: Any) -> int | str:
    if v == AUTO:
        return AUTO
    n = _int(v)
    if n < 1:
        raise ValueError(f"expected auto or a number of at least 1, got {v!r}")
    return n


def parse_tile(v: Any) -> int | None:
    """--tile: auto -> None (tiles where a frame would not fit), off -> 0 (never), N -> N."""
    if v is None or v == AUTO:
        return None
    if v == "off":
        return 0
    try:
        n = _int(v)
    except ValueError:
        raise ValueError(f"expected auto, off or a tile size in pixels, got {v!r}") from None
    if n == 0:  # off, as parsed before (a config is checked again when it is built)
        return 0
    if n < MIN_TILE:
        raise ValueError(f"tiles must be at least {MIN_TILE} pixels, got {n}")
    return n


def tile_name(tile: int | None) -> str:
    """A parsed --tile as the user writes it: auto, off or the size."""
    return "auto" if tile is None else "off" if tile == 0 else str(tile)


_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT])(?:I?B)?", re.IGNORECASE)
MIN_MEMORY = 64 * 2**20


def parse_memory(v: Any) -> int | None:
    """--memory: auto (None) or a size with a unit (4G, 1500M, 0.5GiB) as bytes (binary units)."""
    if v is None or v == AUTO:
        return None
    if isinstance(v, int) and not isinstance(v, bool):
        n = v
    else:
        m = _SIZE.fullmatch(v.strip()) if isinstance(v, str) else None
        if m is None:
            raise ValueError(f"expected auto or a size such as 4G or 1500M, got {v!r}")
        n = int(float(m.group(1)) * 1024 ** ("KMGT".index(m.group(2).upper()) + 1))
    if n < MIN_MEMORY:
        raise ValueError(f"expected at least 64M, got {v!r}")
    return n


def _choice_of(option: str, allowed: tuple[str, ...]) -> Callable[[Any], str]:
    def parse(v: Any) -> str:
        if v not in allowed:
            raise ValueError(f"expected {names(list(allowed))}, got {v!r}")
        return v

    parse.__name__ = f"parse_{option}"
    return parse


parse_deinterlace = _choice_of("deinterlace", ("auto", "off", "frame", "field"))
parse_ivtc = _choice_of("ivtc", ("auto", "off", "on"))
parse_denoise = _choice_of("denoise", ("off", "light", "medium", "strong"))


AUTO_TEMPORAL = 0.9  # --temporal auto: the stabiliser's strength (README, Steady video, says why)


def parse_temporal(v: Any) -> float:
    """--temporal: off (0), auto (AUTO_TEMPORAL) or a strength from 0 to 0.95 (vidsr.upscale.
    temporal: how much of a frame's detail may come from the frames before it)."""
    if v is None or v == "off" or v is False:
        return 0.0
    if v == AUTO:
        return AUTO_TEMPORAL
    try:
        s = float(v)
    except (TypeError, ValueError):
        s = float("nan")
    if isinstance(v, bool) or not 0.0 <= s <= 0.95:  # also nan; 1 would keep one frame's detail
        raise ValueError(f"expected off, auto or a strength from 0 to 0.95, got {v!r}")
    return s


def temporal_name(strength: float) -> str:
    """The --temporal value that parses back to `strength`."""
    return "off" if strength == 0 else AUTO if strength == AUTO_TEMPORAL else f"{strength:g}"


def parse_crop(v: Any) -> str | tuple[int, int, int, int] | None:
    """--crop: off (None), auto (black bars found by cropdetect) or W:H:X:Y in source pixels."""
    if v is None or v == "off":
        return None
    if v == AUTO:
        return AUTO
    if isinstance(v, tuple) and len(v) == 4:
        parts = list(v)
    elif isinstance(v, str) and re.fullmatch(r"\d+:\d+:\d+:\d+", v.strip()):
        parts = [int(x) for x in v.strip().split(":")]
    else:
        raise ValueError(f"expected off, auto or W:H:X:Y (720:432:0:72), got {v!r}")
    w, h, x, y = (int(n) for n in parts)
    if w < 16 or h < 16 or w % 2 or h % 2:
        raise ValueError(f"the kept picture must be at least 16x16 and even-sized, got {v!r}")
    return w, h, x, y


def parse_codec(v: Any) -> str:
    from .media.codecs import CODECS

    if not isinstance(v, str) or (v not in CODECS and v != AUTO):
        raise ValueError(f"unknown codec {v!r}; choose from {', '.join(CODECS)}")
    return v


def parse_crf(v: Any) -> int | None:
    if v is None or v == AUTO:
        return None
    n = _int(v)
    if not 0 <= n <= 63:
        raise ValueError(f"crf {n} is out of range (0..63, or auto)")
    return n


def parse_encoder_preset(v: Any) -> str | None:
    if v is None or v == AUTO:
        return None
    if isinstance(v, bool) or not isinstance(v, str | int):
        raise ValueError(
            f'expected a name (x264: "veryfast"), a number (svtav1: 8) or auto, got {v!r}'
        )
    return str(v)


def parse_pix_fmt(v: Any) -> str | None:
    import av

    if v is None or v in ("source", AUTO):
        return None
    try:
        av.VideoFormat(v)
    except (TypeError, ValueError):
        raise ValueError(
            f"expected source or an FFmpeg pixel format (yuv420p10le), got {v!r}"
        ) from None
    return v


def parse_container(v: Any) -> str | None:
    from .media.codecs import CONTAINERS

    if v is None or v in (AUTO, "source"):
        return None
    ext = v if isinstance(v, str) and v.startswith(".") else f".{v}"
    if ext not in CONTAINERS:
        raise ValueError(f"expected one of {', '.join(e[1:] for e in CONTAINERS)}, got {v!r}")
    return ext


def parse_path(v: Any) -> Path | None:
    return None if v is None else Path(v)


def parse_flag(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    raise ValueError(f"expected true or false, got {v!r}")


# A Ray cluster's address as `ray.init` takes it: the head's GCS (head:6379) or Ray Client's
# (ray://head:10001).
_RAY_ADDRESS = re.compile(r"(ray://)?[A-Za-z0-9_.\-]+:\d{1,5}")


def parse_ray(v: Any) -> str | None:
    """--ray: auto (a new Ray instance on this machine) or the address of a running cluster."""
    if v is None or v is False:
        return None
    if v is True:
        return AUTO
    if isinstance(v, str) and (v == AUTO or _RAY_ADDRESS.fullmatch(v)):
        return v
    raise ValueError(
        f"expected auto or a Ray cluster address (head:6379, ray://head:10001), got {v!r}"
    )


def parse_time(v: Any) -> float | None:
    """Seconds (90, 1.5) or [HH:]MM:SS[.ms] (1:02:03.250), as seconds rounded to the microsecond."""
    if v is None:
        return None
    if isinstance(v, bool):
        raise ValueError(f"expected seconds or HH:MM:SS[.ms], got {v!r}")
    if isinstance(v, int | float):
        seconds = float(v)
    elif isinstance(v, str) and v.strip():
        parts = v.strip().split(":")
        try:
            if len(parts) > 3 or any(not p.strip() or p.strip()[0] in "+-" for p in parts):
                raise ValueError
            numbers = [float(p) for p in parts]
        except ValueError:
            raise ValueError(f"expected seconds or HH:MM:SS[.ms], got {v!r}") from None
        if any(n >= 60 for n in numbers[1:]) or any(n != int(n) for n in numbers[:-1]):
            raise ValueError(f"expected seconds or HH:MM:SS[.ms], got {v!r}")
        seconds = sum(n * 60**i for i, n in enumerate(reversed(numbers)))
    else:
        raise ValueError(f"expected seconds or HH:MM:SS[.ms], got {v!r}")
    if not seconds >= 0 or seconds == float("inf"):
        raise ValueError(f"expected a time of at least 0, got {v!r}")
    return round(seconds, 6)


@dataclass(frozen=True)
class Option:
    """One upscale option, declared once: the CLI flag of `upscale` and `watch`, the preset key,
    the keyword argument of vidsr.upscale_video and the config field are all this entry."""

    name: str  # keyword argument, preset key, click parameter name
    flags: tuple[str, ...]
    help: str
    parse: Callable[[Any], Any]
    default: Any
    field: str = ""  # the dataclass field, when it differs from name
    encode: bool = False  # a field of EncodeConfig rather than UpscaleConfig
    preset: bool = True  # may a preset set it
    is_flag: bool = False
    metavar: str | None = None
    flag_value: Any = None  # an option whose value may be left out (`--ray` alone: auto)

    @property
    def target(self) -> str:
        return self.field or self.name


OPTIONS: tuple[Option, ...] = (
    Option("model", ("--model",), f"{', '.join(BUILTIN_MODELS)}, or a model file (any "
           f"architecture `vidsr models` lists).  [default: {DEFAULT_MODEL}; with --weights: the "
           "file's]",
           parse_model, None, metavar="NAME|FILE"),
    Option("weights", ("--weights",), "Weights for --model: a `vidsr train` checkpoint or export, "
           "or a community model file (.pth, .safetensors).", parse_path, None, preset=False,
           metavar="FILE"),
    Option("outscale", ("--outscale",), "Final size as a factor of the source (2 with a 4x model: "
           "1080p -> 4K); the model runs at its own scale, then an antialiased resize.  [default: "
           "the model's scale]", parse_outscale, None, metavar="S"),
    Option("device", ("--device",), "auto, cpu, cuda or cuda:N.", parse_device, "auto"),
    Option("precision", ("--precision",), "auto, fp32, bf16, fp16 (CUDA) or int8 (CPU, built-in "
           "models, needs vidsr[int8]); auto: fp16 on CUDA, bf16 on a CPU with native bf16, "
           "else int8 for a built-in model where OpenVINO is installed, else fp32.",
           parse_precision, "auto"),
    Option("batch_size", ("--batch-size",), "Frames per model call, or auto (what fits the free "
           "device memory; 1 on a CPU).", parse_batch, "auto", metavar="auto|N"),
    Option("tile", ("--tile",), "auto (tiles only when memory runs out), off, or a tile size in "
           "input pixels.", parse_tile, "auto", metavar="auto|off|N"),
    Option("memory", ("--memory",), "On a CPU, the memory the network may take for a frame: "
           "auto (half of what is available when a file starts) or a size (4G, 1500M); a frame "
           "that needs more is upscaled in tiles, which the first line says.", parse_memory,
           "auto", metavar="auto|SIZE"),
    Option("deinterlace", ("--deinterlace",), "auto (interlaced video: one frame per field; "
           "telecined film goes to --ivtc), off, frame (keep the frame rate) or field (one frame "
           "per field: 50/60 fps).", parse_deinterlace, "auto", metavar="auto|off|frame|field"),
    Option("ivtc", ("--ivtc",), "Inverse telecine (29.97 fps 3:2 pulldown back to 23.976 fps "
           "film): auto (where detected), off or on.", parse_ivtc, "auto",
           metavar="auto|off|on"),
    Option("crop", ("--crop",), "off, auto (black bars found and left out: they are not "
           "upscaled) or W:H:X:Y in source pixels.", parse_crop, "off", metavar="off|auto|W:H:X:Y"),
    Option("denoise", ("--denoise",), "Denoise before the network (FFmpeg nlmeans, one frame "
           "at a time): "
           "off, light, medium or strong.", parse_denoise, "off",
           metavar="off|light|medium|strong"),
    Option("temporal", ("--temporal",), "Steady video: the model's added detail follows the "
           "motion from frame to frame instead of being made anew, so still and tracked areas "
           "stop shimmering; off, auto (strength 0.9) or a strength from 0 to 0.95.",
           parse_temporal, AUTO, metavar="off|auto|S"),
    Option("codec", ("--codec",), "libx264, libx265, libsvtav1, libvpx-vp9, ffv1, prores_ks, "
           "h264_nvenc, hevc_nvenc, av1_nvenc, or auto (hevc_nvenc where an NVIDIA encoder opens, "
           "else libx264); the container follows the output extension.", parse_codec, "libx264",
           encode=True, metavar="NAME"),
    Option("crf", ("--crf",), "Constant quality (lower is better), or auto: suits the codec and "
           "output size.", parse_crf, "auto", encode=True, metavar="auto|N"),
    Option("encoder_preset", ("--encoder-preset",), "Encoder speed preset (x264/x265: veryfast.."
           "veryslow, svtav1: 0-13, vp9: cpu-used 0-8, prores_ks: proxy..4444xq, nvenc: p1..p7), "
           "or auto.",
           parse_encoder_preset, "auto", field="preset", encode=True, metavar="NAME"),
    Option("pix_fmt", ("--pix-fmt",), "Output pixel format (yuv420p10le ...), or source: the "
           "source's, never below its bit depth.", parse_pix_fmt, "source", encode=True,
           metavar="NAME"),
    Option("container", ("--container",), "Output extension when -o gives none (mp4, mkv, mov, "
           "webm), or source: the input's where we can write it, else mkv.", parse_container,
           "source", metavar="EXT"),
    Option("overwrite", ("--overwrite",), "Replace an existing output file.", parse_flag, False,
           preset=False, is_flag=True),
    Option("quiet", ("-q", "--quiet"), "No progress bar and no summary line (warnings and errors "
           "still show).", parse_flag, False, preset=False, is_flag=True),
    Option("resume", ("--no-resume",), "Start over instead of continuing an interrupted run of "
           "the same job from its work folder (.NAME.vidsr-work beside the output).", parse_flag,
           True, preset=False, is_flag=True),
    Option("start", ("--start",), "Upscale from this time on: seconds or HH:MM:SS[.ms] from the "
           "first frame; the output starts with the first frame at or after it.", parse_time,
           None, preset=False, metavar="T"),
    Option("duration", ("--duration",), "Upscale this long a span (seconds or HH:MM:SS[.ms]): "
           "frames before start + duration.", parse_time, None, preset=False, metavar="D"),
    Option("skip_existing", ("--skip-existing",), "Leave outputs that exist alone and count them "
           "as skipped (re-runs over a folder).", parse_flag, False, preset=False, is_flag=True),
    Option("ray", ("--ray",), "Run every file, and every segment of a long one, as a task on a "
           "Ray cluster: auto (or --ray alone) starts Ray on this machine with all its GPUs; "
           "ADDRESS joins a running cluster (head:6379). Needs pip install 'vidsr[ray]'.",
           parse_ray, None, preset=False, metavar="auto|ADDRESS", flag_value=AUTO),
)  # fmt: skip
OPTION_NAMES = {o.name: o for o in OPTIONS}
# Values that belong to one codec: an explicit codec other than a preset's drops the preset's.
CODEC_BOUND = ("crf", "encoder_preset", "pix_fmt")


def _checked(opt: Option, value: Any) -> Any:
    try:
        return opt.parse(value)
    except ValueError as e:
        raise ConfigError(opt.flags[-1], str(e)) from None


@dataclass(frozen=True)
class EncodeConfig:
    """How the upscaled video is encoded. The container follows the output file's extension.

    None means "the codec's default for this output" (see vidsr.media.encode.encoder_options):
    crf and speed preset scale with the output resolution; pix_fmt follows the source's depth.
    Whether the codec fits a container is checked per output file (media.encode.check_encode).
    """

    codec: str = "libx264"
    crf: int | None = None  # constant quality; ffv1 is lossless and prores_ks has none
    preset: str | None = None  # the encoder's speed preset (prores_ks: its profile)
    pix_fmt: str | None = None  # None: the source's format, at >= its bit depth
    options: dict[str, str] = field(default_factory=dict)  # extra encoder options

    def __post_init__(self) -> None:
        for opt in OPTIONS:
            if opt.encode:
                object.__setattr__(self, opt.target, _checked(opt, getattr(self, opt.target)))


@dataclass(frozen=True)
class UpscaleConfig:
    """Everything a front end (CLI, API, watcher, a distributed worker) hands the core.

    Built once and validated here: every value is normalised by its Option's parser.
    """

    model: str | None = None  # None: DEFAULT_MODEL, or "auto" when weights are given
    weights: Path | None = None
    outscale: float | None = None  # None: the model's own scale
    overwrite: bool = False
    device: str = "auto"
    precision: str = "auto"
    batch_size: int | str = "auto"  # frames per model call, or "auto"
    tile: int | None = None  # None: auto, 0: off, N: N-pixel input tiles (parse_tile)
    memory: int | None = None  # CPU: bytes a frame's activations may take; None: half the free RAM
    deinterlace: str = "auto"  # the source's clean-up before the network (vidsr.media.filters)
    ivtc: str = "auto"
    crop: str | tuple[int, int, int, int] | None = None  # None: off; "auto"; (w, h, x, y)
    denoise: str = "off"
    temporal: float = AUTO_TEMPORAL  # the stabiliser's strength (vidsr.upscale.temporal); 0: off
    container: str | None = None  # output extension when none is given (".mkv"); None: the source's
    quiet: bool = False
    resume: bool = True  # continue an interrupted run from its work folder
    start: float | None = None  # seconds from the first frame
    duration: float | None = None  # seconds
    skip_existing: bool = False
    ray: str | None = None  # auto or a cluster address: the jobs run as Ray tasks (distributed)
    encode: EncodeConfig = field(default_factory=EncodeConfig)
    queue_frames: int = 8  # frames buffered between stages: bounds memory on long videos
    # Output is encoded in closed-GOP segments of about this long, so a killed run loses at most
    # one; 0 writes the output in one pass (no resume, no --start/--duration).
    segment_seconds: float = 10.0

    def __post_init__(self) -> None:
        for opt in OPTIONS:
            if not opt.encode:
                object.__setattr__(self, opt.target, _checked(opt, getattr(self, opt.target)))
        self._resolve_model()

    def _resolve_model(self) -> None:
        from .models import MODELS

        model = self.model
        if model in COMMUNITY:  # a file by name: the weights are the registry's
            if self.weights is not None:
                raise ConfigError("--weights", f"{model} is a model file of its own (no --weights)")
        elif model is not None and model not in MODELS and model != AUTO:  # a model file
            if self.weights is not None and Path(model) != self.weights:
                raise ConfigError("--model", "a model file and a different --weights file")
            object.__setattr__(self, "weights", Path(model))
            model = AUTO
        if model is None:
            model = AUTO if self.weights is not None else DEFAULT_MODEL
        if model == AUTO and self.weights is None:
            raise ConfigError("--model", "auto needs --weights FILE (or --model FILE)")
        if self.weights is not None and model in MODELS and not MODELS[model].trainable:
            raise ConfigError("--weights", f"the {model} model takes no weights")
        object.__setattr__(self, "model", model)
        if self.queue_frames < 1:
            raise ConfigError("queue_frames", "must be at least 1")
        if self.duration is not None and self.duration <= 0:
            raise ConfigError("--duration", "must be more than 0")
        if self.skip_existing and self.overwrite:
            raise ConfigError("--skip-existing", "cannot be combined with --overwrite")
        if not 0 <= self.segment_seconds < float("inf"):
            raise ConfigError("segment_seconds", "must be 0 (one pass) or more")
        if self.precision == "int8" and self.device.startswith("cuda"):
            raise ConfigError("--precision", "int8 runs on the CPU only; use fp16 on CUDA")
        if self.precision == "int8" and model in COMMUNITY:
            raise ConfigError(
                "--precision", "int8 is for the built-in models (fast, srresnet, srgan, real)"
            )
        if self.ray is not None and self.device.startswith("cuda:"):
            raise ConfigError("--device", "not cuda:N with --ray: Ray gives each worker its GPU")
        if self.segment_seconds == 0 and (self.start is not None or self.duration is not None):
            raise ConfigError("--start", "a span needs segmented output (segment_seconds > 0)")


def prep_options(config: UpscaleConfig) -> dict[str, Any]:
    """The clean-up options, as vidsr.media.filters.plan_prep takes them."""
    denoise = None if config.denoise == "off" else config.denoise
    return {"deinterlace": config.deinterlace, "ivtc": config.ivtc, "crop": config.crop,
            "denoise": denoise}  # fmt: skip


def build_upscale_config(
    values: dict[str, Any], *, extra: dict[str, Any] | None = None
) -> UpscaleConfig:
    """An UpscaleConfig from option values by Option name (missing: the option's default).

    `extra` sets UpscaleConfig fields that are not user options (queue_frames, encoder options).
    """
    unknown = sorted(set(values) - set(OPTION_NAMES))
    if unknown:
        raise TypeError(f"unknown upscale option(s): {', '.join(unknown)}")
    top: dict[str, Any] = dict(extra or {})
    enc: dict[str, Any] = {}
    options = top.pop("encoder_options", None)
    for opt in OPTIONS:
        value = values.get(opt.name, opt.default)
        (enc if opt.encode else top)[opt.target] = value
    if options:
        enc["options"] = dict(options)
    return UpscaleConfig(**top, encode=EncodeConfig(**enc))
