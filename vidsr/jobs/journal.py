"""The watcher's job journal: one SQLite row per input file, so a restart knows what is done.

The journal is the single source of truth across crashes: a row is `queued`, `running`, `done`,
`failed` or `skipped` (it did not open as a video; looked at again when it changes), and it
remembers the size and mtime of the version it describes, so a file that
changes afterwards is recognised as new work while an unchanged one is never redone.
A job added through `vidsr serve` carries its own options (a preset and overrides, as JSON);
the watcher's own rows have none and run with the watcher's options.
WAL mode lets `vidsr jobs` read while a watcher writes.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import OutputError

SCHEMA_VERSION = 3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    path        TEXT PRIMARY KEY,  -- absolute path of the input
    name        TEXT NOT NULL,     -- the input relative to the inbox, for people
    size        INTEGER NOT NULL,  -- of the version this row describes
    mtime_ns    INTEGER NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed', 'skipped')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT,
    output      TEXT,
    queued_at   REAL NOT NULL,
    next_try    REAL NOT NULL DEFAULT 0,  -- backoff: not started again before this time
    started_at  REAL,
    finished_at REAL,
    frames      INTEGER,
    fps         REAL,
    options     TEXT               -- JSON: this job's preset and overrides (vidsr serve)
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, next_try);
"""


@dataclass(frozen=True)
class Job:
    path: str
    name: str
    size: int
    mtime_ns: int
    state: str
    attempts: int
    last_error: str | None
    output: str | None
    queued_at: float
    next_try: float
    started_at: float | None
    finished_at: float | None
    frames: int | None
    fps: float | None
    options: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def journal_path(out_dir: Path) -> Path:
    return Path(out_dir) / ".vidsr" / "jobs.sqlite"


class JournalDamaged(OutputError):
    """The journal file is not a readable SQLite database (bit rot, a torn copy, a foreign file)."""


class Journal:
    """Open (and create, unless `readonly`) the journal of an output folder.

    Every method is one transaction, so a kill -9 leaves either the old or the new row.
    Use from one thread: the watcher funnels all writes through its main loop.
    """

    def __init__(self, path: Path, *, readonly: bool = False):
        self.path = Path(path)
        try:
            if readonly:
                if not self.path.is_file():
                    raise OutputError(f"no job journal at {self.path}")
                self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(self.path, isolation_level=None, timeout=10)
                self._db.execute("PRAGMA journal_mode=WAL")
                # NORMAL is durable enough in WAL mode: a power cut may lose the last commit,
                # never corrupt the file, and at worst one finished job is redone.
                self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.row_factory = sqlite3.Row
            self._check_intact()
            self._migrate(readonly)
        except JournalDamaged:
            raise
        except sqlite3.DatabaseError as e:
            self._close_quietly()
            raise JournalDamaged(f"job journal {self.path} is damaged ({e})") from None
        except sqlite3.Error as e:
            self._close_quietly()
            raise OutputError(f"cannot open job journal {self.path}: {e}") from None

    def _check_intact(self) -> None:
        result = self._db.execute("PRAGMA quick_check").fetchone()[0]
        if result != "ok":
            self._close_quietly()
            raise JournalDamaged(f"job journal {self.path} is damaged ({result})")

    def _close_quietly(self) -> None:
        try:
            self._db.close()
        except (sqlite3.Error, AttributeError):
            pass

    def _migrate(self, readonly: bool) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise OutputError(
                f"job journal {self.path} has schema {version}, newer than this vidsr "
                f"understands ({SCHEMA_VERSION}); upgrade vidsr"
            )
        if version == SCHEMA_VERSION or (readonly and version == 2):  # v2 reads as v3
            return
        if readonly:
            raise OutputError(f"job journal {self.path} is empty or from an older vidsr")
        with self._tx():
            if version == 2:  # v3 adds the options column
                self._db.execute("ALTER TABLE jobs ADD COLUMN options TEXT")
                self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                return
            if version == 1:  # v2 adds the 'skipped' state: SQLite cannot alter a CHECK
                self._db.execute("ALTER TABLE jobs RENAME TO jobs_v1")
                self._db.execute("DROP INDEX IF EXISTS jobs_state")
            # Statement by statement: executescript() would commit our transaction first.
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)
            if version == 1:
                columns = ", ".join(f for f in Job.__dataclass_fields__ if f != "options")
                self._db.execute(f"INSERT INTO jobs ({columns}) SELECT * FROM jobs_v1")
                self._db.execute("DROP TABLE jobs_v1")
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def _tx(self):
        return _Transaction(self._db)

    def close(self) -> None:
        self._db.close()

    def copy_to(self, path: Path) -> None:
        """Every row into a new journal file at `path` (SQLite's online backup)."""
        target = sqlite3.connect(path)
        try:
            self._db.backup(target)
        finally:
            target.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- reading ---------------------------------------------------------------------------------

    def get(self, path: str) -> Job | None:
        row = self._db.execute("SELECT * FROM jobs WHERE path = ?", (path,)).fetchone()
        return Job(**dict(row)) if row else None

    def jobs(self) -> list[Job]:
        rows = self._db.execute("SELECT * FROM jobs ORDER BY queued_at, name").fetchall()
        return [Job(**dict(r)) for r in rows]

    def versions(self) -> dict[str, tuple[int, int]]:
        """path -> (size, mtime_ns) of every known file: what a rescan compares against."""
        rows = self._db.execute("SELECT path, size, mtime_ns FROM jobs").fetchall()
        return {r["path"]: (r["size"], r["mtime_ns"]) for r in rows}

    def due(self, now: float) -> list[Job]:
        """Queued jobs whose backoff has passed, oldest first."""
        rows = self._db.execute(
            "SELECT * FROM jobs WHERE state = 'queued' AND next_try <= ? ORDER BY queued_at",
            (now,),
        ).fetchall()
        return [Job(**dict(r)) for r in rows]

    def count(self, *states: str) -> int:
        marks = ",".join("?" * len(states))
        q = f"SELECT COUNT(*) FROM jobs WHERE state IN ({marks})"
        return self._db.execute(q, states).fetchone()[0]

    def owner_of(self, output: str) -> str | None:
        """The input whose finished (or earlier) output is `output`, if any."""
        row = self._db.execute("SELECT path FROM jobs WHERE output = ?", (output,)).fetchone()
        return row["path"] if row else None

    # -- writing ---------------------------------------------------------------------------------

    def offer(self, path: str, name: str, size: int, mtime_ns: int) -> str:
        """A stable file was seen. Queue it if it is new or changed.

        Returns "queued", "known" (this version is already in the journal) or "busy".

        A version already known (in any state) is left alone: done work is never redone.
        A running row is left alone too; the changed file is seen again once that job ends.
        """
        now = time.time()
        with self._tx():
            job = self.get(path)
            if job is None:
                self._db.execute(
                    "INSERT INTO jobs (path, name, size, mtime_ns, state, queued_at)"
                    " VALUES (?, ?, ?, ?, 'queued', ?)",
                    (path, name, size, mtime_ns, now),
                )
                return "queued"
            if (job.size, job.mtime_ns) == (size, mtime_ns):
                return "known"
            if job.state == "running":
                return "busy"
            self._db.execute(
                "UPDATE jobs SET size = ?, mtime_ns = ?, state = 'queued', attempts = 0,"
                " last_error = NULL, next_try = 0, queued_at = ?, started_at = NULL,"
                " finished_at = NULL, frames = NULL, fps = NULL WHERE path = ?",
                (size, mtime_ns, now, path),
            )
            return "queued"

    def add(self, path: str, name: str, size: int, mtime_ns: int, options: str | None) -> str:
        """A job asked for by hand (vidsr serve): queued afresh with `options`, whatever this
        version's past, since a person asked for it again. Returns "queued", or "busy" when it
        is running now."""
        now = time.time()
        with self._tx():
            job = self.get(path)
            if job is not None and job.state == "running":
                return "busy"
            self._db.execute(
                "INSERT INTO jobs (path, name, size, mtime_ns, state, queued_at, options)"
                " VALUES (?, ?, ?, ?, 'queued', ?, ?) ON CONFLICT (path) DO UPDATE SET"
                " name = excluded.name, size = excluded.size, mtime_ns = excluded.mtime_ns,"
                " state = 'queued', attempts = 0, last_error = NULL, next_try = 0,"
                " queued_at = excluded.queued_at, started_at = NULL, finished_at = NULL,"
                " frames = NULL, fps = NULL, options = excluded.options",
                (path, name, size, mtime_ns, now, options),
            )
            return "queued"

    def retry(self, path: str) -> bool:
        """A failed, skipped or done job queued again now, its attempts reset. False if it is
        queued or running already (or unknown)."""
        with self._tx():
            cur = self._db.execute(
                "UPDATE jobs SET state = 'queued', attempts = 0, last_error = NULL, next_try = 0,"
                " queued_at = ?, started_at = NULL, finished_at = NULL"
                " WHERE path = ? AND state IN ('failed', 'skipped', 'done')",
                (time.time(), path),
            )
            return cur.rowcount == 1

    def remove(self, path: str) -> bool:
        """Forget a job that is not running (its output, if any, stays). False if running."""
        with self._tx():
            cur = self._db.execute(
                "DELETE FROM jobs WHERE path = ? AND state != 'running'", (path,)
            )
            return cur.rowcount == 1

    def start(self, path: str) -> None:
        # The attempt counts from the start, so a file that crashes the process still runs out
        # of attempts instead of crashing every restart.
        with self._tx():
            self._db.execute(
                "UPDATE jobs SET state = 'running', attempts = attempts + 1,"
                " started_at = ?, finished_at = NULL WHERE path = ?",
                (time.time(), path),
            )

    def finish(self, path: str, *, output: str, frames: int, fps: float) -> None:
        """Done. `output` is only ever set here: a file there is this input's own result."""
        with self._tx():
            self._db.execute(
                "UPDATE jobs SET state = 'done', last_error = NULL, finished_at = ?, output = ?,"
                " frames = ?, fps = ? WHERE path = ?",
                (time.time(), output, frames, fps, path),
            )

    def fail(self, path: str, error: str, *, max_attempts: int, backoff: float) -> str:
        """Record a failed attempt: queued again after a backoff, or failed for good.

        Returns the new state.
        """
        now = time.time()
        with self._tx():
            job = self.get(path)
            if job is None:
                return "failed"
            if job.attempts >= max_attempts:
                state, next_try = "failed", 0.0
            else:
                state, next_try = "queued", now + backoff * 2 ** max(0, job.attempts - 1)
            self._db.execute(
                "UPDATE jobs SET state = ?, last_error = ?, next_try = ?, finished_at = ?"
                " WHERE path = ?",
                (state, error, next_try, now, path),
            )
            return state

    def skip(self, path: str, reason: str) -> None:
        """Not a video (yet): no attempt counted; a new version of the file is offered again."""
        with self._tx():
            self._db.execute(
                "UPDATE jobs SET state = 'skipped', last_error = ?, finished_at = ?,"
                " attempts = MAX(0, attempts - 1) WHERE path = ?",
                (reason, time.time(), path),
            )

    def adopt(self, path: str, name: str, size: int, mtime_ns: int, output: str) -> None:
        """Record as done an input whose output already exists (rebuilding a lost journal)."""
        now = time.time()
        with self._tx():
            self._db.execute(
                "INSERT OR IGNORE INTO jobs (path, name, size, mtime_ns, state, queued_at,"
                " finished_at, output, last_error) VALUES (?, ?, ?, ?, 'done', ?, ?, ?,"
                " 'adopted: the output existed when the journal was rebuilt')",
                (path, name, size, mtime_ns, now, now, output),
            )

    def give_up(self, path: str, error: str) -> None:
        """Failed without counting an attempt (the input vanished)."""
        with self._tx():
            self._db.execute(
                "UPDATE jobs SET state = 'failed', last_error = ?, finished_at = ? WHERE path = ?",
                (error, time.time(), path),
            )

    def requeue(self, path: str) -> None:
        """An abandoned (cancelled) job goes back to the queue; the attempt does not count."""
        with self._tx():
            self._db.execute(
                "UPDATE jobs SET state = 'queued', attempts = MAX(0, attempts - 1),"
                " started_at = NULL WHERE path = ? AND state = 'running'",
                (path,),
            )

    def recover(self, *, max_attempts: int) -> list[Job]:
        """After a crash: `running` rows go back to the queue (or fail, out of attempts).

        Returns the rows that were running, so their temporary outputs can be removed.
        """
        with self._tx():
            rows = self._db.execute("SELECT * FROM jobs WHERE state = 'running'").fetchall()
            stale = [Job(**dict(r)) for r in rows]
            self._db.execute(
                "UPDATE jobs SET state = 'failed', finished_at = ?, last_error ="
                " 'the watcher stopped during every attempt (crash or kill)'"
                " WHERE state = 'running' AND attempts >= ?",
                (time.time(), max_attempts),
            )
            self._db.execute(
                "UPDATE jobs SET state = 'queued', next_try = 0, started_at = NULL"
                " WHERE state = 'running'"
            )
        return stale


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on error: each journal write is all-or-nothing."""

    def __init__(self, db: sqlite3.Connection):
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")


__all__ = ["Job", "Journal", "JournalDamaged", "SCHEMA_VERSION", "journal_path"]
