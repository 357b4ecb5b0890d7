"""Training pairs: HR crops from image folders and from frames sampled out of videos, LR by
imresize.

Every random choice of a sample (crop, flips, rotation, degradation) comes from a generator seeded
by (seed, the sample's global position), and the positions come from StepSampler, so the data of
step N is the same whether a run got there in one go or through --resume, with any worker count.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler

from ..errors import InputError
from ..quality.imresize import imresize

if TYPE_CHECKING:
    from .crops import CropCache

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".ts", ".mts", ".y4m")


@dataclass
class ScanReport:
    """What a scan found; skipped files are counted, not fatal (COCO has a few odd files)."""

    images: list[Path] = field(default_factory=list)
    too_small: list[Path] = field(default_factory=list)
    unreadable: list[Path] = field(default_factory=list)
    warned: list[Path] = field(default_factory=list)  # usable, but the decoder warned (EXIF ...)

    def summary(self) -> str:
        line = (
            f"{len(self.images)} images usable, {len(self.too_small)} too small, "
            f"{len(self.unreadable)} unreadable"
        )
        return line + (f", {len(self.warned)} with decoder warnings" if self.warned else "")


def _files(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    folder = Path(folder)
    if not folder.exists():
        raise InputError(f"data folder not found: {folder}")
    if folder.is_file():
        return [folder] if folder.suffix.lower() in suffixes else []
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in suffixes and p.is_file())


def _decoded_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image whose data decodes to the end; raises otherwise.

    A JPEG with a valid header and truncated data passes verify(), so JPEGs are decoded, in draft
    mode (libjpeg's DCT scaling: every byte is still read, an eighth of the pixels made). PNG's
    verify() checks every chunk's CRC, which catches truncation without decoding. PIL's
    LOAD_TRUNCATED_IMAGES stays off (its default): a truncated file raises instead of padding.
    """
    with Image.open(path) as im:
        size = im.size
        if im.format == "PNG":
            im.verify()
            return size
        if im.format == "JPEG":
            im.draft("RGB", (max(1, size[0] // 8), max(1, size[1] // 8)))
        im.load()
    return size


def scan_images(folders: list[Path], *, min_size: int) -> ScanReport:
    """Every image under `folders` (recursively) whose shorter side is at least `min_size`.

    Decoder warnings are counted in the report (ScanReport.warned), not printed one by one.
    """
    report = ScanReport()
    for folder in folders:
        for path in _files(folder, IMAGE_SUFFIXES):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    w, h = _decoded_size(path)
                except Exception:  # noqa: BLE001 - any file PIL cannot decode is skipped, counted
                    report.unreadable.append(path)
                    continue
            if caught:
                report.warned.append(path)
            (report.images if min(w, h) >= min_size else report.too_small).append(path)
    return report


def read_image(path: Path) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the scan counted them; once per file is enough
        with Image.open(path) as im:
            return np.array(im.convert("RGB"))


# -- video frames -------------------------------------------------------------------------------


def have_decord() -> bool:
    try:
        import decord  # noqa: F401
    except ImportError:
        return False
    return True


def even_indices(count: int, cap: int) -> list[int]:
    """Up to `cap` frame indices spread evenly over `count` frames (centres of equal spans)."""
    n = min(count, cap)
    return sorted({int((i + 0.5) * count / n) for i in range(n)}) if n > 0 else []


def _frames_decord(path: Path, cap: int) -> Iterator[np.ndarray]:
    import decord

    vr = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
    for i in even_indices(len(vr), cap):
        yield vr[i].asnumpy()


def _frames_pyav(path: Path, cap: int) -> Iterator[np.ndarray]:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        count = stream.frames
        if count <= 0:  # the container does not say: count packets (no decoding)
            count = sum(1 for p in container.demux(stream) if p.size)
            container.seek(0)
        wanted = set(even_indices(count, cap))
        stream.thread_type = "AUTO"
        for i, frame in enumerate(container.decode(stream)):
            if i in wanted:
                yield frame.to_ndarray(format="rgb24")
            if i >= max(wanted, default=-1):
                break


READERS: dict[str, Callable[[Path, int], Iterator[np.ndarray]]] = {
    "decord": _frames_decord,
    "pyav": _frames_pyav,
}


def _thumb(frame: np.ndarray) -> np.ndarray:
    grey = Image.fromarray(frame).convert("L").resize((32, 32), Image.BILINEAR)
    return np.asarray(grey, dtype=np.float32)


def sample_video(
    path: Path, *, cap: int = 64, reader: str = "auto", duplicate_below: float = 2.0
) -> list[np.ndarray]:
    """Frames spread evenly over a video, without near-duplicates of the previous kept frame.

    A static shot would otherwise fill the training set with one picture; `duplicate_below` is the
    mean absolute difference (grey levels, 32x32 thumbnails) under which a frame counts as a repeat.
    decord is used when installed; it cannot open AV1, so PyAV takes over when decord fails.
    """
    if reader == "auto":
        reader = "decord" if have_decord() else "pyav"
    try:
        frames = list(READERS[reader](path, cap))
    except Exception:  # noqa: BLE001 - decord raises its own error types for unsupported codecs
        if reader != "decord":
            raise
        frames = list(_frames_pyav(path, cap))
    kept: list[np.ndarray] = []
    last = None
    for frame in frames:
        thumb = _thumb(frame)
        if last is not None and float(np.abs(thumb - last).mean()) < duplicate_below:
            continue
        kept.append(frame)
        last = thumb
    return kept


def video_height(path: Path) -> int:
    import av

    with av.open(str(path)) as container:
        return int(container.streams.video[0].codec_context.height)


def extract_frames(
    folders: list[Path], cache: Path, *, cap: int, reader: str = "auto", min_lines: int = 0
) -> tuple[list[Path], list[Path]]:
    """Sampled frames of every video under `folders` as PNGs in `cache`: (frame files, failed
    videos).

    A video's folder is named after its path, size and mtime, so an edited file is sampled again
    and another run pointed at the same cache reuses the frames. Videos under `min_lines` high
    are left out: at SD and below, the source's own blocking and ringing would be learnt as detail.
    """
    files: list[Path] = []
    failed: list[Path] = []
    for folder in folders:
        for video in _files(folder, VIDEO_SUFFIXES):
            if min_lines:
                try:
                    if video_height(video) < min_lines:
                        continue
                except Exception:  # noqa: BLE001 - a broken video is skipped and reported
                    failed.append(video)
                    continue
            st = video.stat()
            key = f"{video.resolve()}:{st.st_size}:{st.st_mtime_ns}:{cap}"
            out = cache / f"{video.stem[:40]}-{hashlib.sha1(key.encode()).hexdigest()[:12]}"
            if not (out / "done").exists():
                try:
                    frames = sample_video(video, cap=cap, reader=reader)
                except Exception:  # noqa: BLE001 - a broken video is skipped and reported
                    failed.append(video)
                    continue
                out.mkdir(parents=True, exist_ok=True)
                for i, frame in enumerate(frames):
                    Image.fromarray(frame).save(out / f"{i:05d}.png", compress_level=1)
                (out / "done").write_text(str(len(frames)))
            files += sorted(out.glob("*.png"))
    return files, failed


# -- pairs --------------------------------------------------------------------------------------


class StepSampler(Sampler):
    """An endless stream of (image index, global position), resumable at any step.

    Like DistributedSampler: each epoch is a fresh permutation seeded by (seed, epoch), and rank r
    of `world` takes positions r, r + world, ... Starting at `start` (a global position) skips
    the samples already used, so `--resume` continues with exactly the next batch.
    """

    def __init__(self, n: int, *, seed: int = 0, rank: int = 0, world: int = 1, start: int = 0):
        if n <= 0:
            raise ValueError("no samples")
        self.n, self.seed, self.rank, self.world, self.start = n, seed, rank, world, start

    def _perm(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.n, generator=g)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        pos = self.start + self.rank
        epoch, perm = -1, None
        while True:
            if pos // self.n != epoch:
                epoch = pos // self.n
                perm = self._perm(epoch)
            yield int(perm[pos % self.n]), pos
            pos += self.world


class PairDataset(Dataset):
    """(LR, HR) uint8 CHW tensors: a random HR crop, flips and 90-degree turns, LR by imresize."""

    def __init__(
        self,
        files: list[Path],
        *,
        crop: int = 96,
        scale: int = 4,
        hr_downscale: int = 1,
        extra_downscales: tuple[int, ...] = (),
        crop_tries: int = 1,
        augment: bool = True,
        degrade: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
        seed: int = 0,
        cache_mb: int = 1024,
        tiles: CropCache | None = None,
    ):
        if crop % scale:
            raise InputError(f"--crop {crop} is not a multiple of the scale {scale}")
        self.files = list(files)
        # One entry per (file, shrink factor): a photo shrunk by 3 as well as by 2 is a second,
        # denser-detailed HR picture of the same scene. A prepared cache (vidsr.train.crops):
        # one entry per tile, already shrunk, opened in each loader process on first use.
        factors = tuple(dict.fromkeys((hr_downscale, *extra_downscales)))
        self.entries = [(i, f) for i in range(len(self.files)) for f in factors]
        self.tiles, self._tile_array = tiles, None
        if tiles is not None:
            if tiles.tile < crop:
                raise InputError(
                    f"{tiles.path}: its tiles are {tiles.tile} px, under --crop {crop}"
                )
            self.entries = [(i, 1) for i in range(tiles.count)]
        self.crop, self.scale = crop, scale
        self.crop_tries = max(1, crop_tries)
        self.augment, self.degrade, self.seed = augment, degrade, seed
        # Decoding a multi-megapixel JPEG costs ~0.2 s, more than a bf16 training step on two
        # cores: keep decoded (and already downscaled) images, per loader process, up to a budget.
        self.cache_bytes = cache_mb * 2**20
        self._cache: dict[int, np.ndarray] = {}
        self._cached = 0

    def __len__(self) -> int:
        return len(self.entries)

    def _image(self, entry: int) -> np.ndarray:
        """Entry `entry` decoded, shrunk by its factor, from the cache when it fits there."""
        if self.tiles is not None:
            if self._tile_array is None:
                self._tile_array = self.tiles.array()
            return self._tile_array[entry]
        img = self._cache.get(entry)
        if img is None:
            index, factor = self.entries[entry]
            img = read_image(self.files[index])
            if factor > 1 and min(img.shape[:2]) >= self.crop * factor:
                img = imresize(img, 1 / factor)
            if self._cached + img.nbytes <= self.cache_bytes:
                self._cache[entry] = img
                self._cached += img.nbytes
        return img

    def _crop(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A random crop; with crop_tries > 1 the most detailed of that many random crops."""
        h, w = img.shape[:2]
        best, best_detail = None, -1.0
        for _ in range(self.crop_tries):
            y, x = int(rng.integers(h - self.crop + 1)), int(rng.integers(w - self.crop + 1))
            c = img[y : y + self.crop, x : x + self.crop]
            if self.crop_tries == 1:
                return c
            g = c.astype(np.float32).mean(axis=2)
            d = float(np.abs(np.diff(g, axis=0)).mean() + np.abs(np.diff(g, axis=1)).mean())
            if d > best_detail:
                best, best_detail = c, d
        return best

    def _load(self, index: int, rng: np.random.Generator) -> np.ndarray:
        """An HR crop of entry `index`; a file that fails to decode now yields its neighbour's."""
        for attempt in range(len(self.entries)):
            position = (index + attempt) % len(self.entries)
            try:
                img = self._image(position)
            except Exception as e:  # noqa: BLE001 - header fine but data broken (truncated JPEG)
                path = self.files[self.entries[position][0]]
                warnings.warn(f"skipping unreadable image {path}: {e}", stacklevel=2)
                continue
            if min(img.shape[:2]) < self.crop:
                continue
            return self._crop(img, rng)
        raise InputError("no training image could be read")

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, position = item if isinstance(item, tuple) else (item, item)
        rng = np.random.default_rng([self.seed, position])
        hr = self._load(index, rng)
        # Flips and turns stay numpy rather than torchvision.transforms.v2: v2 draws from torch's
        # global RNG, and every choice here must come from this sample's own generator so that
        # step N gets the same data after a --resume and with any worker count.
        if self.augment:
            if rng.random() < 0.5:
                hr = hr[:, ::-1]
            if rng.random() < 0.5:
                hr = hr[::-1]
            hr = np.rot90(hr, int(rng.integers(4)))
        hr = np.ascontiguousarray(hr)
        if hasattr(self.degrade, "from_hr"):  # a chain that makes the LR itself (--degrade real)
            lr = self.degrade.from_hr(hr, self.scale, rng)
        else:
            lr = imresize(hr, 1 / self.scale)
            if self.degrade is not None:
                lr = self.degrade(lr, rng)
        to_chw = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)  # noqa: E731
        return to_chw(lr), to_chw(hr)


def min_image_size(crop: int, hr_downscale: int) -> int:
    return math.ceil(crop * hr_downscale)
