"""Community models by name: the shipped registry is well-formed, and downloads work against a
local HTTP server on 127.0.0.1 that this file starts (small random-weight files of each
architecture, registry entries made here): first pull, cached reuse, a transfer cut off and
resumed with a Range request, a wrong hash, a 404, a server that hangs, a redirect, a full disk,
two processes pulling at once, offline. No test here touches any other address."""

from __future__ import annotations

import hashlib
import io
import os
import re
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from media import make_clip, read_video

from vidsr.cli import main
from vidsr.errors import WeightsError
from vidsr.models import download
from vidsr.models.records import ALL_MODELS, COMMUNITY, RECORDS, CommunityRecord

REPO = Path(__file__).resolve().parents[1]
SPDX_PERMISSIVE_OR_MARKED = re.compile(
    r"^(BSD-3-Clause|MIT|Apache-2.0|CC0-1.0|CC-BY-4.0|.*-NC-.*)$"
)


# -- the shipped registry -------------------------------------------------------------------------


def test_the_shipped_registry_is_well_formed():
    from spandrel import MAIN_REGISTRY

    known = {a.architecture.name for a in MAIN_REGISTRY.architectures()}
    assert set(COMMUNITY).isdisjoint(RECORDS)  # one table, unique ids
    assert len(ALL_MODELS) == len(RECORDS) + len(COMMUNITY)
    files = set()
    for rid, r in COMMUNITY.items():
        assert rid == r.id and re.fullmatch(r"[a-z0-9][a-z0-9.-]+", rid), rid
        assert re.fullmatch(r"[0-9a-f]{64}", r.sha256), rid
        assert r.urls and all(u.startswith("https://github.com/") for u in r.urls), rid
        assert r.architecture in known, (rid, r.architecture)
        assert r.scale in (2, 4) and r.size > 100_000 and r.speed in ("light", "medium", "heavy")
        assert SPDX_PERMISSIVE_OR_MARKED.match(r.license), (rid, r.license)
        assert r.description and r.source.startswith("data/models/")
        assert r.file not in files  # one cache file each
        files.add(r.file)


def test_a_non_commercial_licence_is_marked(tmp_path, monkeypatch):
    record = CommunityRecord("nc-test", "NC", "someone", "CC-BY-NC-SA-4.0", "SPAN", 2, "x",
                             "nc.pth", 123456, "0" * 64, ("https://github.com/x/y",),
                             "light")  # fmt: skip
    assert not record.commercial and COMMUNITY["realesr-general-x4v3"].commercial
    monkeypatch.setitem(COMMUNITY, record.id, record)
    monkeypatch.setenv("VIDSR_CACHE", str(tmp_path))
    out = CliRunner().invoke(main, ["models"]).output
    assert "nc-test" in out and "NOT FOR COMMERCIAL USE" in out


# -- a model server on 127.0.0.1 --------------------------------------------------------------


def _model_bytes(kind: str) -> bytes:
    """A small random-weight model file of one architecture spandrel knows."""
    torch.manual_seed(0)
    if kind == "compact":
        from spandrel.architectures.Compact import Compact

        net = Compact(num_feat=8, num_conv=2, upscale=4)
    elif kind == "esrgan":
        from spandrel.architectures.ESRGAN import ESRGAN

        net = ESRGAN(num_filters=8, num_blocks=1, scale=4)
    else:
        from spandrel.architectures.SPAN import SPAN

        net = SPAN(num_in_ch=3, num_out_ch=3, feature_channels=8, upscale=2)
    buffer = io.BytesIO()
    torch.save({k: v.contiguous() for k, v in net.state_dict().items()}, buffer)
    return buffer.getvalue()


class _Server:
    """Files by path, with a mode per path: ok, cut (the first GET stops half-way), hang,
    redirect (to /ok/NAME). Records every request's path and Range header."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.cut_once: set[str] = set()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                server.requests.append((self.path, self.headers.get("Range")))
                mode, _, name = self.path.strip("/").partition("/")
                if mode == "hang":
                    time.sleep(3)
                    return
                if mode == "redirect":
                    self.send_response(302)
                    self.send_header("Location", f"/ok/{name}")
                    self.end_headers()
                    return
                data = server.files.get(name)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                if self.headers.get("Range"):
                    start = int(re.match(r"bytes=(\d+)-", self.headers["Range"]).group(1))
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:]
                if mode == "cut" and self.path not in server.cut_once:
                    server.cut_once.add(self.path)
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(2)  # the connection drops mid-file
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def record(self, rid: str, name: str, mode: str = "ok", sha256: str | None = None,
               scale: int = 4, architecture: str = "RealESRGAN Compact"):  # fmt: skip
        data = self.files[name]
        return CommunityRecord(rid, rid, "test", "MIT", architecture, scale, "a test model",
                               f"{rid}.pth", len(data),
                               sha256 or hashlib.sha256(data).hexdigest(),
                               (f"{self.url}/{mode}/{name}",), "light")  # fmt: skip

    def gets(self, name: str) -> list[tuple[str, str | None]]:
        return [r for r in self.requests if r[0].endswith(f"/{name}")]


@pytest.fixture(scope="module")
def server():
    s = _Server()
    for kind in ("compact", "esrgan", "span"):
        s.files[f"{kind}.pth"] = _model_bytes(kind)
    yield s
    s.httpd.shutdown()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDSR_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("VIDSR_OFFLINE", raising=False)
    monkeypatch.setenv("VIDSR_TIMEOUT", "1")
    return tmp_path / "cache"


def _registered(monkeypatch, record: CommunityRecord) -> CommunityRecord:
    monkeypatch.setitem(COMMUNITY, record.id, record)
    monkeypatch.setitem(ALL_MODELS, record.id, record)
    return record


def test_first_pull_then_the_cache_is_used(server, cache, monkeypatch):
    record = _registered(monkeypatch, server.record("t-compact", "compact.pth"))
    before = len(server.gets("compact.pth"))
    said = []
    path = download.fetch(record, say=said.append)
    assert path == cache / "t-compact.pth" and path.read_bytes() == server.files["compact.pth"]
    assert "licence MIT" in said[0] and "verified" in said[-1]
    assert download.fetch(record) == path  # cached: no second request
    assert len(server.gets("compact.pth")) == before + 1
    assert not list(cache.glob("*.part"))


def test_upscale_by_name_downloads_verifies_and_runs(server, cache, monkeypatch, tmp_path):
    for kind, scale, arch in (("esrgan", 4, "ESRGAN"), ("span", 2, "SPAN")):
        rid = f"t-{kind}"
        _registered(monkeypatch, server.record(rid, f"{kind}.pth", scale=scale,
                                               architecture=arch))  # fmt: skip
        src = tmp_path / f"{kind}.mp4"
        make_clip(src, width=32, height=24, frames=3, audio=False)
        r = CliRunner().invoke(main, ["upscale", str(src), "--model", rid])
        assert r.exit_code == 0, r.output
        assert f"model {rid} ({arch} x{scale})" in r.output
        out = read_video(tmp_path / f"{kind}_x{scale}.mp4")
        assert (out["width"], out["frames"]) == (32 * scale, 3)


def test_a_transfer_cut_off_is_resumed_with_a_range_request(server, cache, monkeypatch):
    record = _registered(monkeypatch, server.record("t-cut", "esrgan.pth", mode="cut"))
    path = download.fetch(record, say=lambda m: None)
    assert path.read_bytes() == server.files["esrgan.pth"]
    gets = [r for r in server.requests if r[0] == "/cut/esrgan.pth"]
    half = len(server.files["esrgan.pth"]) // 2  # what the server sent before it dropped
    assert gets[0][1] is None and len(gets) == 2
    kept = int(re.fullmatch(r"bytes=(\d+)-", gets[1][1]).group(1))
    assert 0 < kept <= half  # the rest, from what had reached the disk, not all again


def test_a_wrong_hash_is_deleted_and_said(server, cache, monkeypatch):
    record = _registered(monkeypatch, server.record("t-bad", "span.pth", sha256="ab" * 32))
    with pytest.raises(WeightsError, match="not the registry's.*deleted"):
        download.fetch(record, say=lambda m: None)
    assert not list(cache.glob("t-bad*.pth*")) or all(p.suffix == ".lock" for p in cache.iterdir())
    r = CliRunner().invoke(main, ["models", "pull", "t-bad"])
    assert r.exit_code == WeightsError.exit_code and r.output.count("\n") <= 2


@pytest.mark.parametrize("mode, words", [("missing", "HTTP 404"), ("hang", "no answer in 1 s")])
def test_a_404_and_a_hanging_server_are_one_line(server, cache, monkeypatch, mode, words):
    name = "nothing.pth" if mode == "missing" else "compact.pth"
    server.files.setdefault("nothing.pth", b"")
    record = server.record(f"t-{mode}", "compact.pth")
    record = CommunityRecord(**{**record.__dict__, "urls": (f"{server.url}/{mode}/{name}",)})
    _registered(monkeypatch, record)
    server.files.pop("nothing.pth")
    t0 = time.monotonic()
    r = CliRunner().invoke(main, ["models", "pull", record.id])
    assert r.exit_code == WeightsError.exit_code, r.output
    line = r.output.strip().splitlines()[-1]
    assert words in line and "put it at" in line and "--from FILE" in line
    assert time.monotonic() - t0 < 10
    assert not download.cached_path(record).exists()


def test_a_redirect_is_followed(server, cache, monkeypatch):
    record = _registered(monkeypatch, server.record("t-moved", "compact.pth", mode="redirect"))
    assert download.fetch(record, say=lambda m: None).read_bytes() == server.files["compact.pth"]


def test_a_full_disk_is_one_line_before_downloading(server, cache, monkeypatch):
    record = _registered(monkeypatch, server.record("t-full", "esrgan.pth"))
    cache.mkdir(parents=True, exist_ok=True)
    before = len(server.requests)
    monkeypatch.setattr(download.shutil, "disk_usage", lambda p: type("U", (), {"free": 100})())
    with pytest.raises(WeightsError, match="disk full"):
        download.fetch(record, say=lambda m: None)
    assert len(server.requests) == before


def test_offline_never_touches_the_network_and_a_file_put_there_is_used(
    server, cache, monkeypatch, tmp_path
):
    record = _registered(monkeypatch, server.record("t-offline", "compact.pth"))
    before = len(server.requests)
    r = CliRunner().invoke(main, ["--offline", "models", "pull", "t-offline"])
    assert r.exit_code == WeightsError.exit_code and "offline" in r.output
    assert str(download.cached_path(record)) in r.output and record.urls[0] in r.output
    assert len(server.requests) == before
    elsewhere = tmp_path / "got-it-elsewhere.pth"
    elsewhere.write_bytes(server.files["compact.pth"])
    r = CliRunner().invoke(main, ["--offline", "models", "pull", "t-offline", "--from",
                                  str(elsewhere)])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert download.fetch(record) == download.cached_path(record)  # verified, used, offline
    wrong = tmp_path / "wrong.pth"
    wrong.write_bytes(b"not it")
    r = CliRunner().invoke(main, ["models", "pull", "t-offline", "--from", str(wrong)])
    assert r.exit_code == WeightsError.exit_code and "is not t-offline" in r.output
    os.environ.pop("VIDSR_OFFLINE", None)


PULL = """
import sys
from vidsr.models import download
from vidsr.models.records import CommunityRecord
a = sys.argv[1:]
record = CommunityRecord(a[0], a[1], a[2], a[3], a[4], int(a[5]), a[6], a[7], int(a[8]), a[9],
                         (a[10],), "light")
download.fetch(record, say=lambda m: None)
print("ok")
"""


def test_two_processes_pulling_at_once_download_once(server, cache, monkeypatch, tmp_path):
    server.files["slow.pth"] = server.files["esrgan.pth"]
    record = server.record("t-twice", "slow.pth", mode="cut")  # a little slower: it retries
    args = [record.id, record.name, record.author, record.license, record.architecture,
            str(record.scale), record.description, record.file, str(record.size),
            record.sha256, record.urls[0]]  # fmt: skip
    script = tmp_path / "pull.py"
    script.write_text(PULL)
    env = {**os.environ, "PYTHONPATH": str(REPO), "VIDSR_CACHE": str(cache)}
    procs = [subprocess.Popen([sys.executable, str(script), *args], env=env,
                              stdout=subprocess.PIPE, text=True) for _ in range(2)]  # fmt: skip
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(o.strip() == "ok" for o in outs) and all(p.returncode == 0 for p in procs)
    full = [r for r in server.requests if r[0] == "/cut/slow.pth" and r[1] is None]
    assert len(full) == 1  # one download; the other process waited and found the file
    assert download.cached_path(record).read_bytes() == server.files["slow.pth"]


def test_eval_bench_and_compare_take_a_name_too(server, cache, monkeypatch, tmp_path):
    _registered(monkeypatch, server.record("t-any", "compact.pth"))
    from PIL import Image

    Image.new("RGB", (64, 64), (120, 30, 200)).save(tmp_path / "a.png")
    for args in (["eval", "--model", "t-any", "--data", str(tmp_path), "--json"],
                 ["bench", "--model", "t-any", "--size", "16x16", "--frames", "2", "--json"],
                 ["compare", str(tmp_path / "a.png"), "--models", "bicubic,t-any",
                  "--crop-size", "16", "-o", str(tmp_path / "c.png")]):  # fmt: skip
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 0, (args[0], r.output)
