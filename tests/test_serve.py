"""`vidsr serve`: the API over a real server on 127.0.0.1 (httpx), the security rules, and one
real browser (Playwright driving Debian's chromium) through upload, progress, look and download.

Every job runs the bicubic model on clips of 64x48 pixels, so a job takes about a second.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import httpx
import pytest
from click.testing import CliRunner
from media import make_clip

pytest.importorskip("fastapi", reason="needs the web extra: pip install 'vidsr[web]'")
uvicorn = pytest.importorskip("uvicorn", reason="needs the web extra: pip install 'vidsr[web]'")

from vidsr.cli import main  # noqa: E402
from vidsr.jobs.serve import USER_CANCEL, JobQueue, ServeConfig  # noqa: E402
from vidsr.web.app import create_app  # noqa: E402

POST = {"X-Vidsr": "1"}


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    short, long = folder / "short.mp4", folder / "long.mp4"
    make_clip(short, frames=12, vfr=False, audio=False)
    make_clip(long, frames=600, vfr=False, audio=False)  # 24 s: time to cancel it
    return {"short": short, "long": long}


class Served:
    """A JobQueue and its app under uvicorn in a thread, on a free port of 127.0.0.1."""

    def __init__(self, tmp_path: Path, *, token: str | None = None, loopback: bool = True,
                 max_upload: int = 1 << 30, inbox: Path | None = None):  # fmt: skip
        self.root = tmp_path / "root"
        (self.root / "sub").mkdir(parents=True, exist_ok=True)
        self.out = tmp_path / "out"
        self.queue = JobQueue(ServeConfig(out=self.out, values={"model": "bicubic"},
                                          roots=(self.root,), inbox=inbox,
                                          stable_secs=0.2))  # fmt: skip
        self.queue.start()
        self.app = create_app(self.queue, token=token, loopback=loopback, max_upload=max_upload)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off",
                                timeout_graceful_shutdown=1)  # fmt: skip
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]})
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def close(self) -> None:
        self.client.close()
        self.queue.close()
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()

    def upload(self, clip: Path, name: str | None = None, **options) -> httpx.Response:
        params = {"name": name or clip.name, **options}
        return self.client.post("/api/upload", params=params, content=clip.read_bytes(),
                                headers=POST)  # fmt: skip

    def job(self, jid: str) -> dict:
        return next(j for j in self.client.get("/api/jobs").json()["jobs"] if j["id"] == jid)

    def wait(self, jid: str, *states: str, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job(jid)
            if job["state"] in states:
                return job
            time.sleep(0.1)
        raise AssertionError(f"job {jid} never reached {states}: {job}")

    def files_under_uploads(self) -> list[str]:
        return sorted(str(p.relative_to(self.queue.uploads)) for p in self.queue.uploads.rglob("*"))


@pytest.fixture
def served(tmp_path):
    s = Served(tmp_path)
    yield s
    s.close()


def decoded(path: Path) -> tuple[int, int, int]:
    with av.open(str(path)) as c:
        frames = [f for f in c.decode(video=0)]
    return frames[0].width, frames[0].height, len(frames)


def test_upload_runs_to_done_with_live_progress_and_download(served, clips):
    seen: list[dict] = []
    listening = threading.Event()

    def listen():
        with httpx.stream("GET", served.url + "/api/events", timeout=30) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            for line in r.iter_lines():
                if line.startswith("data: "):
                    listening.set()
                    jobs = json.loads(line[6:])["jobs"]
                    seen.extend(jobs)
                    if any(j["state"] == "done" for j in jobs):
                        return

    listener = threading.Thread(target=listen)
    listener.start()
    assert listening.wait(10)
    # 50 frames (2 s of the long clip): long enough for progress messages to show
    r = served.upload(clips["long"], name="my clip.mp4", crf="23", duration="2")
    assert r.status_code == 200, r.text
    jid = r.json()["id"]
    listener.join(40)
    assert not listener.is_alive()
    states = [j["state"] for j in seen if j["id"] == jid]
    assert states[-1] == "done" and "running" in states
    progress = [j["progress"] for j in seen if j["progress"]]
    assert progress and all(0 <= p["done"] <= 50 and p["total"] == 50 for p in progress)
    job = served.job(jid)
    assert job["output"] == "my clip_x4.mp4" and job["frames"] == 50
    assert job["overrides"] == {"crf": "23", "duration": "2"}
    assert "model bicubic" in job["summary"] and "crf 23" in job["summary"]
    got = served.client.get(f"/api/jobs/{jid}/output")
    assert got.status_code == 200 and "my%20clip_x4.mp4" in got.headers["content-disposition"]
    (served.out.parent / "dl.mp4").write_bytes(got.content)
    assert decoded(served.out.parent / "dl.mp4") == (256, 192, 50)
    log = served.client.get(f"/api/jobs/{jid}/log").text
    assert "upscaling -> my clip_x4.mp4" in log and "done: 50 frames" in log
    look = served.client.get(f"/api/jobs/{jid}/compare", params={"at": "0.2"}).json()
    assert look["before"].startswith("data:image/png;base64,") and look["scale"] == 4
    assert look["crop"]["size"] == 48 and look["model"] == "bicubic"
    late = served.client.get(f"/api/jobs/{jid}/compare", params={"at": "99"})  # 24 s long
    assert late.status_code == 422 and "past the end" in late.json()["errors"]["at"]


def test_bad_options_are_field_errors_and_nothing_is_stored(served, clips):
    r = served.upload(clips["short"], crf="99", outscale="big", model="nope", preset="x")
    assert r.status_code == 422
    errors = r.json()["errors"]
    assert "out of range" in errors["crf"] and "expected a number" in errors["outscale"]
    assert "unknown model" in errors["model"] and "unknown preset" in errors["preset"]
    # a codec the container cannot hold: the same check the CLI makes
    r = served.client.post("/api/check", json={"name": "a.webm", "codec": "libx264"},
                           headers=POST)  # fmt: skip
    assert r.status_code == 422 and "codec" in r.json()["errors"]
    assert served.client.post("/api/check", json={"name": "a.mkv", "preset": "fast",
                              "crf": "20"}, headers=POST).json() == {"ok": True}  # fmt: skip
    r = served.upload(clips["short"], name="notes.txt")
    assert r.status_code == 422 and "not a video" in r.json()["errors"]["file"]
    assert (
        served.files_under_uploads() == [] and served.client.get("/api/jobs").json()["jobs"] == []
    )


def test_paths_outside_the_roots_are_refused(served, clips, tmp_path):
    shutil.copy(clips["short"], served.root / "sub" / "in.mp4")
    outside = tmp_path / "secret.mp4"
    shutil.copy(clips["short"], outside)
    (served.root / "link.mp4").symlink_to(outside)
    (served.root / "linkdir").symlink_to(tmp_path)
    for path in ("../secret.mp4", str(outside), "link.mp4", "linkdir/secret.mp4", "sub/../../x"):
        r = served.client.post("/api/add", json={"root": 0, "path": path}, headers=POST)
        assert r.status_code == 403, (path, r.text)
    assert served.client.get("/api/files", params={"path": "linkdir"}).status_code == 403
    assert served.client.post("/api/add", json={"root": 1, "path": "x.mp4"},
                              headers=POST).status_code == 403  # fmt: skip
    listing = served.client.get("/api/files", params={"path": "sub"}).json()["entries"]
    assert [e["name"] for e in listing] == ["in.mp4"]
    # an upload's name is reduced to a plain file name inside the uploads folder
    r = served.upload(clips["short"], name="../../x/ev\x01il;$(id).MP4")
    assert r.status_code == 200 and r.json()["name"] == "evil__(id).mp4"
    assert [p.name for p in served.queue.uploads.rglob("*.mp4")] == ["evil__(id).mp4"]
    served.client.post(f"/api/jobs/{r.json()['id']}/cancel", headers=POST)
    r = served.client.post("/api/add", json={"root": 0, "path": "sub/in.mp4"}, headers=POST)
    assert r.status_code == 200 and r.json()["name"] == "root/sub/in.mp4"
    names = [j["name"] for j in served.client.get("/api/jobs").json()["jobs"]]
    assert names == ["evil__(id).mp4", "root/sub/in.mp4"]


def test_cancel_retry_and_remove(served, clips):
    jid = served.upload(clips["long"]).json()["id"]
    served.wait(jid, "running")
    assert served.client.post(f"/api/jobs/{jid}/remove", headers=POST).status_code == 409
    assert served.client.post(f"/api/jobs/{jid}/cancel", headers=POST).json() == {
        "state": "cancelling"
    }
    job = served.wait(jid, "failed")
    assert job["error"] == USER_CANCEL and not list(served.out.glob("*.mp4"))
    assert served.client.post(f"/api/jobs/{jid}/retry", headers=POST).status_code == 200
    served.wait(jid, "running")
    served.client.post(f"/api/jobs/{jid}/cancel", headers=POST)
    served.wait(jid, "failed")
    assert served.client.post(f"/api/jobs/{jid}/remove", headers=POST).status_code == 200
    deadline = time.monotonic() + 5
    while served.client.get("/api/jobs").json()["jobs"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert served.client.get("/api/jobs").json()["jobs"] == []
    assert served.files_under_uploads() == []  # the uploaded copy went with its job


def test_token_is_required_on_every_request_off_loopback(tmp_path):
    s = Served(tmp_path, token="s3cret-token", loopback=False)
    try:
        for path in ("/", "/api/jobs", "/static/app.js", "/api/events"):
            assert s.client.get(path).status_code == 401, path
        assert (
            s.client.get("/api/jobs", headers={"Authorization": "Bearer wrong"}).status_code == 401
        )
        ok = s.client.get("/api/jobs", headers={"Authorization": "Bearer s3cret-token"})
        assert ok.status_code == 200
        first = s.client.get("/?token=s3cret-token", follow_redirects=False)
        assert first.status_code == 303 and first.headers["location"] == "/"
        assert "HttpOnly" in first.headers["set-cookie"]
        assert s.client.get("/").status_code == 200  # the cookie from now on
    finally:
        s.close()


def test_state_changes_need_a_same_origin_post(served):
    jobs = "/api/jobs/0/cancel"
    assert served.client.post(jobs).status_code == 403  # no X-Vidsr: a plain cross-site form
    evil = {**POST, "Origin": "http://evil.example"}
    assert served.client.post(jobs, headers=evil).status_code == 403
    assert served.client.post(jobs, headers=POST).status_code == 404  # let through: no such job
    assert served.client.get("/api/jobs", headers={"Host": "evil.example"}).status_code == 403
    assert served.client.delete("/api/jobs/0/cancel", headers=POST).status_code == 403
    for body in (b"[1]", b"not json"):
        assert served.client.post("/api/add", content=body, headers=POST).status_code == 400


def test_an_interrupted_upload_leaves_no_job_and_no_file(served, clips):
    data = clips["short"].read_bytes()
    messages = [
        {"type": "http.request", "body": data[:4096], "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict] = []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/api/upload", "raw_path": b"/api/upload",
        "query_string": b"name=cut.mp4", "root_path": "", "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "headers": [(b"host", b"127.0.0.1"), (b"x-vidsr", b"1"),
                    (b"content-length", str(len(data)).encode())],
    }  # fmt: skip
    asyncio.run(served.app(scope, receive, send))
    assert served.files_under_uploads() == []
    assert served.client.get("/api/jobs").json()["jobs"] == []
    # and an upload over the limit is refused before a byte is stored
    small = Served(served.out.parent / "small", max_upload=1000)
    try:
        r = small.upload(clips["short"])
        assert r.status_code == 413 and small.files_under_uploads() == []
    finally:
        small.close()


def test_the_inbox_jobs_show_on_the_page(tmp_path, clips):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    s = Served(tmp_path, inbox=inbox)
    try:
        shutil.copy(clips["short"], inbox / "dropped.mp4")
        deadline = time.monotonic() + 20
        while not (jobs := s.client.get("/api/jobs").json()["jobs"]):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert (jobs[0]["name"], jobs[0]["origin"]) == ("dropped.mp4", "inbox")
        assert s.wait(jobs[0]["id"], "done")["output"] == "dropped_x4.mp4"
    finally:
        s.close()


def test_a_restart_resumes_the_job_that_was_running(tmp_path, clips):
    s = Served(tmp_path)
    try:
        jid = s.upload(clips["long"], duration="4").json()["id"]  # 100 frames
        s.wait(jid, "running")
    finally:
        s.close()  # as Ctrl-C: abandoned, nothing at the target, queued in the journal
    assert not list(s.out.glob("*.mp4"))
    again = Served(tmp_path)
    try:
        job = again.wait(jid, "done")
        assert job["frames"] == 100 and job["overrides"] == {"duration": "4"}
        assert decoded(again.out / "long_x4.mp4")[2] == 100
    finally:
        again.close()


def test_any_address_but_loopback_gets_a_token():
    from vidsr.web.app import token_for

    for host in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"):
        assert token_for(host, None) is None, host
    for host in ("0.0.0.0", "::", "192.168.1.20", "example.org"):  # decided, never bound here
        made = token_for(host, None)
        assert made is not None and len(made) >= 20 and made != token_for(host, None), host
    assert token_for("0.0.0.0", "mine") == "mine" and token_for("127.0.0.1", "mine") == "mine"


def test_the_command_prints_its_token_requires_it_and_stops_on_sigterm(tmp_path):
    # A token on loopback too, when given: the same check an address off loopback gets (the
    # test listens on 127.0.0.1 only).
    cmd = [sys.executable, "-m", "vidsr", "serve", "--out", str(tmp_path / "out"), "--host",
           "127.0.0.1", "--port", "0", "--model", "bicubic",
           "--token", "t0ken-for-this-test"]  # fmt: skip
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    try:
        line = ""
        for _ in range(20):  # the queue's own log lines may come first
            line = proc.stderr.readline()
            if line.startswith("vidsr serve:") or not line:
                break
        m = re.match(r"vidsr serve: http://127\.0\.0\.1:(\d+)/\?token=(t0ken-for-this-test)$",
                     line.strip())  # fmt: skip
        assert m, line
        url = f"http://127.0.0.1:{m[1]}"
        assert httpx.get(url + "/api/jobs").status_code == 401
        r = httpx.get(url + "/api/jobs", headers={"Authorization": f"Bearer {m[2]}"})
        assert r.status_code == 200 and r.json()["jobs"] == []
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 143
        assert "stopped by SIGTERM" in proc.stderr.read()
    finally:
        proc.kill()
        proc.stderr.close()


def test_serve_without_the_web_extra_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setitem(__import__("sys").modules, "fastapi", None)
    r = CliRunner().invoke(main, ["serve", "--out", str(tmp_path / "o")])
    assert r.exit_code == 1
    assert (
        r.output.strip()
        == "vidsr: error: vidsr serve needs the web extra: pip install 'vidsr[web]'"
    )


def test_the_page_in_a_real_browser(served, clips, tmp_path):
    """Upload through the page, an invalid override shown by its field, a preset, progress to
    done, a second tab that sees the same job, the before/after slider, the download."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium on PATH (apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            context = browser.new_context(viewport={"width": 1360, "height": 900},
                                          accept_downloads=True)  # fmt: skip
            page = context.new_page()
            page.goto(served.url + "/")
            page.fill("#f-crf", "99")
            page.set_input_files("#file-input", str(clips["short"]))
            sync_api.expect(page.locator('.error[data-for="crf"]')).to_contain_text("out of range")
            assert served.client.get("/api/jobs").json()["jobs"] == []
            page.fill("#f-crf", "")
            page.select_option("#f-preset", "fast")
            page.fill("#f-model", "bicubic")
            page.set_input_files("#file-input", str(clips["short"]))
            row = page.locator("#jobs tbody tr").first
            sync_api.expect(row.locator(".badge")).to_have_text("done", timeout=40_000)
            sync_api.expect(page.locator('.error[data-for="crf"]')).to_be_empty()
            assert "model bicubic" in row.locator(".summary").inner_text()
            other = context.new_page()  # a second tab sees the same queue
            other.goto(served.url + "/")
            sync_api.expect(other.locator("#jobs tbody tr .badge").first).to_have_text("done")
            other.close()
            row.locator('[data-act="look"]').click()
            sync_api.expect(page.locator("#slider")).to_be_visible(timeout=20_000)
            page.locator("#look-range").fill("20")
            assert page.locator(".before-clip").evaluate("e => e.style.width") == "20%"
            shot = os.environ.get("VIDSR_SCREENSHOT")
            if shot:  # README's picture: VIDSR_SCREENSHOT=docs/serve.png pytest -k browser
                page.screenshot(path=shot, full_page=True)
            with page.expect_download() as info:
                row.locator('[data-act="download"]').click()
            target = tmp_path / "downloaded.mp4"
            info.value.save_as(target)
            assert decoded(target) == (256, 192, 12)
        finally:
            browser.close()
