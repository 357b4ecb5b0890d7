"""Writing a file so that no reader ever sees half of it: a temp file beside it, then a rename.

Beside the target, not in /tmp: os.replace is atomic only within one file system. A crash mid-write
leaves the old file (or none) at the target, never a torn one; a failed write leaves no temp file.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import OutputError


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """A temp path for the block to write; renamed onto `target` when the block ends cleanly.

    The temp name keeps the target's suffix, so writers that pick the format from it (PIL,
    torchvision's save_image) still do; it starts with a dot, so folder listings skip it.
    """
    target = Path(target)
    tmp = target.with_name(f".{target.stem}.tmp{os.getpid()}{target.suffix}")
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
