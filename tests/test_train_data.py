"""Training data: scans that skip bad images, frame sampling through both readers, degradations."""

import warnings
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from vidsr.errors import VidsrError
from vidsr.train import vgg as vgg_mod
from vidsr.train.data import (
    PairDataset,
    StepSampler,
    even_indices,
    extract_frames,
    have_decord,
    sample_video,
    scan_images,
)
from vidsr.train.degrade import VideoDegradation, codec_round_trip


def _image(path: Path, w: int, h: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).save(path)
    return path


def _video(path: Path, *, frames: int = 20, repeat: int = 2, size=(64, 48)) -> Path:
    """A clip whose pictures change every `repeat` frames: near-duplicates to skip."""
    w, h = size
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"crf": "10", "preset": "ultrafast"}
        for i in range(frames):
            rng = np.random.default_rng(i // repeat)
            img = (rng.random((h, w, 3)) * 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 25)
            out.mux(s.encode(frame))
        out.mux(s.encode(None))
    return path


def test_scan_skips_and_counts_tiny_and_corrupt_images(tmp_path):
    (tmp_path / "sub").mkdir()
    good = _image(tmp_path / "sub" / "good.png", 64, 64)
    _image(tmp_path / "tiny.png", 20, 64)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    png = _image(tmp_path / "trunc.png", 64, 64).read_bytes()
    (tmp_path / "trunc.png").write_bytes(png[: len(png) // 2])
    (tmp_path / "notes.txt").write_text("ignored")
    report = scan_images([tmp_path], min_size=48)
    assert report.images == [good]
    assert [p.name for p in report.too_small] == ["tiny.png"]
    assert sorted(p.name for p in report.unreadable) == ["broken.jpg", "trunc.png"]
    assert "1 images usable, 1 too small, 2 unreadable" == report.summary()


def test_scan_decodes_jpegs_to_the_end(tmp_path):
    """A JPEG whose header is fine and whose data stops early passes PIL's verify(): decode it."""
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((96, 128, 3)) * 255).astype(np.uint8)).save(tmp_path / "ok.jpg")
    data = (tmp_path / "ok.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) * 6 // 10])
    with Image.open(tmp_path / "cut.jpg") as im:
        im.verify()  # the check the scan used to rely on: it sees nothing wrong
    report = scan_images([tmp_path], min_size=48)
    assert [p.name for p in report.images] == ["ok.jpg"]
    assert [p.name for p in report.unreadable] == ["cut.jpg"]


def test_scan_counts_decoder_warnings_instead_of_printing_them(tmp_path, monkeypatch):
    _image(tmp_path / "big.png", 64, 64)
    _image(tmp_path / "small.png", 40, 40)
    # Over PIL's pixel limit (but under twice it) PIL warns: a decoder warning of its own.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 64 * 64 - 1)
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        report = scan_images([tmp_path], min_size=32)
    assert shown == []
    assert [p.name for p in report.warned] == ["big.png"] and len(report.images) == 2
    assert report.summary() == (
        "2 images usable, 0 too small, 0 unreadable, 1 with decoder warnings"
    )


def test_pairs_are_deterministic_per_position(tmp_path):
    files = [_image(tmp_path / f"{i}.png", 80, 70, seed=i) for i in range(3)]
    ds = PairDataset(files, crop=32, degrade=VideoDegradation())
    lr, hr = ds[(1, 7)]
    assert lr.shape == (3, 8, 8) and hr.shape == (3, 32, 32) and lr.dtype == torch.uint8
    lr2, hr2 = ds[(1, 7)]
    assert torch.equal(lr, lr2) and torch.equal(hr, hr2)
    assert not torch.equal(hr, ds[(1, 8)][1])


def test_step_sampler_resumes_and_shards():
    full = [next(it) for it in [iter(StepSampler(5, seed=3))] for _ in range(12)]
    it = iter(StepSampler(5, seed=3, start=7))
    assert [next(it) for _ in range(5)] == full[7:12]
    r0, r1 = iter(StepSampler(5, seed=3, world=2)), iter(StepSampler(5, seed=3, rank=1, world=2))
    merged = [x for _ in range(3) for x in (next(r0), next(r1))]
    assert merged == full[:6]
    assert sorted(i for i, _ in full[:5]) == list(range(5))  # each epoch is a permutation


def test_even_indices():
    assert even_indices(100, 4) == [12, 37, 62, 87]
    assert even_indices(3, 10) == [0, 1, 2]
    assert even_indices(0, 5) == []


@pytest.mark.parametrize("reader", ["pyav", "decord"])
def test_frame_sampling_skips_near_duplicates(tmp_path, reader):
    if reader == "decord" and not have_decord():
        pytest.skip("decord is not installed (pip install decord); the PyAV reader covers this")
    clip = _video(tmp_path / "clip.mp4", frames=20, repeat=2)
    frames = sample_video(clip, cap=20, reader=reader)
    assert len(frames) == 10  # 20 frames, every picture shown twice
    assert frames[0].shape == (48, 64, 3)
    assert len(sample_video(clip, cap=4, reader=reader)) == 4


def test_extract_frames_caches(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    _video(videos / "a.mp4", frames=8, repeat=1)
    (videos / "broken.mkv").write_bytes(b"nothing here")
    files, failed = extract_frames([videos], tmp_path / "cache", cap=4)
    assert len(files) == 4 and [p.name for p in failed] == ["broken.mkv"]
    mtimes = [p.stat().st_mtime_ns for p in files]
    again, _ = extract_frames([videos], tmp_path / "cache", cap=4)
    assert again == files and [p.stat().st_mtime_ns for p in again] == mtimes


@pytest.mark.parametrize("codec", ["libx264", "libx265"])
def test_codec_round_trip_keeps_size_and_degrades(codec):
    if codec not in av.codecs_available:
        pytest.skip(f"{codec} not in this PyAV build")
    y, x = np.mgrid[0:23, 0:30]
    img = np.stack([x * 8, y * 10, (x * y) % 256], -1).astype(np.uint8)
    out = codec_round_trip(img, codec=codec, crf=40)
    assert out.shape == img.shape
    assert 0 < np.abs(out.astype(int) - img).mean() < 60


def test_vgg_has_torchvision_keys_and_loads_them(tmp_path):
    net = vgg_mod.VGGFeatures(layer="vgg19_54")
    keys = list(net.state_dict())
    assert keys[0] == "features.0.weight" and keys[-1] == "features.34.bias"
    assert isinstance(net.features, torch.nn.Sequential) and len(net.features) == 36
    # A torchvision file: the whole trunk (past our cut too) and the classifier.
    state = {f"features.{k}": torch.randn_like(v) for k, v in net.features.state_dict().items()}
    state["features.37.weight"] = torch.zeros(512, 512, 3, 3)
    state["classifier.0.weight"] = torch.zeros(4, 4)
    torch.save(state, tmp_path / "vgg19.pth")
    loaded = vgg_mod.load_vgg("vgg19_54", tmp_path / "vgg19.pth")
    assert torch.equal(loaded.features[34].weight, state["features.34.weight"])
    assert loaded(torch.rand(1, 3, 32, 32)).shape == (1, 512, 2, 2)
    with pytest.raises(VidsrError, match="lack"):
        vgg_mod.load_vgg("vgg19_54", _save({"features.0.weight": torch.zeros(1)}, tmp_path))
    with pytest.raises(VidsrError, match="not a state_dict"):
        vgg_mod.load_vgg("vgg19_54", _save([1, 2], tmp_path))


def test_vgg_before_relu_cuts_one_layer_earlier():
    after = vgg_mod.VGGFeatures(layer="vgg16_22")
    before = vgg_mod.VGGFeatures(layer="vgg16_22", before_relu=True)
    assert isinstance(after.features[-1], torch.nn.ReLU)
    assert isinstance(before.features[-1], torch.nn.Conv2d)
    assert len(before.features) == len(after.features) - 1
    x = torch.rand(1, 3, 16, 16) * 2 - 1  # some conv outputs negative: only `before` keeps them
    before.features.load_state_dict(after.features.state_dict())
    assert (before(x) < 0).any() and not (after(x) < 0).any()


def test_vgg16_trunk_file_without_classifier_loads(tmp_path):
    # What training/convert_hed_vgg16.py writes: the 13 convs of vgg16().features, nothing else.
    conv = vgg_mod.VGGFeatures(layer="vgg16_53").features
    state = {f"features.{k}": v.clone() for k, v in conv.state_dict().items()}
    assert sum(k.endswith(".weight") for k in state) == 13
    torch.save(state, tmp_path / "vgg16_hed.pt")
    loaded = vgg_mod.load_vgg("vgg16_53", tmp_path / "vgg16_hed.pt", before_relu=True)
    assert torch.equal(loaded.features[28].weight, state["features.28.weight"])


def _save(obj, tmp_path):
    torch.save(obj, tmp_path / "bad.pth")
    return tmp_path / "bad.pth"


def _no_network(monkeypatch):
    """Every connection attempt fails at once: no test waits on (or reaches) the network."""
    import socket

    def refuse(*a, **k):
        raise OSError("network is unreachable (test)")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.delenv("VIDSR_OFFLINE", raising=False)


def test_vgg_without_weights_offline_is_one_line(tmp_path, monkeypatch):
    """torchvision's own download path, with an empty hub cache and no network."""
    _no_network(monkeypatch)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(VidsrError) as e:
        vgg_mod.load_vgg("vgg19_54")
    msg = str(e.value)
    assert "vgg19-dcbb9e9d.pth" in msg and str(tmp_path / "hub" / "checkpoints") in msg
    assert "--vgg-weights" in msg and "\n" not in msg
    assert not (tmp_path / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth").exists()
    assert vgg_mod.load_vgg("vgg19_54", "random") is not None  # tests' explicit random weights


def test_vgg_reads_torchvision_weights_from_the_hub_cache(tmp_path, monkeypatch):
    """Where torchvision put its download earlier, the file is used without any network."""
    _no_network(monkeypatch)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    conv = vgg_mod.VGGFeatures(layer="vgg16_22").features
    state = {f"features.{k}": torch.randn_like(v) for k, v in conv.state_dict().items()}
    cached = vgg_mod.hub_weight_path("vgg16")
    assert cached.name == "vgg16-397923af.pth"
    cached.parent.mkdir(parents=True)
    torch.save(state, cached)
    loaded = vgg_mod.load_vgg("vgg16_22")
    assert torch.equal(loaded.features[7].weight, state["features.7.weight"])


def test_train_without_vgg_weights_offline_is_one_line(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from vidsr.cli import main

    _no_network(monkeypatch)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    _image(tmp_path / "a.png", 64, 64)
    args = ["train", "--recipe", "srgan", "--data", str(tmp_path), "--out", str(tmp_path / "run"),
            "--steps", "1", "--device", "cpu", "-q"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0 and isinstance(result.exception, SystemExit)
    line = result.output.strip()
    assert "\n" not in line and "--vgg-weights FILE" in line and "vgg19" in line
