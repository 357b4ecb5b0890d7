"""Hidden temporary outputs beside their targets, and telling a live writer's from a dead one's;
and the one way vidsr writes any other file whole or not at all (atomic_path: checkpoints,
exports, configs, ONNX files).

Every output is written as `.<stem>.vidsr-tmp-<pid><ext>` in the target's folder and renamed into
place when complete. While it writes, the writer holds a shared advisory lock (flock) on that
file; the lock dies with the process, kill -9 included. So a later run can remove the temp files
whose lock it can take (their writer is gone) and must leave alone the ones it cannot: another
`vidsr upscale` or `vidsr watch` is writing them right now.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from ..errors import OutputError

TEMP_MARKER = ".vidsr-tmp"

try:
    import fcntl
except ImportError:  # Windows: no flock; fall back to "is that pid alive"
    fcntl = None  # type: ignore[assignment]


def temp_path_for(dst: Path) -> Path:
    """The hidden file beside `dst` that is written first (same extension: it picks the muxer)."""
    return dst.with_name(f".{dst.stem}{TEMP_MARKER}-{os.getpid()}{dst.suffix}")


def is_temp_name(name: str) -> bool:
    return TEMP_MARKER in name


class WriterLock:
    """Held by the process writing `path`; `release()` when the file is renamed or removed."""

    def __init__(self, path: Path):
        self.path = Path(path)
        # Created (and locked) before the muxer opens the same path: there is no moment when the
        # file exists unlocked. FFmpeg truncates it; our descriptor keeps the same inode locked.
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o644)
        if fcntl is not None:
            fcntl.flock(self._fd, fcntl.LOCK_SH)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the lock
            self._fd = None


def _pid_of(name: str) -> int | None:
    tail = name.split(TEMP_MARKER + "-", 1)[-1]
    digits = "".join(ch for ch in tail.split(".", 1)[0] if ch.isdigit())
    return int(digits) if digits else None


def _writer_alive(path: Path) -> bool:
    if fcntl is None:
        pid = _pid_of(path.name)
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except OSError:
            return True
        return True
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return True  # gone or unreadable: nothing for us to remove
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True  # someone holds it: a live writer
    finally:
        os.close(fd)
    return False


def stale_temp_files(paths: Iterable[Path]) -> Iterator[Path]:
    """The temp files among `paths` whose writer is gone."""
    for p in paths:
        if is_temp_name(p.name) and p.is_file() and not p.is_symlink() and not _writer_alive(p):
            yield p


def remove_stale(
    folder: Path, *, recursive: bool = False, log: Callable[[str], None] | None = None
) -> list[Path]:
    """Remove the temp files of dead writers in `folder`; returns what was removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    candidates = folder.rglob(f"*{TEMP_MARKER}*") if recursive else folder.glob(f"*{TEMP_MARKER}*")
    removed = []
    for path in stale_temp_files(list(candidates)):
        with contextlib.suppress(OSError):
            path.unlink()
            removed.append(path)
            if log is not None:
                log(f"removed {path.name}, left by an interrupted run")
    return removed


# -- writing a file whole or not at all -------------------------------------------------------


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """A temp path for the block to write; renamed onto `target` when the block ends cleanly.

    The temp name is every output's (temp_path_for): it keeps the target's suffix, so writers
    that pick the format from it (PIL, torchvision's save_image) still do, and it starts with a
    dot, so folder listings skip it. Beside the target, not in /tmp: os.replace is atomic only
    within one file system. A failed write leaves no temp file; a crash leaves one that the next
    run's sweep removes (its writer is gone).
    """
    target = Path(target)
    tmp = temp_path_for(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, target)
    except OSError as e:
        raise OutputError(f"cannot write {target}: {e.strerror or e}") from None
    finally:
        with contextlib.suppress(OSError):  # NotADirectoryError where the parent is a file
            tmp.unlink(missing_ok=True)


def save_torch(obj: Any, target: str | Path) -> None:
    """torch.save, atomically; a full disk is one OutputError, not torch's RuntimeError."""
    import torch

    with atomic_path(target) as tmp:
        try:
            torch.save(obj, tmp)
        except RuntimeError as e:  # the zip writer reports ENOSPC and friends this way
            raise OSError(str(e).splitlines()[0]) from None


def write_text(target: str | Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)


__all__ = [
    "TEMP_MARKER",
    "WriterLock",
    "atomic_path",
    "is_temp_name",
    "remove_stale",
    "save_torch",
    "temp_path_for",
    "write_text",
]
