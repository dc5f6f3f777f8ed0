"""Per-call relay credentials: the TURN REST scheme that coturn's ``use-auth-secret`` checks.

Central and the municipality's coturn share one secret (coturn's ``static-auth-secret``). For a
call, central derives a credential that coturn can check without asking anyone::

    username = "<unix expiry>:<call id>"
    password = base64(HMAC-SHA1(secret, username))

coturn recomputes the password from the username and refuses it once the expiry has passed, so a
credential is good for one call and for the ticket's lifetime only; leaking it later gives
nothing. :class:`TurnCredential` also turns into the ICE server entries a peer needs — plain
data here (``urls``, ``username``, ``credential``, as a browser's ``RTCIceServer``), because
provisioning knows no aiortc.

aiortc uses only the first ``stun:`` and the first ``turn:``/``turns:`` URL it is given, and
``turns:`` only with ``?transport=tcp``; :meth:`TurnCredential.ice_servers` therefore orders the
entries by the transport a peer prefers, and a browser may be given all of them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from vaka.errors import ConfigError

MIN_SECRET_BYTES = 16
"""A shorter shared secret is refused: the HMAC is only as strong as the secret."""

Transport = Literal["udp", "tcp", "tls"]
TRANSPORTS: tuple[Transport, ...] = ("udp", "tcp", "tls")


@dataclass(frozen=True)
class RelayEndpoint:
    """Where a municipality's coturn answers: a host name or address and its ports."""

    host: str
    port: int = 3478
    """STUN and TURN over UDP and TCP."""
    tls_port: int = 443
    """TURN over TLS (``turns:``); 443 passes firewalls that allow only web traffic out."""

    def __post_init__(self) -> None:
        if not self.host or (not _is_ipv6(self.host) and any(c in self.host for c in "?:/ ")):
            raise ConfigError(f"TURN host must be a host name or address, got {self.host!r}")
        for port in (self.port, self.tls_port):
            if not 0 < port < 65536:
                raise ConfigError(f"TURN port must be 1..65535, got {port}")

    def _hostport(self, port: int) -> str:
        host = f"[{self.host}]" if _is_ipv6(self.host) else self.host
        return f"{host}:{port}"

    def url(self, transport: Transport) -> str:
        """The ``turn:``/``turns:`` URL for ``transport``."""
        if transport == "udp":
            return f"turn:{self._hostport(self.port)}?transport=udp"
        if transport == "tcp":
            return f"turn:{self._hostport(self.port)}?transport=tcp"
        return f"turns:{self._hostport(self.tls_port)}?transport=tcp"

    @property
    def stun_url(self) -> str:
        """The ``stun:`` URL (server-reflexive candidates; no credentials needed)."""
        return f"stun:{self._hostport(self.port)}"


def _is_ipv6(host: str) -> bool:
    return host.count(":") >= 2


@dataclass(frozen=True)
class IceServerEntry:
    """One ICE server as a peer takes it (the fields of WebRTC's ``RTCIceServer``)."""

    urls: str
    username: str | None = None
    credential: str | None = None

    def as_dict(self) -> dict[str, str]:
        """The JSON form a browser's ``RTCPeerConnection`` accepts."""
        entry = {"urls": self.urls}
        if self.username is not None and self.credential is not None:
            entry["username"] = self.username
            entry["credential"] = self.credential
        return entry


@dataclass(frozen=True)
class TurnCredential:
    """A relay credential for one call, valid until :attr:`expires_at` (unix seconds)."""

    username: str
    password: str
    expires_at: int
    endpoint: RelayEndpoint

    @property
    def call_id(self) -> str:
        """The call the credential was made for (the part of the username after the expiry)."""
        return self.username.split(":", 1)[1]

    def expired(self, now: float | None = None) -> bool:
        """Whether coturn would refuse the credential at ``now`` (default: the current time)."""
        return (time.time() if now is None else now) >= self.expires_at

    def ice_servers(self, prefer: Transport = "udp") -> list[IceServerEntry]:
        """The entries a peer needs: ``stun:`` first, then TURN with ``prefer`` first.

        An aiortc peer uses the first STUN and the first TURN entry only, so ``prefer`` picks
        its relay transport: ``"udp"`` normally, ``"tls"`` behind a firewall that lets only
        TCP 443 out. A browser tries them all.
        """
        if prefer not in TRANSPORTS:
            raise ConfigError(f"TURN transport must be one of {TRANSPORTS}, got {prefer!r}")
        order = [prefer, *(t for t in TRANSPORTS if t != prefer)]
        entries = [IceServerEntry(self.endpoint.stun_url)]
        entries += [
            IceServerEntry(self.endpoint.url(t), self.username, self.password) for t in order
        ]
        return entries


def turn_password(secret: bytes, username: str) -> str:
    """``base64(HMAC-SHA1(secret, username))``: what coturn computes for ``use-auth-secret``."""
    digest = hmac.new(secret, username.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def check_secret(secret: bytes) -> None:
    """Refuse a shared secret that is empty or shorter than :data:`MIN_SECRET_BYTES`."""
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"TURN shared secret must be at least {MIN_SECRET_BYTES} bytes, got {len(secret)}"
        )


def turn_credential(
    secret: bytes,
    call_id: str,
    lifetime_s: float,
    endpoint: RelayEndpoint,
    *,
    now: float | None = None,
) -> TurnCredential:
    """A credential for ``call_id`` that coturn accepts for ``lifetime_s`` seconds from ``now``.

    :param secret: coturn's ``static-auth-secret`` (at least :data:`MIN_SECRET_BYTES` bytes).
    :param call_id: names the call in coturn's log; must not contain ``:``.
    :param lifetime_s: the call ticket's lifetime; the expiry is rounded up to a whole second.
    :raises ConfigError: a short secret, an empty call id or one with ``:``, a lifetime <= 0.
    """
    check_secret(secret)
    if not call_id or ":" in call_id:
        raise ConfigError(f"TURN call id must be non-empty and without ':', got {call_id!r}")
    if not lifetime_s > 0:
        raise ConfigError(f"TURN credential lifetime must be positive, got {lifetime_s}")
    start = time.time() if now is None else now
    expires_at = math.ceil(start + lifetime_s)
    username = f"{expires_at}:{call_id}"
    return TurnCredential(username, turn_password(secret, username), expires_at, endpoint)


def read_secret(path: Path) -> bytes:
    """The newest shared secret in ``path``: its last non-empty line.

    The file holds one secret per line, as coturn's ``static-auth-secret`` lines are made from
    it. During a rotation the new secret is appended (coturn then accepts both), so whoever
    derives credentials from the file switches to the new one without a restart.

    :raises ConfigError: the file cannot be read, holds no secret, or its newest is too short.
    """
    try:
        lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except OSError as err:
        raise ConfigError(f"cannot read the TURN secret file {path}: {err.strerror}") from err
    if not lines:
        raise ConfigError(f"the TURN secret file {path} holds no secret")
    secret = lines[-1].encode("utf-8")
    check_secret(secret)
    return secret
