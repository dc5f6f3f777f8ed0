"""The parts of system updates that need no stack: the signed order's checks, the night hours,
the download's refusals, the real installer's reading of the slot and version, and the wire."""

import datetime as dt
import hashlib
import http.server
import threading
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from joserfc.jwk import OKPKey

from vaka.agent.download import Download, DownloadRefused, Wanted
from vaka.agent.updates import night_reason
from vaka.errors import BadMessage
from vaka.protocol.messages import UpdateMessage, UpdatePayload, decode, encode
from vaka.protocol.topics import Channel
from vaka.provisioning.bundles import UnitConfigBundle
from vaka.provisioning.orders import sign_order
from vaka.provisioning.updates import BadUpdateOrder, sign_update_order, verify_update_order

KEY = OKPKey.generate_key("Ed25519")
SHA = "ab" * 32


def order(unit: str = "u-one", url: str = "https://central.example/b", **more: object) -> str:
    return sign_update_order(unit, 1, "2.0", url, SHA, 1000, KEY, **more)  # type: ignore[arg-type]


def test_an_order_is_checked_for_signature_unit_expiry_and_kind() -> None:
    assert verify_update_order(order(), KEY, "u-one").version == "2.0"
    with pytest.raises(BadUpdateOrder, match="bad signature"):
        verify_update_order(order(), OKPKey.generate_key("Ed25519"), "u-one")
    with pytest.raises(BadUpdateOrder, match="for unit u-one, not this unit"):
        verify_update_order(order(), KEY, "u-two")
    with pytest.raises(BadUpdateOrder, match="expired"):
        verify_update_order(order(), KEY, "u-one", now=time.time() + 15 * 86400)
    with pytest.raises(BadUpdateOrder, match="not an update order"):
        verify_update_order(sign_order("u-one", "renew", KEY), KEY, "u-one")
    with pytest.raises(BadUpdateOrder, match="no update order"):
        verify_update_order("", KEY, "u-one")
    with pytest.raises(ValueError, match="http"):
        order(url="file:///etc/passwd")


def bundle(night_from: str, night_until: str) -> UnitConfigBundle:
    pem = KEY.as_pem(private=False).decode()
    return UnitConfigBundle(
        unit="u-one", version=1, issued_at=0, profile="nightcam", ticket_key=pem,
        timezone="Europe/Copenhagen", night_from=night_from, night_until=night_until,
    )  # fmt: skip


def at(hour: int, minute: int = 0) -> float:
    zone = ZoneInfo("Europe/Copenhagen")
    return dt.datetime(2026, 12, 4, hour, minute, tzinfo=zone).timestamp()


def test_the_night_hours_hold_an_update_back() -> None:
    night = bundle("22:00", "06:30")  # across midnight
    assert night_reason(night, at(23)) is not None
    assert "until 06:30" in str(night_reason(night, at(5, 59)))
    assert night_reason(night, at(6, 30)) is None
    assert night_reason(night, at(14)) is None
    evening = bundle("18:00", "20:00")
    assert night_reason(evening, at(19)) is not None
    assert night_reason(evening, at(20, 1)) is None


def test_a_download_refuses_plain_http_off_loopback_and_an_oversize_answer(tmp_path: Path) -> None:
    wanted = Wanted("http://central.example/b", SHA, 1000, "token")
    with pytest.raises(DownloadRefused, match="must be https"):
        Download(wanted, tmp_path).fetch()
    # A part file longer than the order's size is not kept.
    part = tmp_path / f"{SHA}.part"
    part.write_bytes(b"x" * 2000)
    data = b"y" * 1000
    digest = hashlib.sha256(data).hexdigest()
    (tmp_path / f"{digest}.bundle").write_bytes(data)
    done = Download(Wanted("https://x.example/b", digest, 1000, "t"), tmp_path).fetch()
    assert done.read_bytes() == data  # the verified bundle already there is used as it is


class _Bundle(http.server.BaseHTTPRequestHandler):
    data = b"vaka-bundle 2.0\n" + bytes(200_000)

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.data)))
        self.end_headers()
        self.wfile.write(self.data)

    def log_message(self, *args: object) -> None:
        pass


def test_a_download_keeps_to_its_rate_limit(tmp_path: Path) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Bundle)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        data = _Bundle.data
        url = f"http://127.0.0.1:{server.server_address[1]}/b"
        wanted = Wanted(url, hashlib.sha256(data).hexdigest(), len(data), "t")
        started = time.monotonic()
        done = Download(wanted, tmp_path / "slow", max_rate_bps=400_000).fetch()
        took = time.monotonic() - started
        assert done.read_bytes() == data
        assert took >= len(data) / 400_000 * 0.9  # ~0.5 s at 400 kB/s
        started = time.monotonic()
        Download(wanted, tmp_path / "fast").fetch()
        assert time.monotonic() - started < took / 2  # unlimited, on loopback
    finally:
        server.shutdown()
        server.server_close()


def test_an_update_order_travels_only_on_the_update_channel() -> None:
    raw = encode(UpdateMessage(payload=UpdatePayload(order=order())))
    assert isinstance(decode(raw, Channel.UPDATE), UpdateMessage)
    with pytest.raises(BadMessage, match="does not belong on the 'command' channel"):
        decode(raw, Channel.COMMAND)
