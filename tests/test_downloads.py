"""Checksummed downloads against a local HTTP server (127.0.0.1 only, bounded requests and time).

`fetch` must never leave a partial or corrupt file under the final name: a wrong pre-existing file is
removed and fetched again, a truncated or corrupted response is retried, and after the last failed
attempt neither the file nor its ``.part`` remains.
"""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from paibench.errors import PaibenchError

from paibench.data.download import fetch

BODY = bytes(range(256)) * 400  # 100 KiB, bigger than one socket write
MD5 = hashlib.md5(BODY).hexdigest()
SHA256 = hashlib.sha256(BODY).hexdigest()


class _Server:
    """Serves BODY at /file; `plan` lists how each request is answered ("ok", "truncated", "corrupt", "404")."""

    def __init__(self):
        self.plan: list[str] = []
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 5  # a stuck client cannot hold a handler thread for long

            def do_GET(self):  # noqa: N802 (http.server's name)
                mode = server.plan[server.requests] if server.requests < len(server.plan) else "ok"
                server.requests += 1
                if mode == "404":
                    self.send_error(404)
                    return
                body = BODY if mode != "corrupt" else BODY[:-1] + b"\x00"
                self.send_response(200)
                self.send_header("Content-Length", str(len(BODY)))  # the full length, even when truncated
                self.end_headers()
                self.wfile.write(body[: len(body) // 3] if mode == "truncated" else body)
                self.wfile.flush()
                self.close_connection = True

            def log_message(self, *args):  # keep test output clean
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/file"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def server():
    with _Server() as s:
        yield s


def test_fresh_download_is_verified(server, tmp_path):
    dest = tmp_path / "raw" / "file.bin"
    assert fetch(server.url, dest, MD5, "md5", retries=2, timeout=5) == dest
    assert dest.read_bytes() == BODY
    assert not dest.with_name("file.bin.part").exists()
    assert server.requests == 1


def test_good_existing_file_is_not_downloaded_again(server, tmp_path):
    dest = tmp_path / "file.bin"
    dest.write_bytes(BODY)
    fetch(server.url, dest, SHA256, "sha256", retries=1, timeout=5)
    assert server.requests == 0


def test_corrupt_existing_file_is_removed_and_fetched_again(server, tmp_path):
    dest = tmp_path / "file.bin"
    dest.write_bytes(BODY[:1000])  # e.g. left by an old, interrupted tool
    fetch(server.url, dest, MD5, "md5", retries=1, timeout=5)
    assert dest.read_bytes() == BODY
    assert server.requests == 1


def test_stale_part_file_is_overwritten(server, tmp_path):
    dest = tmp_path / "file.bin"
    dest.with_name("file.bin.part").write_bytes(b"junk from a killed download" * 10)
    fetch(server.url, dest, MD5, "md5", retries=1, timeout=5)
    assert dest.read_bytes() == BODY
    assert not dest.with_name("file.bin.part").exists()


@pytest.mark.parametrize("first", ["truncated", "corrupt", "404"])
def test_bad_first_response_is_retried(server, tmp_path, first):
    server.plan = [first]
    dest = tmp_path / "file.bin"
    fetch(server.url, dest, MD5, "md5", retries=3, timeout=5)
    assert dest.read_bytes() == BODY
    assert server.requests == 2


def test_always_bad_download_fails_without_leaving_files(server, tmp_path):
    server.plan = ["truncated", "corrupt", "truncated"]
    dest = tmp_path / "file.bin"
    with pytest.raises(PaibenchError) as info:
        fetch(server.url, dest, MD5, "md5", retries=3, timeout=5)
    message = str(info.value)
    assert "\n" not in message  # one line: the CLI prints it as its only message
    assert "after 3 attempts" in message and MD5 in message and str(dest) in message
    assert server.requests == 3
    assert not dest.exists() and not dest.with_name("file.bin.part").exists()


def test_unreachable_server_gives_offline_hint(tmp_path):
    with _Server() as s:
        url = s.url
    # The server is closed: the port refuses connections (nothing outside 127.0.0.1 is contacted).
    with pytest.raises(PaibenchError, match="the file placed at"):
        fetch(url, tmp_path / "file.bin", MD5, "md5", retries=1, timeout=2)
    assert not (tmp_path / "file.bin").exists()
