"""Images through `vidsr upscale`: formats, 8 and 16 bits, EXIF orientation, ICC, alpha, folders."""

import io
import struct
import zlib

import av
import numpy as np
import pytest
from click.testing import CliRunner
from media import make_clip, read_video
from PIL import Image, ImageCms, ImageOps

import vidsr
from vidsr.cli import main
from vidsr.errors import InputError, OutputError
from vidsr.media.encode import TEMP_MARKER
from vidsr.media.images import read_image

BLOCK = 8  # source pixels per flat block: bicubic (radius 2) keeps a block's inside exact


def blocks(h, w, levels, channels=3, seed=0):
    """Flat BLOCK x BLOCK patches of random values below `levels`."""
    rng = np.random.default_rng(seed)
    dtype = np.uint8 if levels <= 256 else np.uint16
    small = rng.integers(0, levels, (h // BLOCK, w // BLOCK, channels)).astype(dtype)
    return np.kron(small, np.ones((BLOCK, BLOCK, 1), dtype=dtype))


def inside(a, scale=4):
    """The middle of every upscaled block, where bicubic's kernel sees one value only."""
    s = BLOCK * scale
    return a[s // 2 :: s, s // 2 :: s]


def write_deep(path, samples, codec="png"):
    """A 16-bit image written with FFmpeg (Pillow cannot write 16-bit RGB): (H, W, C) uint16."""
    h, w, c = samples.shape
    endian = "be" if codec == "png" else "le"
    pix_fmt = {1: "gray16", 3: "rgb48", 4: "rgba64"}[c] + endian
    fmt = {1: "gray16le", 3: "rgb48le", 4: "rgba64le"}[c]
    cc = av.CodecContext.create(codec, "w")
    cc.width, cc.height, cc.pix_fmt = w, h, pix_fmt
    frame = av.VideoFrame.from_ndarray(samples[..., 0] if c == 1 else samples, format=fmt)
    data = b"".join(bytes(p) for p in cc.encode(frame.reformat(format=pix_fmt)))
    path.write_bytes(data)


def read_deep(path):
    with av.open(str(path)) as c:
        frame = next(c.decode(video=0))
    return frame.format.name, frame.to_ndarray(format="rgb48le")


def png_bit_depth(path):
    return path.read_bytes()[24]


def with_png_chunk(path, kind, data):
    """Insert a chunk after IHDR (as a camera or an editor would write eXIf or iCCP)."""
    png = path.read_bytes()
    chunk = struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    path.write_bytes(png[:33] + chunk + png[33:])


def exif_bytes(orientation, make="TestCam"):
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = make
    return exif.tobytes()


def srgb_profile():
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def no_temp_files(folder):
    return not [p for p in folder.iterdir() if TEMP_MARKER in p.name]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


# -- 8 and 16 bits ---------------------------------------------------------------------------------


def test_jpeg_becomes_png_x4(tmp_path):
    src = tmp_path / "photo.jpg"
    Image.fromarray(blocks(24, 32, 256)).save(src)
    r = run("upscale", src, "--model", "bicubic")
    assert r.exit_code == 0, r.output
    assert r.output.startswith(f"{tmp_path / 'photo_x4.png'}: image in")
    with Image.open(tmp_path / "photo_x4.png") as out:
        assert (out.format, out.mode, out.size) == ("PNG", "RGB", (128, 96))


def test_8bit_png_values_kept(tmp_path):
    src = tmp_path / "photo.png"
    pixels = blocks(24, 32, 256)
    Image.fromarray(pixels).save(src)
    result = vidsr.upscale_video(src, model="bicubic")
    assert result.output == tmp_path / "photo_x4.png" and result.frames == 1
    with Image.open(result.output) as out:
        assert (out.format, out.mode, out.size) == ("PNG", "RGB", (128, 96))
        got = np.asarray(out)
    assert np.abs(inside(got).astype(int) - pixels[::BLOCK, ::BLOCK]).max() <= 1
    assert no_temp_files(tmp_path)


def test_16bit_png_keeps_16_bits(tmp_path):
    src = tmp_path / "deep.png"
    pixels = blocks(24, 32, 65536, seed=1)
    assert np.any(pixels % 257)  # values an 8-bit path could not hold
    write_deep(src, pixels)
    result = vidsr.upscale_video(src, model="bicubic")
    assert png_bit_depth(result.output) == 16
    pix_fmt, got = read_deep(result.output)
    assert pix_fmt == "rgb48be" and got.shape == (96, 128, 3)
    assert np.abs(inside(got).astype(int) - pixels[::BLOCK, ::BLOCK]).max() <= 1


def test_16bit_grey_png_stays_grey_and_16_bit(tmp_path):
    src = tmp_path / "grey16.png"
    pixels = blocks(16, 24, 65536, channels=1, seed=2)
    Image.fromarray(pixels[..., 0]).save(src)  # Pillow writes grey at 16 bits (mode I;16)
    out = vidsr.upscale_video(src, model="bicubic").output
    with Image.open(out) as im:
        assert im.mode.startswith("I;16") and im.size == (96, 64)
        got = np.asarray(im)
    assert np.abs(inside(got).astype(int) - pixels[::BLOCK, ::BLOCK, 0]).max() <= 1


def test_16bit_tiff_in_and_out(tmp_path):
    src = tmp_path / "deep.tif"
    pixels = blocks(16, 16, 65536, seed=3)
    write_deep(src, pixels, codec="tiff")
    out = tmp_path / "deep_x4.tiff"
    vidsr.upscale_video(src, out, model="bicubic")
    pix_fmt, got = read_deep(out)
    assert pix_fmt.startswith("rgb48") and got.shape == (64, 64, 3)
    assert np.abs(inside(got).astype(int) - pixels[::BLOCK, ::BLOCK]).max() <= 1


def test_16bit_to_jpeg_says_it_is_8_bit(tmp_path):
    src = tmp_path / "deep.png"
    write_deep(src, blocks(16, 16, 65536, seed=4))
    result = vidsr.upscale_video(src, tmp_path / "out.jpg", model="bicubic")
    assert any("8 bits" in w for w in result.warnings)
    with Image.open(result.output) as im:
        assert (im.format, im.mode) == ("JPEG", "RGB")


# -- orientation, ICC, alpha, grey -------------------------------------------------------------


def test_exif_orientation_6_is_applied_and_not_written_again(tmp_path):
    src = tmp_path / "phone.jpg"
    stored = np.full((16, 32, 3), 30, np.uint8)  # stored 32 wide, 16 high
    stored[:8, :8] = (250, 20, 20)  # red in the stored top-left corner
    Image.fromarray(stored).save(src, quality=98, exif=exif_bytes(6))
    out = vidsr.upscale_video(src, model="bicubic").output
    with Image.open(out) as im:
        assert im.size == (16 * 4, 32 * 4)  # shown upright: 16 wide, 32 high
        exif = im.getexif()
        assert 0x0112 not in exif and exif.get(0x010F) == "TestCam"
        got = np.asarray(im)
    # Orientation 6 turns the picture 90 degrees clockwise: the stored top-left is now top-right.
    assert got[8, -8, 0] > 200 and got[8, -8, 1] < 60
    assert got[8, 8, 0] < 60 and got[-8, -8, 0] < 60


@pytest.mark.parametrize("orientation", range(1, 9))
def test_16bit_orientation_matches_pillow(tmp_path, orientation):
    pixels = blocks(16, 24, 65536, seed=orientation)
    deep = tmp_path / "deep.png"
    write_deep(deep, pixels)
    with_png_chunk(deep, b"eXIf", exif_bytes(orientation).removeprefix(b"Exif\0\0"))
    tagged = Image.fromarray((pixels // 257).astype(np.uint8))
    tagged.getexif()[0x0112] = orientation
    buf = io.BytesIO()
    tagged.save(buf, "PNG", exif=exif_bytes(orientation))
    want = np.asarray(ImageOps.exif_transpose(Image.open(buf)))
    got = read_image(deep)
    assert got.bit_depth == 16
    assert np.array_equal((got.rgb // 257).astype(np.uint8), want)


@pytest.mark.parametrize("ext", [".png", ".jpg", ".webp", ".tif"])
def test_icc_profile_is_kept(tmp_path, ext):
    icc = srgb_profile()
    src = tmp_path / "tagged.jpg"
    Image.fromarray(blocks(16, 16, 256)).save(src, icc_profile=icc)
    out = vidsr.upscale_video(src, tmp_path / f"out{ext}", model="bicubic").output
    with Image.open(out) as im:
        assert im.info.get("icc_profile") == icc


def test_icc_profile_is_kept_at_16_bits(tmp_path):
    icc = srgb_profile()
    src = tmp_path / "deep.png"
    write_deep(src, blocks(16, 16, 65536))
    with_png_chunk(src, b"iCCP", b"sRGB\0\0" + zlib.compress(icc))
    out = vidsr.upscale_video(src, model="bicubic").output
    assert png_bit_depth(out) == 16
    with Image.open(out) as im:
        assert im.info.get("icc_profile") == icc


def test_rgba_keeps_alpha_in_png_and_jpeg_says_it_drops_it(tmp_path):
    rgba = np.concatenate([blocks(16, 16, 256), np.full((16, 16, 1), 255, np.uint8)], axis=2)
    rgba[8:, :, 3] = 77  # the lower half is translucent
    src = tmp_path / "logo.png"
    Image.fromarray(rgba, "RGBA").save(src)
    out = vidsr.upscale_video(src, model="bicubic").output
    with Image.open(out) as im:
        assert im.mode == "RGBA" and im.size == (64, 64)
        alpha = np.asarray(im)[..., 3]
    assert alpha[4, 4] == 255 and alpha[-4, -4] == 77
    jpeg = vidsr.upscale_video(src, tmp_path / "logo.jpg", model="bicubic")
    assert any("alpha" in w for w in jpeg.warnings)
    with Image.open(jpeg.output) as im:
        assert im.mode == "RGB"


def test_greyscale_stays_greyscale(tmp_path):
    src = tmp_path / "scan.png"
    pixels = blocks(16, 16, 256, channels=1)[..., 0]
    Image.fromarray(pixels, "L").save(src)
    out = vidsr.upscale_video(src, model="bicubic").output
    with Image.open(out) as im:
        assert im.mode == "L" and im.size == (64, 64)
        assert np.abs(inside(np.asarray(im)).astype(int) - pixels[::BLOCK, ::BLOCK]).max() <= 1


# -- output names, errors, folders ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fmt"),
    [("a.png", "PNG"), ("a.jpg", "JPEG"), ("a.jpeg", "JPEG"), ("a.webp", "WEBP"),
     ("a.tif", "TIFF"), ("a.tiff", "TIFF")],
)  # fmt: skip
def test_output_extension_picks_the_format(tmp_path, name, fmt):
    src = tmp_path / "in.jpg"
    Image.fromarray(blocks(16, 16, 256)).save(src)
    r = run("upscale", src, "-o", tmp_path / name, "--model", "bicubic")
    assert r.exit_code == 0, r.output
    assert "image in" in r.output
    with Image.open(tmp_path / name) as im:
        assert im.format == fmt and im.size == (64, 64)


def test_output_folder_and_video_extension(tmp_path):
    src = tmp_path / "in.webp"
    Image.fromarray(blocks(16, 16, 256)).save(src)
    (tmp_path / "out").mkdir()
    assert run("upscale", src, "-o", tmp_path / "out", "--model", "bicubic").exit_code == 0
    assert (tmp_path / "out" / "in_x4.png").is_file()
    r = run("upscale", src, "-o", tmp_path / "in.mkv", "--model", "bicubic")
    assert r.exit_code == OutputError.exit_code and ".png" in r.output
    assert len(r.output.strip().splitlines()) == 1 and not (tmp_path / "in.mkv").exists()


def test_existing_output_is_not_overwritten(tmp_path):
    src = tmp_path / "in.png"
    Image.fromarray(blocks(16, 16, 256)).save(src)
    dst = tmp_path / "in_x4.png"
    dst.write_bytes(b"mine")
    with pytest.raises(OutputError, match="exists"):
        vidsr.upscale_video(src, model="bicubic")
    assert dst.read_bytes() == b"mine"
    vidsr.upscale_video(src, model="bicubic", overwrite=True)
    assert Image.open(dst).size == (64, 64) and no_temp_files(tmp_path)


def test_bad_image_is_one_line(tmp_path):
    src = tmp_path / "broken.jpg"
    src.write_bytes(b"\xff\xd8\xff\xe0 this is no JPEG" * 10)
    with pytest.raises(InputError, match="not a readable image"):
        vidsr.upscale_video(src, model="bicubic")
    r = run("upscale", src, "--model", "bicubic")
    assert r.exit_code == InputError.exit_code
    assert r.output.startswith("vidsr: error:") and len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "broken_x4.png").exists() and no_temp_files(tmp_path)


def test_folder_with_videos_and_images(tmp_path):
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    make_clip(inbox / "clip.mp4", width=32, height=24, frames=4, audio=False, vfr=False)
    Image.fromarray(blocks(16, 16, 256)).save(inbox / "a.png")
    Image.fromarray(blocks(16, 24, 256)).save(inbox / "b.jpg")
    (inbox / "c.png").write_bytes(b"not a png")
    r = run("upscale", inbox, "-o", out, "--model", "bicubic")
    assert r.exit_code == 1  # one file failed, the others were done
    assert read_video(out / "clip_x4.mp4")["frames"] == 4
    assert Image.open(out / "a_x4.png").size == (64, 64)
    assert Image.open(out / "b_x4.png").size == (96, 64)
    assert not (out / "c_x4.png").exists()
    assert "c.png" in r.output and "not a readable image" in r.output
    assert "3 of 4 files (1 video, 3 images) upscaled, 1 failed" in r.output


def _gif(path, frames: int) -> None:
    pictures = [Image.new("RGB", (32, 24), (60 * i, 90, 0)) for i in range(frames)]
    pictures[0].save(path, save_all=frames > 1, append_images=pictures[1:], duration=100, loop=0)


def test_a_still_gif_is_an_image_and_an_animated_gif_a_video(tmp_path):
    _gif(tmp_path / "still.gif", 1)
    _gif(tmp_path / "anim.gif", 4)
    r = run("upscale", tmp_path / "still.gif", "--model", "bicubic")
    assert r.exit_code == 0, r.output
    assert Image.open(tmp_path / "still_x4.png").size == (128, 96)
    r = run("upscale", tmp_path / "anim.gif", "--model", "bicubic")
    assert r.exit_code == 0, r.output
    assert read_video(tmp_path / "anim_x4.mkv")["frames"] == 4
    # an image name for the animation: refused in one line before any work, not "cannot .png"
    r = run("upscale", tmp_path / "anim.gif", "-o", tmp_path / "o.png", "--model", "bicubic")
    assert r.exit_code == OutputError.exit_code
    assert "anim.gif is an animated GIF (4 frames): it is upscaled to a video" in r.output
    assert not (tmp_path / "o.png").exists()


def test_video_options_on_an_image_are_refused(tmp_path):
    Image.new("RGB", (16, 16)).save(tmp_path / "p.png")
    r = run("upscale", tmp_path / "p.png", "--start", "1", "--model", "bicubic")
    assert r.exit_code == 2 and "p.png is an image: --start applies to videos" in r.output
    assert not (tmp_path / "p_x4.png").exists()
    with pytest.raises(vidsr.errors.ConfigError, match="--duration applies to videos"):
        vidsr.upscale_video(tmp_path / "p.png", model="bicubic", duration=2)
