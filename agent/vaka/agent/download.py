"""Fetching an update bundle: resumable (HTTP ``Range``), bandwidth-limited, into a part file
that becomes the bundle only when every byte hashed to the SHA-256 the signed order named.

The part file is ``<sha256>.part`` in the download directory; an interrupted download continues
from its end with ``Range: bytes=N-`` (a server that answers ``200`` instead of ``206`` sends
the whole file again, and the part starts over). Only when the size and the hash of the whole
file match is it renamed to ``<sha256>.bundle`` and handed on: a half download never reaches
the installer. The order itself is sent as the bearer credential (central's bundle path accepts
only an order it signed for that bundle).

Plain ``http`` only for a loopback host; anything else must be ``https``, checked against the
CA the unit trusts for its broker (or ``[update] server_ca``).
"""

import hashlib
import http.client
import ipaddress
import logging
import os
import shutil
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from vaka.errors import UpdateError

log = logging.getLogger(__name__)

CHUNK = 64 * 1024


class DownloadRefused(UpdateError, ValueError):
    """The bundle is not what the order named (size, hash) or cannot be had from that URL:
    downloading it again will not help."""


class DownloadInterrupted(UpdateError, OSError):
    """The download stopped part-way (network, server); it resumes from the part file."""


@dataclass(frozen=True)
class Wanted:
    """What to fetch and what it must be."""

    url: str
    sha256: str
    size: int
    credential: str


class Download:
    """One bundle's download into ``directory``; :meth:`fetch` blocks (run it in a thread)."""

    def __init__(
        self,
        wanted: Wanted,
        directory: Path,
        max_rate_bps: float = 0,
        server_ca: Path | None = None,
        timeout_s: float = 30,
    ) -> None:
        self.wanted = wanted
        self.directory = directory
        self.max_rate_bps = max_rate_bps
        self.server_ca = server_ca
        self.timeout_s = timeout_s
        self.stopped = threading.Event()
        self.part = directory / f"{wanted.sha256}.part"
        self.bundle = directory / f"{wanted.sha256}.bundle"
        #: bytes received over the network by this object (what resuming saved shows here)
        self.received = 0

    def fetch(self) -> Path:
        """The verified bundle's path. Raises :class:`DownloadRefused` or
        :class:`DownloadInterrupted` (the part file is kept for the next attempt)."""
        if self.bundle.exists() and _sha256_of(self.bundle) == self.wanted.sha256:
            return self.bundle
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._clear_others()
        self._room()
        have = self.part.stat().st_size if self.part.exists() else 0
        if have > self.wanted.size:
            self.part.unlink()
            have = 0
        if have < self.wanted.size:
            self._get(have)
        self._check_whole()
        os.replace(self.part, self.bundle)
        return self.bundle

    def discard(self) -> None:
        """Remove the part file and the bundle (after an install, or a refusal)."""
        for path in (self.part, self.bundle):
            path.unlink(missing_ok=True)

    def _clear_others(self) -> None:
        """Remove the parts and bundles of other orders (replaced, withdrawn, or left by an
        agent that stopped mid-way): the directory holds one bundle at most, and on a disk
        partition nothing of an order outlives it."""
        try:
            for path in self.directory.iterdir():
                stem, dot, suffix = path.name.partition(".")
                if not dot or suffix not in ("part", "bundle") or stem == self.wanted.sha256:
                    continue
                if len(stem) == 64 and all(c in "0123456789abcdef" for c in stem):
                    log.info("removing %s of an earlier order", path.name)
                    path.unlink(missing_ok=True)
        except OSError as err:
            log.warning("could not clear %s of earlier downloads: %s", self.directory, err)

    def _room(self) -> None:
        have = self.part.stat().st_size if self.part.exists() else 0
        free = shutil.disk_usage(self.directory).free
        if free < self.wanted.size - have:
            raise DownloadRefused(
                f"not enough room for the bundle in {self.directory}: needs "
                f"{(self.wanted.size - have) // 2**20} MiB, {free // 2**20} MiB free"
            )

    def _connection(self) -> http.client.HTTPConnection:
        parts = urlsplit(self.wanted.url)
        host = parts.hostname or ""
        if parts.scheme == "https":
            context = ssl.create_default_context(
                cafile=str(self.server_ca) if self.server_ca else None
            )
            return http.client.HTTPSConnection(
                host, parts.port, timeout=self.timeout_s, context=context
            )
        if parts.scheme == "http" and _loopback(host):
            return http.client.HTTPConnection(host, parts.port, timeout=self.timeout_s)
        raise DownloadRefused(f"bundle URL must be https (got {self.wanted.url[:80]!r})")

    def _get(self, have: int) -> None:
        parts = urlsplit(self.wanted.url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        headers = {"Authorization": f"Bearer {self.wanted.credential}"}
        if have:
            headers["Range"] = f"bytes={have}-"
        connection = self._connection()
        try:
            connection.request("GET", path or "/", headers=headers)
            response = connection.getresponse()
            if response.status == 200 and have:
                log.info("the server sends the whole bundle again: starting over")
                have = 0
            elif response.status not in (200, 206):
                reason = f"HTTP {response.status} {response.reason}"[:80]
                if response.status in (401, 403, 404, 410):
                    raise DownloadRefused(f"the bundle server refused the download: {reason}")
                raise DownloadInterrupted(f"the bundle server answered {reason}")
            self._copy(response, have)
        except (OSError, http.client.HTTPException) as err:
            if isinstance(err, DownloadInterrupted):
                raise
            what = str(err) or type(err).__name__
            raise DownloadInterrupted(f"download interrupted: {what}") from None
        finally:
            connection.close()

    def _copy(self, response: http.client.HTTPResponse, have: int) -> None:
        started, sent = time.monotonic(), 0
        with open(self.part, "ab" if have else "wb") as out:
            while not self.stopped.is_set():
                chunk = response.read(CHUNK)
                if not chunk:
                    break
                if have + len(chunk) > self.wanted.size:
                    out.truncate(0)
                    raise DownloadRefused(
                        f"the bundle is larger than the {self.wanted.size} bytes the order names"
                    )
                out.write(chunk)
                have += len(chunk)
                sent += len(chunk)
                self.received += len(chunk)
                if self.max_rate_bps > 0:  # sleep off what is ahead of the allowed rate
                    ahead = sent / self.max_rate_bps - (time.monotonic() - started)
                    if ahead > 0:
                        self.stopped.wait(ahead)
        if self.stopped.is_set():
            raise DownloadInterrupted("download stopped")
        if have < self.wanted.size:
            raise DownloadInterrupted(f"download interrupted at {have} of {self.wanted.size} bytes")

    def _check_whole(self) -> None:
        size = self.part.stat().st_size
        digest = _sha256_of(self.part)
        if size != self.wanted.size or digest != self.wanted.sha256:
            self.part.unlink(missing_ok=True)
            raise DownloadRefused(
                f"the downloaded bundle does not match the order: SHA-256 {digest[:12]}…, "
                f"{size} bytes; the order names {self.wanted.sha256[:12]}…, "
                f"{self.wanted.size} bytes (the file on the server is not the one ordered)"
            )


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1024 * 1024):
            digest.update(block)
    return digest.hexdigest()


def unreachable_server(url: str, servers: tuple[str, ...]) -> str | None:
    """Why this unit cannot download from ``url`` (its server is not one of ``servers``, the
    ``host:port`` pairs its firewall lets it reach), or ``None``. Loopback is always allowed."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return f"the bundle URL has no valid port ({url[:80]!r})"
    if _loopback(host):
        return None
    named = host if ":" not in host else f"[{host}]"
    allowed = {s.lower() for s in servers}
    if f"{named}:{port}" in allowed or f"{host}:{port}" in allowed:
        return None
    return (
        f"the bundle server {named}:{port} is not one this unit may reach "
        f"(its firewall allows {', '.join(servers) or 'no bundle server'}: "
        "[update] servers and the site's nftables BUNDLE lines)"
    )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
