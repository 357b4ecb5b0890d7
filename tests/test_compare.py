"""`vidsr compare`: the sheet's size, panels and labels, the crops it picks, --reference PSNR."""

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from media import make_clip
from PIL import Image

from vidsr.cli import main
from vidsr.errors import ConfigError, InputError, OutputError
from vidsr.media.decode import FrameReader
from vidsr.media.probe import probe
from vidsr.models import build_model
from vidsr.quality import compare as compare_mod
from vidsr.quality.compare import compare, default_contenders, load_frame, parse_models, parse_time
from vidsr.quality.imresize import imresize
from vidsr.quality.metrics import psnr, rgb_to_y
from vidsr.upscale.engine import Engine


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def textured(h, w, box, seed=0):
    """Flat grey with noise inside `box` = (y, x, size): the one detailed region."""
    img = np.full((h, w, 3), 120, np.uint8)
    y, x, s = box
    img[y : y + s, x : x + s] = np.random.default_rng(seed).integers(0, 256, (s, s, 3))
    return img


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(textured(40, 48, (20, 24, 12))).save(path)
    return path


def label_bar(sheet, panel, height):
    left, top = panel.box
    side = panel.image.shape[1]
    return sheet[top - height : top, left : left + side]


def test_default_models_are_bicubic_and_every_shipped_one(monkeypatch):
    got = [c.model for c in default_contenders()]
    assert got == ["bicubic", "srresnet", "srgan", "fast", "real", "rt"]
    from vidsr.models import weights

    monkeypatch.setattr(weights, "SHIPPED", {"fast": weights.SHIPPED["fast"]})
    assert [c.model for c in default_contenders()] == ["bicubic", "fast"]


def test_sheet_has_one_panel_per_model_and_crop(photo, tmp_path):
    out = tmp_path / "cmp.png"
    done = compare(
        photo, output=out, crops=2, crop_size=12, contenders=parse_models("bicubic,fast")
    )
    models = ["bicubic", "fast"]
    assert [p.label for p in done.panels] == models * 2
    sheet = np.asarray(Image.open(out).convert("RGB"))
    assert (sheet.shape[1], sheet.shape[0]) == done.size
    gap, side = compare_mod.GAP, 12 * 4
    assert done.size[0] == len(models) * side + (len(models) + 1) * gap
    for panel in done.panels:
        left, top = panel.box
        assert panel.image.shape == (side, side, 3)
        assert np.array_equal(sheet[top : top + side, left : left + side], panel.image)
    # The most detailed crop first: the textured square (it has all the high-pass energy).
    assert done.panels[0].crop == (20, 24)
    second = done.panels[len(models)].crop
    assert abs(second[0] - 20) >= 12 or abs(second[1] - 24) >= 12  # no overlap


def test_labels_are_drawn_and_differ(photo, tmp_path):
    done = compare(photo, output=tmp_path / "cmp.png", crops=1, crop_size=40,
                   contenders=parse_models("bicubic,fast,srgan"))  # fmt: skip
    sheet = np.asarray(Image.open(done.output).convert("RGB"))
    bars = [label_bar(sheet, p, 12) for p in done.panels]
    for bar in bars:
        assert (bar == compare_mod.LABEL_BG).all(axis=2).any()  # the bar
        assert (bar.min(axis=2) > 200).any()  # and white text on it
    assert all(not np.array_equal(a, b) for i, a in enumerate(bars) for b in bars[i + 1 :])


def test_panels_equal_the_full_frame_upscale(photo, tmp_path):
    done = compare(photo, output=tmp_path / "cmp.png", crops=2, crop_size=12,
                   contenders=parse_models("bicubic"))  # fmt: skip
    rgb = np.array(Image.open(photo).convert("RGB"))
    full = Engine(build_model("bicubic"))(torch.from_numpy(rgb)[None])[0].numpy()
    for panel in done.panels:
        y, x = panel.crop
        assert np.array_equal(panel.image, full[y * 4 : (y + 12) * 4, x * 4 : (x + 12) * 4])


def test_reference_adds_psnr_and_its_own_panel(tmp_path):
    hr = np.asarray(Image.fromarray(textured(64, 96, (8, 16, 40), seed=3)).resize((96, 64)))
    lr = imresize(hr, 0.25)
    src, ref = tmp_path / "lr.png", tmp_path / "hr.png"
    Image.fromarray(lr).save(src)
    Image.fromarray(hr).save(ref)
    r = run("compare", src, "--reference", ref, "--models", "bicubic,fast", "--crop-size", "8",
            "--crops", "2", "-o", tmp_path / "cmp.png")  # fmt: skip
    assert r.exit_code == 0, r.output
    done = compare(src, reference=ref, contenders=parse_models("bicubic,fast"), crop_size=8,
                   output=tmp_path / "again.png")  # fmt: skip
    assert [p.label for p in done.panels] == ["bicubic", "fast", "reference"] * 2
    for panel in done.panels:
        y, x = panel.crop
        want = hr[y * 4 : (y + 8) * 4, x * 4 : (x + 8) * 4]
        if panel.label == "reference":
            assert panel.psnr_y is None and np.array_equal(panel.image, want)
            continue
        assert panel.psnr_y == pytest.approx(psnr(rgb_to_y(panel.image), rgb_to_y(want)))
        assert 10 < panel.psnr_y < 60
        assert f"{panel.label} {panel.psnr_y:.2f} dB" in r.output
    assert Image.open(tmp_path / "cmp.png").size == done.size


def test_reference_of_the_wrong_size_is_one_line(photo, tmp_path):
    ref = tmp_path / "ref.png"
    Image.fromarray(np.zeros((100, 100, 3), np.uint8)).save(ref)
    r = run("compare", photo, "--reference", ref, "--models", "bicubic")
    assert r.exit_code == InputError.exit_code
    assert "192x160" in r.output and len(r.output.strip().splitlines()) == 1
    assert not (photo.parent / "photo_compare.png").exists()


def test_video_frame_at_a_time_and_in_the_middle(tmp_path):
    clip = tmp_path / "clip.mp4"
    make_clip(clip, width=48, height=32, frames=10, vfr=False, audio=False)
    with FrameReader(probe(clip)) as reader:
        frames = [f for batch in reader for f in batch.frames]
    rgb, t = load_frame(clip, 0.2)  # frames every 40 ms: frame 5 is on screen at 200 ms
    assert t == 0.2 and np.array_equal(rgb, frames[5])
    rgb, t = load_frame(clip, 0.23)
    assert np.array_equal(rgb, frames[5])
    rgb, t = load_frame(clip, None)
    assert t == pytest.approx(probe(clip).duration / 2)
    r = run("compare", clip, "--at", "0:00.2", "--models", "bicubic", "--crop-size", "16")
    assert r.exit_code == 0, r.output
    assert "at 0.20 s" in r.output and (tmp_path / "clip_compare.png").is_file()
    r = run("compare", clip, "--at", "30")
    assert r.exit_code == InputError.exit_code and "past the end" in r.output


def test_models_names_files_and_name_equals_file(tmp_path):
    fast, srresnet = tmp_path / "fast_run.pt", tmp_path / "mine.pt"
    torch.save(build_model("fast").state_dict(), fast)
    torch.save({"ema": build_model("srresnet").state_dict()}, srresnet)
    got = parse_models(f"bicubic, {fast},{srresnet},srgan={srresnet}")
    assert [(c.label, c.model, c.weights) for c in got] == [
        ("bicubic", "bicubic", None),
        ("fast_run.pt", "fast", fast),  # fits fast and real alike: one network
        ("mine.pt", "srresnet", srresnet),  # fits srresnet and srgan alike: one network
        ("srgan (mine.pt)", "srgan", srresnet),
    ]
    for bad in ("nosuch", "bicubic=x.pt", ""):
        with pytest.raises(ConfigError, match="--models"):
            parse_models(bad)
    odd = tmp_path / "odd.pt"
    torch.save({"conv.weight": torch.zeros(3, 3, 3, 3)}, odd)
    with pytest.raises(ConfigError, match="fits none"):
        parse_models(str(odd))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="cannot read weights"):
        parse_models(str(junk))
    r = run("compare", tmp_path / "x.png", "--models", "nosuch")
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1


def test_times_and_no_overwrite(photo, tmp_path):
    assert parse_time("12.5") == 12.5 and parse_time("1:02:03.5") == 3723.5
    assert parse_time("00:01.25") == 1.25
    for bad in ("abc", "1:75", "-3", "1:2:3:4", ""):
        with pytest.raises(ConfigError, match="--at"):
            parse_time(bad)
    out = tmp_path / "cmp.png"
    out.write_bytes(b"mine")
    with pytest.raises(OutputError, match="exists"):
        compare(photo, output=out, contenders=parse_models("bicubic"))
    assert out.read_bytes() == b"mine"
