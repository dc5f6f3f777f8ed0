"""Staff access over the API: second factor, lock-out, networks, idle time-out, password age,
CSRF on console sessions, recovery codes and the roles of the fleet and technician APIs."""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pyotp
import pytest
from pydantic import ValidationError
from sqlalchemy import select

from tests.conftest import TOTP_SECRET, staff_token
from vaka import otp
from vaka.central.directory.directory import Directory
from vaka.central.directory.spec import DirectorySpec
from vaka.central.http.staff import LOGIN_REFUSED
from vaka.central.service import CentralService
from vaka.central.settings.config import StaffAccessSection
from vaka.central.settings.passwords import PasswordHashing
from vaka.central.storage.engine import open_engine
from vaka.central.storage.tables import staff
from vaka.devstack.broker import Broker
from vaka.devstack.central import central_config

PASSWORD = "correct horse battery"


def access_spec() -> DirectorySpec:
    def member(staff_id: str, role: str, **extra: Any) -> dict[str, Any]:
        return {"id": staff_id, "name": staff_id, "role": role, "password": PASSWORD, **extra}

    return DirectorySpec.model_validate(
        {
            "group": [{"id": "g-night", "name": "Night patrol"}],
            "staff": [
                member("n-nurse", "night_staff", groups=["g-night"], totp_secret=TOTP_SECRET),
                member("s-support", "support", totp_secret=TOTP_SECRET),
                member("t-tech", "technician", totp_secret=TOTP_SECRET),
                member("a-admin", "administrator", totp_secret=TOTP_SECRET),
                member("n-new", "night_staff"),
                member(
                    "n-old",
                    "night_staff",
                    totp_secret=TOTP_SECRET,
                    password_changed_at="2020-01-01T00:00:00Z",
                ),
            ],
        }
    )


@contextlib.asynccontextmanager
async def central_with(
    broker: Broker, tmp_path: Path, **access: Any
) -> AsyncIterator[CentralService]:
    """Central with ``[staff_access]`` settings and the directory above."""
    config = central_config(broker, tmp_path).model_copy(
        update={"staff_access": StaffAccessSection.model_validate(access)}
    )
    async with CentralService(config) as central:
        await asyncio.to_thread(central.directory.load, access_spec())
        yield central


async def post(
    central: CentralService, path: str, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, dict]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(central.url + path, json=body, headers=headers or {}) as resp,
    ):
        return resp.status, await resp.json(content_type=None)


async def get(central: CentralService, path: str, token: str) -> tuple[int, dict]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(central.url + path, headers={"Authorization": f"Bearer {token}"}) as resp,
    ):
        return resp.status, await resp.json(content_type=None)


def login_body(staff_id: str, password: str = PASSWORD, **extra: str) -> dict[str, str]:
    return {"staff_id": staff_id, "password": password, **extra}


async def kinds(central: CentralService, actor: str) -> list[tuple[str, Any]]:
    entries = await asyncio.to_thread(central.audit.entries)
    return [(e.kind, e.detail.get("reason")) for e in entries if e.actor == actor]


async def test_second_factor_is_required_checked_and_not_reusable(
    broker: Broker, tmp_path: Path
) -> None:
    async with central_with(broker, tmp_path) as central:
        # One answer for every refusal: the true reason is only in the audit trail.
        status, body = await post(central, "/api/login", login_body("n-nurse"))
        assert (status, body["error"]) == (401, LOGIN_REFUSED)
        status, body = await post(central, "/api/login", login_body("n-nurse", totp="000000"))
        assert (status, body["error"]) == (401, LOGIN_REFUSED)
        code = otp.code_now(TOTP_SECRET)
        status, body = await post(central, "/api/login", login_body("n-nurse", totp=code))
        assert status == 200 and body["token"] and body["staff"]["role"] == "night_staff"
        assert body["must_change_password"] is False and body["must_enrol_totp"] is False
        status, body = await post(central, "/api/login", login_body("n-nurse", totp=code))
        assert (status, body["error"]) == (401, LOGIN_REFUSED)
        status, body = await post(central, "/api/login", login_body("n-nurse", "wrong password!"))
        assert (status, body["error"]) == (401, LOGIN_REFUSED)
        reasons = await kinds(central, "n-nurse")
    assert ("login_failed", "missing one-time code") in reasons
    assert ("login_failed", "wrong one-time code") in reasons
    assert ("login_failed", "one-time code already used") in reasons
    assert ("login", None) in reasons


async def test_lock_out_after_failures_is_audited(broker: Broker, tmp_path: Path) -> None:
    async with central_with(broker, tmp_path, lockout_failures=3) as central:
        answers = [
            await post(central, "/api/login", login_body("n-nurse", "not the password"))
            for _ in range(3)
        ]
        # The lock-out looks like any other refusal from outside.
        assert answers == [(401, {"error": LOGIN_REFUSED})] * 3
        # Even the right password and code are refused while locked.
        status, body = await post(
            central, "/api/login", login_body("n-nurse", totp=otp.code_now(TOTP_SECRET))
        )
        assert (status, body["error"]) == (401, LOGIN_REFUSED)
        reasons = await kinds(central, "n-nurse")
        locked = await asyncio.to_thread(central.audit.entries, kind="login_locked")
    assert reasons.count(("login_failed", "wrong staff id or password")) == 3
    assert ("login_failed", "account locked") in reasons
    assert len(locked) == 1 and locked[0].detail["failures"] == 3
    assert "login" not in [k for k, _ in reasons]


async def test_administrators_lift_lock_outs_and_reset_a_lost_phone(
    broker: Broker, tmp_path: Path
) -> None:
    async with central_with(broker, tmp_path, lockout_failures=2) as central:
        for _ in range(2):
            await post(central, "/api/login", login_body("n-nurse", "not the password"))
        nurse_code = login_body("n-nurse", totp=otp.code_now(TOTP_SECRET))
        status, body = await post(central, "/api/login", nurse_code)
        assert (status, body["error"]) == (401, LOGIN_REFUSED)
        assert ("login_failed", "account locked") in await kinds(central, "n-nurse")
        admin = {"Authorization": f"Bearer {await staff_token(central.url, 'a-admin', PASSWORD)}"}
        status, body = await post(central, "/api/staff/n-nurse/unlock", {}, admin)
        assert status == 200, body
        token = await staff_token(central.url, "n-nurse", PASSWORD)
        nurse = {"Authorization": f"Bearer {token}"}
        status, body = await post(central, "/api/staff/s-support/unlock", {}, nurse)
        assert (status, body["error"]) == (
            403,
            "the role night_staff may not manage staff accounts",
        )
        status, body = await post(central, "/api/staff/nobody/reset-totp", {}, admin)
        assert (status, body["error"]) == (404, "no staff member nobody")
        status, body = await post(central, "/api/staff/n-nurse/reset-totp", {}, admin)
        assert status == 200, body
        status, body = await post(central, "/api/login", login_body("n-nurse"))
        assert status == 200 and body["must_enrol_totp"] is True
        actions = [k for k, _ in await kinds(central, "a-admin")]
    assert "account_unlocked" in actions and "totp_reset" in actions


async def test_addresses_outside_the_roles_networks_are_refused(
    broker: Broker, tmp_path: Path
) -> None:
    async with central_with(
        broker,
        tmp_path,
        allow={"night_staff": ["192.0.2.0/24"]},
        trusted_proxies=["127.0.0.1/32"],
    ) as central:
        code = otp.code_now(TOTP_SECRET)
        status, body = await post(central, "/api/login", login_body("n-nurse", totp=code))
        assert (status, body["error"]) == (401, LOGIN_REFUSED)
        refused = await asyncio.to_thread(central.audit.entries, kind="login_failed")
        assert [(e.actor, e.detail["reason"], e.detail["role"]) for e in refused] == [
            ("n-nurse", "address not allowed for the role", "night_staff")
        ]
        # Through the trusted proxy, the forwarded address counts.
        via = {"X-Forwarded-For": "198.51.100.9, 192.0.2.7"}
        status, body = await post(central, "/api/login", login_body("n-nurse", totp=code), via)
        assert status == 200, body
        token = body["token"]
        outside = {"X-Forwarded-For": "198.51.100.9", "Authorization": f"Bearer {token}"}
        status, body = await post(central, "/api/logout", {}, outside)
        assert status == 403 and "198.51.100.9 is not in the networks" in body["error"]
        # Support is not named in `allow`: loopback only, so it still works here.
        assert await staff_token(central.url, "s-support", PASSWORD)


async def test_idle_session_is_ended_with_a_reason(broker: Broker, tmp_path: Path) -> None:
    async with central_with(broker, tmp_path, idle_timeout_s=1) as central:
        token = await staff_token(central.url, "n-nurse", PASSWORD)
        status, me = await get(central, "/api/me", token)
        assert status == 200 and me["idle_timeout_s"] == 1
        assert me["staff"]["id"] == "n-nurse" and me["groups"] == ["g-night"]
        await asyncio.sleep(1.5)
        for _ in range(2):  # the reason stays for later requests too
            status, body = await get(central, "/api/me", token)
            assert (status, body["error"]) == (401, "logged out after 1 second without activity")
        assert [k for k, _ in await kinds(central, "n-nurse")].count("logout_idle") == 1


async def test_expired_password_allows_only_the_change(broker: Broker, tmp_path: Path) -> None:
    async with central_with(broker, tmp_path) as central:
        # The previous step's code: the two log-ins through the client below take this step's
        # and the next (a third code of this process's within one step would wait for the next).
        previous = otp.code_now(TOTP_SECRET, time.time() - otp.STEP_S)
        status, body = await post(central, "/api/login", login_body("n-old", totp=previous))
        assert status == 200 and body["must_change_password"] is True
        token = body["token"]
        auth = {"Authorization": f"Bearer {token}"}
        status, refused = await post(central, "/api/logout", {}, auth)
        assert status == 200  # logging out is always possible...
        token = await staff_token(central.url, "n-old", PASSWORD)
        auth = {"Authorization": f"Bearer {token}"}
        status, refused = await get(central, "/api/units", token)
        assert (status, refused["error"]) == (403, "your password is too old: change it first")
        cases = [
            ({"old_password": PASSWORD, "new_password": "short"}, 400, "at least 12 characters"),
            ({"old_password": PASSWORD, "new_password": PASSWORD}, 400, "must differ"),
            ({"old_password": "not it at all", "new_password": "a brand new one"}, 403, "wrong"),
        ]
        for change, code, reason in cases:
            status, body = await post(central, "/api/password", change, auth)
            assert status == code and reason in body["error"], body
        new = {"old_password": PASSWORD, "new_password": "a brand new password"}
        status, body = await post(central, "/api/password", new, auth)
        assert status == 200 and body["must_change_password"] is False
        status, me = await get(central, "/api/me", token)
        assert status == 200 and me["must_change_password"] is False
        assert ("password_changed", None) in await kinds(central, "n-old")
        assert await staff_token(central.url, "n-old", "a brand new password")


async def test_enrolment_and_recovery_codes_work_once(broker: Broker, tmp_path: Path) -> None:
    async with central_with(broker, tmp_path) as central:
        status, body = await post(central, "/api/login", login_body("n-new"))
        assert status == 200 and body["must_enrol_totp"] is True
        auth = {"Authorization": f"Bearer {body['token']}"}
        status, refused = await get(central, "/api/units", body["token"])
        assert (status, refused["error"]) == (403, "set up your one-time code first")
        status, enrolment = await post(central, "/api/totp/enrol", {}, auth)
        assert status == 200 and enrolment["otpauth_uri"].startswith("otpauth://totp/")
        assert enrolment["qr_svg"].startswith("<svg")
        secret = enrolment["secret"]
        status, body = await post(central, "/api/totp/confirm", {"code": "123456"}, auth)
        assert status == 400 and "wrong one-time code" in body["error"]
        code = pyotp.TOTP(secret).now()
        status, body = await post(central, "/api/totp/confirm", {"code": code}, auth)
        assert status == 200 and len(body["recovery_codes"]) == 10
        recovery = body["recovery_codes"][3]
        status, body = await post(
            central, "/api/login", login_body("n-new", recovery_code=recovery)
        )
        assert status == 200 and body["must_enrol_totp"] is False
        status, body = await post(
            central, "/api/login", login_body("n-new", recovery_code=recovery)
        )
        assert (status, body["error"]) == (401, LOGIN_REFUSED)
        assert ("login_failed", "wrong or used recovery code") in await kinds(central, "n-new")
        assert await staff_token(central.url, "n-new", PASSWORD, secret)
        actions = [k for k, _ in await kinds(central, "n-new")]
    assert "totp_enrolled" in actions and actions.count("recovery_code_used") == 1


async def test_console_cookie_sessions_need_the_csrf_token(broker: Broker, tmp_path: Path) -> None:
    async with central_with(broker, tmp_path) as central:
        jar = aiohttp.CookieJar(unsafe=True)
        # as the console's page in a browser: its own Origin on every POST
        console = {"Origin": central.url}
        async with aiohttp.ClientSession(
            base_url=central.url, cookie_jar=jar, headers=console
        ) as http:
            body = login_body("n-nurse", totp=otp.code_now(TOTP_SECRET), session="cookie")
            async with http.post("/api/login", json=body) as resp:
                answer = await resp.json()
                assert resp.status == 200 and "token" not in answer
                session_cookie = resp.cookies["vaka_session"]
                assert session_cookie["httponly"] and session_cookie["samesite"] == "Strict"
                assert not session_cookie["secure"]  # plain http on loopback
                assert resp.cookies["vaka_csrf"]["samesite"] == "Strict"
            csrf = {c.key: c.value for c in jar}["vaka_csrf"]
            async with http.get("/api/me") as resp:
                assert resp.status == 200  # reading needs no CSRF token
            async with http.post("/api/logout", json={}) as resp:
                assert resp.status == 403
                assert "missing CSRF token" in (await resp.json())["error"]
            async with http.post("/api/logout", json={}, headers={"X-CSRF-Token": "forged"}) as r:
                assert r.status == 403 and "wrong CSRF token" in (await r.json())["error"]
            async with http.post("/api/logout", json={}, headers={"X-CSRF-Token": csrf}) as resp:
                assert resp.status == 200
        # A bearer client needs no CSRF token.
        token = await staff_token(central.url, "n-nurse", PASSWORD)
        status, _ = await post(central, "/api/logout", {}, {"Authorization": f"Bearer {token}"})
        assert status == 200


@pytest.mark.parametrize(
    ("staff_id", "method", "path", "status", "reason"),
    [
        ("n-nurse", "GET", "/api/units", 403, "the role night_staff may not see the fleet"),
        ("n-nurse", "GET", "/api/stats", 403, "the role night_staff may not see the fleet"),
        ("s-support", "GET", "/api/units", 200, None),
        ("t-tech", "GET", "/api/units", 200, None),
        ("s-support", "GET", "/api/enrolments", 403, "the role support may not see enrolments"),
        ("n-nurse", "POST", "/api/units/u-x/revoke", 403, "may not revoke units"),
        ("t-tech", "GET", "/api/decommission-candidates", 200, None),
        (None, "GET", "/api/units", 401, "log in first (no session token)"),
        (None, "GET", "/api/enrolments", 401, "log in first (no session token)"),
    ],
)
async def test_roles_of_the_fleet_and_technician_apis(
    broker: Broker,
    tmp_path: Path,
    staff_id: str | None,
    method: str,
    path: str,
    status: int,
    reason: str | None,
) -> None:
    async with central_with(broker, tmp_path) as central:
        headers = {}
        if staff_id is not None:
            token = await staff_token(central.url, staff_id, PASSWORD)
            headers["Authorization"] = f"Bearer {token}"
        body = {"reason": "a test"} if method == "POST" else None
        async with (
            aiohttp.ClientSession() as http,
            http.request(method, central.url + path, json=body, headers=headers) as resp,
        ):
            answer = await resp.json(content_type=None)
        assert resp.status == status, answer
        if reason is not None:
            assert reason in answer["error"]


async def test_security_headers(broker: Broker, tmp_path: Path) -> None:
    async with central_with(broker, tmp_path) as central, aiohttp.ClientSession() as http:
        for path in ("/", "/api/me", "/console/app.js"):
            async with http.get(central.url + path) as resp:
                assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
                assert resp.headers["X-Frame-Options"] == "DENY"
                assert resp.headers["Referrer-Policy"] == "no-referrer"
                if path.startswith("/api/"):
                    assert resp.headers["Cache-Control"] == "no-store"
        async with http.get(central.url + "/") as resp:
            page = await resp.text()
        assert "<script" in page and "<script>" not in page  # no inline script


def test_the_password_cost_is_central_s_setting_and_a_stored_hash_keeps_its_own(
    tmp_path: Path,
) -> None:
    """``[passwords]``: argon2's own cost unless set; a hash made at one cost verifies under
    another; a reload of the same password keeps its hash; a new password gets the new cost."""
    assert PasswordHashing().hasher().hash(PASSWORD).startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    with pytest.raises(ValidationError, match="8 KiB per lane"):
        PasswordHashing(memory_kib=16, parallelism=4)
    engine = open_engine(f"sqlite:///{tmp_path / 'central.db'}")
    spec = DirectorySpec.model_validate(
        {"staff": [{"id": "n-asa", "name": "Åsa", "role": "night_staff", "password": PASSWORD}]}
    )

    def stored() -> str:
        with engine.connect() as conn:
            return str(conn.execute(select(staff.c.password_hash)).scalar_one())

    Directory(engine).load(spec)
    strong = stored()
    assert strong.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    cheap = Directory(engine, passwords=PasswordHashing(time_cost=1, memory_kib=64, parallelism=1))
    assert cheap.check_password("n-asa", PASSWORD) is not None
    assert cheap.check_password("n-asa", "not the password") is None
    cheap.load(spec)
    assert stored() == strong
    cheap.set_password("n-asa", "a brand new password")
    assert stored().startswith("$argon2id$v=19$m=64,t=1,p=1$")
    assert Directory(engine).check_password("n-asa", "a brand new password") is not None
    engine.dispose()
