"""The relay's credentials and configuration, without a network: TURN REST credentials
(:mod:`vaka.provisioning.turn`), the shipped coturn configuration and the test bed's rendering
of it (:mod:`vaka.devstack.turn`), and the bounded TURN deletion of :mod:`vaka.rtc.ice`.

coturn itself checks these credentials in ``tests/test_networks.py``.
"""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import aioice.turn
import pytest

from vaka.devstack.turn import SHIPPED_CONFIG, TurnSettings, read_secrets, render_config
from vaka.errors import ConfigError
from vaka.provisioning.turn import (
    RelayEndpoint,
    turn_credential,
    turn_password,
)
from vaka.rtc.ice import configure_ice, reset_ice

SECRET = b"north-secret-0123456789"
ENDPOINT = RelayEndpoint("turn.vaka.example.org")


def test_known_vector() -> None:
    # computed independently: printf '%s' '1700000000:call-42'
    #   | openssl dgst -sha1 -hmac 'north-secret-0123456789' -binary | base64
    assert turn_password(SECRET, "1700000000:call-42") == "0+YsO6ioWvZHZ1lxJrl6Fa8PWU4="
    credential = turn_credential(SECRET, "call-42", 300, ENDPOINT, now=1_699_999_700)
    assert credential.username == "1700000000:call-42"
    assert credential.password == "0+YsO6ioWvZHZ1lxJrl6Fa8PWU4="
    assert credential.call_id == "call-42"


def test_expiry_is_the_ticket_lifetime_rounded_up() -> None:
    credential = turn_credential(SECRET, "c", 90, ENDPOINT, now=1000.2)
    assert credential.expires_at == 1091
    assert not credential.expired(1090.9)
    assert credential.expired(1091)
    fresh = turn_credential(SECRET, "c", 60, ENDPOINT)
    assert not fresh.expired()
    assert fresh.expires_at - time.time() <= 61


@pytest.mark.parametrize(
    ("secret", "call_id", "lifetime", "message"),
    [
        (b"", "c", 60, "at least 16 bytes, got 0"),
        (b"short-secret", "c", 60, "at least 16 bytes, got 12"),
        (SECRET, "", 60, "non-empty and without ':'"),
        (SECRET, "a:b", 60, "non-empty and without ':'"),
        (SECRET, "c", 0, "lifetime must be positive"),
    ],
)
def test_refusals(secret: bytes, call_id: str, lifetime: float, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        turn_credential(secret, call_id, lifetime, ENDPOINT)


def test_ice_server_entries() -> None:
    credential = turn_credential(SECRET, "call-1", 60, RelayEndpoint("198.18.1.2"), now=0)
    urls = [e.urls for e in credential.ice_servers()]
    assert urls == [
        "stun:198.18.1.2:3478",
        "turn:198.18.1.2:3478?transport=udp",
        "turn:198.18.1.2:3478?transport=tcp",
        "turns:198.18.1.2:443?transport=tcp",
    ]
    tls_first = credential.ice_servers("tls")
    assert tls_first[1].urls == "turns:198.18.1.2:443?transport=tcp"
    assert tls_first[0].as_dict() == {"urls": "stun:198.18.1.2:3478"}
    assert tls_first[1].as_dict() == {
        "urls": "turns:198.18.1.2:443?transport=tcp",
        "username": "60:call-1",
        "credential": credential.password,
    }
    v6 = RelayEndpoint("2001:db8::1", tls_port=5349)
    assert v6.url("tls") == "turns:[2001:db8::1]:5349?transport=tcp"
    with pytest.raises(ConfigError, match="one of"):
        credential.ice_servers("dtls")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="host name or address"):
        RelayEndpoint("turn.example.org:3478")
    with pytest.raises(ConfigError, match=r"1\.\.65535"):
        RelayEndpoint("turn.example.org", port=0)


# -- the shipped configuration and the test bed's rendering ----------------------------------


def _settings(tmp_path: Path, secrets: str = "a" * 20 + "\n" + "b" * 20 + "\n") -> TurnSettings:
    secret_file = tmp_path / "secret"
    secret_file.write_text(secrets)
    return TurnSettings(listen_ip="198.18.1.2", secret_file=secret_file, work_dir=tmp_path)


def _values(text: str, key: str) -> list[str]:
    return [
        line.split("=", 1)[1] if "=" in line else ""
        for line in (raw.strip() for raw in text.splitlines())
        if line and not line.startswith("#") and line.split("=", 1)[0] == key
    ]


def test_shipped_config_denies_internal_ranges_and_allows_nothing() -> None:
    text = SHIPPED_CONFIG.read_text()
    denied = set(_values(text, "denied-peer-ip"))
    for needed in (
        "10.0.0.0-10.255.255.255",
        "172.16.0.0-172.31.255.255",
        "192.168.0.0-192.168.255.255",
        "127.0.0.0-127.255.255.255",
        "169.254.0.0-169.254.255.255",
        "100.64.0.0-100.127.255.255",
        "198.18.0.0-198.19.255.255",
        "::1",
        "fc00::-fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        "fe80::-febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    ):
        assert needed in denied
    assert _values(text, "allowed-peer-ip") == []
    assert _values(text, "static-auth-secret") == []  # secrets are added at deploy time
    for flag in ("use-auth-secret", "no-multicast-peers", "no-cli", "fingerprint", "syslog"):
        assert _values(text, flag) == [""], flag
    assert _values(text, "tls-listening-port") == ["443"]
    assert _values(text, "alt-tls-listening-port") == []  # opens only with RFC 5780's 2nd address
    assert _values(text, "cert") and _values(text, "pkey")


def test_test_bed_config_is_the_shipped_one_plus_test_ranges(tmp_path: Path) -> None:
    text = render_config(_settings(tmp_path))
    shipped = SHIPPED_CONFIG.read_text()
    assert _values(text, "denied-peer-ip") == _values(shipped, "denied-peer-ip")
    assert _values(text, "allowed-peer-ip") == [
        "100.64.0.0-100.127.255.255",
        "198.18.0.0-198.19.255.255",
    ]
    assert _values(text, "static-auth-secret") == ["a" * 20, "b" * 20]  # a rotation
    assert _values(text, "listening-ip") == ["198.18.1.2"]
    assert _values(text, "relay-ip") == ["198.18.1.2"]
    assert _values(text, "no-tls") == [""]  # no certificate given
    assert _values(text, "syslog") == []
    assert _values(text, "log-file") == ["stdout"]
    for flag in ("use-auth-secret", "no-multicast-peers", "no-cli", "fingerprint"):
        assert _values(text, flag) == [""], flag


@pytest.mark.parametrize(
    ("secrets", "message"),
    [
        ("", "holds no secret"),
        ("too-short\n", "shorter than 16"),
        ("a" * 8 + " " + "b" * 9, "spaces"),
    ],
)
def test_bad_secret_files_are_refused(tmp_path: Path, secrets: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        read_secrets(_settings(tmp_path, secrets).secret_file)


def test_missing_secret_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the TURN secret file"):
        read_secrets(tmp_path / "nope")


def test_tls_listener_needs_cert_and_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs a certificate and a key"):
        TurnSettings(listen_ip="198.18.1.2", secret_file=tmp_path, work_dir=tmp_path, tls_port=443)


# -- closing a connection does not wait ~30 s for a dead relay -------------------------------


async def test_turn_deletion_is_bounded() -> None:
    """A relay that never answers: deleting the allocation gives up after the bound."""
    dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dead.bind(("127.0.0.1", 0))
    server = dead.getsockname()
    configure_ice(["127.0.0.1"], turn_delete_timeout_s=0.3)
    try:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: aioice.turn.TurnClientUdpProtocol(
                server, username="u", password="p", lifetime=600, channel_refresh_time=500
            ),
            remote_addr=server,
        )
        started = time.monotonic()
        await protocol.delete()
        elapsed = time.monotonic() - started
        assert 0.25 < elapsed < 1.5
        assert transport.is_closing()
    finally:
        reset_ice()
        dead.close()
    assert aioice.turn.TurnClientMixin.delete.__name__ == "delete"  # aioice's own again
