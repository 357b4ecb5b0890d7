"""Community model files by name: downloaded once into the user's cache, checked, then used.

`fetch(record)` returns the verified file of a registry record (vidsr.models.records.COMMUNITY),
downloading it where it is not in the cache yet:

- into `$VIDSR_CACHE`, else `$XDG_CACHE_HOME/vidsr/models`, else `~/.cache/vidsr/models`;
- with httpx (redirects followed, a timeout on every read), a progress bar on a terminal;
- as `NAME.part` beside the final name, resumed with an HTTP Range request after an
  interruption; the sha256 is checked before the file is renamed into place, so the final name
  never holds half a file or a wrong one (a wrong one is deleted, and said in one line);
- under a lock, so two processes pulling the same model download it once;
- never where `VIDSR_OFFLINE=1` (or `vidsr --offline`): then, and wherever the network cannot be
  reached, one line says which URL to fetch by hand and where to put the file (or to adopt it
  with `vidsr models pull ID --from FILE`), and a file put there is verified and used.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

from ..errors import WeightsError
from .records import CommunityRecord

CHUNK = 1 << 16
TIMEOUT = 30.0  # seconds without a byte before a download is given up (VIDSR_TIMEOUT)


def cache_dir() -> Path:
    if os.environ.get("VIDSR_CACHE"):
        return Path(os.environ["VIDSR_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vidsr" / "models"


def cached_path(record: CommunityRecord) -> Path:
    return cache_dir() / record.file


def offline() -> bool:
    return os.environ.get("VIDSR_OFFLINE", "") not in ("", "0")


def sha256_of(path: Path) -> str:
    """The file's sha256, read in 1 MiB chunks (torch-free: the CLI's listing uses it)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def is_installed(record: CommunityRecord) -> bool:
    return cached_path(record).is_file()


def fetch(record: CommunityRecord, *, say=None) -> Path:
    """The verified file of `record`, downloaded first where it is not in the cache."""
    say = say or (lambda msg: print(msg, file=sys.stderr, flush=True))
    path = cached_path(record)
    if path.is_file():
        return _verified(record, path)
    if offline():
        raise WeightsError(_by_hand(record, "offline (VIDSR_OFFLINE)"))
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path):
        if path.is_file():  # another process finished it while we waited
            return _verified(record, path)
        say(f"{record.id}: {record.name} by {record.author}, licence {record.license}"
            + (" (not for commercial use)" if not record.commercial else ""))  # fmt: skip
        _download(record, path, say)
    return path


def adopt(record: CommunityRecord, source: Path) -> Path:
    """`vidsr models pull ID --from FILE`: a file downloaded elsewhere, checked, copied in."""
    source = Path(source)
    if not source.is_file():
        raise WeightsError(f"--from {source}: no such file")
    digest = sha256_of(source)
    if digest != record.sha256:
        raise WeightsError(
            f"{source} is not {record.id}: its sha256 is {digest[:16]}..., the registry's "
            f"{record.sha256[:16]}... (a different or damaged file)"
        )
    path = cached_path(record)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".adopt")
    shutil.copyfile(source, tmp)
    os.replace(tmp, path)
    return path


def _verified(record: CommunityRecord, path: Path) -> Path:
    digest = sha256_of(path)
    if digest == record.sha256:
        return path
    path.unlink(missing_ok=True)
    raise WeightsError(
        f"{path} was not {record.id} (sha256 {digest[:16]}..., expected "
        f"{record.sha256[:16]}...): deleted; run again to download it"
    )


def _by_hand(record: CommunityRecord, why: str) -> str:
    return (
        f"{record.id} is not downloaded and cannot be ({why}): fetch {record.urls[0]} and put "
        f"it at {cached_path(record)}, or run `vidsr models pull {record.id} --from FILE`"
    )


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One downloader per file: a second process waits here, then finds the file."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock; two pulls at once download twice
        yield
        return
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _download(record: CommunityRecord, path: Path, say) -> None:
    import httpx

    part = path.with_name(path.name + ".part")
    free = shutil.disk_usage(path.parent).free
    have = part.stat().st_size if part.exists() else 0
    if record.size and free < record.size - have:
        raise WeightsError(
            f"disk full: {record.id} needs {record.size / 1e6:.1f} MB in {path.parent}, "
            f"{free / 1e6:.1f} MB are free"
        )
    timeout = float(os.environ.get("VIDSR_TIMEOUT", TIMEOUT))
    errors = []
    for url in record.urls:
        try:
            _transfer_resuming(url, part, record, timeout, say)
            break
        except httpx.HTTPStatusError as e:
            errors.append(f"{url}: HTTP {e.response.status_code}")
        except httpx.TimeoutException:
            errors.append(f"{url}: no answer in {timeout:g} s")
        except httpx.TransportError as e:
            errors.append(f"{url}: {type(e).__name__} {str(e)[:80]}")
        except OSError as e:
            if e.errno == errno.ENOSPC:
                part.unlink(missing_ok=True)
                raise WeightsError(
                    f"disk full while downloading {record.id} into {path.parent}"
                ) from None
            raise WeightsError(f"cannot write {part}: {e.strerror or e}") from None
    else:
        raise WeightsError(_by_hand(record, "; ".join(errors)))
    digest = sha256_of(part)
    if digest != record.sha256:
        part.unlink(missing_ok=True)
        raise WeightsError(
            f"{record.id}: the download's sha256 is {digest[:16]}..., not the registry's "
            f"{record.sha256[:16]}...: deleted (a changed or damaged file on the server)"
        )
    os.replace(part, path)
    say(f"{record.id}: verified (sha256 {digest[:16]}...), in {path}")


def _transfer_resuming(
    url: str, part: Path, record: CommunityRecord, timeout: float, say, attempts: int = 3
) -> None:
    """`_transfer`, picked up where it broke off when the connection drops mid-file."""
    import httpx

    for attempt in range(attempts):
        try:
            return _transfer(url, part, record, timeout, say)
        except (httpx.RemoteProtocolError, httpx.ReadError):
            if attempt == attempts - 1:
                raise


def _transfer(url: str, part: Path, record: CommunityRecord, timeout: float, say) -> None:
    """Into `part`, from where an earlier attempt stopped (a Range request) where it did."""
    import httpx

    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    with httpx.stream("GET", url, headers=headers, follow_redirects=True, timeout=timeout) as r:
        if r.status_code == 416 and have:  # the part is whole already
            return
        r.raise_for_status()
        if have and r.status_code != 206:  # the server ignored the Range: start over
            have = 0
        total = have + int(r.headers.get("content-length", 0)) or record.size
        if have:
            say(f"{record.id}: resuming at {have / 1e6:.1f} MB")
        with open(part, "ab" if have else "wb") as f, _bar(record.id, total, have) as advance:
            for chunk in r.iter_bytes(CHUNK):
                f.write(chunk)
                advance(len(chunk))


@contextlib.contextmanager
def _bar(name: str, total: int, done: int):
    """A rich progress bar on a terminal; nothing elsewhere (the lines around say enough)."""
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    console = Console(stderr=True)
    if not console.is_terminal:
        yield lambda n: None
        return
    with Progress(f"[bold]{name}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  console=console, transient=True) as bar:  # fmt: skip
        task = bar.add_task(name, total=total or None, completed=done)
        yield lambda n: bar.advance(task, n)


__all__ = ["adopt", "cache_dir", "cached_path", "fetch", "is_installed", "offline"]
