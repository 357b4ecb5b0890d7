"""`--precision int8` on the CPU: a built-in network with its residual blocks' convolutions in
int8, run by OpenVINO.

The path, chosen by measurement (README "Speed", benchmarks/int8.py):

- The network, BatchNorm folded, is exported to ONNX (vidsr.models.onnx), and ONNX Runtime's
  static quantiser puts QuantizeLinear/DequantizeLinear pairs (QDQ) on it: weights int8 per output
  channel, activations uint8 per tensor, ranges from MinMax calibration on 18 synthetic LR crops
  (`calibration_crops`: seeded dead-leaves pictures, which have the edge and size statistics of
  natural ones, shrunk by 4 with MATLAB's bicubic). Synthetic, so nothing of anyone's photographs
  ships; on Set5/Set14 they calibrate within 0.03 dB of crops of real photos.
- Only the residual blocks' convolutions are quantised (82% of the fast model's multiply-adds, 53%
  of SRResNet's). Quantised one at a time on Set5 (fast), the trunk's tail conv cost 0.38 dB and
  the sub-pixel upsampling conv 0.53 dB and tripled the grid index, a block conv 0.00-0.03 dB; so
  the head, the trunk tail and the upsampling convs stay fp32. PReLU, the residual adds and
  PixelShuffle (DepthToSpace) run in fp32 between the int8 convs, which OpenVINO fuses into them.
- OpenVINO runs the QDQ graph with int8 kernels (AVX2, AVX512 or VNNI, whatever the CPU has).
  ONNX Runtime ran the same graph half as fast and 0.4 dB worse here; NNCF's default quantisation
  of every conv was 1.6 dB worse; torch's own x86 PT2E quantiser now lives in torchao and needs
  torch.compile, which was not tried.

Quantising takes 5-20 s on 2 cores (export, calibration); the quantised graph is kept in the
cache (`$VIDSR_CACHE/int8`, else ~/.cache/vidsr/models/int8), by a hash of the weights, the
calibration recipe, the pixel range and the quantiser's version, so later runs only compile it
(under a second).
"""

from __future__ import annotations

import ctypes
import hashlib
import tempfile
import threading
import warnings
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, VidsrError
from ..models.srresnet import SRResNet

CALIBRATION = 1  # raised whenever calibration_crops() changes what it makes
QUANTISED = "/blocks/"  # ONNX node names of the convs that run in int8: SRResNet.blocks
RECIPE = 1  # raised whenever quantise() changes what it writes: old cached graphs are not used
INSTALL = "pip install 'vidsr[int8]'"


@cache
def int8_available() -> bool:
    """Whether OpenVINO and ONNX Runtime's quantiser are installed."""
    try:
        import onnxruntime.quantization  # noqa: F401
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def int8_supported(model: nn.Module) -> bool:
    """int8 is for vidsr's own networks (SRResNet: fast, srresnet, srgan, real)."""
    return isinstance(model, SRResNet)


def dead_leaves(rng: np.random.Generator, size: int = 256) -> np.ndarray:
    """A dead-leaves picture (size, size, 3) uint8: opaque discs dropped front to back, radii
    with density r^-3 from 4 to 100 px (the scale-invariant size law of natural pictures), grey
    levels with a tint, four in ten with a sinusoidal texture; a smooth ramp where none lands."""
    ramp = np.linspace(rng.uniform(0, 255), rng.uniform(0, 255), size, dtype=np.float32)
    img = np.repeat(np.repeat(ramp[:, None, None], size, 1), 3, 2)
    filled = np.zeros((size, size), bool)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    rmin, rmax = 4.0, 100.0
    for _ in range(20000):
        r = (rmin**-2 - rng.random() * (rmin**-2 - rmax**-2)) ** -0.5  # inverse CDF of r^-3
        cy, cx = rng.uniform(-r, size + r, 2)
        y0, y1 = max(0, int(cy - r)), min(size, int(cy + r) + 1)
        x0, x1 = max(0, int(cx - r)), min(size, int(cx + r) + 1)
        if y0 >= y1 or x0 >= x1:
            continue
        sy, sx = yy[y0:y1, x0:x1], xx[y0:y1, x0:x1]
        m = ((sy - cy) ** 2 + (sx - cx) ** 2 <= r * r) & ~filled[y0:y1, x0:x1]
        if not m.any():
            continue
        colour = np.clip(rng.uniform(0, 255) + rng.normal(0, 30, 3), 0, 255)
        texture = 0.0
        if rng.random() < 0.4:
            f, a = rng.uniform(0.05, 0.5), rng.uniform(0, np.pi)
            texture = rng.uniform(5, 40) * np.sin(f * (np.cos(a) * sx[m] + np.sin(a) * sy[m]))
        img[y0:y1, x0:x1][m] = np.clip(colour[None] + np.asarray(texture)[..., None], 0, 255)
        filled[y0:y1, x0:x1] |= m
        if filled.all():
            break
    return img.round().astype(np.uint8)


@cache
def _calibration_u8(n: int = 18, seed: int = 0) -> np.ndarray:
    from ..quality.imresize import imresize

    rng = np.random.default_rng(seed)
    return np.stack([imresize(dead_leaves(rng), 0.25) for _ in range(n)])


def calibration_crops(value_range: tuple[float, float] = (0.0, 1.0)) -> list[np.ndarray]:
    """18 LR crops, (1, 3, 64, 64) float32 in the network's pixel range: dead-leaves pictures
    of 256 px shrunk by 4, the same every time (seeded)."""
    low, high = value_range
    crops = _calibration_u8().astype(np.float32).transpose(0, 3, 1, 2)
    return [c[None] for c in crops * ((high - low) / 255.0) + low]


def quantise(model: nn.Module, dst: Path, value_range: tuple[float, float] = (0.0, 1.0)) -> Path:
    """Write the QDQ-quantised ONNX graph of `model` (folded, fp32, eval) to `dst`."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from ..models.onnx import OPSET, write_graph

    crops = calibration_crops(value_range)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.crops = iter(crops)

        def get_next(self):
            crop = next(self.crops, None)
            return None if crop is None else {"input": crop}

    fp32, pre = dst.with_suffix(".fp32.onnx"), dst.with_suffix(".pre.onnx")
    write_graph(model, torch.from_numpy(crops[0]), fp32, OPSET)
    quant_pre_process(str(fp32), str(pre))
    import onnx

    convs = [n.name for n in onnx.load(str(pre)).graph.node if n.op_type == "Conv"]
    if not any(QUANTISED in name for name in convs):
        raise VidsrError("int8: the network has no residual blocks to quantise")
    quantize_static(
        str(pre),
        str(dst),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["Conv"],
        nodes_to_exclude=[name for name in convs if QUANTISED not in name],
    )
    return dst


def graph_key(model: nn.Module, value_range: tuple[float, float]) -> str:
    """What the quantised graph depends on, hashed: weights, calibration, range, tool versions."""
    import onnxruntime

    h = hashlib.sha256(f"{RECIPE} {onnxruntime.__version__} {value_range}".encode())
    h.update(f"calibration {CALIBRATION}".encode())
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:32]


def cache_path(model: nn.Module, value_range: tuple[float, float]) -> Path:
    """Where the quantised graph of `model` is kept between runs."""
    from ..models.download import cache_dir

    return cache_dir() / "int8" / f"{graph_key(model, value_range)}.onnx"


def _keep(made: Path, path: Path) -> None:
    """Copy a new graph into the cache; a cache that cannot be written only costs time."""
    from ..media.staging import atomic_path

    try:
        with atomic_path(path) as dst:
            dst.write_bytes(made.read_bytes())
    except (OSError, VidsrError):
        pass


class _SignalStack(ctypes.Structure):  # stack_t of sigaltstack(2)
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int),
                ("ss_size", ctypes.c_size_t)]  # fmt: skip


@cache
def _sigaltstack():
    """libc's sigaltstack, or None where there is none (not Linux/glibc-like)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.sigaltstack
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.POINTER(_SignalStack), ctypes.POINTER(_SignalStack)]
    fn.restype = ctypes.c_int
    return fn


@contextmanager
def kept_signal_stack():
    """Give this thread back its alternate signal stack after OpenVINO has run.

    OpenVINO's CPU plugin (2026.4) installs a signal stack of its own on the thread that compiles
    a model, saving the one before, and puts the saved one back when that compiled model is
    released. Released out of order (two engines, the first freed first), a stack that was freed
    already is put back; the next signal handled on it (Python's handlers ask for the signal stack:
    SIGCHLD after DataLoader workers, SIGINT, SIGTERM) cannot be delivered and the kernel kills the
    process with SIGSEGV. Seen with gdb (`catch syscall sigaltstack`); tests/int8_cases.py
    reproduces it."""
    fn = _sigaltstack()
    if fn is None:
        yield
        return
    before = _SignalStack()
    fn(None, ctypes.byref(before))
    try:
        yield
    finally:
        fn(ctypes.byref(before), None)


class Int8Network:
    """An SRResNet quantised (see the module doc) and compiled by OpenVINO for this CPU; called
    like the network: float (N, 3, H, W) -> float (N, 3, sH, sW), any size."""

    def __init__(
        self,
        model: nn.Module,
        *,
        value_range: tuple[float, float] = (0.0, 1.0),
        threads: int | None = None,
    ):
        if not int8_supported(model):
            raise ConfigError(
                "--precision",
                "int8 is for vidsr's SRResNet-family models (fast, srresnet, srgan, real), "
                f"not {type(model).__name__}; use fp32 or bf16",
            )
        if not int8_available():
            raise ConfigError("--precision", f"int8 needs OpenVINO and ONNX Runtime: {INSTALL}")
        import openvino as ov

        self.scale = model.scale
        model = model.float().eval()
        core = ov.Core()
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        path = cache_path(model, value_range)
        self.cached = path.is_file()  # False: quantised now (and kept for the next run)
        with tempfile.TemporaryDirectory(prefix="vidsr-int8-") as tmp:
            if not self.cached:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # the exporter's and quantiser's advice
                    made = quantise(model, Path(tmp) / "int8.onnx", value_range)
                _keep(made, path)
                path = made  # read from here: the cache may not be writable
            with kept_signal_stack():
                self.compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
                self._request = self.compiled.create_infer_request()
        self._lock = threading.Lock()  # one request, reused: calls from several threads queue

    def close(self) -> None:
        """Release the compiled model now, keeping this thread's signal stack (see
        kept_signal_stack); also done when the network is garbage-collected."""
        compiled = self.__dict__.pop("compiled", None)
        request = self.__dict__.pop("_request", None)
        if compiled is None and request is None:
            return
        with kept_signal_stack():
            del request, compiled

    def __del__(self) -> None:
        self.close()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(x.detach().float().cpu().numpy())
        with self._lock:
            y = self._request.infer({0: array})[0]  # a copy: the request's buffer is reused
        return torch.from_numpy(y)


__all__ = [
    "CALIBRATION",
    "Int8Network",
    "cache_path",
    "calibration_crops",
    "graph_key",
    "int8_available",
    "int8_supported",
    "quantise",
]
