"""Staff routes for a citizen's circle (:mod:`vaka.central.circle`): list, add and remove a
citizen's contacts, invite a contact (QR code and short code to hand over), and revoke a
contact's log-ins after a lost device.

* ``GET /api/circle/citizens`` — ``{"citizens": [...]}``: whose circles the member looks after
* ``GET /api/citizens/{citizen}/contacts`` — ``{"contacts": [...]}``
* ``POST /api/citizens/{citizen}/contacts`` — add (needs the citizen's consent to contact calls)
* ``DELETE /api/contacts/{contact}`` — remove: log-ins end and a call in progress ends at once
* ``POST /api/contacts/{contact}/invitations`` — a new single-use invitation
* ``POST /api/contacts/{contact}/revoke`` — end every passkey, password and session

Every change is in the audit trail (never the invitation code itself).
"""

import asyncio
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from vaka.central.circle.contacts import (
    CIRCLE_ROLES,
    Contact,
    ContactError,
    ContactRules,
    circle_refusal,
    citizens_in_care,
    one_sided,
    parse_clock,
)
from vaka.central.circle.invitations import invitation_qr, shown
from vaka.central.directory.directory import StaffMember
from vaka.central.http.auth import authenticate
from vaka.central.http.body import json_body
from vaka.central.http.contact_page import page_origin
from vaka.central.http.deps import Deps, deps
from vaka.central.http.errors import json_error
from vaka.protocol.reasons import with_code

#: how long an invitation may be made to last (and how long by default)
INVITATION_TTL_H = (1, 24 * 30)
DEFAULT_INVITATION_TTL_H = 24 * 7


class Hours(BaseModel):
    """When a contact may call (local time, ``HH:MM``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    from_: str = Field(alias="from", max_length=5)
    until: str = Field(max_length=5)


class NewContact(BaseModel):
    """``POST /api/citizens/{citizen}/contacts`` body."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    display_name: str = Field(min_length=1, max_length=120)
    citizen_name: str = Field(min_length=1, max_length=120)
    relation: str = Field(min_length=1, max_length=64)
    picture: str | None = Field(default=None, max_length=400_000)
    may_call: bool = True
    hours: Hours = Hours.model_validate({"from": "08:00", "until": "20:00"})
    may_be_called: bool = True
    auto_answer: bool = False
    #: a contact of kind citizen: the other citizen, whose TV calls and is called (no log-in)
    peer_citizen: str | None = Field(default=None, min_length=1, max_length=64)


class NewInvitationRequest(BaseModel):
    """``POST /api/contacts/{contact}/invitations`` body (may be empty)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    valid_hours: int = Field(
        default=DEFAULT_INVITATION_TTL_H, ge=INVITATION_TTL_H[0], le=INVITATION_TTL_H[1]
    )


async def _staff_for(request: web.Request, citizen: str) -> StaffMember:
    member = await authenticate(request)
    d = deps(request)
    refused = await asyncio.to_thread(
        circle_refusal, d.directory.engine, member.staff_id, member.role, citizen
    )
    if refused is not None:
        raise json_error(403, refused)
    return member


async def _contact_for(request: web.Request) -> tuple[StaffMember, Contact, Deps]:
    d = deps(request)
    contact_id = request.match_info["contact"]
    contact = await asyncio.to_thread(d.contacts.get, contact_id)
    if contact is None:
        await authenticate(request)  # an unknown id is told only to a logged-in member
        raise json_error(404, f"unknown contact {contact_id}")
    member = await _staff_for(request, contact.citizen_id)
    return member, contact, d


async def list_citizens(request: web.Request) -> web.Response:
    """``GET /api/circle/citizens``: the citizens whose circles the member may look after."""
    member = await authenticate(request)
    if member.role not in CIRCLE_ROLES:
        raise json_error(403, f"the role {member.role} may not look after citizens' contacts")
    engine = deps(request).directory.engine
    found = await asyncio.to_thread(citizens_in_care, engine, member.staff_id, member.role)
    return web.json_response({"citizens": found})


async def list_contacts(request: web.Request) -> web.Response:
    """``GET /api/citizens/{citizen}/contacts``."""
    citizen = request.match_info["citizen"]
    await _staff_for(request, citizen)
    d = deps(request)
    found = await asyncio.to_thread(d.contacts.of_citizen, citizen)
    return web.json_response({"contacts": [await _shown(d, c) for c in found]})


async def add_contact(request: web.Request) -> web.Response:
    """``POST /api/citizens/{citizen}/contacts``: 201 with the contact."""
    citizen = request.match_info["citizen"]
    member = await _staff_for(request, citizen)
    body = await json_body(request, NewContact, "contact")
    d = deps(request)
    try:
        rules = ContactRules(
            body.may_call,
            parse_clock(body.hours.from_),
            parse_clock(body.hours.until),
            body.may_be_called,
            body.auto_answer,
        )
        contact = await asyncio.to_thread(
            d.contacts.add,
            citizen,
            body.display_name,
            body.citizen_name,
            body.relation,
            body.picture,
            rules,
            member.staff_id,
            require_consent=d.contact_calls.require_consent,
            peer_citizen=body.peer_citizen,
        )
    except ContactError as err:
        raise json_error(409 if "consent" in str(err) else 400, str(err)) from None
    await asyncio.to_thread(
        d.audit.append,
        "contact_added",
        actor=member.staff_id,
        citizen=citizen,
        contact=contact.contact_id,
        relation=contact.relation,
        may_call=rules.may_call,
        hours=rules.hours(),
        may_be_called=rules.may_be_called,
        auto_answer=rules.auto_answer,
        peer_citizen=contact.peer_citizen,
    )
    return web.json_response(await _shown(d, contact), status=201)


async def _shown(d: Deps, contact: Contact) -> dict[str, Any]:
    """What staff see of a contact; of kind citizen, whether the relation is mutual (a one-sided
    one is refused at every call, with its reason)."""
    shown = contact.staff_json()
    if contact.peer_citizen is not None:
        mirror = await asyncio.to_thread(d.contacts.mirror_of, contact)
        shown["mutual"] = mirror is not None
        if mirror is None:
            shown.update(with_code(one_sided(contact), "note"))
    return shown


async def _end_access(
    d: Deps, contact: Contact, reason: str, *, sessions_too: bool
) -> dict[str, Any]:
    """End the contact's credentials, invitations and call in progress, and (``sessions_too``)
    their sessions. A removed contact's sessions are refused anyway; kept until they expire,
    they let the contact's page say "no longer a contact" instead of "log in again"."""
    sessions = 0
    if sessions_too:
        sessions = await asyncio.to_thread(d.contact_sessions.end_all, contact.contact_id)
    credentials = await asyncio.to_thread(d.contact_credentials.revoke_all, contact.contact_id)
    await asyncio.to_thread(d.invitations.withdraw_all, contact.contact_id)
    ended = await d.contact_calls.end_call(contact, reason)
    return {"sessions_ended": sessions, "credentials_revoked": credentials, "call_ended": ended}


async def remove_contact(request: web.Request) -> web.Response:
    """``DELETE /api/contacts/{contact}``: the contact's access ends now."""
    member, contact, d = await _contact_for(request)
    removed = await asyncio.to_thread(d.contacts.remove, contact.contact_id, member.staff_id)
    if removed is None:
        raise json_error(409, f"contact {contact.contact_id} was already removed")
    ended = await _end_access(d, removed, "the contact was removed", sessions_too=False)
    await asyncio.to_thread(
        d.audit.append,
        "contact_removed",
        actor=member.staff_id,
        citizen=contact.citizen_id,
        contact=contact.contact_id,
        call_id=ended["call_ended"],
        **{k: v for k, v in ended.items() if k != "call_ended"},
    )
    return web.json_response({"removed": contact.contact_id, **ended})


async def revoke_contact(request: web.Request) -> web.Response:
    """``POST /api/contacts/{contact}/revoke``: a lost device; invite again afterwards."""
    member, contact, d = await _contact_for(request)
    if not contact.active:
        raise json_error(409, f"contact {contact.contact_id} was removed")
    ended = await _end_access(d, contact, "the contact's log-ins were revoked", sessions_too=True)
    await asyncio.to_thread(
        d.audit.append,
        "contact_revoked",
        actor=member.staff_id,
        citizen=contact.citizen_id,
        contact=contact.contact_id,
        call_id=ended["call_ended"],
        **{k: v for k, v in ended.items() if k != "call_ended"},
    )
    return web.json_response({"revoked": contact.contact_id, **ended})


async def invite_contact(request: web.Request) -> web.Response:
    """``POST /api/contacts/{contact}/invitations``: ``{code, url, qr_svg, expires_at}`` — the
    only time the code is shown; earlier unused invitations are withdrawn."""
    member, contact, d = await _contact_for(request)
    if not contact.active:
        raise json_error(409, f"contact {contact.contact_id} was removed")
    if contact.peer_citizen is not None:
        raise json_error(
            409, f"contact {contact.contact_id} is another citizen's TV: it has no log-in"
        )
    body = await json_body(request, NewInvitationRequest, "invitation", empty_ok=True)
    made = await asyncio.to_thread(
        d.invitations.create, contact.contact_id, member.staff_id, body.valid_hours * 3600.0
    )
    code = shown(made.code)
    url = f"{page_origin(request)}/contact#code={code}"
    await asyncio.to_thread(
        d.audit.append,
        "contact_invited",
        actor=member.staff_id,
        citizen=contact.citizen_id,
        contact=contact.contact_id,
        expires_at=made.expires_at,
    )
    return web.json_response(
        {
            "contact": contact.contact_id,
            "code": code,
            "url": url,
            "qr_svg": invitation_qr(url),
            "expires_at": made.expires_at,
        },
        status=201,
    )


def add_contact_routes(app: web.Application) -> None:
    """Mount the staff routes of citizens' circles on ``app``."""
    app.router.add_get("/api/circle/citizens", list_citizens)
    app.router.add_get("/api/citizens/{citizen}/contacts", list_contacts)
    app.router.add_post("/api/citizens/{citizen}/contacts", add_contact)
    app.router.add_delete("/api/contacts/{contact}", remove_contact)
    app.router.add_post("/api/contacts/{contact}/invitations", invite_contact)
    app.router.add_post("/api/contacts/{contact}/revoke", revoke_contact)
