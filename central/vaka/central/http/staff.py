"""Staff-facing HTTP: log in and out, the second factor, passwords, and administrators' account
actions. Who is asking is :mod:`vaka.central.http.auth`'s business."""

import asyncio
import time
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from vaka.central.access.accounts import AccountState
from vaka.central.access.second_factor import AccessRefused
from vaka.central.access.sessions import SessionInfo
from vaka.central.access.throttle import RateLimited
from vaka.central.directory.directory import StaffMember
from vaka.central.http.auth import (
    ACCOUNT_STATE,
    CARRIER,
    CSRF_COOKIE,
    RESTRICTED,
    SESSION_COOKIE,
    SESSION_INFO,
    authenticate,
    client_address,
    cookie_secure,
    rate_limited,
    refusal,
    same_origin,
    session_member,
)
from vaka.central.http.body import json_body
from vaka.central.http.deps import deps
from vaka.central.http.errors import json_error


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


#: the languages of the console (its message catalogs in ``console/i18n/``)
LANGUAGES = ("sv", "da", "en")


class LanguageRequest(BaseModel):
    """``POST /api/me/language`` body: one of :data:`LANGUAGES`, or ``null`` for the browser's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    language: str | None = Field(pattern="^(sv|da|en)$")


def _staff_json(member: StaffMember) -> dict[str, Any]:
    return {"id": member.staff_id, "name": member.display_name, "role": member.role}


def _state_json(state: AccountState) -> dict[str, Any]:
    return {
        "must_change_password": state.must_change_password and not state.must_enrol_totp,
        "must_enrol_totp": state.must_enrol_totp,
        "totp_enrolled": state.totp_enrolled,
    }


#: the one answer to every refused log-in: a wrong staff id, password or one-time code, a
#: locked account and an address outside the role's networks look alike from outside, so a
#: password cannot be confirmed without the second factor. The audit trail keeps the true reason.
LOGIN_REFUSED = (
    "log-in refused: wrong staff id, password or one-time code, or this account may not log in "
    "from here right now (after repeated failures wait 15 minutes or ask an administrator)"
)


async def login(request: web.Request) -> web.Response:
    """``POST /api/login``: ``{staff_id, password, totp?, recovery_code?, session?}``.

    A refusal is always 401 :data:`LOGIN_REFUSED`, held back longer the more failures came from
    the client's address; an address with too many is refused with 429 until they age out.
    """
    address = client_address(request)
    guard = deps(request).guard
    try:
        await asyncio.to_thread(guard.before_login, address)
    except RateLimited as err:
        raise rate_limited(err) from None
    body: LoginRequest = await json_body(request, LoginRequest, "log-in request")
    if body.session == "cookie" and not same_origin(request):
        raise json_error(403, "a console session is only opened from the console's own page")
    try:
        member, state = await asyncio.to_thread(
            deps(request).accounts.log_in,
            body.staff_id,
            body.password,
            address,
            body.totp,
            body.recovery_code,
        )
    except AccessRefused as err:
        if err.counts:
            delay = await asyncio.to_thread(guard.failed_login, address)
            await asyncio.sleep(delay)
        raise json_error(401, LOGIN_REFUSED) from None
    cookie = body.session == "cookie"
    new = await asyncio.to_thread(
        deps(request).sessions.create,
        member.staff_id,
        deps(request).session_ttl_s,
        csrf=cookie,
        address=address,
    )
    answer: dict[str, Any] = {
        "expires_at": new.expires_at,
        "idle_deadline": new.idle_deadline,
        "idle_timeout_s": deps(request).sessions.idle_timeout_s,
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
    member = await session_member(request, allow=(None, *RESTRICTED))
    info: SessionInfo = request[SESSION_INFO]
    groups = await asyncio.to_thread(deps(request).directory.groups_of, member.staff_id)
    language = await asyncio.to_thread(deps(request).directory.language_of, member.staff_id)
    return web.json_response(
        {
            "staff": _staff_json(member),
            "groups": sorted(groups),
            "language": language,
            "idle_deadline": info.idle_deadline,
            "idle_timeout_s": info.idle_timeout_s,
            "expires_at": info.expires_at,
            "now": time.time(),
            "carrier": request[CARRIER],
            **_state_json(request[ACCOUNT_STATE]),
        }
    )


async def set_language(request: web.Request) -> web.Response:
    """``POST /api/me/language``: ``{language}``, remembered with the account so that it follows
    the member to another browser (allowed in the restricted states: it is only a preference)."""
    member = await session_member(request, allow=(None, *RESTRICTED))
    body: LanguageRequest = await json_body(request, LanguageRequest, "language choice")
    await asyncio.to_thread(deps(request).directory.set_language, member.staff_id, body.language)
    return web.json_response({"language": body.language})


async def change_password(request: web.Request) -> web.Response:
    """``POST /api/password``: ``{old_password, new_password}``; other sessions end."""
    member = await session_member(request, allow=(None, "change_password"))
    body: PasswordRequest = await json_body(request, PasswordRequest, "password change")
    address = client_address(request)
    try:
        await asyncio.to_thread(
            deps(request).accounts.change_password,
            member,
            body.old_password,
            body.new_password,
            address,
        )
    except AccessRefused as err:
        raise refusal(err) from None
    info: SessionInfo = request[SESSION_INFO]
    ended = await asyncio.to_thread(
        deps(request).sessions.end_others, member.staff_id, info.token_hash
    )
    return web.json_response({"ok": True, "must_change_password": False, "other_sessions": ended})


async def totp_enrol(request: web.Request) -> web.Response:
    """``POST /api/totp/enrol``: a new secret as an otpauth URI and a QR code (SVG)."""
    member = await session_member(request, allow=(None, "enrol_totp"))
    try:
        enrolment = await asyncio.to_thread(deps(request).accounts.start_totp_enrolment, member)
    except AccessRefused as err:
        raise refusal(err) from None
    return web.json_response(
        {"otpauth_uri": enrolment.uri, "secret": enrolment.secret, "qr_svg": enrolment.qr_svg}
    )


async def totp_confirm(request: web.Request) -> web.Response:
    """``POST /api/totp/confirm``: ``{code}`` from the phone; the recovery codes (shown once)."""
    member = await session_member(request, allow=(None, "enrol_totp"))
    body: CodeRequest = await json_body(request, CodeRequest, "confirmation")
    try:
        codes = await asyncio.to_thread(
            deps(request).accounts.confirm_totp, member, body.code, client_address(request)
        )
    except AccessRefused as err:
        raise refusal(err) from None
    state = await asyncio.to_thread(deps(request).accounts.state, member.staff_id)
    return web.json_response({"recovery_codes": codes, **_state_json(state)})


async def logout(request: web.Request) -> web.Response:
    """``POST /api/logout``."""
    member = await session_member(request, allow=(None, *RESTRICTED))
    info: SessionInfo = request[SESSION_INFO]
    await asyncio.to_thread(deps(request).sessions.end_hash, info.token_hash)
    await asyncio.to_thread(
        deps(request).audit.append, "logout", actor=member.staff_id, address=client_address(request)
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
    directory, accounts = deps(request).directory, deps(request).accounts
    if await asyncio.to_thread(directory.staff_member, staff_id) is None:
        raise json_error(404, f"no staff member {staff_id}")
    if action == "unlock":
        await asyncio.to_thread(accounts.unlock, staff_id, member.staff_id)
    else:
        await asyncio.to_thread(accounts.reset_totp, staff_id, member.staff_id)
    return web.json_response({"staff": staff_id, "done": action})


def add_staff_routes(app: web.Application) -> None:
    """Mount log-in, log-out, the second factor, passwords and account actions on ``app``."""
    app.router.add_post("/api/login", login)
    app.router.add_post("/api/logout", logout)
    app.router.add_get("/api/me", me)
    app.router.add_post("/api/me/language", set_language)
    app.router.add_post("/api/password", change_password)
    app.router.add_post("/api/totp/enrol", totp_enrol)
    app.router.add_post("/api/totp/confirm", totp_confirm)
    app.router.add_post("/api/staff/{id}/{action:unlock|reset-totp}", admin_account_action)
