"""Staff-facing HTTP: log in and out, the second factor, passwords, and the call WebSocket.

Two ways to carry a session: the console keeps it in an HttpOnly cookie ``vaka_session`` and
sends a CSRF token (cookie ``vaka_csrf`` echoed in the ``X-CSRF-Token`` header) with every
request that is not a GET; API and command-line clients send ``Authorization: Bearer``. Every
route that needs a staff member calls :func:`authenticate`, which also enforces the networks
allowed for the role, the idle time-out and the restricted state of a fresh account.
"""

import asyncio
import dataclasses
import hmac
import time
import urllib.parse
from collections.abc import Collection
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vaka.central.accounts import AccessRefused, Accounts, AccountState, address_allowed
from vaka.central.audit import AuditLog
from vaka.central.calls import CallRelay
from vaka.central.config import LOOPBACK, StaffAccessSection
from vaka.central.directory import Directory, StaffMember
from vaka.central.sessions import SessionInfo, StaffSessions, digest

DIRECTORY: web.AppKey[Directory] = web.AppKey("directory", Directory)
AUDIT: web.AppKey[AuditLog] = web.AppKey("audit", AuditLog)
RELAY: web.AppKey[CallRelay] = web.AppKey("relay", CallRelay)
SESSIONS: web.AppKey[StaffSessions] = web.AppKey("sessions", StaffSessions)
SESSION_TTL: web.AppKey[float] = web.AppKey("session_ttl", float)
ACCOUNTS: web.AppKey[Accounts] = web.AppKey("accounts", Accounts)
ACCESS: web.AppKey[StaffAccessSection] = web.AppKey("staff_access", StaffAccessSection)

#: what :func:`authenticate` found, for the handler: the session, the account state, the carrier
SESSION_INFO: web.RequestKey[SessionInfo] = web.RequestKey("vaka_session", SessionInfo)
ACCOUNT_STATE: web.RequestKey[AccountState] = web.RequestKey("vaka_state", AccountState)
CARRIER: web.RequestKey[str] = web.RequestKey("vaka_carrier", str)

SESSION_COOKIE = "vaka_session"
CSRF_COOKIE = "vaka_csrf"
CSRF_HEADER = "X-CSRF-Token"
#: a request with ``X-Vaka-Activity: background`` (a page refreshing itself) does not count as
#: activity for the idle time-out
ACTIVITY_HEADER = "X-Vaka-Activity"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: what the restricted states may call besides /api/me and /api/logout
RESTRICTED = {
    "enrol_totp": "set up your one-time code first",
    "change_password": "your password is too old: change it first",
}


class LoginRequest(BaseModel):
    """``POST /api/login`` body (``session``: ``"cookie"`` for the console)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    staff_id: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=200)
    totp: str | None = Field(default=None, max_length=16)
    recovery_code: str | None = Field(default=None, max_length=40)
    session: str = Field(default="token", pattern="^(token|cookie)$")


class PasswordRequest(BaseModel):
    """``POST /api/password`` body."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    old_password: str = Field(min_length=1, max_length=200)
    new_password: str = Field(min_length=1, max_length=400)


class CodeRequest(BaseModel):
    """``POST /api/totp/confirm`` body."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str = Field(min_length=1, max_length=16)


_STATUS: dict[int, type[web.HTTPException]] = {
    400: web.HTTPBadRequest,
    401: web.HTTPUnauthorized,
    403: web.HTTPForbidden,
    409: web.HTTPConflict,
    429: web.HTTPTooManyRequests,
}


def _json_error(cls: type[web.HTTPException], reason: str) -> web.HTTPException:
    return cls(text=web.json_response({"error": reason}).text, content_type="application/json")


def _refusal(err: AccessRefused) -> web.HTTPException:
    return _json_error(_STATUS.get(err.status, web.HTTPForbidden), str(err))


async def _body(request: web.Request, model: type[Any], what: str) -> Any:
    try:
        return model.model_validate_json(await request.read())
    except ValidationError as err:
        fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in err.errors())
        raise _json_error(web.HTTPBadRequest, f"invalid {what}: {fields}") from None


def duration_words(seconds: float) -> str:
    """900 -> ``15 minutes``, 3 -> ``3 seconds``."""
    if seconds >= 120 or (seconds >= 60 and seconds % 60 == 0):
        minutes = round(seconds / 60)
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    whole = round(seconds)
    return f"{whole} second{'s' if whole != 1 else ''}"


# ---------------------------------------------------------------- where the request comes from


def client_address(request: web.Request) -> str:
    """The client's address: the peer, or ``X-Forwarded-For`` when the peer is a trusted proxy
    (the right-most address that is not itself a trusted proxy)."""
    peer = request.remote or "?"
    trusted = tuple(request.app[ACCESS].trusted_proxies)
    if not trusted or not address_allowed(peer, trusted):
        return peer
    hops = [
        hop.strip()
        for header in request.headers.getall("X-Forwarded-For", [])
        for hop in header.split(",")
        if hop.strip()
    ]
    for hop in reversed(hops):
        if not address_allowed(hop, trusted):
            return hop
    return hops[0] if hops else peer


def _over_tls(request: web.Request) -> bool:
    if request.secure:
        return True
    trusted = tuple(request.app[ACCESS].trusted_proxies)
    proto = request.headers.get("X-Forwarded-Proto", "").lower()
    return proto == "https" and address_allowed(request.remote or "", trusted)


def cookie_secure(request: web.Request) -> bool:
    """Cookies are ``Secure`` unless the console is used over plain http on loopback (a browser
    drops a ``Secure`` cookie sent over plain http)."""
    return _over_tls(request) or not address_allowed(request.remote or "", LOOPBACK)


# ---------------------------------------------------------------- who is asking


def _credentials(request: web.Request) -> tuple[str | None, str]:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return header[7:].strip() or None, "bearer"
    return request.cookies.get(SESSION_COOKIE) or None, "cookie"


def _check_csrf(request: web.Request, info: SessionInfo) -> None:
    sent = request.headers.get(CSRF_HEADER, "")
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not sent:
        raise _json_error(
            web.HTTPForbidden,
            f"missing CSRF token: the console sends it in the {CSRF_HEADER} header "
            "(reload the page and try again)",
        )
    if (
        info.csrf_hash is None
        or not hmac.compare_digest(sent, cookie)
        or not hmac.compare_digest(digest(sent), info.csrf_hash)
    ):
        raise _json_error(
            web.HTTPForbidden, "wrong CSRF token for this session: reload the page and try again"
        )


def _check_origin(request: web.Request) -> None:
    """A WebSocket carrying the console's cookie must be opened by the console's own page
    (browsers send the cookie whatever page opens the socket; the CSRF token does not apply)."""
    origin = request.headers.get("Origin", "")
    parsed = urllib.parse.urlsplit(origin)
    if parsed.scheme not in ("http", "https") or parsed.netloc.lower() != request.host.lower():
        raise _json_error(
            web.HTTPForbidden,
            f"refused a call channel opened by another site ({origin[:100] or 'no Origin'}): "
            "open the console itself",
        )


async def _session(
    request: web.Request,
    roles: Collection[str] | None,
    action: str | None,
    allow: Collection[str | None] = (None,),
) -> StaffMember:
    token, carrier = _credentials(request)
    if token is None:
        raise _json_error(web.HTTPUnauthorized, "log in first (no session token)")
    sessions, audit = request.app[SESSIONS], request.app[AUDIT]
    info = await asyncio.to_thread(sessions.find, token)
    if info is None or info.ended == "expired":
        raise _json_error(web.HTTPUnauthorized, "session expired or unknown: log in again")
    address = client_address(request)
    if info.ended == "idle":
        if info.newly_ended:
            await asyncio.to_thread(
                audit.append, "logout_idle", actor=info.staff_id, address=address
            )
        raise _json_error(
            web.HTTPUnauthorized,
            f"logged out after {duration_words(info.idle_timeout_s)} without activity",
        )
    if carrier == "cookie" and request.method not in SAFE_METHODS:
        _check_csrf(request, info)
    if carrier == "cookie" and request.headers.get("Upgrade", "").lower() == "websocket":
        _check_origin(request)
    member = await asyncio.to_thread(request.app[DIRECTORY].staff_member, info.staff_id)
    if member is None or not member.active:
        raise _json_error(web.HTTPUnauthorized, "this account is no longer active")
    accounts = request.app[ACCOUNTS]
    try:
        await asyncio.to_thread(accounts.check_address, member, address)
    except AccessRefused as err:
        raise _refusal(err) from None
    state = await asyncio.to_thread(accounts.state, member.staff_id)
    if state.restriction not in allow:
        reason = RESTRICTED.get(state.restriction or "", "this session may not do that")
        raise _json_error(web.HTTPForbidden, reason)
    if roles is not None and member.role not in roles:
        what = action or f"use this (it is for {', '.join(sorted(roles))})"
        raise _json_error(web.HTTPForbidden, f"the role {member.role} may not {what}")
    if request.headers.get(ACTIVITY_HEADER, "").lower() != "background":
        last_seen = await asyncio.to_thread(sessions.touch, info.token_hash)
        info = dataclasses.replace(info, last_seen=last_seen)
    request[SESSION_INFO] = info
    request[ACCOUNT_STATE] = state
    request[CARRIER] = carrier
    return member


async def authenticate(
    request: web.Request, roles: Collection[str] | None = None, *, action: str | None = None
) -> StaffMember:
    """The staff member behind the request's session (bearer token or console cookie).

    Raises 401 (no, unknown, expired or idle session) or 403 (CSRF token missing or wrong,
    address outside the role's networks, a session that must first set up TOTP or change its
    password, a role not in ``roles``) with a readable JSON ``error``. ``action`` words the
    role refusal: "the role night_staff may not <action>".
    """
    return await _session(request, roles, action)


# ---------------------------------------------------------------- routes


def _staff_json(member: StaffMember) -> dict[str, Any]:
    return {"id": member.staff_id, "name": member.display_name, "role": member.role}


def _state_json(state: AccountState) -> dict[str, Any]:
    return {
        "must_change_password": state.must_change_password and not state.must_enrol_totp,
        "must_enrol_totp": state.must_enrol_totp,
        "totp_enrolled": state.totp_enrolled,
    }


async def login(request: web.Request) -> web.Response:
    """``POST /api/login``: ``{staff_id, password, totp?, recovery_code?, session?}``."""
    body: LoginRequest = await _body(request, LoginRequest, "log-in request")
    address = client_address(request)
    try:
        member, state = await asyncio.to_thread(
            request.app[ACCOUNTS].log_in,
            body.staff_id,
            body.password,
            address,
            body.totp,
            body.recovery_code,
        )
    except AccessRefused as err:
        raise _refusal(err) from None
    cookie = body.session == "cookie"
    new = await asyncio.to_thread(
        request.app[SESSIONS].create,
        member.staff_id,
        request.app[SESSION_TTL],
        csrf=cookie,
        address=address,
    )
    answer: dict[str, Any] = {
        "expires_at": new.expires_at,
        "idle_deadline": new.idle_deadline,
        "idle_timeout_s": request.app[SESSIONS].idle_timeout_s,
        "staff": _staff_json(member),
        **_state_json(state),
    }
    if not cookie:
        answer["token"] = new.token
    response = web.json_response(answer)
    if cookie:
        secure = cookie_secure(request)
        response.set_cookie(
            SESSION_COOKIE, new.token, httponly=True, secure=secure, samesite="Strict", path="/"
        )
        response.set_cookie(
            CSRF_COOKIE, new.csrf_token or "", secure=secure, samesite="Strict", path="/"
        )
    return response


async def me(request: web.Request) -> web.Response:
    """``GET /api/me``: who is logged in, their groups and the session's idle deadline."""
    member = await _session(request, None, None, allow=(None, *RESTRICTED))
    info: SessionInfo = request[SESSION_INFO]
    groups = await asyncio.to_thread(request.app[DIRECTORY].groups_of, member.staff_id)
    return web.json_response(
        {
            "staff": _staff_json(member),
            "groups": sorted(groups),
            "idle_deadline": info.idle_deadline,
            "idle_timeout_s": info.idle_timeout_s,
            "expires_at": info.expires_at,
            "now": time.time(),
            "carrier": request[CARRIER],
            **_state_json(request[ACCOUNT_STATE]),
        }
    )


async def change_password(request: web.Request) -> web.Response:
    """``POST /api/password``: ``{old_password, new_password}``; other sessions end."""
    member = await _session(request, None, None, allow=(None, "change_password"))
    body: PasswordRequest = await _body(request, PasswordRequest, "password change")
    address = client_address(request)
    try:
        await asyncio.to_thread(
            request.app[ACCOUNTS].change_password,
            member,
            body.old_password,
            body.new_password,
            address,
        )
    except AccessRefused as err:
        raise _refusal(err) from None
    info: SessionInfo = request[SESSION_INFO]
    ended = await asyncio.to_thread(
        request.app[SESSIONS].end_others, member.staff_id, info.token_hash
    )
    return web.json_response({"ok": True, "must_change_password": False, "other_sessions": ended})


async def totp_enrol(request: web.Request) -> web.Response:
    """``POST /api/totp/enrol``: a new secret as an otpauth URI and a QR code (SVG)."""
    member = await _session(request, None, None, allow=(None, "enrol_totp"))
    try:
        enrolment = await asyncio.to_thread(request.app[ACCOUNTS].start_totp_enrolment, member)
    except AccessRefused as err:
        raise _refusal(err) from None
    return web.json_response(
        {"otpauth_uri": enrolment.uri, "secret": enrolment.secret, "qr_svg": enrolment.qr_svg}
    )


async def totp_confirm(request: web.Request) -> web.Response:
    """``POST /api/totp/confirm``: ``{code}`` from the phone; the recovery codes (shown once)."""
    member = await _session(request, None, None, allow=(None, "enrol_totp"))
    body: CodeRequest = await _body(request, CodeRequest, "confirmation")
    try:
        codes = await asyncio.to_thread(
            request.app[ACCOUNTS].confirm_totp, member, body.code, client_address(request)
        )
    except AccessRefused as err:
        raise _refusal(err) from None
    state = await asyncio.to_thread(request.app[ACCOUNTS].state, member.staff_id)
    return web.json_response({"recovery_codes": codes, **_state_json(state)})


async def logout(request: web.Request) -> web.Response:
    """``POST /api/logout``."""
    member = await _session(request, None, None, allow=(None, *RESTRICTED))
    info: SessionInfo = request[SESSION_INFO]
    await asyncio.to_thread(request.app[SESSIONS].end_hash, info.token_hash)
    await asyncio.to_thread(
        request.app[AUDIT].append, "logout", actor=member.staff_id, address=client_address(request)
    )
    response = web.json_response({"ok": True})
    response.del_cookie(SESSION_COOKIE, path="/")
    response.del_cookie(CSRF_COOKIE, path="/")
    return response


ADMIN_ROLES = frozenset({"administrator"})


async def admin_account_action(request: web.Request) -> web.Response:
    """``POST /api/staff/{id}/unlock`` or ``/reset-totp`` (administrators): lift a lock-out, or
    forget a lost phone's TOTP secret so that the next log-in sets up a new one."""
    action = request.match_info["action"]
    member = await authenticate(request, ADMIN_ROLES, action="manage staff accounts")
    staff_id = request.match_info["id"]
    directory, accounts = request.app[DIRECTORY], request.app[ACCOUNTS]
    if await asyncio.to_thread(directory.staff_member, staff_id) is None:
        raise _json_error(web.HTTPNotFound, f"no staff member {staff_id}")
    if action == "unlock":
        await asyncio.to_thread(accounts.unlock, staff_id, member.staff_id)
    else:
        await asyncio.to_thread(accounts.reset_totp, staff_id, member.staff_id)
    return web.json_response({"staff": staff_id, "done": action})


async def call_socket(request: web.Request) -> web.StreamResponse:
    """``GET /api/calls`` (WebSocket): one call, see :mod:`vaka.central.calls`."""
    member = await authenticate(request)
    return await request.app[RELAY].handle(request, member)


def add_staff_routes(
    app: web.Application,
    directory: Directory,
    audit: AuditLog,
    relay: CallRelay,
    session_ttl_s: float,
    access: StaffAccessSection | None = None,
    timezone: str = "Europe/Stockholm",
) -> None:
    """Mount the staff API on ``app``."""
    access = access or StaffAccessSection()
    app[DIRECTORY] = directory
    app[SESSIONS] = StaffSessions(directory.engine, directory, access.idle_timeout_s)
    app[AUDIT] = audit
    app[RELAY] = relay
    app[SESSION_TTL] = session_ttl_s
    app[ACCESS] = access
    app[ACCOUNTS] = Accounts(directory.engine, directory, audit, access, timezone)
    app.router.add_post("/api/login", login)
    app.router.add_post("/api/logout", logout)
    app.router.add_get("/api/me", me)
    app.router.add_post("/api/password", change_password)
    app.router.add_post("/api/totp/enrol", totp_enrol)
    app.router.add_post("/api/totp/confirm", totp_confirm)
    app.router.add_post("/api/staff/{id}/{action:unlock|reset-totp}", admin_account_action)
    app.router.add_get("/api/calls", call_socket)
