"""Old footage: interlaced, telecined and letterboxed sources are prepared before the network.

Sources are made here with real field motion (each frame weaves the fields of two instants of a
moving bar; MPEG-2 in MPEG-TS and x264 in .mkv, top and bottom field first), a 24p film telecined
3:2 by FFmpeg's telecine filter, and a clip with black bars. The comb index (vidsr.quality.metrics)
says how interlaced a picture looks: about 0 progressive, 0.9 for these woven frames.
"""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
from click.testing import CliRunner
from media import (
    interrupted,
    make_clip,
    make_interlaced,
    make_letterboxed,
    make_telecined,
    moving_bar,
    number_of,
    woven,
)
from PIL import Image

from vidsr.cli import main
from vidsr.config import EncodeConfig, UpscaleConfig
from vidsr.errors import InputError
from vidsr.jobs.batch import BatchRunner
from vidsr.media.decode import FrameReader
from vidsr.media.filters import plan_prep, scan
from vidsr.media.probe import probe
from vidsr.quality.metrics import comb_index, psnr, rgb_to_y

X264_1 = {"threads": "1"}


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def config(**kw) -> UpscaleConfig:
    kw.setdefault("segment_seconds", 0.4)
    encode = EncodeConfig(codec=kw.pop("codec", "libx264"), options=X264_1)
    return UpscaleConfig(model="bicubic", device="cpu", encode=encode, **kw)


def numbers_of(path) -> list[int]:
    """The number each picture shows (moving_bar's, in its bottom half)."""
    return [number_of(p[p.shape[0] // 2 :]) for p in frames_of(path)[0]]


def frames_of(path) -> tuple[list[np.ndarray], list[float]]:
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        base = stream.time_base
        got = [(f.to_ndarray(format="rgb24"), float(f.pts * base)) for f in c.decode(stream)]
    return [g for g, _ in got], [t for _, t in got]


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    folder = tmp_path_factory.mktemp("old")
    made = {
        "tff.ts": folder / "tff.ts",
        "bff.mkv": folder / "bff.mkv",
        "telecined.ts": folder / "telecined.ts",
        "progressive.mp4": folder / "progressive.mp4",
    }
    make_interlaced(made["tff.ts"], codec="mpeg2video", order="tff", frames=50, audio=True)
    make_interlaced(made["bff.mkv"], codec="libx264", order="bff", frames=50)
    film = make_telecined(made["telecined.ts"], film_frames=48)
    make_clip(made["progressive.mp4"], frames=12, vfr=False, audio=False)
    return made, film


def test_detection_finds_what_each_source_is(sources):
    made, _ = sources
    assert scan(probe(made["tff.ts"])).kind == "tff"
    assert scan(probe(made["bff.mkv"])).kind == "bff"
    assert scan(probe(made["telecined.ts"])).kind == "telecined"
    found = scan(probe(made["progressive.mp4"]))
    assert found.kind == "progressive" and not found.doubt
    r = run("probe", made["tff.ts"])
    assert r.exit_code == 0, r.output
    assert "scan: tff" in r.output and "deinterlacing with bwdif to 50 fps" in r.output
    assert "inverse telecine to 23.976 fps" in run("probe", made["telecined.ts"]).output


@pytest.mark.parametrize("name", ["tff.ts", "bff.mkv"])
def test_interlaced_video_comes_out_one_frame_per_field_without_combs(sources, tmp_path, name):
    made, _ = sources
    src = made[name]
    out = tmp_path / "out.mkv"
    r = run("upscale", src, "-o", out, "--model", "bicubic")
    assert r.exit_code == 0, r.output
    first = r.output.splitlines()[0]
    assert f"interlaced {name[:3]}: deinterlacing with bwdif to 50 fps" in first
    pictures, times = frames_of(out)
    source_pictures, source_times = frames_of(src)
    assert len(pictures) == 2 * len(source_pictures)  # one frame per field
    steps = np.diff(times)
    assert np.allclose(steps, 0.02, atol=1e-3)  # half-frame steps, from the source's first frame
    assert times[0] == pytest.approx(source_times[0], abs=1e-3)
    before = np.mean([comb_index(p) for p in source_pictures[5:-5]])
    after = np.mean([comb_index(p, scale=4) for p in pictures[10:-10]])
    print(f"comb index: source {before:.3f}, deinterlaced {after:.3f}")
    assert before > 0.5 and after < 0.05
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.field_order == 1  # tagged progressive
    if name == "tff.ts":  # audio copied untouched (MPEG-TS frames AAC with ADTS headers,
        # which Matroska leaves off: the payloads are the same)
        def payloads(path):
            with av.open(str(path)) as c:
                got = [bytes(p) for p in c.demux(audio=0) if p.size]
            return [g[7:] if g[:2] == b"\xff\xf1" else g for g in got]

        assert payloads(out) == payloads(src)


def test_frame_mode_keeps_the_frame_rate(sources, tmp_path):
    made, _ = sources
    out = tmp_path / "out.mkv"
    r = run("upscale", made["tff.ts"], "-o", out, "--model", "bicubic", "--deinterlace", "frame")
    assert r.exit_code == 0, r.output
    pictures, times = frames_of(out)
    assert len(pictures) == 50 and np.allclose(np.diff(times), 0.04, atol=1e-3)
    assert np.mean([comb_index(p, scale=4) for p in pictures[5:-5]]) < 0.05
    plain = tmp_path / "plain.mkv"
    r = run("upscale", made["tff.ts"], "-o", plain, "--model", "bicubic", "--deinterlace", "off")
    assert r.exit_code == 0
    combed = np.mean([comb_index(p, scale=4) for p in frames_of(plain)[0][5:-5]])
    print(f"comb index, not deinterlaced: {combed:.3f} (4-line teeth)")
    assert combed > 0.5  # every tooth of the source's combs, 4x bigger


def test_inverse_telecine_gives_back_the_film(sources, tmp_path):
    made, film = sources
    info = probe(made["telecined.ts"])
    prep, _ = plan_prep(info)
    assert prep.ivtc
    with FrameReader(info, prep=prep) as reader:
        got = [(f, t) for batch in reader for f, t in zip(batch.frames, batch.pts, strict=True)]
    assert len(got) == len(film)  # the same frame count
    out_tb = prep.output_info(info).time_base
    assert out_tb == Fraction(1001, 24000)
    pts = [t for _, t in got]
    assert pts == list(range(pts[0], pts[0] + len(film)))  # 1001/24000 s steps
    # PSNR on Y (the standard protocol): the 4:2:0 chroma of MPEG-2 smears the sharp coloured
    # edges of this test film, in any decoder, whatever the IVTC does
    worst = min(psnr(rgb_to_y(f), rgb_to_y(ref)) for (f, _), ref in zip(got, film, strict=True))
    print(f"IVTC: {len(got)} frames, worst PSNR-Y {worst:.1f} dB against the film")
    assert worst >= 40
    out = tmp_path / "film.mkv"
    r = run("upscale", made["telecined.ts"], "-o", out, "--model", "bicubic")
    assert r.exit_code == 0, r.output
    assert "inverse telecine to 23.976 fps" in r.output.splitlines()[0]
    assert numbers_of(out) == list(range(len(film)))


def test_letterbox_bars_are_cropped_not_upscaled(tmp_path):
    src = tmp_path / "boxed.mp4"
    make_letterboxed(src, bars=16)
    out = tmp_path / "out.mp4"
    r = run("upscale", src, "-o", out, "--model", "bicubic", "--crop", "auto")
    assert r.exit_code == 0, r.output
    assert "cropped to 128x64 at 0,16" in r.output.splitlines()[0]
    pictures, _ = frames_of(out)
    assert pictures[0].shape[:2] == (256, 512)
    r = run("upscale", src, "-o", tmp_path / "given.mp4", "--model", "bicubic", "--crop",
            "64:32:32:32")  # fmt: skip
    assert r.exit_code == 0
    assert frames_of(tmp_path / "given.mp4")[0][0].shape[:2] == (128, 256)


def test_options_that_cannot_apply_are_one_line(sources, tmp_path):
    made, _ = sources
    for args, words in (
        (["--deinterlace", "field"], "is progressive"),
        (["--ivtc", "on"], "is not telecined"),
        (["--crop", "256:96:0:0"], "reaches outside"),
    ):
        r = run("upscale", made["progressive.mp4"], "-o", tmp_path / "o.mp4", "--model",
                "bicubic", *args)  # fmt: skip
        assert r.exit_code == InputError.exit_code, r.output
        assert r.output.count("\n") == 1 and words in r.output
    Image.new("RGB", (32, 32)).save(tmp_path / "p.png")
    r = run("upscale", tmp_path / "p.png", "--deinterlace", "field")
    assert r.exit_code == 2 and "--deinterlace applies to videos" in r.output
    assert not (tmp_path / "o.mp4").exists()


def _coded(path, pictures, flags: str | None) -> None:
    """MPEG-2 of `pictures`, each frame flagged interlaced (setfield `flags`) or not (None)."""
    with av.open(str(path), "w") as out:
        s = out.add_stream("mpeg2video", rate=25)
        s.width, s.height, s.pix_fmt = 128, 96, "yuv420p"
        s.codec_context.bit_rate = 8_000_000
        if flags:  # coded as interlaced, which is what makes the flags reach the stream
            f = av.codec.context.Flags
            s.codec_context.flags |= f.interlaced_dct | f.interlaced_me
        g = av.filter.Graph()
        nodes = [g.add("buffer", "video_size=128x96:pix_fmt=yuv420p:time_base=1/25:"
                                 "pixel_aspect=1/1")]  # fmt: skip
        nodes += [g.add("setfield", flags)] if flags else []
        nodes.append(g.add("buffersink"))
        for a, b in zip(nodes, nodes[1:], strict=False):
            a.link_to(b)
        g.configure()
        for i, img in enumerate(pictures):
            f = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
            f.pts, f.time_base = i, Fraction(1, 25)
            g.push(f)
            out.mux(s.encode(g.pull()))
        out.mux(s.encode(None))


def test_a_file_flagged_progressive_that_looks_interlaced_is_left_alone_with_a_warning(tmp_path):
    src = tmp_path / "woven.mkv"
    _coded(src, [woven(i, "tff") for i in range(40)], flags=None)  # combs, no interlaced flag
    info = probe(src)
    found = scan(info)
    # taken at its word, with a doubt: a stream may lie, but compression damage can look like
    # combs to idet too (it takes the shared, heavily compressed carphone clip for bff)
    assert found.kind == "progressive" and "looks tff to idet" in found.doubt
    prep, warnings = plan_prep(info)
    assert not prep.active and "left as it is" in warnings[0] and "--deinterlace" in warnings[0]
    r = run("upscale", src, "-o", tmp_path / "o.mkv", "--model", "bicubic")
    assert r.exit_code == 0 and "warning:" in r.output and "looks tff" in r.output
    r = run("upscale", src, "-o", tmp_path / "d.mkv", "--model", "bicubic", "--deinterlace",
            "field")  # fmt: skip
    assert r.exit_code == 0 and len(frames_of(tmp_path / "d.mkv")[0]) == 80  # when asked: yes


def test_a_mixed_file_is_left_alone_with_a_warning(tmp_path):
    src = tmp_path / "mixed.mkv"
    pictures = [woven(i, "tff") if i // 10 % 2 else moving_bar(2 * i) for i in range(60)]
    _coded(src, pictures, flags="tff")  # flagged interlaced throughout, combed in part
    info = probe(src)
    assert scan(info).kind == "mixed"
    prep, warnings = plan_prep(info)
    assert not prep.active and "left as it is" in warnings[0]


def _bytes(path):
    with av.open(str(path)) as c:
        return [(p.pts, bytes(p)) for p in c.demux(video=0) if p.size]


@pytest.mark.parametrize("name", ["tff.ts", "telecined.ts"])
def test_a_stopped_run_resumes_to_the_unbroken_file(sources, tmp_path, name):
    """Segments of 20 frames (0.4 s at 50 or 24 fps); the run is stopped in the second and the
    third, where a resume must seek (deinterlace) or read from the start (inverse telecine)."""
    made, _ = sources
    whole = tmp_path / "whole.mkv"
    BatchRunner(config()).run_one(made[name], whole)
    dst = tmp_path / "out.mkv"
    for at in (13, 27):
        interrupted(made[name], dst, config(), at)
    result = BatchRunner(config()).run_one(made[name], dst)
    assert result.resumed_frames > 0
    assert _bytes(dst) == _bytes(whole)


def test_a_span_of_interlaced_video_is_by_the_source_clock(sources, tmp_path):
    made, _ = sources
    out = tmp_path / "span.mkv"
    r = run("upscale", made["bff.mkv"], "-o", out, "--model", "bicubic", "--start", "0.5",
            "--duration", "0.4")  # fmt: skip
    assert r.exit_code == 0, r.output
    pictures, times = frames_of(out)
    assert len(pictures) == 20  # 0.4 s of fields at 50 fps
    assert times[0] == pytest.approx(0.0, abs=1e-3)  # starts where the source does
    # the field 0.5 s in is frame 12's second (instant 25); then frame 13's two
    assert numbers_of(out)[:3] == [12, 13, 13]
