"""Steady video: the flicker measures on clips with known answers, and the stabiliser
(--temporal) on scenes where what it should do is known: still, moving, cut, seams."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from vidsr.quality.flicker import luma, motion, score_clip
from vidsr.train.degrade import degrade_clip, parse_spec
from vidsr.upscale.temporal import Stabiliser

REPO = Path(__file__).resolve().parents[1]


def texture(h: int, w: int, seed: int = 0, sigma: float = 1.5) -> np.ndarray:
    """A smooth random RGB picture: detail at several scales, as natural pictures have."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return cv2.GaussianBlur(img, (0, 0), sigma)


def noisy(clip: np.ndarray, sigma: float, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(clip + rng.normal(0, sigma, clip.shape), 0, 255).astype(np.uint8)


def scores(sr: np.ndarray, hr: np.ndarray):
    hr_y = luma(hr, 4)
    return score_clip(luma(sr, 4), hr_y, motion(hr_y))


# -- the measures -------------------------------------------------------------------------------


def test_a_still_clip_has_no_flicker_and_noise_makes_it_grow():
    hr = np.repeat(texture(64, 80)[None], 6, axis=0)
    clean = scores(hr, hr)
    assert clean.static_flicker == 0 and clean.tmse == 0
    assert clean.warp_error < 1e-2  # Farneback on equal frames: a flow of almost nothing
    flicker = [scores(noisy(hr, s), hr) for s in (1.0, 3.0, 9.0)]
    still = [f.static_flicker for f in flicker]
    assert 0 < still[0] < still[1] < still[2], still
    assert flicker[0].tmse < flicker[1].tmse < flicker[2].tmse
    # |N1 - N2| of two independent N(0, s) has mean 2s/sqrt(pi) (on Y the noise is a mix)
    assert 1.2 < still[2] / still[1] < 3.5
    assert flicker[0].psnr_y > flicker[2].psnr_y


def test_warp_error_follows_the_motion():
    """A pan: the truth itself changes a lot between frames, but along its motion hardly."""
    big = texture(80, 120, sigma=2.5)
    hr = np.stack([big[8 : 8 + 64, k : k + 96] for k in range(0, 10, 2)])  # 2 px a frame
    exact = scores(hr, hr)
    assert exact.static_flicker < 1.0 and exact.tmse == 0  # still: under 1 level by definition
    raw_change = float(np.mean(np.diff(luma(hr, 4), axis=0) ** 2))
    assert exact.warp_error < 0.4 * raw_change, (exact.warp_error, raw_change)
    assert scores(noisy(hr, 4.0), hr).warp_error > 3 * exact.warp_error


# -- the stabiliser -----------------------------------------------------------------------------


def upscaled(lr: np.ndarray, scale: int = 4) -> np.ndarray:
    h, w = lr.shape[1:3]
    return np.stack([cv2.resize(f, (w * scale, h * scale), interpolation=cv2.INTER_CUBIC)
                     for f in lr])  # fmt: skip


def test_the_stabiliser_removes_flicker_on_a_still_scene():
    lr = np.repeat(texture(40, 48, seed=3)[None], 10, axis=0)
    truth = upscaled(lr)
    sr = noisy(truth, 4.0)  # a model whose detail changes on every frame
    before = np.abs(np.diff(sr.astype(float), axis=0)).mean()
    out = Stabiliser(0.9)(lr, sr.copy())
    after = np.abs(np.diff(out[4:].astype(float), axis=0)).mean()
    assert after < before / 3, (before, after)
    # and it is still the picture: closer to the truth than the flickering frames
    err = lambda a: np.abs(a[4:].astype(float) - truth[4:]).mean()  # noqa: E731
    assert err(out) < err(sr)


def test_the_stabiliser_does_not_smear_a_moving_edge():
    """A bright bar moves 1 LR pixel a frame over a dark textured ground; the 'model' is exact.
    Nothing may trail behind the bar: every frame stays as close to the truth as it was."""
    h, w = 32, 64
    ground = (texture(h, w, seed=5, sigma=3) * 0.3).astype(np.uint8)
    lr = []
    for t in range(8):
        f = ground.copy()
        f[8:24, 10 + t : 18 + t] = 230
        lr.append(f)
    lr = np.stack(lr)
    truth = upscaled(lr)
    out = Stabiliser(0.9)(lr, noisy(truth, 2.0, seed=7))
    sr = noisy(truth, 2.0, seed=7)
    for t in range(1, 8):
        # where the bar was one frame ago and is not now: no ghost of it
        trail = np.zeros((h, w), bool)
        trail[8:24, 9 + t : 10 + t] = True
        trail_hr = cv2.resize(trail.astype(np.uint8), (w * 4, h * 4)) > 0
        ghost = np.abs(out[t].astype(float) - truth[t])[trail_hr].mean()
        assert ghost < 4.0, (t, ghost)
        assert (
            np.abs(out[t].astype(float) - truth[t]).mean()
            <= np.abs(sr[t].astype(float) - truth[t]).mean() + 0.5
        )


def test_the_stabiliser_starts_afresh_at_a_cut_and_at_seams():
    a = np.repeat(texture(40, 48, seed=1)[None], 5, axis=0)
    b = np.repeat(texture(40, 48, seed=2)[None], 5, axis=0)
    lr = np.concatenate([a, b])
    sr = noisy(upscaled(lr), 4.0)
    s = Stabiliser(0.9)
    out = s(lr, sr.copy())
    assert s.cuts == 1
    assert np.array_equal(out[5], sr[5])  # the first frame after the cut is the model's own
    assert not np.array_equal(out[6], sr[6])  # and the next follows it
    s = Stabiliser(0.9, reset_every=3)
    out = s(lr[:5], sr[:5].copy())
    assert np.array_equal(out[0], sr[0]) and np.array_equal(out[3], sr[3])
    assert not np.array_equal(out[4], sr[4])


def test_batches_do_not_matter_and_strength_0_is_the_model():
    lr = np.repeat(texture(24, 32)[None], 6, axis=0)
    sr = noisy(upscaled(lr, 2), 3.0)
    whole = Stabiliser(0.7)(lr, sr.copy())
    s, parts = Stabiliser(0.7), sr.copy()
    for k in (0, 1, 4):
        s(lr[k : k + (1 if k == 0 else 3 if k == 1 else 2)], parts[k : k + 3][: 3 if k else 1])
    assert np.array_equal(whole, parts)
    assert np.array_equal(Stabiliser(0.0)(lr, sr.copy()), sr)


def test_ten_bit_frames():
    lr8 = np.repeat(texture(24, 32)[None], 4, axis=0)
    lr = lr8.astype(np.uint16) * 257
    sr = noisy(upscaled(lr8), 4.0).astype(np.uint16) * 257
    out = Stabiliser(0.9)(lr, sr.copy())
    assert out.dtype == np.uint16
    before = np.abs(np.diff(sr.astype(float), axis=0)).mean()
    assert np.abs(np.diff(out.astype(float), axis=0)).mean() < before / 2


# -- a clip damaged as one video ----------------------------------------------------------------


def test_degrade_clip_codes_the_clip_as_a_video():
    lr = np.stack([texture(36, 44, seed=k % 2) for k in range(5)])
    spec = parse_spec("x264:crf=35")
    a, b = degrade_clip(lr, spec, 1), degrade_clip(lr, spec, 1)
    assert a.shape == lr.shape and np.array_equal(a, b)
    assert 1.0 < np.abs(a.astype(float) - lr).mean() < 40
    n1, n2 = degrade_clip(lr, parse_spec("noise:5"), 1), degrade_clip(lr, parse_spec("noise:5"), 2)
    assert not np.array_equal(n1[0] - lr[0], n1[1] - lr[1])  # new noise on every frame
    assert not np.array_equal(n1, n2)


# -- vidsr eval --video -------------------------------------------------------------------------


def write_clip(path: Path, frames: np.ndarray, rate: int = 25) -> None:
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=rate)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        s.options = {"crf": "10"}
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(p)
        for p in s.encode(None):
            out.mux(p)


def vidsr(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vidsr", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=600)  # fmt: skip


@pytest.mark.slow
def test_eval_video_json_and_picture(tmp_path):
    big = texture(120, 200, seed=4, sigma=2.0)
    frames = np.stack([big[10:106, k : k + 128] for k in (0, 0, 0, 1, 2, 3)])  # still, then a pan
    clip = tmp_path / "clip.mp4"
    write_clip(clip, frames)
    pic = tmp_path / "maps.png"
    r = vidsr(
        "eval",
        "--video",
        str(clip),
        "--model",
        "fast",
        "--model",
        "bicubic",
        "--temporal",
        "off,0.5",
        "--degrade",
        "x264:crf=30",
        "--picture",
        str(pic),
        "--json",
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    labels = [row["label"] for row in out["rows"]]
    assert labels == ["bicubic", "fast", "fast + temporal 0.5", "bicubic",
                      "bicubic + temporal 0.5"]  # fmt: skip
    assert out["frames"] == 6 and out["size"] == [128, 96] and out["degrade"] == "x264:crf=30:pan"
    first = out["rows"][0]
    assert first["static_ratio"] == 1.0 and first["warp_ratio"] == 1.0
    # the bicubic model is the reference made another way: the same numbers, near enough
    assert abs(out["rows"][3]["psnr_y"] - first["psnr_y"]) < 0.5
    for row in out["rows"]:
        assert row["psnr_y"] > 20 and 0 < row["ssim_y"] <= 1 and row["tmse"] > 0
    with Image_open(pic) as im:
        assert im.size[0] >= 2 * 128


def Image_open(path):  # noqa: N802 - PIL's name
    from PIL import Image

    return Image.open(path)


def test_eval_video_bad_inputs_are_one_line(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    r = vidsr("eval", "--video", str(bad), "--model", "bicubic")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "cannot be read" in r.stderr or "no frame" in r.stderr, r.stderr
    r = vidsr("eval", "--data", str(tmp_path), "--model", "fast", "--model", "srgan")
    assert r.returncode == 2 and "one --model at a time" in r.stderr
    r = vidsr("eval", "--video", str(bad), "--temporal", "loud")
    assert r.returncode == 2 and "strength" in r.stderr


# -- in the pipeline: resume equality, identity ---------------------------------------------------


def test_a_resumed_stabilised_output_equals_the_unbroken_one(tmp_path):
    import threading

    from media import interrupted, make_clip
    from test_resume import PER, config, contents

    from vidsr.errors import Cancelled
    from vidsr.jobs.batch import BatchRunner

    src = tmp_path / "in.mp4"
    make_clip(src, frames=60, vfr=True, audio=True)
    ref, off, dst = tmp_path / "ref.mp4", tmp_path / "off.mp4", tmp_path / "out.mp4"
    lines: list[str] = []
    BatchRunner(config(model="fast", temporal=0.8)).run_one(src, ref, inform=lines.append)
    assert "temporal 0.8" in lines[0]
    BatchRunner(config(model="fast", temporal="off")).run_one(src, off)
    assert contents(ref)["frames"] != contents(off)["frames"]  # it did something
    interrupted(src, dst, config(model="fast", temporal=0.8), 31)  # in the second segment
    result = BatchRunner(config(model="fast", temporal=0.8)).run_one(src, dst)
    assert result.resumed_frames == PER
    assert contents(dst) == contents(ref)
    # another strength is another output: the kept segments are not mixed in
    dst.unlink()
    interrupted(src, dst, config(model="fast", temporal=0.8), 30)
    notes: list[str] = []
    cancel = threading.Event()
    runner = BatchRunner(config(model="fast", temporal=0.5), cancel=cancel)
    with pytest.raises(Cancelled):
        runner.run_one(src, dst, warn=notes.append, progress=lambda d, t: cancel.set())
    assert any("--temporal changed; starting over" in n for n in notes), notes
