"""`vidsr export CKPT_OR_MODEL --onnx -o model.onnx [--fp16]`: a network as an ONNX graph.

For ONNX Runtime, TensorRT and vs-mlrt users. The graph takes RGB in [0, 1] as NCHW float32
(float16 with --fp16) and returns the 4x image the same way; batch, height and width are dynamic.
BatchNorm is folded into the convolutions first, so the graph is Conv, PRelu, Add and
DepthToSpace only, which every runtime has.

The TorchScript-based exporter (`dynamo=False`) is used: it needs only the onnx package, and the
dynamo exporter needs onnxscript too; for a conv net both give the same graph.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import OutputError, VidsrError, WeightsError
from ..media.staging import atomic_path
from . import MODELS, fold_batchnorm
from .weights import load_generator, sha256_of

OPSET = 17  # read by current ONNX Runtime, TensorRT and OpenVINO
INPUT, OUTPUT = "input", "output"


@dataclass(frozen=True)
class OnnxExported:
    path: Path
    model: str
    weights: str  # "shipped" or the file they came from
    fp16: bool
    opset: int
    size: int
    sha256: str


class _UnitRange(nn.Module):
    """Wraps a network trained on another pixel range so the graph still takes and gives [0, 1]."""

    def __init__(self, net: nn.Module, low: float, high: float):
        super().__init__()
        self.net, self.low, self.span = net, low, high - low

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.net(x * self.span + self.low) - self.low) / self.span  # (N, 3, sH, sW)


def trainable_models() -> list[str]:
    return [name for name, spec in MODELS.items() if spec.trainable]


def resolve_source(source: str | Path, model: str | None) -> tuple[str, Path | None]:
    """(registry name, weights file or None for the shipped weights) from CKPT_OR_MODEL."""
    text = str(source)
    if text in MODELS and not Path(text).is_file():
        if model is not None and model != text:
            raise WeightsError(f"{text!r} names the model already; --model {model} contradicts it")
        name, weights = text, None
    else:
        if not Path(text).is_file():
            raise WeightsError(
                f"{text} is neither a weights file nor a model ({', '.join(trainable_models())})"
            )
        if model is None:
            raise WeightsError(
                f"--model is needed with a weights file: {', '.join(trainable_models())}"
            )
        name, weights = model, Path(text)
    if name not in MODELS or not MODELS[name].trainable:
        raise WeightsError(
            f"cannot export {name!r} to ONNX; choose from {', '.join(trainable_models())}"
        )
    return name, weights


def prepare(name: str, weights: Path | None, *, fp16: bool) -> nn.Module:
    """The network as the graph will run it: weights loaded, BatchNorm folded, eval, dtype."""
    net, record = load_generator(name, weights)
    net = fold_batchnorm(net)
    low, high = record.value_range if record is not None else (0.0, 1.0)
    if (low, high) != (0.0, 1.0):
        net = _UnitRange(net, low, high)
    return net.to(torch.float16 if fp16 else torch.float32).eval()


def export_onnx(
    source: str | Path,
    dst: Path,
    *,
    model: str | None = None,
    fp16: bool = False,
    force: bool = False,
    opset: int = OPSET,
) -> OnnxExported:
    """Write the ONNX file beside `dst` under a temporary name and rename it into place."""
    dst = Path(dst)
    if dst.exists() and not force:
        raise OutputError(f"{dst} exists; pass --force to replace it")
    name, weights = resolve_source(source, model)
    try:
        import onnx  # noqa: F401 - torch's exporter writes the file through it
    except ImportError:
        raise VidsrError("ONNX export needs the onnx package: pip install 'vidsr[onnx]'") from None
    net = prepare(name, weights, fp16=fp16)
    example = torch.rand(1, 3, 32, 32, dtype=torch.float16 if fp16 else torch.float32)
    with atomic_path(dst) as tmp:
        write_graph(net, example, tmp, opset)
    return OnnxExported(
        dst, name, str(weights or "shipped"), fp16, opset, dst.stat().st_size, sha256_of(dst)
    )


def write_graph(net: nn.Module, example: torch.Tensor, path: Path, opset: int) -> None:
    axes = {INPUT: {0: "batch", 2: "height", 3: "width"}}
    axes[OUTPUT] = {0: "batch", 2: "out_height", 3: "out_width"}
    with warnings.catch_warnings(), torch.no_grad():
        # The exporter warns that it is the legacy one; that choice is deliberate (module doc).
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (example,),
            str(path),
            dynamo=False,
            input_names=[INPUT],
            output_names=[OUTPUT],
            dynamic_axes=axes,
            opset_version=opset,
            do_constant_folding=True,
        )


__all__ = ["OPSET", "OnnxExported", "export_onnx", "prepare", "resolve_source", "write_graph"]
