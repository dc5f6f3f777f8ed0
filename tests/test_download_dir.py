"""The download directory holds one order's files at most: on the A/B card it is a disk
partition (``vaka-data``), so a part or bundle of an order that was replaced, withdrawn or cut
off by a stopped agent must not stay there. A new download removes the updater's files of other
orders (``<sha256>.part``, ``<sha256>.bundle``) and resumes its own part; nothing else in the
directory is touched."""

import hashlib
import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from vaka.agent.download import Download, Wanted

PAYLOAD = b"vaka-bundle 2.0\n" + os.urandom(200_000)
SHA = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture
def server() -> Iterator[tuple[str, list[str | None]]]:
    """A loopback bundle server that honours ``Range``; yields its URL and each request's
    ``Range`` header."""
    ranges: list[str | None] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked = self.headers.get("Range")
            ranges.append(asked)
            start = int(asked.removeprefix("bytes=").rstrip("-")) if asked else 0
            body = PAYLOAD[start:]
            self.send_response(206 if asked else 200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/bundle", ranges
    finally:
        httpd.shutdown()
        thread.join(timeout=10)


def test_a_new_download_clears_other_orders_files_and_resumes_its_own(
    server: tuple[str, list[str | None]], tmp_path: Path
) -> None:
    url, ranges = server
    directory = tmp_path / "update"
    directory.mkdir(mode=0o700)
    stale_part = directory / f"{'a' * 64}.part"
    stale_bundle = directory / f"{'b' * 64}.bundle"
    stale_part.write_bytes(b"x" * 1000)
    stale_bundle.write_bytes(b"y" * 1000)
    own_part = directory / f"{SHA}.part"
    own_part.write_bytes(PAYLOAD[:50_000])  # kept over a reboot: resumed, not fetched again
    other = directory / "lost+found"  # the file system's, not the updater's
    other.mkdir()
    download = Download(Wanted(url, SHA, len(PAYLOAD), "token"), directory)
    path = download.fetch()
    assert path == directory / f"{SHA}.bundle" and path.read_bytes() == PAYLOAD
    assert ranges == ["bytes=50000-"]
    assert not stale_part.exists() and not stale_bundle.exists()
    assert other.is_dir()
    download.discard()
    assert sorted(p.name for p in directory.iterdir()) == ["lost+found"]
