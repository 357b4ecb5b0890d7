"""The CPU comparison table: vidsr (model-only and end-to-end, at `auto` precision and in int8)
against a naive loop, ONNX Runtime and OpenVINO on the same weights, on this CPU as it is and
capped to AVX2. Writes benchmarks/RESULTS.md.

    .venv/bin/python benchmarks/run.py                    # srresnet 160x90, fast 320x180; ~15 min
    .venv/bin/python benchmarks/run.py --cases srresnet@160x90 --isas native --frames 24

"AVX2" caps the instruction sets of oneDNN (in torch and in OpenVINO: ONEDNN_MAX_CPU_ISA=AVX2)
and of torch's own kernels (ATEN_CPU_CAPABILITY=avx2): this CPU as a laptop's without AVX-512
would run, which `auto` then runs in fp32.

Every engine runs in its own subprocess (glibc malloc tuning and thread pools are per process, so
the baselines do not inherit vidsr's tuning). onnxruntime and openvino are benchmark-only
dependencies: `pip install onnx onnxruntime openvino -c constraints.txt`; a missing one is reported
as such. Weights are random (seeded); speed does not depend on them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
NOTES_MARKER = "<!-- notes: kept by run.py -->"
GPU_COMMAND = (
    "vidsr bench --model srresnet --size {size} --frames 96 --device cuda --batch-size auto --json"
)


AVX2 = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}


def _model(name: str, fold: bool = True):
    import torch

    from vidsr.models import build_model, fold_batchnorm

    torch.manual_seed(0)
    m = build_model(name).eval()
    return fold_batchnorm(m) if fold else m


def _timed(step, count: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        step()
    t = time.perf_counter()
    for _ in range(count):
        step()
    return count / (time.perf_counter() - t)


def one_vidsr(model: str, size: str, frames: int, precision: str = "auto") -> dict:
    """vidsr bench with the naive loop's encoder (x264 veryfast) and no stabiliser."""
    from vidsr.config import EncodeConfig, UpscaleConfig
    from vidsr.quality.throughput import run_bench

    config = UpscaleConfig(model=model, device="cpu", precision=precision, temporal=0.0,
                           encode=EncodeConfig(preset="veryfast"))  # fmt: skip
    r = run_bench(config, size=size, frames=frames, repeat=2)
    return {
        "model_fps": r.model_fps,
        "pipeline_fps": r.pipeline_fps,
        "precision": r.precision,
        "decode_fps": r.decode_fps,
        "encode_fps": r.encode_fps,
    }


def one_vidsr_int8(model: str, size: str, frames: int) -> dict:
    return one_vidsr(model, size, frames, "int8")


def one_naive(model: str, size: str, frames: int) -> dict:
    """Real-ESRGAN's inference_realesrgan_video.py shape: one frame at a time, fp32, synchronous
    copies, decode -> model -> encode in one thread, no malloc or layout tuning."""
    import av
    import numpy as np
    import torch

    from vidsr.media.sample import write_sample

    w, h = (int(v) for v in size.split("x"))
    model = _model(model, fold=False)
    torch.set_num_threads(os.cpu_count() or 1)
    with tempfile.TemporaryDirectory() as tmp:
        clip = write_sample(
            Path(tmp) / "c.mp4", width=w, height=h, seconds=(frames + 2) / 25, audio=False
        )
        with av.open(str(clip)) as src, av.open(str(Path(tmp) / "o.mp4"), "w") as dst:
            out = dst.add_stream("libx264", rate=25)
            out.width, out.height, out.pix_fmt = 4 * w, 4 * h, "yuv420p"
            out.options = {"preset": "veryfast", "crf": "18"}
            decoded = src.decode(video=0)

            def step():
                img = next(decoded).to_ndarray(format="rgb24")
                x = torch.from_numpy(img).permute(2, 0, 1).float().div(255).unsqueeze(0)
                with torch.no_grad():
                    y = model(x.to("cpu")).cpu()
                y = (y.squeeze(0).clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(y), format="rgb24")
                dst.mux(out.encode(frame))

            fps = _timed(step, frames)
            dst.mux(out.encode(None))
    return {"pipeline_fps": round(fps, 3), "precision": "fp32"}


def _onnx(model: str, size: str, path: Path) -> None:
    import torch

    w, h = (int(v) for v in size.split("x"))
    torch.onnx.export(
        _model(model),
        torch.rand(1, 3, h, w),
        str(path),
        input_names=["x"],
        output_names=["y"],
        opset_version=17,
        dynamo=False,
    )


def one_onnxruntime(model: str, size: str, frames: int) -> dict:
    import numpy as np
    import onnxruntime as ort

    w, h = (int(v) for v in size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.onnx"
        _onnx(model, size, path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = os.cpu_count() or 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        x = np.random.rand(1, 3, h, w).astype(np.float32)
        fps = _timed(lambda: sess.run(None, {"x": x}), frames)
    return {"model_fps": round(fps, 3), "precision": "fp32", "version": ort.__version__}


def one_openvino(model: str, size: str, frames: int) -> dict:
    import numpy as np
    import openvino as ov

    w, h = (int(v) for v in size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.onnx"
        _onnx(model, size, path)
        core = ov.Core()
        config = {"PERFORMANCE_HINT": "LATENCY"}
        if os.environ.get("ONEDNN_MAX_CPU_ISA") == "AVX2":  # it would pick bf16 from the CPUID
            config["INFERENCE_PRECISION_HINT"] = "f32"
        compiled = core.compile_model(str(path), "CPU", config)
        precision = str(compiled.get_property("INFERENCE_PRECISION_HINT")).split("'")[-2]
        req = compiled.create_infer_request()
        x = np.random.rand(1, 3, h, w).astype(np.float32)
        fps = _timed(lambda: req.infer({0: x}), frames)
    return {"model_fps": round(fps, 3), "precision": precision, "version": ov.__version__}


KINDS = {
    "vidsr": one_vidsr,
    "vidsr-int8": one_vidsr_int8,
    "naive": one_naive,
    "onnxruntime": one_onnxruntime,
    "openvino": one_openvino,
}


def run_one(kind: str, case: str, frames: int, env: dict[str, str]) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--one", kind, "--cases", case, "--frames", str(frames)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["failed"])[-1]
        return {"error": tail[:200]}
    return json.loads(lines[-1])


def machine() -> str:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    from vidsr.upscale.engine import cpu_has_fast_bf16

    return (
        f"{model}, {os.cpu_count()} cores, fast bf16: {cpu_has_fast_bf16()}; "
        f"Python {platform.python_version()}, torch {torch.__version__}"
    )


def load() -> str:
    return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())


def fmt(v) -> str:
    return f"{v:.2f}" if isinstance(v, (int, float)) else "—"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", default="srresnet@160x90,fast@320x180", help="MODEL@WxH,...")
    ap.add_argument("--isas", default="native,avx2", help="native: this CPU; avx2: capped")
    ap.add_argument("--frames", type=int, default=0, help="0: 24 at 160x90, 12 above")
    ap.add_argument("--baseline-frames", type=int, default=0, help="0: half of --frames")
    ap.add_argument("--one", choices=sorted(KINDS))
    ap.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    args = ap.parse_args()
    if args.one:
        model, size = args.cases.split("@")
        print(json.dumps(KINDS[args.one](model, size, args.frames)))
        return
    started, load_before = dt.datetime.now(dt.timezone.utc), load()
    rows = []
    for isa in args.isas.split(","):
        env = AVX2 if isa == "avx2" else {}
        for case in args.cases.split(","):
            w, h = (int(v) for v in case.split("@")[1].split("x"))
            frames = args.frames or (24 if w * h <= 160 * 90 else 12)
            base = args.baseline_frames or max(4, frames // 2)
            got = {"vidsr": run_one("vidsr", case, frames, env)}
            got["vidsr-int8"] = run_one("vidsr-int8", case, frames, env)
            for kind in ("naive", "onnxruntime", "openvino"):
                got[kind] = run_one(kind, case, base, env)
            print(isa, case, json.dumps(got), file=sys.stderr, flush=True)
            rows.append((isa, case, got))
    load_after = load()
    lines = [
        "# vidsr throughput: CPU comparison",
        "",
        f"- date: {started:%Y-%m-%d %H:%M} UTC",
        f"- machine: {machine()}",
        f"- load: {load_before} before, {load_after} after",
        f"- command: `.venv/bin/python benchmarks/run.py --cases {args.cases} --isas {args.isas}`",
        "- ISA: `native` is this CPU as it is; `AVX2` caps oneDNN (torch's and OpenVINO's) and "
        "torch's kernels to AVX2 (`ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2`): this core "
        "without AVX-512, as a laptop or desktop CPU runs",
        "- models: random seeded weights, BatchNorm folded for every engine except the naive "
        "loop (as Real-ESRGAN's script runs it)",
        "- vidsr model fps: frames in memory through the pipeline's slot ring; pipeline fps: "
        "`upscale_file` on a generated H.264 clip (decode, model, x264 veryfast encode, mux, "
        "`--temporal off`); best of 2 each, warm; `auto` precision (bf16 where the CPU has it "
        "natively, else fp32) and `--precision int8`",
        "- naive loop: decode -> fp32 model -> x264 veryfast encode, one frame at a time in one "
        "thread",
        "- ONNX Runtime / OpenVINO: model only, the same weights exported to ONNX (opset 17), "
        "each at its own default precision for this CPU",
        "",
        "| ISA | model @ input | vidsr model fps | vidsr pipeline fps | pipeline / model "
        "| vidsr int8 model / pipeline fps | naive loop fps | ONNX Runtime fps | OpenVINO fps |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for isa, case, got in rows:
        v, q = got["vidsr"], got["vidsr-int8"]
        ratio = v["pipeline_fps"] / v["model_fps"] if v.get("model_fps") else None
        ort, ov = got["onnxruntime"], got["openvino"]
        lines.append(
            f"| {'AVX2' if isa == 'avx2' else 'native'} | {case} "
            f"| {fmt(v.get('model_fps'))} ({v.get('precision', '?')}) "
            f"| {fmt(v.get('pipeline_fps'))} | {fmt(ratio)} "
            f"| {fmt(q.get('model_fps'))} / {fmt(q.get('pipeline_fps'))} "
            f"| {fmt(got['naive'].get('pipeline_fps'))} (fp32) "
            f"| {fmt(ort.get('model_fps'))} ({ort.get('precision', '?')}) "
            f"| {fmt(ov.get('model_fps'))} ({ov.get('precision', '?')}) |"
        )
        for kind, r in got.items():
            if "error" in r:
                notes.append(f"- {isa} {case} {kind}: {r['error']}")
    lines += [
        "",
        *notes,
        "" if notes else "",
        "## GPU",
        "",
        "| input | model fps | TFLOP/s (4.44 MFLOP/px) | pipeline fps | naive loop fps |",
        "|---|---|---|---|---|",
    ]
    for size in ("320x180", "960x540"):
        lines.append(f"| {size} | not measured: no GPU in this session | | | |")
    lines += ["", "To measure on a GPU (H100/H200):", ""]
    lines += [f"    {GPU_COMMAND.format(size=s)}" for s in ("320x180", "960x540")]
    lines += ["    pytest -m gpu tests/test_gpu.py -v", ""]
    # Hand-written findings below the marker survive a re-run.
    old = args.out.read_text() if args.out.exists() else ""
    keep = old[old.index(NOTES_MARKER) :] if NOTES_MARKER in old else NOTES_MARKER + "\n"
    args.out.write_text("\n".join(lines) + "\n" + keep)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
