"""The doors attacked with what they read: spreadsheet cells, an idle call socket, the claim
certificate on the wrong listener, and request bodies past the guard's limits; on the real stack
(central's aiohttp server, real Mosquitto with the stack's PKI)."""

import asyncio
import contextlib
import csv
import functools
import io
import json
import socket
import ssl
import time
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt
import pytest

from tests.conftest import TOTP_SECRET, staff_token
from tests.doors import door_central, error, login, raw_post
from tests.test_staff_access import PASSWORD
from vaka import otp
from vaka.central.audit.spreadsheet import safe_cell
from vaka.devstack.broker import Broker
from vaka.devstack.polling import wait_for
from vaka.provisioning.tls import client_tls_context

# ---------------------------------------------------------------- CSV exports


def test_a_formula_cell_is_written_as_text() -> None:
    for start in ("=", "+", "-", "@", "\t", "\r"):
        assert safe_cell(f"{start}HYPERLINK(1)") == f"'{start}HYPERLINK(1)"
    assert safe_cell("all well") == "all well"
    assert safe_cell(None) == ""
    assert safe_cell(-3) == -3  # a number central wrote itself stays a number


async def test_csv_exports_escape_formula_cells(broker: Broker, tmp_path: Path) -> None:
    hostile = ['=HYPERLINK("http://x")', "+1+1", "-2+3", "@SUM(A1)", "\t=1", "\r=1"]
    async with door_central(broker, tmp_path) as central:
        audit = central.audit
        for n, text in enumerate(hostile):
            call = f"central-1.c{n}"
            for kind, detail in (
                ("ticket_issued", {"citizen": text, "group": "g"}),
                ("call_ended", {"duration_s": 5.0, "reason": text}),
            ):
                await asyncio.to_thread(
                    functools.partial(
                        audit.append,
                        kind,
                        actor="n-nurse",
                        unit="u-1",
                        purpose="night_check",
                        call_id=call,
                        **detail,
                    )
                )
            await asyncio.to_thread(
                audit.append,
                "supervision_outcome",
                actor="n-nurse",
                call_id=call,
                outcome="visit_needed",
                note=text,
            )
        token = await staff_token(central.url, "a-admin", PASSWORD)
        auth = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession(base_url=central.url, headers=auth) as http:
            async with http.get("/api/reports/supervisions.csv") as resp:
                assert resp.status == 200
                report = list(csv.DictReader(io.StringIO(await resp.text())))
            async with http.get("/api/audit.csv?kind=supervision_outcome") as resp:
                assert resp.status == 200 and resp.content_type == "text/csv"
                trail = list(csv.DictReader(io.StringIO(await resp.text())))
    assert len(report) == len(hostile) and len(trail) == len(hostile)
    for row in report:
        for column in ("citizen", "end_reason", "outcome_note"):
            assert row[column].startswith("'") and row[column][1:] in hostile
    assert sorted(json.loads(row["detail"])["note"] for row in trail) == sorted(hostile)
    for row in [*report, *trail]:
        for value in row.values():
            assert not value.startswith(("=", "+", "@", "\t", "\r")), row
            # a negative number central wrote itself would be the only "-": there is none here
            assert not value.startswith("-"), row


# ---------------------------------------------------------------- the call WebSocket


async def test_an_idle_call_socket_is_closed_at_its_deadline_despite_pings(
    broker: Broker, tmp_path: Path
) -> None:
    async with door_central(broker, tmp_path, calls={"dial_deadline_s": 2}) as central:
        async with aiohttp.ClientSession() as http:
            # without a session the socket is never opened at all
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(central.url + "/api/calls")
            assert refused.value.status == 401
            token = await staff_token(central.url, "n-nurse", PASSWORD)
            opened = time.monotonic()
            ws = await http.ws_connect(
                central.url + "/api/calls",
                headers={"Authorization": f"Bearer {token}"},
                autoping=True,
            )
            pings = 0

            async def keep_pinging() -> None:
                nonlocal pings
                while not ws.closed:
                    await ws.ping()
                    pings += 1
                    await asyncio.sleep(0.3)

            pinger = asyncio.create_task(keep_pinging())
            try:
                message = await ws.receive(timeout=15)
                closing = await ws.receive(timeout=5)
            finally:
                pinger.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                    await pinger
            lasted = time.monotonic() - opened
    print(f"idle call socket closed after {lasted:.2f} s ({pings} pings sent)")
    assert json.loads(message.data) == {
        "type": "refused",
        "reason": "no dial request within 2 s of opening",
    }
    assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert pings >= 5  # it pinged all along, and the deadline held
    assert 2 <= lasted <= 6


# ---------------------------------------------------------------- the claim certificate


def handshake_and_read(port: int, files: Any) -> str:
    """A raw TLS connection with a client certificate: ``"open"`` if the broker kept it open
    and answered, else the error it ended with."""
    ctx = client_tls_context(files.server_ca, files.cert, files.key)
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            # an MQTT 5 CONNECT would be answered; a refused certificate is an alert instead
            tls.sendall(bytes.fromhex("101000044d5154540502003c0000036162630000"))
            data = tls.recv(4)
            return "open" if data else "closed"
    except (ssl.SSLError, OSError) as err:
        return f"{type(err).__name__}: {err}"


def refused(outcome: str) -> bool:
    """The broker ended the TLS connection (an alert, or EOF) instead of answering."""
    text = outcome.lower()
    return any(sign in text for sign in ("unknown ca", "eof", "reset")) or text == "closed"


async def test_the_claim_certificate_works_only_on_the_claim_listener(broker: Broker) -> None:
    claim = broker.pki.claim()
    unit = broker.pki.client("u-door")
    on_main = await asyncio.to_thread(handshake_and_read, broker.port, claim)
    print("claim certificate on the main listener:", on_main)
    assert refused(on_main)
    with pytest.raises(aiomqtt.MqttError):
        async with broker.client_with(
            client_tls_context(claim.server_ca, claim.cert, claim.key), "claim", timeout=3
        ):
            pass
    # ... and the unit's certificate not on the claim listener either
    on_claim = await asyncio.to_thread(handshake_and_read, broker.claim_port, unit)
    assert refused(on_claim)
    # each where it belongs
    ctx = client_tls_context(claim.server_ca, claim.cert, claim.key)
    async with broker.client_with(ctx, "claim", port=broker.claim_port):
        pass
    async with broker.client("u-door"):
        pass
    assert broker.process is not None
    await wait_for(
        lambda: (
            broker.process is not None and "certificate verify failed" in broker.process.tail(20000)
        ),
        5,
    )
    with pytest.raises(ValueError, match="claim identity"):
        broker.pki.client("claim-7")


# ---------------------------------------------------------------- bodies


async def test_bodies_are_parsed_by_the_guard_with_limits(broker: Broker, tmp_path: Path) -> None:
    async with door_central(broker, tmp_path) as central:
        url = central.url + "/api/login"
        json_type = {"Content-Type": "application/json"}
        status, _, raw = await raw_post(url, body=b"[" * 5000 + b"]" * 5000, headers=json_type)
        assert status == 400 and "nests 5000 levels deep, over the limit of 32" in error(raw)
        status, _, raw = await raw_post(
            url, body=b'{"staff_id": ' + b"9" * 5000 + b"}", headers=json_type
        )
        assert status == 400 and "has a value that cannot be read" in error(raw)
        status, _, raw = await raw_post(
            url, body=b'{"a": "' + b"x" * 70_000 + b'"}', headers=json_type
        )
        assert status == 413 and "over the 65536-byte limit" in error(raw)
        status, _, raw = await raw_post(url, body=b"\xff\xfe{}", headers=json_type)
        assert status == 400 and "not valid UTF-8 JSON" in error(raw)
        # the same helper behind every route: an authenticated one
        token = await staff_token(central.url, "n-nurse", PASSWORD)
        auth = {"Authorization": f"Bearer {token}", **json_type}
        status, _, raw = await raw_post(
            central.url + "/api/duty", body=b"{" * 100 + b"}" * 100, headers=auth
        )
        assert status == 400 and "nests 100 levels deep" in error(raw)
        status, _, raw = await raw_post(central.url + "/api/duty", body=b"{}", headers=auth)
        assert status == 400 and error(raw) == 'send {"on": true} or {"on": false}'
        # and central still answers
        status, _, raw = await raw_post(
            url, json_body=login("s-support", totp=otp.code_now(TOTP_SECRET))
        )
        assert status == 200, raw
