"""The job journal on its own: states, retries with backoff, crash recovery, schema version."""

import sqlite3

import pytest

from vidsr.errors import OutputError
from vidsr.jobs.journal import SCHEMA_VERSION, Journal


@pytest.fixture
def journal(tmp_path):
    with Journal(tmp_path / ".vidsr" / "jobs.sqlite") as j:
        yield j


def test_a_known_version_is_never_queued_twice(journal):
    assert journal.offer("/in/a.mp4", "a.mp4", 10, 1) == "queued"
    journal.start("/in/a.mp4")
    assert journal.offer("/in/a.mp4", "a.mp4", 11, 2) == "busy"
    journal.finish("/in/a.mp4", output="/out/a_x4.mp4", frames=12, fps=3.0)
    assert journal.offer("/in/a.mp4", "a.mp4", 10, 1) == "known"
    assert journal.get("/in/a.mp4").state == "done"
    # A new size or mtime is new work, with a fresh count of attempts.
    assert journal.offer("/in/a.mp4", "a.mp4", 11, 2) == "queued"
    job = journal.get("/in/a.mp4")
    assert (job.state, job.attempts, job.output) == ("queued", 0, "/out/a_x4.mp4")


def test_failures_back_off_then_fail(journal):
    journal.offer("/in/b.mp4", "b.mp4", 5, 1)
    for attempt in (1, 2):
        journal.start("/in/b.mp4")
        assert journal.fail("/in/b.mp4", "boom", max_attempts=3, backoff=10) == "queued"
        job = journal.get("/in/b.mp4")
        assert job.attempts == attempt and job.last_error == "boom"
        assert job.next_try - job.finished_at == pytest.approx(10 * 2 ** (attempt - 1))
        assert journal.due(job.next_try - 1) == []
    journal.start("/in/b.mp4")
    assert journal.fail("/in/b.mp4", "boom", max_attempts=3, backoff=10) == "failed"


def test_recover_requeues_running_and_cancel_does_not_count(tmp_path):
    path = tmp_path / "jobs.sqlite"
    with Journal(path) as j:
        for name in ("a", "b"):
            j.offer(f"/in/{name}", name, 1, 1)
            j.start(f"/in/{name}")
        j.requeue("/in/b")
    with Journal(path) as j:  # as after a kill -9
        stale = j.recover(max_attempts=3)
        assert [s.name for s in stale] == ["a"]
        assert [(r.name, r.state, r.attempts) for r in j.jobs()] == [
            ("a", "queued", 1),
            ("b", "queued", 0),
        ]
        j.start("/in/a")
        assert j.recover(max_attempts=2)[0].name == "a"
        assert j.get("/in/a").state == "failed"


def test_schema_is_versioned(tmp_path):
    path = tmp_path / "jobs.sqlite"
    Journal(path).close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(OutputError, match="newer"):
        Journal(path)


def test_readonly_needs_an_existing_journal(tmp_path):
    with pytest.raises(OutputError, match="no job journal"):
        Journal(tmp_path / "missing.sqlite", readonly=True)


def test_a_v2_journal_gains_the_options_column_and_keeps_its_rows(tmp_path):
    path = tmp_path / "jobs.sqlite"
    with Journal(path) as j:
        j.offer("/in/a", "a", 1, 1)
    db = sqlite3.connect(path)  # back to schema 2: no options column
    db.execute("ALTER TABLE jobs DROP COLUMN options")
    db.execute("PRAGMA user_version=2")
    db.commit()
    db.close()
    with Journal(path, readonly=True) as j:  # `vidsr jobs` reads a v2 journal as it is
        assert [(r.name, r.options) for r in j.jobs()] == [("a", None)]
    with Journal(path) as j:
        assert j.add("/in/b", "b", 2, 2, '{"preset": "fast"}') == "queued"
        assert [(r.name, r.state, r.options) for r in j.jobs()] == [
            ("a", "queued", None),
            ("b", "queued", '{"preset": "fast"}'),
        ]
        j.start("/in/b")
        assert j.add("/in/b", "b", 2, 2, None) == "busy" and not j.remove("/in/b")
        j.finish("/in/b", output="/out/b", frames=1, fps=1.0)
        assert j.retry("/in/b") and j.get("/in/b").state == "queued"
        assert j.remove("/in/b") and j.get("/in/b") is None
