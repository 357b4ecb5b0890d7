"""Speed against quality per model and precision: a table and docs/speed_quality.png.

    .venv/bin/pip install matplotlib          # for the picture only; not a vidsr dependency
    .venv/bin/python benchmarks/speed_quality.py --speed classes.json \\
        --data ../shared/data/benchmarks --quality quality.json --plot docs/speed_quality.png

Speed: end-to-end fps of `vidsr bench` at 320x180 -> 1280x720 (decode, model, x264 at the
default preset, mux; `--temporal off`, the stabiliser being a choice of its own), taken from the
JSON lines benchmarks/cpu_classes.py wrote. Quality: Set5 and Set14 PSNR-Y from
`vidsr eval --model M --data SET --precision P --json`, run here for every point that is not in
the --quality file yet (it is a cache: delete it to measure again).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

VIDSR = [sys.executable, "-m", "vidsr"]


def speeds(path: Path) -> dict[tuple[str, str], float]:
    """(class, model) -> pipeline fps without the stabiliser, the default encoder."""
    out = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if "model" in row and row.get("encoder") == "default":
            out[(row["class"], row["model"])] = row["steady_off_fps"]
    return out


def quality(model: str, precision: str, data: Path, cache: dict) -> dict[str, float]:
    key = f"{model} {precision}"
    if key not in cache:
        cache[key] = {}
        for name in ("Set5", "Set14"):
            args = [*VIDSR, "eval", "--model", model, "--data", str(data / name),
                    "--precision", precision, "--json"]  # fmt: skip
            done = subprocess.run(args, capture_output=True, text=True, check=True)
            row = json.loads(done.stdout.strip().splitlines()[-1])
            cache[key][name] = round(float(row["psnr_y"]), 2)
    return cache[key]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speed", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="folder with Set5 and Set14")
    parser.add_argument("--quality", type=Path, required=True, help="cache of eval results")
    parser.add_argument("--plot", type=Path)
    parser.add_argument("--models", default="bicubic,rt,fast", help="which models to show")
    args = parser.parse_args()
    shown = set(args.models.split(","))
    fps = speeds(args.speed)
    cache = json.loads(args.quality.read_text()) if args.quality.exists() else {}
    points = []  # (label, class, fps, set5, set14)
    for (cls, model), value in sorted(fps.items()):
        if model not in shown:
            continue
        precision = {"AVX2 fp32": "fp32", "AVX2 int8": "int8"}.get(cls, "auto")
        q = quality(model, precision, args.data, cache)
        args.quality.write_text(json.dumps(cache, indent=1))
        shown_as = "bf16" if precision == "auto" and model != "bicubic" else precision
        points.append((f"{model} {shown_as.replace('auto', 'fp32')}", cls, value, q["Set5"],
                       q["Set14"]))  # fmt: skip
    print("| model | CPU class | end-to-end fps | Set5 PSNR-Y | Set14 PSNR-Y |")
    print("| --- | --- | --- | --- | --- |")
    for label, cls, value, s5, s14 in points:
        print(f"| {label} | {cls} | {value:.2f} | {s5:.2f} | {s14:.2f} |")
    if args.plot:
        plot(points, args.plot)


def plot(points, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(7.5, 4.6), dpi=110)
    markers = {"AVX2 fp32": "o", "AVX2 int8": "s", "native": "^"}
    for cls, marker in markers.items():
        sel = [p for p in points if p[1] == cls]
        if sel:
            ax.scatter([p[2] for p in sel], [p[3] for p in sel], marker=marker, s=46,
                       label={"native": "AVX512-BF16 (auto: bf16)"}.get(cls, cls))  # fmt: skip
        for label, _, x, y, _ in sel:
            below = cls == "native"  # labels of points that may share a place apart
            ax.annotate(label.split()[0], (x, y), textcoords="offset points",
                        xytext=(5, -11 if below else 4), fontsize=8)  # fmt: skip
    ax.axvline(24, color="grey", linestyle=":", linewidth=1)
    ax.text(24, ax.get_ylim()[0], " 24 fps", color="grey", fontsize=8, va="bottom")
    ax.set_xscale("log")
    ax.set_xticks([2, 3, 4, 6, 10, 15, 24, 40], labels=["2", "3", "4", "6", "10", "15", "24", "40"])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel(
        "end-to-end fps, 320x180 -> 1280x720, 2 cores (vidsr bench: x264 preset fast, "
        "--temporal off)"
    )
    ax.set_ylabel("Set5 PSNR-Y (dB)")
    ax.set_title("vidsr: speed and quality per model and CPU class", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
