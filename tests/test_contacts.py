"""The citizen's circle on the real stack: staff add, invite, revoke and remove a citizen's
contacts over the API; a contact redeems an invitation once, sets a password, and reaches only
the contact routes; consent and the staff member's groups gate every change; and a contact's
call is refused with a coded reason outside its rules (before any media: at ``prepare``)."""

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.circle import ContactApi, StaffApi, picture
from tests.tvunit import CITIZEN, DAY, TV, tv_directory
from vaka import otp
from vaka.agent.tv.autoanswer import auto_answer_countdown
from vaka.central.circle.contacts import ContactError, ContactRules, check_picture, parse_clock
from vaka.central.circle.invitations import Invitations
from vaka.central.directory.spec import DirectorySpec
from vaka.central.service import CentralService
from vaka.central.settings.privacy import PrivacySettings
from vaka.devstack.central import running_central
from vaka.devstack.stack import LocalStack
from vaka.provisioning.bundles import AutoAnswerRule
from vaka.provisioning.tickets import TicketClaims

pytestmark = pytest.mark.timeout(60)

OTHER_CITIZEN = "c-5005"
CAM = "u-cam"


def circle_directory() -> DirectorySpec:
    """The TV directory, the TV's profile known, a night camera in the same home, and a citizen
    whom no group of the day nurse serves."""
    spec = tv_directory().model_dump(mode="json", exclude_none=True)
    spec["citizen"][0]["units"] = [TV, CAM]
    spec["citizen"].append({"id": OTHER_CITIZEN, "units": ["u-tv-2"]})
    return DirectorySpec.model_validate(spec)


async def _load(central: CentralService) -> None:
    await asyncio.to_thread(central.directory.load, circle_directory())
    await asyncio.to_thread(central.directory.assign_unit, TV, CITIZEN, "g-day", "tv")
    await asyncio.to_thread(central.directory.assign_unit, CAM, CITIZEN, "g-day", "nightcam")


async def _kinds(central: CentralService) -> list[str]:
    return [e.kind for e in await asyncio.to_thread(central.audit.entries)]


def test_rules_pictures_and_clock_times() -> None:
    assert parse_clock("08:30") == 510 and parse_clock("24:00") == 1440
    for bad in ("8:30", "25:00", "24:01", "noon"):
        with pytest.raises(ContactError, match="is not a time of day"):
            parse_clock(bad)
    day = ContactRules(call_from_min=8 * 60, call_until_min=20 * 60)
    assert day.allows_minute(8 * 60) and not day.allows_minute(20 * 60)
    assert day.hours() == "08:00-20:00"
    evening = ContactRules(call_from_min=18 * 60, call_until_min=60)  # past midnight
    assert evening.allows_minute(23 * 60) and evening.allows_minute(30)
    assert not evening.allows_minute(12 * 60)
    assert not ContactRules(call_from_min=600, call_until_min=600).allows_minute(600)
    assert check_picture(picture()) == picture() and check_picture(None) is None
    with pytest.raises(ContactError, match="must be a PNG or JPEG image"):
        check_picture("data:image/gif;base64,R0lGOD")
    with pytest.raises(ContactError, match="not a readable PNG or JPEG image"):
        check_picture("data:image/png;base64,aGVsbG8=")


def test_the_tv_answers_a_contact_by_itself_only_when_the_ticket_says_so() -> None:
    now = int(time.time())
    base = {
        "aud": TV,
        "sub": "k-ANNA234567",
        "name": "Anna",
        "role": "contact",
        "purpose": "contact_call",
        "cid": "c-1",
        "iat": now,
        "nbf": now,
        "exp": now + 60,
        "win": (now, now + 3600),
        "maxd": 3600,
        "fp": "sha-256 AB",
    }
    # Even a rule naming contact calls does not answer one: only the signed countdown does.
    rules = [AutoAnswerRule(purpose="contact_call", caller_groups=["g-day"], countdown_s=1)]
    assert auto_answer_countdown(rules, TicketClaims.model_validate(base)) is None
    chosen = TicketClaims.model_validate({**base, "aa": 5})
    assert auto_answer_countdown([], chosen) == 5
    assert "aa" not in TicketClaims.model_validate(base).model_dump(exclude_none=True)


async def test_an_invitation_is_redeemed_once_and_a_contact_reaches_only_its_own_routes(
    central: CentralService,
) -> None:
    await _load(central)
    staff = await StaffApi.log_in(central.url, DAY)
    added = await staff.add_contact(CITIZEN)
    contact = added["id"]
    assert re.fullmatch(r"k-[A-Z2-9]{10}", contact)
    assert added["hours"] == {"from": "00:00", "until": "24:00"}
    assert added["auto_answer"] is False and added["may_call"] and added["may_be_called"]
    status, listed = await staff.request("GET", f"/api/citizens/{CITIZEN}/contacts")
    assert status == 200 and [c["id"] for c in listed["contacts"]] == [contact]

    invitation = await staff.invite(contact)
    code = invitation["code"]
    assert re.fullmatch(r"[A-Z2-9]{5}-[A-Z2-9]{5}", code)
    assert invitation["url"] == f"{central.url}/contact#code={code}"
    assert invitation["qr_svg"].startswith("<svg")

    async with ContactApi(central.url) as phone:
        status, body = await phone.request("POST", "/api/contact/redeem", {"code": "AAAAA-AAAAA"})
        assert status == 403 and body["code"] == "invitation_unknown"
        # Typed in small letters with a space: the same code.
        typed = code.lower().replace("-", " ")
        status, body = await phone.request("POST", "/api/contact/redeem", {"code": typed})
        assert status == 200 and body == {
            "stage": "enrol",
            "contact": contact,
            "display_name": "Anna Andersson",
        }
        status, body = await phone.request("GET", "/api/contact/me")
        assert status == 403 and body["code"] == "enrol_first"
        status, body = await phone.request("POST", "/api/contact/password", {"password": "short"})
        assert status == 400 and body["code"] == "password_short"
        password = "a long family password"
        status, body = await phone.request("POST", "/api/contact/password", {"password": password})
        assert status == 200 and body["login"] == contact
        status, me = await phone.request("GET", "/api/contact/me")
        # Whom to call and when, and nothing else of the citizen.
        assert status == 200 and me == {
            "contact": contact,
            "display_name": "Anna Andersson",
            "citizen_name": "Grandma Greta",
            "unit": TV,
            "may_call": True,
            "hours": "00:00-24:00",
            "log_in": ["password"],
        }
        # The contact's cookie opens no staff route.
        status, body = await phone.request("GET", "/api/visits")
        assert status == 401 and body["error"] == "log in first (no session token)"

    async with ContactApi(central.url) as other:
        status, body = await other.request("POST", "/api/contact/redeem", {"code": code})
        assert status == 403 and body == {
            "error": "this invitation was already used",
            "code": "invitation_used",
        }
        wrong = {"contact": contact, "password": "not the password"}
        status, body = await other.request("POST", "/api/contact/login", wrong)
        assert status == 401 and body["code"] == "login_refused"
        right = {"contact": contact, "password": password}
        status, body = await other.request("POST", "/api/contact/login", right)
        assert status == 200
        status, body = await other.request("GET", "/api/contact/me")
        assert status == 200 and body["contact"] == contact

    # A staff token opens no contact route.
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{central.url}/api/contact/me", headers=staff.headers) as resp,
    ):
        assert resp.status == 401 and (await resp.json())["code"] == "not_logged_in"

    kinds = await _kinds(central)
    for kind in (
        "contact_added",
        "contact_invited",
        "invitation_refused",
        "invitation_redeemed",
        "contact_credential_set",
        "contact_login_failed",
        "contact_login",
    ):
        assert kind in kinds
    trail = json.dumps([e.detail for e in await asyncio.to_thread(central.audit.entries)])
    assert code not in trail and code.replace("-", "") not in trail


async def test_a_password_with_a_one_time_code_app(central: CentralService) -> None:
    await _load(central)
    staff = await StaffApi.log_in(central.url, DAY)
    async with ContactApi(central.url) as phone:
        contact = await _contact_logged_in(central, staff, phone)
        status, made = await phone.request("POST", "/api/contact/totp/start", {})
        assert status == 200 and made["qr_svg"].startswith("<svg")
        assert made["uri"].startswith("otpauth://totp/Vaka:")
        status, body = await phone.request("POST", "/api/contact/totp/confirm", {"code": "000000"})
        assert status == 400 and body["code"] == "totp_wrong"
        first = otp.code_now(made["secret"], time.time() - 30)
        status, body = await phone.request("POST", "/api/contact/totp/confirm", {"code": first})
        assert status == 200
        assert (await phone.request("GET", "/api/contact/me"))[1]["log_in"] == ["password", "totp"]
    async with ContactApi(central.url) as other:
        login = {"contact": contact, "password": "z" * 12}
        status, body = await other.request("POST", "/api/contact/login", login)
        assert status == 401 and body["code"] == "totp_needed"
        code = otp.code_now(made["secret"])
        status, body = await other.request("POST", "/api/contact/login", {**login, "totp": code})
        assert status == 200
        # The same code a second time: refused (each code counts once).
        status, body = await other.request("POST", "/api/contact/login", {**login, "totp": code})
        assert status == 401 and body["error"] == "wrong or already used one-time code"
    # A passkey-only contact has no password to pair a code with.
    async with ContactApi(central.url) as fresh:
        second = str((await staff.add_contact(CITIZEN))["id"])
        code = (await staff.invite(second))["code"]
        await fresh.request("POST", "/api/contact/redeem", {"code": code})
        status, body = await fresh.request("POST", "/api/contact/totp/start", {})
        assert status == 403 and body["code"] == "enrol_first"


async def test_expired_replaced_revoked_and_removed(central: CentralService) -> None:
    await _load(central)
    staff = await StaffApi.log_in(central.url, DAY)
    contact = (await staff.add_contact(CITIZEN))["id"]
    first = (await staff.invite(contact))["code"]
    second = (await staff.invite(contact))["code"]
    old = await asyncio.to_thread(
        Invitations(central.engine).create, contact, DAY, 60, time.time() - 120
    )
    async with ContactApi(central.url) as phone:
        status, body = await phone.request("POST", "/api/contact/redeem", {"code": old.code})
        assert status == 403 and body["code"] == "invitation_expired"
        # The expired one replaced the second: a new invitation withdraws the unused ones.
        for code in (first, second):
            status, body = await phone.request("POST", "/api/contact/redeem", {"code": code})
            assert status == 403 and body["code"] == "invitation_withdrawn"
        fresh = (await staff.invite(contact))["code"]
        assert (await phone.request("POST", "/api/contact/redeem", {"code": fresh}))[0] == 200
        assert (await phone.request("POST", "/api/contact/password", {"password": "x" * 12}))[
            0
        ] == 200

        # A lost phone: staff revoke; the session and the password end at once.
        status, body = await staff.request("POST", f"/api/contacts/{contact}/revoke")
        assert status == 200 and body["sessions_ended"] == 1
        assert body["credentials_revoked"] == 1 and body["call_ended"] is None
        status, body = await phone.request("GET", "/api/contact/me")
        assert status == 401 and body["code"] == "session_ended"
        login = {"contact": contact, "password": "x" * 12}
        assert (await phone.request("POST", "/api/contact/login", login))[0] == 401

        # Invited again, then removed: the contact is told so, and nothing works any more.
        again = (await staff.invite(contact))["code"]
        assert (await phone.request("POST", "/api/contact/redeem", {"code": again}))[0] == 200
        assert (await phone.request("POST", "/api/contact/password", {"password": "y" * 12}))[
            0
        ] == 200
        status, body = await staff.request("DELETE", f"/api/contacts/{contact}")
        assert status == 200 and body["removed"] == contact
        status, body = await phone.request("GET", "/api/contact/me")
        assert status == 403 and body["code"] == "contact_removed"
    status, body = await staff.request("DELETE", f"/api/contacts/{contact}")
    assert status == 409 and body["error"] == f"contact {contact} was already removed"
    status, body = await staff.request("POST", f"/api/contacts/{contact}/invitations")
    assert status == 409 and body["error"] == f"contact {contact} was removed"
    status, listed = await staff.request("GET", f"/api/citizens/{CITIZEN}/contacts")
    assert listed == {"contacts": []}
    for kind in ("contact_revoked", "contact_removed"):
        assert kind in await _kinds(central)


async def test_who_may_look_after_a_circle(central: CentralService) -> None:
    await _load(central)
    staff = await StaffApi.log_in(central.url, DAY)
    status, body = await staff.request("GET", f"/api/citizens/{OTHER_CITIZEN}/contacts")
    assert status == 403
    assert body["error"] == f"staff {DAY} is not in a group that serves citizen {OTHER_CITIZEN}"
    path = f"/api/citizens/{CITIZEN}/contacts"
    status, body = await staff.request("POST", path, {"display_name": "X"})
    assert status == 400 and body["error"].startswith("invalid contact: citizen_name")
    bad = {"display_name": "X", "citizen_name": "Y", "relation": "friend", "picture": "hello"}
    status, body = await staff.request("POST", path, bad)
    assert (
        status == 400 and body["error"] == "the picture must be a PNG or JPEG image (a data: URL)"
    )
    hours = {"display_name": "X", "citizen_name": "Y", "relation": "friend"}
    hours["hours"] = {"from": "7", "until": "20:00"}  # type: ignore[assignment]
    status, body = await staff.request("POST", path, hours)
    assert status == 400 and body["error"] == "'7' is not a time of day (HH:MM, 24 h)"
    status, body = await staff.request("DELETE", "/api/contacts/k-NOSUCHONE")
    assert status == 404 and body["error"] == "unknown contact k-NOSUCHONE"


@pytest.fixture
async def strict_central(stack: LocalStack) -> AsyncIterator[CentralService]:
    """Central as a care provider runs it: consent required."""
    config = stack.central_config(identity="central-1")
    config = config.model_copy(update={"privacy": PrivacySettings(require_consent=True)})
    async with running_central(config) as service:
        yield service


async def test_a_contact_needs_the_homes_consent(strict_central: CentralService) -> None:
    central = strict_central
    await _load(central)
    staff = await StaffApi.log_in(central.url, DAY)
    body = {"display_name": "Anna", "citizen_name": "Greta", "relation": "granddaughter"}
    path = f"/api/citizens/{CITIZEN}/contacts"
    status, answer = await staff.request("POST", path, body)
    assert status == 409 and answer["error"] == (
        f"no valid consent for calls from the citizen's contacts from citizen {CITIZEN}"
    )
    await asyncio.to_thread(
        central.directory.consent.give, CITIZEN, "citizen", "contact_call", time.time() - 1
    )
    status, answer = await staff.request("POST", path, body)
    assert status == 201, answer


# ---------------------------------------------------------------- a contact's call refused


async def _prepare(phone: ContactApi, unit: str, purpose: str = "contact_call") -> Any:
    """Open the contact's call socket and ``prepare`` a call: central's first answer."""
    ws_url = phone.url.replace("http", "ws", 1) + "/api/contact/call"
    async with phone.http.ws_connect(ws_url, headers={"Origin": phone.url}) as ws:
        await ws.send_json({"type": "prepare", "unit": unit, "purpose": purpose})
        return await ws.receive_json(timeout=10)


async def _contact_logged_in(
    central: CentralService, staff: StaffApi, phone: ContactApi, **rules: Any
) -> str:
    contact = str((await staff.add_contact(CITIZEN, **rules))["id"])
    code = (await staff.invite(contact))["code"]
    assert (await phone.request("POST", "/api/contact/redeem", {"code": code}))[0] == 200
    assert (await phone.request("POST", "/api/contact/password", {"password": "z" * 12}))[0] == 200
    return contact


async def test_a_contacts_call_outside_its_rules_is_refused_with_a_reason(
    central: CentralService,
) -> None:
    await _load(central)
    staff = await StaffApi.log_in(central.url, DAY)
    async with ContactApi(central.url) as phone:
        await _contact_logged_in(central, staff, phone)
        said = await _prepare(phone, TV)
        assert said["type"] == "prepared"  # allowed: any hour, the citizen's TV
        said = await _prepare(phone, CAM)
        assert said["type"] == "refused" and said["reason_code"] == "contact_not_tv"
        assert said["reason"] == "a contact can call only the TV"
        said = await _prepare(phone, "u-tv-2")
        assert said["reason_code"] == "contact_other_unit"
        assert said["reason"] == "you may call only Grandma Greta's TV"
        said = await _prepare(phone, TV, "video_visit")
        assert said["reason"] == "a contact may not make video_visit calls"
    async with ContactApi(central.url) as phone:
        never = {"from": "03:00", "until": "03:00"}  # an empty window: never
        await _contact_logged_in(central, staff, phone, hours=never)
        said = await _prepare(phone, TV)
        assert said["reason_code"] == "contact_outside_hours"
        assert said["reason"] == "outside the hours agreed for calls (03:00-03:00)"
        assert said["params"] == {"hours": "03:00-03:00"}
    async with ContactApi(central.url) as phone:
        await _contact_logged_in(central, staff, phone, may_call=False)
        said = await _prepare(phone, TV)
        assert said["reason_code"] == "contact_may_not_call"
    # Staff cannot borrow the contacts' purpose on their own call socket.
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(
            central.url.replace("http", "ws", 1) + "/api/calls", headers=staff.headers
        ) as ws,
    ):
        await ws.send_json({"type": "prepare", "unit": TV, "purpose": "contact_call"})
        said = await ws.receive_json(timeout=10)
    assert said["reason"] == "the role day_staff may not make contact_call calls"
    refused = [e for e in await asyncio.to_thread(central.audit.entries, kind="ticket_refused")]
    assert len(refused) == 6 and {e.purpose for e in refused} == {"contact_call", "video_visit"}


async def test_a_revoked_contacts_call_socket_is_refused(central: CentralService) -> None:
    await _load(central)
    staff = await StaffApi.log_in(central.url, DAY)
    async with ContactApi(central.url) as phone:
        contact = await _contact_logged_in(central, staff, phone)
        assert (await _prepare(phone, TV))["type"] == "prepared"
        await staff.request("POST", f"/api/contacts/{contact}/revoke")
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await _prepare(phone, TV)
        assert refused.value.status == 401
    # Opened by another site's page: refused before the session is even looked at.
    async with ContactApi(central.url) as phone:
        await _contact_logged_in(central, staff, phone)
        ws_url = central.url.replace("http", "ws", 1) + "/api/contact/call"
        with pytest.raises(aiohttp.WSServerHandshakeError) as other:
            await phone.http.ws_connect(ws_url, headers={"Origin": "https://evil.example"})
        assert other.value.status == 403
