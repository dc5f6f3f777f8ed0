"""The contact's page and its API (:mod:`vaka.central.circle`): a small page of its own at
``/contact`` (phone first; Swedish, Danish, English), and routes under ``/api/contact/`` that
only a contact's session opens — a staff session opens none of them, and a contact's session
none of staff's.

* ``POST /api/contact/redeem`` ``{code}`` — an invitation, once: an ``enrol`` session
* ``POST /api/contact/passkey/options``, ``POST /api/contact/passkey`` — set a passkey
* ``POST /api/contact/password`` ``{password}`` — or a password (log-in name: the contact id)
* ``POST /api/contact/totp/start``, ``POST /api/contact/totp/confirm`` ``{code}`` — a one-time
  code app for a password (then the password logs in only with a code)
* ``POST /api/contact/login/options``, ``POST /api/contact/login`` — log in again
* ``GET /api/contact/me`` — whom the contact may call, and nothing else of the citizen
* ``GET /api/contact/call`` (WebSocket) — the call, on the staff's call path
  (:mod:`vaka.central.calls.relay`) as a caller of the role ``contact``
* ``POST /api/contact/logout``

The session is an HttpOnly cookie ``vaka_contact`` (``SameSite=Strict``, path ``/api/contact``:
no other route ever receives it);
state-changing requests pass :func:`~vaka.central.http.auth.origin_guard` like the console's,
and the call WebSocket must come from central's own origin. Refusals carry ``code`` beside the
English ``error`` so the page says them in the contact's language.
"""

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from vaka.central.access.throttle import RateLimited
from vaka.central.circle.calls import contact_caller
from vaka.central.circle.contacts import Contact
from vaka.central.circle.credentials import CredentialRefused, RelyingParty
from vaka.central.circle.invitations import InvitationRefused
from vaka.central.circle.sessions import ContactSession, Stage
from vaka.central.http.auth import (
    client_address,
    cookie_secure,
    over_tls,
    rate_limited,
    same_origin,
)
from vaka.central.http.body import json_body
from vaka.central.http.deps import Deps, deps
from vaka.central.http.sockets import open_socket

PAGE_DIR = Path(__file__).parent.parent / "contact"
COOKIE = "vaka_contact"
COOKIE_PATH = "/api/contact"


def refused(status: int, reason: str, code: str) -> web.HTTPException:
    """An error with ``{"error": reason, "code": code}``."""
    cls = {400: web.HTTPBadRequest, 401: web.HTTPUnauthorized, 403: web.HTTPForbidden}[status]
    return cls(text=json.dumps({"error": reason, "code": code}), content_type="application/json")


class CodeBody(BaseModel):
    """``POST /api/contact/redeem``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    code: str = Field(min_length=1, max_length=40)


class PasswordBody(BaseModel):
    """``POST /api/contact/password``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    password: str = Field(min_length=1, max_length=200)


class LoginBody(BaseModel):
    """``POST /api/contact/login``: a passkey's answer, or a log-in name and password."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    credential: dict[str, Any] | None = None
    contact: str | None = Field(default=None, max_length=64)
    password: str | None = Field(default=None, max_length=200)
    totp: str | None = Field(default=None, max_length=16)


def page_origin(request: web.Request) -> str:
    """Central's origin as the contact's browser sees it (``https`` behind a TLS proxy)."""
    return f"{'https' if over_tls(request) else 'http'}://{request.host}"


def relying_party(request: web.Request) -> RelyingParty:
    """Central as the contact's browser sees it: the passkeys' relying party."""
    return RelyingParty(request.url.host or "localhost", page_origin(request))


async def _audit(d: Deps, kind: str, **fields: Any) -> None:
    await asyncio.to_thread(d.audit.append, kind, **fields)


async def session_of(
    request: web.Request, stage: Stage = "full"
) -> tuple[ContactSession, Contact, Deps]:
    """The contact behind the request's cookie, in ``stage``; 401/403 with a coded reason."""
    d = deps(request)
    token = request.cookies.get(COOKIE)
    if not token:
        raise refused(401, "log in first", "not_logged_in")
    session = await asyncio.to_thread(d.contact_sessions.find, token)
    if session is None:
        raise refused(401, "your log-in has ended or was revoked: log in again", "session_ended")
    contact = await asyncio.to_thread(d.contacts.get, session.contact_id)
    if contact is None or not contact.active:
        raise refused(403, "you are no longer a contact of this person", "contact_removed")
    if session.stage != stage:
        if stage == "full":
            raise refused(403, "set a passkey or a password first", "enrol_first")
        raise refused(403, "you have set your log-in already", "enrolled")
    return session, contact, d


def _with_session(
    response: web.Response, request: web.Request, token: str, expires: float
) -> web.Response:
    response.set_cookie(
        COOKIE,
        token,
        max_age=max(1, int(expires - time.time())),
        path=COOKIE_PATH,
        httponly=True,
        samesite="Strict",
        secure=cookie_secure(request),
    )
    return response


async def _full_session(
    request: web.Request, d: Deps, contact: Contact, body: dict[str, Any]
) -> web.Response:
    token, expires = await asyncio.to_thread(d.contact_sessions.create, contact.contact_id, "full")
    return _with_session(web.json_response(body), request, token, expires)


async def redeem(request: web.Request) -> web.Response:
    """``POST /api/contact/redeem``: use an invitation; an ``enrol`` session."""
    d = deps(request)
    address = client_address(request)
    try:
        await asyncio.to_thread(d.guard.before_login, address)
    except RateLimited as err:
        raise rate_limited(err) from None
    body = await json_body(request, CodeBody, "invitation code")
    try:
        contact_id = await asyncio.to_thread(d.invitations.redeem, body.code)
    except InvitationRefused as err:
        await asyncio.to_thread(d.guard.failed_login, address)
        await _audit(d, "invitation_refused", reason=str(err), address=address)
        raise refused(403, str(err), err.code) from None
    contact = await asyncio.to_thread(d.contacts.get, contact_id)
    if contact is None or not contact.active:
        raise refused(403, "you are no longer a contact of this person", "contact_removed")
    await _audit(d, "invitation_redeemed", actor=contact_id, address=address)
    token, expires = await asyncio.to_thread(d.contact_sessions.create, contact_id, "enrol")
    answer = {"stage": "enrol", "contact": contact_id, "display_name": contact.display_name}
    return _with_session(web.json_response(answer), request, token, expires)


async def passkey_options(request: web.Request) -> web.Response:
    """``POST /api/contact/passkey/options``: options for ``navigator.credentials.create``."""
    session, contact, d = await session_of(request, "enrol")
    options, challenge = await asyncio.to_thread(
        d.contact_credentials.registration_options,
        relying_party(request),
        contact.contact_id,
        contact.display_name,
    )
    await asyncio.to_thread(d.contact_sessions.set_challenge, session.token_hash, challenge)
    return web.json_response(options)


async def passkey_register(request: web.Request) -> web.Response:
    """``POST /api/contact/passkey``: the new passkey; a full session instead of ``enrol``."""
    session, contact, d = await session_of(request, "enrol")
    body = await json_body(request, LoginBody, "passkey")
    if body.credential is None or session.challenge is None:
        raise refused(400, "ask for the passkey options first", "passkey_failed")
    try:
        await asyncio.to_thread(
            d.contact_credentials.register_passkey,
            relying_party(request),
            contact.contact_id,
            session.challenge,
            body.credential,
        )
    except CredentialRefused as err:
        raise refused(400, str(err), "passkey_failed") from None
    await asyncio.to_thread(d.contact_sessions.end, session.token_hash)
    await _audit(d, "contact_credential_set", actor=contact.contact_id, credential="passkey")
    return await _full_session(request, d, contact, {"stage": "full", "kind": "passkey"})


async def password_register(request: web.Request) -> web.Response:
    """``POST /api/contact/password``: a password instead of a passkey; a full session."""
    session, contact, d = await session_of(request, "enrol")
    body = await json_body(request, PasswordBody, "password")
    try:
        await asyncio.to_thread(
            d.contact_credentials.set_password, contact.contact_id, body.password
        )
    except CredentialRefused as err:
        raise refused(400, str(err), "password_short") from None
    await asyncio.to_thread(d.contact_sessions.end, session.token_hash)
    await _audit(d, "contact_credential_set", actor=contact.contact_id, credential="password")
    answer = {"stage": "full", "kind": "password", "login": contact.contact_id}
    return await _full_session(request, d, contact, answer)


async def login_options(request: web.Request) -> web.Response:
    """``POST /api/contact/login/options``: options for ``navigator.credentials.get``."""
    d = deps(request)
    try:
        await asyncio.to_thread(d.guard.before_login, client_address(request))
    except RateLimited as err:
        raise rate_limited(err) from None
    options = await asyncio.to_thread(d.contact_credentials.login_options, relying_party(request))
    return web.json_response(options)


async def login(request: web.Request) -> web.Response:
    """``POST /api/contact/login``: a passkey's answer or a password; a full session."""
    d = deps(request)
    address = client_address(request)
    body = await json_body(request, LoginBody, "log-in")
    try:
        if body.credential is not None:
            contact_id = await asyncio.to_thread(
                d.contact_credentials.check_passkey, relying_party(request), body.credential
            )
        else:
            await asyncio.to_thread(d.guard.before_login, address)
            contact_id = body.contact or ""
            ok = await asyncio.to_thread(
                d.contact_credentials.check_password, contact_id, body.password or ""
            )
            if not ok:
                raise CredentialRefused("wrong log-in name or password")
            await _second_factor(d, contact_id, body.totp)
    except RateLimited as err:
        raise rate_limited(err) from None
    except CredentialRefused as err:
        await asyncio.to_thread(d.guard.failed_login, address)
        await _audit(d, "contact_login_failed", reason=str(err), address=address)
        raise refused(401, str(err), "login_refused") from None
    contact = await asyncio.to_thread(d.contacts.get, contact_id)
    if contact is None or not contact.active:
        raise refused(403, "you are no longer a contact of this person", "contact_removed")
    await _audit(d, "contact_login", actor=contact_id, address=address)
    return await _full_session(request, d, contact, {"stage": "full"})


async def _second_factor(d: Deps, contact_id: str, code: str | None) -> None:
    """A password with a one-time code app logs in only with a fresh code."""
    if not await asyncio.to_thread(d.contact_credentials.needs_totp, contact_id):
        return
    if not code:
        raise refused(401, "enter the one-time code from your app too", "totp_needed")
    if not await asyncio.to_thread(d.contact_credentials.check_totp, contact_id, code):
        raise CredentialRefused("wrong or already used one-time code")


class TotpBody(BaseModel):
    """``POST /api/contact/totp/confirm``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    code: str = Field(min_length=1, max_length=16)


async def totp_start(request: web.Request) -> web.Response:
    """``POST /api/contact/totp/start``: ``{secret, uri, qr_svg}`` for the contact's app."""
    _session, contact, d = await session_of(request)
    try:
        made = await asyncio.to_thread(d.contact_credentials.start_totp, contact.contact_id)
    except CredentialRefused as err:
        raise refused(400, str(err), "password_first") from None
    return web.json_response(made)


async def totp_confirm(request: web.Request) -> web.Response:
    """``POST /api/contact/totp/confirm``: the app's first code enrols it."""
    _session, contact, d = await session_of(request)
    body = await json_body(request, TotpBody, "one-time code")
    try:
        await asyncio.to_thread(d.contact_credentials.confirm_totp, contact.contact_id, body.code)
    except CredentialRefused as err:
        raise refused(400, str(err), "totp_wrong") from None
    await _audit(d, "contact_credential_set", actor=contact.contact_id, credential="totp")
    return web.json_response({"second_factor": "totp"})


async def me(request: web.Request) -> web.Response:
    """``GET /api/contact/me``: the contact's own name and picture, whom they may call (the
    name they know the citizen by), their hours, and the TV to dial — nothing else."""
    _session, contact, d = await session_of(request)
    unit = await asyncio.to_thread(d.contact_calls.tv_of, contact.citizen_id)
    kinds = await asyncio.to_thread(d.contact_credentials.kinds, contact.contact_id)
    rules = contact.rules
    return web.json_response(
        {
            "contact": contact.contact_id,
            "display_name": contact.display_name,
            "citizen_name": contact.citizen_name,
            "unit": unit,
            "may_call": rules.may_call,
            "hours": rules.hours(),
            "log_in": [k for k in kinds if k in ("passkey", "password", "totp")],
        }
    )


async def logout(request: web.Request) -> web.Response:
    """``POST /api/contact/logout``."""
    d = deps(request)
    token = request.cookies.get(COOKIE)
    if token:
        session = await asyncio.to_thread(d.contact_sessions.find, token)
        if session is not None:
            await asyncio.to_thread(d.contact_sessions.end, session.token_hash)
    response = web.json_response({"logged_out": True})
    response.del_cookie(COOKIE, path=COOKIE_PATH)
    return response


async def call_socket(request: web.Request) -> web.StreamResponse:
    """``GET /api/contact/call`` (WebSocket): one call to the citizen's TV."""
    if not same_origin(request):
        raise refused(403, "open the call from the contact page itself", "other_site")
    _session, contact, d = await session_of(request)
    channel = await open_socket(request, heartbeat=10, max_msg_size=64 * 1024)
    await d.relay.handle(channel, contact_caller(contact))
    return channel.ws


async def page(request: web.Request) -> web.FileResponse:
    """``GET /contact``: the contact's page (a static page; its scripts use the API)."""
    return web.FileResponse(PAGE_DIR / "index.html", headers={"Cache-Control": "no-store"})


def add_contact_page_routes(app: web.Application) -> None:
    """Mount the contact's page and its API on ``app``."""
    app.router.add_get("/contact", page)
    app.router.add_static("/contact/", PAGE_DIR, follow_symlinks=False)
    app.router.add_post("/api/contact/redeem", redeem)
    app.router.add_post("/api/contact/passkey/options", passkey_options)
    app.router.add_post("/api/contact/passkey", passkey_register)
    app.router.add_post("/api/contact/password", password_register)
    app.router.add_post("/api/contact/totp/start", totp_start)
    app.router.add_post("/api/contact/totp/confirm", totp_confirm)
    app.router.add_post("/api/contact/login/options", login_options)
    app.router.add_post("/api/contact/login", login)
    app.router.add_get("/api/contact/me", me)
    app.router.add_post("/api/contact/logout", logout)
    app.router.add_get("/api/contact/call", call_socket)
