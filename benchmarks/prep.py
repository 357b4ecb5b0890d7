"""The cost of each clean-up stage before the network (vidsr.media.filters), at 720x576.

    python benchmarks/prep.py [--frames 100]

Makes a 25i MPEG-2 clip (a bar moving between fields, grain, letterbox bars) and times the
reader alone (decode + the stage + conversion to RGB, which is what the decode thread does) for
each stage, best of two. Prints frames out per second and per source second.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import av.filter
import numpy as np

from vidsr.media.decode import FrameReader
from vidsr.media.filters import Prep
from vidsr.media.probe import probe

W, H = 720, 576


def make(path: Path, frames: int) -> None:
    rng = np.random.default_rng(0)
    g = av.filter.Graph()
    nodes = [g.add("buffer", f"video_size={W}x{H}:pix_fmt=yuv420p:time_base=1/25:pixel_aspect=1/1"),
             g.add("setfield", "tff"), g.add("buffersink")]  # fmt: skip
    nodes[0].link_to(nodes[1])
    nodes[1].link_to(nodes[2])
    g.configure()
    with av.open(str(path), "w") as out:
        s = out.add_stream("mpeg2video", rate=25)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        s.codec_context.bit_rate = 8_000_000
        s.codec_context.flags |= av.codec.context.Flags.interlaced_dct
        for i in range(frames):
            img = np.full((H, W, 3), 60, np.uint8)
            img += rng.integers(0, 12, img.shape, dtype=np.uint8)  # grain
            for field, t in ((0, 2 * i), (1, 2 * i + 1)):
                x = 40 + (7 * t) % (W - 120)
                img[field::2, x : x + 60] = 220
            img[:72], img[-72:] = 0, 0  # letterbox
            f = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
            f.pts, f.time_base = i, Fraction(1, 25)
            g.push(f)
            out.mux(s.encode(g.pull()))
        out.mux(s.encode(None))


def timed(info, prep: Prep | None) -> tuple[int, float]:
    best, count = float("inf"), 0
    for _ in range(2):
        t0 = time.perf_counter()
        with FrameReader(info, prep=prep) as reader:
            count = sum(len(b.pts) for b in reader)
        best = min(best, time.perf_counter() - t0)
    return count, best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=100)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "i.ts"
        make(src, args.frames)
        info = probe(src)
        stages = {
            "none (decode + RGB)": None,
            "bwdif, frame": Prep(deinterlace="frame"),
            "bwdif, field (2x frames)": Prep(deinterlace="field"),
            "crop 720x432": Prep(crop=(720, 432, 0, 72)),
            "nlmeans light": Prep(denoise="light"),
            "nlmeans medium": Prep(denoise="medium"),
            "nlmeans strong": Prep(denoise="strong"),
        }
        print(f"{platform.processor() or platform.machine()}, {args.frames} frames of {W}x{H} 25i")
        for name, prep in stages.items():
            count, seconds = timed(info, prep)
            print(f"  {name:<26} {count / seconds:7.1f} frames/s out  "
                  f"({args.frames / seconds:6.1f} source frames/s)")  # fmt: skip


if __name__ == "__main__":
    main()
