"""The source's own clean-up before the network, in one fixed order: deinterlace or inverse
telecine -> crop -> denoise. Every stage is an FFmpeg filter run through PyAV's filter graph on
the decode thread (the model never waits for it), on the decoded YUV frames.

- Detection (`scan`): the stream's field order and the frames' interlaced flags first; where
  those say interlaced or say nothing, FFmpeg's `idet` over the first frames: progressive,
  interlaced top or bottom field first, telecined (3:2 pulldown: two fields in five repeated),
  or mixed.
- Deinterlacing with `bwdif`: `frame` keeps the frame rate, `field` makes one frame per field
  (50/60 fps, motion as smooth as the source); field frames are at exact half-frame steps, in a
  time base twice as fine as the source's (bwdif's, in both modes).
- Inverse telecine with `fieldmatch` + `decimate`: 29.97 fps telecined film back to its 23.976
  progressive frames (time base 1001/24000).
- `crop` (black bars found by `bbox` over frames through the file, or given), and `denoise`
  (`nlmeans`, one frame at a time: a temporal denoiser carries state from frame to frame, and
  a resumed run must give the frames an unbroken one gives). This FFmpeg build has neither
  cropdetect nor hqdn3d (both GPL); bbox and nlmeans are LGPL.

Deinterlacing, cropping and denoising look at a frame and its neighbours only, so reading from a
seek gives the frames an unbroken read gives once the first frames after the seek are passed
(vidsr.media.span reads from a keyframe before the first frame it keeps). `decimate` counts
cycles of five from the first frame it sees: with inverse telecine a run always reads from the
start of the file (`Prep.seekable`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from fractions import Fraction

import av
import av.filter

from ..errors import InputError
from .probe import VideoInfo

# AVFieldOrder as PyAV reports the stream's codec_context.field_order
FIELD_ORDERS = {0: "unknown", 1: "progressive", 2: "tff", 3: "bff", 4: "tff", 5: "bff"}
SCAN_FRAMES = 120  # frames idet looks at: a few seconds, enough for the 3:2 cadence to show
QUICK_FRAMES = 30  # where the stream says progressive: a second's look, for a doubt only
# nlmeans (non-local means, one frame at a time: see the module doc) strength, patch and search
DENOISE = {"light": "s=1.5:p=5:r=9", "medium": "s=3:p=7:r=11", "strong": "s=5:p=7:r=15"}
IVTC_RATE = Fraction(24000, 1001)


@dataclass(frozen=True)
class Scan:
    """What a file's video is, and how sure: `kind` is progressive, tff, bff, telecined or
    mixed; `counts` are idet's frame counts (empty where the flags sufficed)."""

    kind: str
    field_order: str  # what the stream says (unknown, progressive, tff, bff)
    counts: dict[str, int]
    order: str = "tff"  # the field order to deinterlace or match with
    doubt: str = ""  # a stream that says progressive, where idet sees combs

    def describe(self) -> str:
        if self.doubt:
            return f"{self.kind} (the stream says {self.field_order}, but it {self.doubt})"
        if not self.counts:
            return f"{self.kind} (the stream says {self.field_order})"
        return f"{self.kind} (the stream says {self.field_order}; {_counted(self.counts)})"


def _counted(c: dict[str, int]) -> str:
    return (
        f"idet over {c['frames']} frames: {c['tff']} tff, {c['bff']} bff, {c['progressive']} "
        f"progressive, {c['undetermined']} undetermined, {c['repeated']} with a repeated field"
    )


@dataclass(frozen=True)
class Prep:
    """The clean-up a run applies, decided once per file (plan_prep)."""

    deinterlace: str | None = None  # None, "frame" (same rate) or "field" (one frame per field)
    order: str = "tff"  # field order to deinterlace or match with
    ivtc: bool = False
    crop: tuple[int, int, int, int] | None = None  # width, height, x, y (in source pixels)
    denoise: str | None = None  # light, medium or strong
    said: str = ""  # what was found and what is done, for the run's first line

    @property
    def active(self) -> bool:
        return bool(self.deinterlace or self.ivtc or self.crop or self.denoise)

    @property
    def seekable(self) -> bool:
        """Whether reading from a seek gives an unbroken read's frames (not with decimate)."""
        return not self.ivtc

    def filters(self) -> list[tuple[str, str]]:
        """(filter, arguments) in the fixed order."""
        chain = []
        if self.ivtc:
            chain += [("fieldmatch", f"order={self.order}:combmatch=full"), ("decimate", "")]
        elif self.deinterlace:
            mode = "send_field" if self.deinterlace == "field" else "send_frame"
            chain.append(("bwdif", f"mode={mode}:parity={self.order}:deint=all"))
        if self.crop:
            w, h, x, y = self.crop
            chain.append(("crop", f"{w}:{h}:{x}:{y}"))
        if self.denoise:
            chain.append(("nlmeans", DENOISE[self.denoise]))
        return chain

    def output_info(self, info: VideoInfo) -> VideoInfo:
        """The frames that come out of the chain, as a VideoInfo: size, rate, time base."""
        if not self.active:
            return info
        width, height = (self.crop[0], self.crop[1]) if self.crop else (info.width, info.height)
        rate, time_base, frames = info.average_rate, info.time_base, info.frames
        count = info.indexed_frames
        if self.ivtc:
            rate, time_base = IVTC_RATE, 1 / IVTC_RATE
            frames, count = frames * 4 // 5, count * 4 // 5
        elif self.deinterlace:  # bwdif's time base is half the source's, in both modes
            time_base = time_base / 2
            if self.deinterlace == "field":
                rate = rate * 2 if rate else None
                frames, count = frames * 2, count * 2
        return replace(info, width=width, height=height, average_rate=rate, time_base=time_base,
                       frames=frames, indexed_frames=count)  # fmt: skip


class FilterChain:
    """`chain.push(frame)` -> the frames out so far (pts in the output time base); `flush()`
    at the end. Frames go in with pts in the source's time base. `filters`: (name, arguments)
    in order (a Prep's, or idet, cropdetect)."""

    def __init__(self, info: VideoInfo, filters: list[tuple[str, str]], pix_fmt: str):
        self.graph = av.filter.Graph()
        rate = info.average_rate or Fraction(25)
        args = (
            f"video_size={info.width}x{info.height}:pix_fmt={pix_fmt}:time_base="
            f"{info.time_base.numerator}/{info.time_base.denominator}:frame_rate="
            f"{rate.numerator}/{rate.denominator}:pixel_aspect=1/1"
        )
        nodes = [self.graph.add("buffer", args)]
        nodes += [self.graph.add(name, arguments) for name, arguments in filters]
        nodes.append(self.graph.add("buffersink"))
        for a, b in zip(nodes, nodes[1:], strict=False):
            a.link_to(b)
        self.graph.configure()

    def push(self, frame: av.VideoFrame | None) -> list[av.VideoFrame]:
        self.graph.push(frame)
        out = []
        while True:
            try:
                out.append(self.graph.pull())
            except (av.BlockingIOError, av.EOFError):
                return out

    def flush(self) -> list[av.VideoFrame]:
        return self.push(None)


def denoise_picture(rgb, strength: str):
    """An RGB picture (uint8, H x W x 3) through the denoiser `--denoise strength` runs, in the
    colour format the filter works in (4:4:4 YUV): for `vidsr eval --denoise` on images."""
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv444p")
    frame.pts = 0
    height, width = rgb.shape[:2]
    info = _Picture(width, height)
    chain = FilterChain(info, [("nlmeans", DENOISE[strength])], "yuv444p")  # type: ignore[arg-type]
    out = [*chain.push(frame), *chain.flush()]
    return out[0].to_ndarray(format="rgb24")


@dataclass(frozen=True)
class _Picture:
    """What FilterChain reads of a VideoInfo, for a single picture."""

    width: int
    height: int
    time_base: Fraction = Fraction(1, 25)
    average_rate: Fraction = Fraction(25)


# -- detection --------------------------------------------------------------------------------


def _pictures(c: av.container.InputContainer, limit: int) -> Iterator[av.VideoFrame]:
    """Up to `limit` pictures from where `c` is; a packet that fails to decode is passed over
    (reading a damaged file is the FrameReader's business, which says what it lost)."""
    stream = c.streams.video[0]
    count = 0
    for packet in c.demux(stream):
        try:
            frames = packet.decode()
        except av.error.FFmpegError:
            continue
        for frame in frames:
            yield frame
            count += 1
            if count >= limit:
                return


def _flags(info: VideoInfo, frames: int = 8) -> tuple[str, bool]:
    """The stream's field order and whether any of its first frames is flagged interlaced."""
    with av.open(str(info.path)) as c:
        stream = c.streams.video[0]
        order = FIELD_ORDERS.get(int(getattr(stream.codec_context, "field_order", 0) or 0))
        flagged = any(frame.interlaced_frame for frame in _pictures(c, frames))
    return order, flagged


def scan(info: VideoInfo, frames: int = SCAN_FRAMES) -> Scan:
    """What the video is. Where the stream or its frames say interlaced, idet says how (top or
    bottom field first, or telecined); where they say progressive or nothing, they are taken at
    their word, and a short idet look only adds a doubt (`Scan.doubt`) when it sees combs:
    compression damage can look like combing (idet takes a heavily compressed QCIF clip for
    bff), and deinterlacing a progressive picture only blurs it."""
    order, flagged = _flags(info)
    if order in ("tff", "bff") or flagged:
        counts = _idet(info, frames)
        kind, field = _classify(counts)
        return Scan(kind, order, counts, field)
    counts = _idet(info, QUICK_FRAMES)
    kind, field = _classify(counts)
    sure = kind in ("tff", "bff", "telecined")  # "mixed" is what idet says of much clean video
    doubt = f"looks {kind} to idet ({_counted(counts)})" if sure else ""
    return Scan("progressive", order, counts, field, doubt)


def _idet(info: VideoInfo, frames: int) -> dict[str, int]:
    with av.open(str(info.path)) as c:
        stream = c.streams.video[0]
        chain = FilterChain(info, [("idet", "")], stream.codec_context.pix_fmt)
        last = None
        for frame in _pictures(c, frames):
            for out in chain.push(frame):
                last = out
        for out in chain.flush():
            last = out
    if last is None:
        raise InputError(f"{info.path}: no frame could be decoded to look at its fields")
    md = last.metadata

    def n(key: str) -> int:
        return round(float(md.get(f"lavfi.idet.{key}", 0)))

    counts = {k: n(f"multiple.{k}") for k in ("tff", "bff", "progressive", "undetermined")}
    counts["repeated"] = n("repeated.top") + n("repeated.bottom")
    counts["frames"] = sum(counts[k] for k in ("tff", "bff", "progressive", "undetermined"))
    return counts


def _classify(counts: dict[str, int]) -> tuple[str, str]:
    """(kind, field order) from idet's counts. Telecine repeats a field in two frames of five;
    interlaced video almost never does."""
    tff, bff, prog = counts["tff"], counts["bff"], counts["progressive"]
    decided = max(1, tff + bff + prog)
    order = "tff" if tff >= bff else "bff"
    if counts["repeated"] >= 0.25 * max(1, counts["frames"]) and tff + bff >= prog:
        return "telecined", order
    if tff + bff >= 0.8 * decided and max(tff, bff) >= 4 * min(tff, bff):
        return order, order
    if prog >= 0.8 * decided:
        return "progressive", order
    return "mixed", order


def detect_crop(info: VideoInfo, samples: int = 12) -> tuple[int, int, int, int] | None:
    """The picture inside black bars: what is not black in frames spread through the file, the
    union over all of them (a dark scene must not crop the picture), or None where there are no
    bars. Sizes are even (4:2:0 chroma)."""
    boxes = list(_crop_boxes(info, samples))
    if not boxes:
        return None
    x0 = min(b[2] for b in boxes)
    y0 = min(b[3] for b in boxes)
    x1 = max(b[2] + b[0] for b in boxes)
    y1 = max(b[3] + b[1] for b in boxes)
    x0, y0 = x0 - x0 % 2, y0 - y0 % 2
    w, h = (x1 - x0) // 2 * 2, (y1 - y0) // 2 * 2
    if (w, h) == (info.width, info.height) or w < 16 or h < 16:
        return None
    return w, h, x0, y0


def _crop_boxes(info: VideoInfo, samples: int) -> Iterator[tuple[int, int, int, int]]:
    """(w, h, x, y) of what is not black in a few frames at each of `samples` times (FFmpeg's
    bbox: pixels brighter than 24 of 255 in luma)."""
    with av.open(str(info.path)) as c:
        stream = c.streams.video[0]
        duration = info.duration or 0
        times = [duration * (i + 0.5) / samples for i in range(samples)] if duration else [0]
        for t in times:
            if t:
                c.seek(int(t * av.time_base), backward=True)
            chain = FilterChain(info, [("bbox", "min_val=24")], stream.codec_context.pix_fmt)
            for frame in _pictures(c, 4):
                for out in chain.push(frame):
                    md = out.metadata
                    if "lavfi.bbox.w" in md:
                        yield (int(md["lavfi.bbox.w"]), int(md["lavfi.bbox.h"]),
                               int(md["lavfi.bbox.x1"]), int(md["lavfi.bbox.y1"]))  # fmt: skip


# -- planning -----------------------------------------------------------------------------------


def plan_prep(
    info: VideoInfo,
    *,
    deinterlace: str = "auto",
    ivtc: str = "auto",
    crop: str | tuple[int, int, int, int] | None = None,
    denoise: str | None = None,
) -> tuple[Prep, list[str]]:
    """The clean-up for this file and its warnings: from the options and what `scan` finds.

    auto: interlaced video is deinterlaced one frame per field (video-camera interlacing moves
    every field), telecined film goes back to 24p, a mixed file is left as it is, with a
    warning. `deinterlace` frame/field and `ivtc` on force those stages (on a file that is not
    interlaced or telecined: one line, not a silent no-op).
    """
    warnings: list[str] = []
    needs_scan = deinterlace != "off" or ivtc != "off"
    found = scan(info) if needs_scan else Scan("progressive", "unknown", {})
    mode, do_ivtc, said = None, False, ""
    if ivtc == "on":
        if found.kind not in ("telecined", "mixed") and "telecined" not in found.doubt:
            raise InputError(f"{info.path.name} is not telecined ({found.describe()}): --ivtc on")
        do_ivtc = True
    elif ivtc == "auto" and found.kind == "telecined" and deinterlace in ("auto", "off"):
        do_ivtc = True
    if not do_ivtc:
        if deinterlace in ("frame", "field"):
            if found.kind == "progressive" and not found.doubt:
                raise InputError(
                    f"{info.path.name} is progressive ({found.describe()}): "
                    f"--deinterlace {deinterlace} would only blur it"
                )
            mode = deinterlace
        elif deinterlace == "auto" and found.kind in ("tff", "bff"):
            mode = "field"
        elif deinterlace == "auto" and found.kind in ("telecined", "mixed"):
            warnings.append(
                f"{info.path.name}: {found.describe()}: left as it is (--deinterlace frame or "
                "field, or --ivtc on, to treat it)"
            )
    if found.doubt and deinterlace == "auto" and ivtc == "auto":
        warnings.append(
            f"{info.path.name}: the stream says {found.field_order} but {found.doubt}: left as "
            "it is (--deinterlace field or --ivtc on, if it is interlaced or telecined)"
        )
    rate = info.average_rate
    if do_ivtc:
        said = f"telecined {found.order}: inverse telecine to {float(IVTC_RATE):.3f} fps"
    elif mode:
        fps = float(rate * (2 if mode == "field" else 1)) if rate else 0
        said = f"interlaced {found.order}: deinterlacing with bwdif to {fps:g} fps"
    box = detect_crop(info) if crop == "auto" else crop
    if box is not None:
        w, h, x, y = box
        if x + w > info.width or y + h > info.height:
            raise InputError(
                f"--crop {w}:{h}:{x}:{y} reaches outside the {info.width}x{info.height} picture"
            )
        said = ", ".join(filter(None, [said, f"cropped to {w}x{h} at {x},{y}"]))
    if denoise:
        said = ", ".join(filter(None, [said, f"denoised ({denoise}, nlmeans)"]))
    prep = Prep(mode, found.order, do_ivtc, box, denoise, said)
    return prep, warnings


__all__ = [
    "DENOISE",
    "FilterChain",
    "Prep",
    "Scan",
    "denoise_picture",
    "detect_crop",
    "plan_prep",
    "scan",
]
