"""The staff and technician doors attacked from outside: log-in (type, origin, one answer for
every refusal, per-address throttling) and enrolment requests, on the real stack: central's real
aiohttp server, real Chromium for a cross-site form, real Mosquitto."""

import asyncio
import json
import time
from pathlib import Path

import pytest
from aiohttp import web
from playwright.async_api import Page

from tests.conftest import TOTP_SECRET, staff_token
from tests.doors import ATTACKER, audit_kinds, door_central, error, login, raw_post
from tests.test_staff_access import PASSWORD
from vaka import otp
from vaka.agent.enrol import signing_request, unit_code
from vaka.central.http.staff import LOGIN_REFUSED
from vaka.devstack.broker import Broker
from vaka.devstack.polling import wait_for
from vaka.protocol.enrolment import EnrolRequestMessage, EnrolRequestPayload
from vaka.protocol.messages import encode
from vaka.provisioning import pki
from vaka.provisioning.tls import client_tls_context

pytest_plugins = ["tests.browser"]  # the `page` fixture

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
