"""The staff and technician doors attacked from outside (issue 13, part 6), on the real stack:
central's real aiohttp server, real Chromium for a cross-site form, real Mosquitto with the
stack's PKI for the claim listener."""

import asyncio
import contextlib
import csv
import functools
import io
import json
import socket
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt
import pytest
from aiohttp import web
from playwright.async_api import Page

from tests.conftest import TOTP_SECRET, staff_token
from tests.test_staff_access import PASSWORD, access_spec
from vaka import otp
from vaka.agent.enrol import signing_request, unit_code
from vaka.central.audit.spreadsheet import safe_cell
from vaka.central.http.staff import LOGIN_REFUSED
from vaka.central.service import CentralService
from vaka.central.settings.calls import CallLimits
from vaka.central.settings.config import StaffAccessSection
from vaka.devstack.broker import Broker
from vaka.devstack.central import central_config
from vaka.devstack.polling import wait_for
from vaka.protocol.enrolment import EnrolRequestMessage, EnrolRequestPayload
from vaka.protocol.messages import encode
from vaka.provisioning import pki
from vaka.provisioning.tls import client_tls_context

pytest_plugins = ["tests.browser"]  # the `page` fixture

ATTACKER = "198.51.100.66"


@contextlib.asynccontextmanager
async def door_central(
    broker: Broker,
    tmp_path: Path,
    identity: str = "central-1",
    *,
    access: dict[str, Any] | None = None,
    calls: dict[str, Any] | None = None,
    pki_settings: dict[str, Any] | None = None,
    database: Path | str | None = None,
) -> AsyncIterator[CentralService]:
    """Central (behind a trusted proxy on loopback, so tests can speak from other addresses)
    with the staff of :func:`tests.test_staff_access.access_spec`."""
    config = central_config(broker, tmp_path, identity, database=database)
    settings = {"trusted_proxies": ["127.0.0.1/32"], **(access or {})}
    update: dict[str, Any] = {"staff_access": StaffAccessSection.model_validate(settings)}
    if calls:
        update["calls"] = CallLimits.model_validate(calls)
    if pki_settings:
        assert config.pki is not None
        update["pki"] = config.pki.model_copy(update=pki_settings)
    async with CentralService(config.model_copy(update=update)) as central:
        await asyncio.to_thread(central.directory.load, access_spec())
        yield central


async def raw_post(
    url: str,
    *,
    body: bytes | None = None,
    json_body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One POST; status, headers and the exact body bytes."""
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, data=body, json=json_body, headers=headers or {}) as resp,
    ):
        return resp.status, dict(resp.headers), await resp.read()


def login(staff_id: str, password: str = PASSWORD, **extra: str) -> dict[str, str]:
    return {"staff_id": staff_id, "password": password, **extra}


def error(raw: bytes) -> str:
    return str(json.loads(raw)["error"])


async def audit_kinds(central: CentralService, kind: str) -> list[dict[str, Any]]:
    entries = await asyncio.to_thread(central.audit.entries, kind=kind)
    return [{"actor": e.actor, **e.detail} for e in entries]


# ---------------------------------------------------------------- log-in: type and origin


async def test_login_takes_only_json_from_central_or_a_tool(broker: Broker, tmp_path: Path) -> None:
    async with door_central(broker, tmp_path) as central:
        url = central.url + "/api/login"
        code = otp.code_now(TOTP_SECRET)
        form = f"staff_id=s-support&password={PASSWORD}&totp={code}".encode()
        # a form's text/plain or urlencoded body: 415, whatever the origin
        for kind in ("text/plain", "application/x-www-form-urlencoded"):
            status, _, raw = await raw_post(url, body=form, headers={"Content-Type": kind})
            assert status == 415, raw
            assert error(raw) == f"the request body must be application/json (it is {kind})"
        # another site's page: refused on its Origin, JSON or not
        evil = {"Origin": "https://evil.example"}
        status, _, raw = await raw_post(url, json_body=login("s-support", totp=code), headers=evil)
        assert status == 403 and "sent from another site (https://evil.example)" in error(raw)
        status, _, raw = await raw_post(
            url, json_body=login("s-support"), headers={"Origin": "null"}
        )
        assert status == 403 and "another site (null)" in error(raw)
        # a console session is only opened from the console's page
        body = login("s-support", totp=code, session="cookie")
        status, _, raw = await raw_post(url, json_body=body)
        assert status == 403 and "only opened from the console's own page" in error(raw)
        # a tool (no Origin, no cookie) gets its bearer token
        assert await staff_token(central.url, "s-support", PASSWORD)
        # the console itself (its own Origin) gets its cookie session
        own = {"Origin": central.url}
        body = login("a-admin", totp=otp.code_now(TOTP_SECRET), session="cookie")
        status, headers, raw = await raw_post(url, json_body=body, headers=own)
        assert status == 200, raw
        # a request carrying the console's cookie but no Origin is refused before anything else
        cookie = headers["Set-Cookie"].split(";", 1)[0]
        status, _, raw = await raw_post(central.url + "/api/logout", headers={"Cookie": cookie})
        assert status == 403 and "cookie but no Origin" in error(raw)
        logins = await audit_kinds(central, "login")
    assert [e["actor"] for e in logins] == ["s-support", "a-admin"]


async def test_a_cross_site_form_cannot_log_in_in_chromium(
    broker: Broker, tmp_path: Path, page: Page
) -> None:
    """Another site's page posts the classic cross-site form (text/plain, the browser's own
    Origin) to central's log-in: refused, nobody logged in, no cookie set."""
    async with door_central(broker, tmp_path) as central:
        code = otp.code_now(TOTP_SECRET)
        html = f"""<!doctype html><form id=f method=POST action="{central.url}/api/login"
            enctype="text/plain"><input name='{{"staff_id":"s-support","password":"{PASSWORD}",
            "totp":"{code}","x":"' value='"}}'></form><script>f.submit()</script>"""

        async def evil_page(_: web.Request) -> web.Response:
            return web.Response(text=html, content_type="text/html")

        app = web.Application()
        app.router.add_get("/", evil_page)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            port = runner.addresses[0][1]
            async with page.expect_response(central.url + "/api/login") as answer:
                await page.goto(f"http://127.0.0.1:{port}/")
            response = await answer.value
            assert response.status == 403
            assert "sent from another site (http://127.0.0.1:" in (await response.json())["error"]
            assert response.request.headers["content-type"] == "text/plain"
            assert await page.context.cookies(central.url) == []
        finally:
            await runner.cleanup()
        assert await audit_kinds(central, "login") == []


# ---------------------------------------------------------------- one answer for every refusal


async def test_every_refused_login_gets_one_answer(broker: Broker, tmp_path: Path) -> None:
    access = {"allow": {"night_staff": ["192.0.2.0/24"]}, "lockout_failures": 3}
    async with door_central(broker, tmp_path, access=access) as central:
        url = central.url + "/api/login"

        async def attempt(body: dict[str, str], address: str = "127.0.0.1") -> tuple[int, bytes]:
            status, _, raw = await raw_post(
                url, json_body=body, headers={"X-Forwarded-For": address}
            )
            return status, raw

        code = otp.code_now(TOTP_SECRET)
        answers = {
            "wrong password": await attempt(login("s-support", "not the password", totp=code)),
            "wrong code": await attempt(login("s-support", totp="000000")),
            "no code": await attempt(login("s-support")),
            "unknown staff id": await attempt(login("nobody", totp=code)),
        }
        # right password and code, wrong network: three of those lock the account ...
        for n in range(3):
            answers[f"wrong network {n}"] = await attempt(login("n-nurse", totp=code))
        # ... and then the right password and code from the right network is refused alike
        answers["locked"] = await attempt(login("n-nurse", totp=code), "192.0.2.7")
        expected = (401, json.dumps({"error": LOGIN_REFUSED}).encode())
        assert answers == dict.fromkeys(answers, expected)
        failed = await audit_kinds(central, "login_failed")
        locked = await audit_kinds(central, "login_locked")
    reasons = [(e["actor"], e["reason"]) for e in failed]
    assert reasons.count(("n-nurse", "address not allowed for the role")) == 3
    assert ("n-nurse", "account locked") in reasons
    assert ("s-support", "wrong staff id or password") in reasons
    assert ("s-support", "wrong one-time code") in reasons
    assert ("s-support", "missing one-time code") in reasons
    # s-support's three failures locked it too (its fourth answer would have been the same)
    assert [(e["actor"], e["failures"]) for e in locked] == [("s-support", 3), ("n-nurse", 3)]


# ---------------------------------------------------------------- per-address throttling


async def test_a_burst_from_one_address_is_slowed_then_refused(
    broker: Broker, tmp_path: Path, postgres_url: str
) -> None:
    access = {
        "allow": {"support": ["0.0.0.0/0"]},
        "address_slow_after": 3,
        "address_block_after": 6,
        "address_delay_s": 0.3,
        "address_window_s": 600,
        "login_per_minute": 12,
    }
    async with door_central(broker, tmp_path, access=access, database=postgres_url) as central:
        url = central.url + "/api/login"
        attacker = {"X-Forwarded-For": ATTACKER}
        taken = []
        for n in range(6):  # one guess on each of six accounts: no account lock-out helps
            started = time.monotonic()
            status, _, raw = await raw_post(url, json_body=login(f"guess-{n}"), headers=attacker)
            taken.append(time.monotonic() - started)
            assert (status, error(raw)) == (401, LOGIN_REFUSED)
        print("answer times of failures 1-6 (s):", [round(t, 2) for t in taken])
        for n, seconds in enumerate(taken[3:], start=1):
            assert seconds >= 0.3 * n  # held back, more each time
        # now refused for a while, the right password and code included
        right = login("s-support", totp=otp.code_now(TOTP_SECRET))
        status, headers, raw = await raw_post(url, json_body=right, headers=attacker)
        assert status == 429 and f"too many failed log-ins from {ATTACKER}" in error(raw)
        assert 1 <= int(headers["Retry-After"]) <= 600
        # another address is not affected
        status, _, raw = await raw_post(
            url, json_body=right, headers={"X-Forwarded-For": "192.0.2.1"}
        )
        assert status == 200, raw
        # the count is in the database: a second instance on it refuses the address too
        async with door_central(
            broker, tmp_path, "central-2", access=access, database=postgres_url
        ) as second:
            status, headers, raw = await raw_post(
                second.url + "/api/login", json_body=right, headers=attacker
            )
            assert status == 429 and int(headers["Retry-After"]) >= 1
        # the log-in endpoint is bounded in rate for any address, whatever the outcome
        flooder = {"X-Forwarded-For": "203.0.113.5"}
        statuses = [
            (await raw_post(url, json_body={"nonsense": 1}, headers=flooder))[0] for _ in range(13)
        ]
        assert statuses == [400] * 12 + [429]
        refused = await audit_kinds(central, "login_failed")
    assert sorted(e["actor"] for e in refused) == [f"guess-{n}" for n in range(6)]


# ---------------------------------------------------------------- enrolment


async def test_enrolment_requests_are_checked_on_arrival_and_capped(
    broker: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = {"max_pending": 3, "new_pending_per_minute": 100}
    access = {"enrolment_per_minute": 4}
    async with door_central(broker, tmp_path, access=access, pki_settings=settings) as central:
        assert central.provisioner is not None
        queue, refusals = central.provisioner.queue, central.provisioner.refusals
        claim = broker.pki.claim()
        ctx = client_tls_context(broker.pki.server_ca_cert, claim.cert, claim.key)
        key = pki.new_key()
        async with broker.client_with(ctx, "claim", port=broker.claim_port) as rogue:

            async def send(code: str, csr: str) -> None:
                request = EnrolRequestMessage(
                    payload=EnrolRequestPayload(csr=csr, profile="nightcam", agent_version="x")
                )
                await rogue.publish(f"vaka/v1/enrol/{code}/csr", encode(request), qos=1)

            # a flood of wrong codes: a valid CSR under codes its key does not hash to
            csr = signing_request(key, unit_code(key))
            for n in range(40):
                await send(f"{n:0>10}".translate(str.maketrans("0123456789", "ABCDEFGHJK")), csr)
            await wait_for(lambda: refusals.by_category["EnrolmentRefused"] == 40, 20)
            assert await asyncio.to_thread(queue.pending) == []
            # valid requests, each under its own key's code: three wait, the rest are refused
            keys = [pki.new_key() for _ in range(5)]
            for k in keys:
                await send(unit_code(k), signing_request(k, unit_code(k)))
            await wait_for(lambda: refusals.by_category["EnrolmentRefused"] == 42, 20)
            pending = [e.code for e in await asyncio.to_thread(queue.pending)]
            assert len(pending) == 3 and set(pending) <= {unit_code(k) for k in keys}
            # a waiting unit repeating its request refreshes its one entry
            first = next(k for k in keys if unit_code(k) in pending)
            before = {e.code: e.last_seen for e in await asyncio.to_thread(queue.pending)}

            async def refreshed() -> bool:
                now = {e.code: e.last_seen for e in await asyncio.to_thread(queue.pending)}
                return now[unit_code(first)] > before[unit_code(first)]

            await send(unit_code(first), signing_request(first, unit_code(first)))
            await wait_for(refreshed, 10)
            assert len(await asyncio.to_thread(queue.pending)) == 3
    assert caplog.text.count("does not match its code") == 40
    assert caplog.text.count("units are already waiting to be enrolled (the limit)") == 2


async def test_enrolment_approvals_are_bounded_per_address(broker: Broker, tmp_path: Path) -> None:
    async with door_central(broker, tmp_path, access={"enrolment_per_minute": 4}) as central:
        token = await staff_token(central.url, "t-tech", PASSWORD)
        headers = {"Authorization": f"Bearer {token}"}
        body = {"profile": "nightcam", "citizen": "c-1", "group": "g-night"}
        answers = [
            await raw_post(
                central.url + "/api/enrolments/AAAAA-AAAAA/approve", json_body=body, headers=headers
            )
            for _ in range(5)
        ]
    assert [a[0] for a in answers] == [404] * 4 + [429]
    assert "too many enrolment requests from 127.0.0.1" in error(answers[4][2])
    assert int(answers[4][1]["Retry-After"]) >= 1


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
