"""Resumable jobs: a hidden work folder beside the target, `.NAME.vidsr-work/`, holds the finished
segments of the output (vidsr.media.segments) and a small SQLite journal of them.

The journal also records what the output depends on: the source (path, size, mtime, a hash of
its first and last MiB), the model and its weights' sha256, precision, device and tiling, the
encoder and its settings, the scale, the span and the segment length. A rerun with the same
identity continues after the last segment that is on disk and decodes to the frames the journal
says; a rerun with a different one (or `--no-resume`) starts over and says why, in one line.
The work folder is locked while a run uses it and removed once the target is in place.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import av

from ..config import tile_name
from ..errors import OutputError
from ..media.segments import Segment, count_frames

if TYPE_CHECKING:
    from ..config import UpscaleConfig
    from ..media.encode import EncodePlan
    from ..media.filters import Prep
    from ..media.probe import VideoInfo
    from .engine import Engine

WORK_SUFFIX = ".vidsr-work"
JOURNAL = "journal.sqlite"
LOCK = "lock"
FORMAT = "1"  # of the journal; another one is started over

try:
    import fcntl
except ImportError:  # Windows: no flock; one run per target is then the user's promise
    fcntl = None  # type: ignore[assignment]

# How a change of each identity key is put to the user.
CHANGES = {
    "format": "the work folder is from another vidsr version",
    "source": "the source file changed",
    "model": "the model changed",
    "weights": "the weights changed",
    "precision": "the precision changed",
    "device": "the device type changed",
    "tile": "the tiling changed",
    "scale": "the scale changed",
    "encoder": "the encoder settings changed",
    "span": "--start/--duration changed",
    "prep": "the clean-up (deinterlace, inverse telecine, crop, denoise) changed",
    "temporal": "--temporal changed",
    "segment_frames": "the segment length changed",
    "ffmpeg": "the FFmpeg libraries changed",
}


def work_path(dst: Path) -> Path:
    return Path(dst).with_name(f".{Path(dst).name}{WORK_SUFFIX}")


def source_identity(path: Path) -> str:
    """Path, size, mtime and the sha256 of the first and last MiB: a changed file is noticed
    without reading a whole film."""
    st = path.stat()
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(1 << 20))
        if st.st_size > 2 << 20:
            f.seek(-(1 << 20), os.SEEK_END)
            h.update(f.read(1 << 20))
    return json.dumps([str(path.resolve()), st.st_size, st.st_mtime_ns, h.hexdigest()])


def job_identity(
    src: Path,
    config: UpscaleConfig,
    info: VideoInfo,
    engine: Engine,
    per_segment: int,
    plan: EncodePlan,
    prep: Prep | None = None,
) -> dict[str, str]:
    """What the output depends on: a rerun resumes only where all of it is the same."""
    from ..models.records import COMMUNITY
    from ..models.weights import SHIPPED, sha256_of

    if config.weights is not None:
        weights = sha256_of(config.weights)
    elif config.model in COMMUNITY:
        weights = COMMUNITY[config.model].sha256
    else:
        weights = SHIPPED[config.model].sha256 if config.model in SHIPPED else "none"
    encoder = {"codec": plan.codec, "pix_fmt": plan.pix_fmt, "options": plan.option_dict()}
    size = plan.size
    return {
        "format": FORMAT,
        "source": source_identity(src),
        "model": config.model,
        "weights": weights,
        "precision": engine.precision,
        "device": engine.device.type,
        "tile": tile_name(config.tile),
        "scale": f"{engine.scale} {size[1]}x{size[0]}",  # the model's, and the output size
        "encoder": json.dumps(encoder, sort_keys=True),
        "span": json.dumps([config.start, config.duration]),
        "prep": json.dumps(prep.filters() if prep is not None else []),
        "temporal": f"{config.temporal:g}",
        "segment_frames": str(per_segment),
        "ffmpeg": f"{av.__version__} {getattr(av, 'ffmpeg_version_info', '')}",
    }


def describe_change(old: dict[str, str], new: dict[str, str]) -> str:
    """One phrase: what differs between the earlier run's identity and this one's."""
    for key, value in new.items():
        if old.get(key) != value:
            said = CHANGES.get(key, f"{key} changed")
            if key in ("model", "precision", "device", "tile", "scale") and key in old:
                said += f" ({old[key]} -> {value})"
            return said
    return "the earlier run differs"


class WorkFolder:
    """The work folder of one target: `with WorkFolder.open(dst, identity, ...) as work:`."""

    def __init__(self, dst: Path):
        self.dst = Path(dst)
        self.path = work_path(self.dst)
        self.segments: list[Segment] = []
        self.complete = False
        self._db: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        self._mutex = threading.Lock()  # segments are added from the encode thread

    @classmethod
    @contextlib.contextmanager
    def open(
        cls,
        dst: Path,
        identity: dict[str, str],
        *,
        resume: bool = True,
        note: Callable[[str], None] | None = None,
        sparse: bool = False,
    ) -> Iterator[WorkFolder]:
        """`sparse`: keep finished segments after a missing one (a distributed run finishes
        them out of order); a sequential run keeps the unbroken run from the first only."""
        work = cls(dst)
        try:
            work._take(identity, resume=resume, note=note or (lambda msg: None), sparse=sparse)
            yield work
        finally:
            if not work.segments and work._lock_fd is not None:
                work.remove()  # nothing to resume from: an interrupted run leaves nothing
            work.close()

    # -- state -----------------------------------------------------------------------------------
    @property
    def frames_done(self) -> int:
        return sum(s.frames for s in self.segments)

    @property
    def last_pts(self) -> int | None:
        return self.segments[-1].last_pts if self.segments else None

    @property
    def next_index(self) -> int:
        return self.segments[-1].index + 1 if self.segments else 1

    def files(self) -> list[Path]:
        return [self.path / s.name for s in self.segments]

    def add(self, segment: Segment) -> None:
        """Record a segment that is complete and flushed to disk."""
        with self._mutex:
            try:
                self._db.execute(
                    "INSERT OR REPLACE INTO segment VALUES (?, ?, ?, ?, ?, ?)",
                    (segment.index, segment.name, segment.frames, segment.first_pts,
                     segment.last_pts, segment.bytes),
                )  # fmt: skip
                self._db.commit()
            except sqlite3.Error as e:
                raise self._error(e) from None
            self.segments.append(segment)

    def _error(self, e: BaseException) -> OutputError:
        if "full" in str(e) or getattr(e, "errno", None) == errno.ENOSPC or self._disk_full():
            return OutputError(f"disk full while writing {self.dst}")
        reason = getattr(e, "strerror", None) or str(e)
        return OutputError(f"cannot use the work folder {self.path}: {reason}")

    def mark_complete(self) -> None:
        """Every frame is in a segment: a rerun only joins them."""
        with self._mutex:
            self._db.execute("INSERT OR REPLACE INTO job VALUES ('complete', '1')")
            self._db.commit()
            self.complete = True

    def remove(self) -> None:
        """The target is in place: the segments and the journal go."""
        self.close()
        shutil.rmtree(self.path, ignore_errors=True)

    def _disk_full(self) -> bool:
        """SQLite says "disk I/O error" where a WAL file cannot grow: ask the filesystem."""
        try:
            return shutil.disk_usage(self.dst.parent).free < (64 << 10)
        except OSError:
            return False

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # drops the lock
            self._lock_fd = None

    # -- opening ---------------------------------------------------------------------------------
    def _take(
        self, identity: dict[str, str], *, resume: bool, note: Callable[[str], None], sparse: bool
    ) -> None:
        if not os.access(self.dst.parent, os.W_OK | os.X_OK):
            raise OutputError(f"output folder is not writable: {self.dst.parent}")
        try:
            self.path.mkdir(exist_ok=True)
            self._lock()
            old, segments, complete = self._read(note)
        except OutputError:
            raise
        except (OSError, sqlite3.Error) as e:
            if self._lock_fd is not None:
                self.remove()  # ours, and holding nothing yet
            raise self._error(e) from None
        if segments and (not resume or old != identity):
            why = "--no-resume" if not resume else describe_change(old or {}, identity)
            frames = sum(s.frames for s in segments)
            note(f"{self.dst.name}: {why}; starting over ({frames} frames of an earlier run "
                 "discarded)")  # fmt: skip
        if not resume or old != identity:
            segments, complete = [], False
            self._reset(identity)
        self.segments = self._verified(segments, sparse=sparse)
        self.complete = complete and len(self.segments) == len(segments)
        self._sweep()

    def _lock(self) -> None:
        self._lock_fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is None:
            return
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise OutputError(
                f"another vidsr run is writing {self.dst} (its work folder is in use)"
            ) from None

    def _read(
        self, note: Callable[[str], None]
    ) -> tuple[dict[str, str] | None, list[Segment], bool]:
        """The journal's identity, segments and completion; a damaged journal is started over."""
        path = self.path / JOURNAL
        try:
            self._db = _connect(path)
            rows = dict(self._db.execute("SELECT key, value FROM job"))
            segments = [
                Segment(*row)
                for row in self._db.execute(
                    "SELECT idx, name, frames, first_pts, last_pts, bytes FROM segment ORDER BY idx"
                )
            ]
        except sqlite3.DatabaseError:
            if self._db is not None:
                self._db.close()
            for suffix in ("", "-journal", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            self._db = _connect(path)
            note(f"{self.dst.name}: the journal in {self.path.name} is damaged; starting over")
            return None, [], False
        complete = rows.pop("complete", None) == "1"
        identity = {k[3:]: v for k, v in rows.items() if k.startswith("id.")}
        return identity or None, segments, complete

    def _reset(self, identity: dict[str, str]) -> None:
        with self._db:
            self._db.execute("DELETE FROM segment")
            self._db.execute("DELETE FROM job")
            self._db.executemany(
                "INSERT INTO job VALUES (?, ?)", [(f"id.{k}", v) for k, v in identity.items()]
            )

    def _verified(self, segments: list[Segment], *, sparse: bool = False) -> list[Segment]:
        """The segments that are on disk at their recorded size, in an unbroken run from the
        first, the last of them decoding to its recorded frame count. `sparse`: every such
        segment, the last of each unbroken run decoding to its count."""
        if sparse:
            return self._verified_sparse(segments)
        good: list[Segment] = []
        for s in segments:
            f = self.path / s.name
            if s.index != len(good) + 1 or not f.is_file() or f.stat().st_size != s.bytes:
                break
            good.append(s)
        while good and count_frames(self.path / good[-1].name) != good[-1].frames:
            good.pop()
        if len(good) < len(segments):
            with self._db:
                self._db.execute("DELETE FROM segment WHERE idx > ?", (len(good),))
                self._db.execute("DELETE FROM job WHERE key = 'complete'")
        return good

    def _verified_sparse(self, segments: list[Segment]) -> list[Segment]:
        # A segment is journalled only once it is fsynced, in any order; decoding every one
        # would cost a film's decode on each resume, so the ends of runs stand for them, as the
        # last segment does for a sequential run.
        on_disk = [s for s in segments if self._intact(s)]
        indices = {s.index for s in on_disk}
        good = [
            s
            for s in on_disk
            if s.index + 1 in indices or count_frames(self.path / s.name) == s.frames
        ]
        if len(good) < len(segments):
            kept = {s.index for s in good}
            with self._db:
                self._db.executemany(
                    "DELETE FROM segment WHERE idx = ?",
                    [(s.index,) for s in segments if s.index not in kept],
                )
                self._db.execute("DELETE FROM job WHERE key = 'complete'")
        return good

    def _intact(self, segment: Segment) -> bool:
        f = self.path / segment.name
        return f.is_file() and f.stat().st_size == segment.bytes

    def _sweep(self) -> None:
        """Files the journal does not list: a segment renamed just before a kill, temp files of
        a dead writer (we hold the lock: no one else writes here)."""
        keep = {JOURNAL, LOCK} | {s.name for s in self.segments}
        for p in self.path.iterdir():
            if p.name not in keep and not p.name.startswith(JOURNAL) and p.is_file():
                with contextlib.suppress(OSError):
                    p.unlink()


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, check_same_thread=False)
    try:
        # WAL: a commit is one fsync of the log; FULL: a committed row survives a power cut
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")
        db.execute("CREATE TABLE IF NOT EXISTS job (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute(
            "CREATE TABLE IF NOT EXISTS segment (idx INTEGER PRIMARY KEY, name TEXT NOT NULL, "
            "frames INTEGER NOT NULL, first_pts INTEGER NOT NULL, last_pts INTEGER NOT NULL, "
            "bytes INTEGER NOT NULL)"
        )
        db.commit()
    except BaseException:
        db.close()
        raise
    return db


__all__ = [
    "CHANGES",
    "WorkFolder",
    "describe_change",
    "job_identity",
    "source_identity",
    "work_path",
]
