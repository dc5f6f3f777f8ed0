"""Staff-facing HTTP: log in and out, and the call WebSocket.

Sessions are random bearer tokens whose hashes live in the database, so any central instance
can check them. Every log-in and failure is in the audit trail.
"""

import asyncio
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vaka.central.audit import AuditLog
from vaka.central.calls import CallRelay
from vaka.central.directory import Directory, StaffMember
from vaka.central.sessions import StaffSessions

DIRECTORY: web.AppKey[Directory] = web.AppKey("directory", Directory)
AUDIT: web.AppKey[AuditLog] = web.AppKey("audit", AuditLog)
RELAY: web.AppKey[CallRelay] = web.AppKey("relay", CallRelay)
SESSIONS: web.AppKey[StaffSessions] = web.AppKey("sessions", StaffSessions)
SESSION_TTL: web.AppKey[float] = web.AppKey("session_ttl", float)


class LoginRequest(BaseModel):
    """``POST /api/login`` body."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    staff_id: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=200)


def _json_error(cls: type[web.HTTPException], reason: str) -> web.HTTPException:
    return cls(text=web.json_response({"error": reason}).text, content_type="application/json")


def _token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return header[7:].strip() or None
    return None


async def authenticate(request: web.Request) -> StaffMember:
    """The staff member behind the request's bearer token, or 401 with a reason."""
    token = _token(request)
    if token is None:
        raise _json_error(web.HTTPUnauthorized, "log in first (no session token)")
    member = await asyncio.to_thread(request.app[SESSIONS].staff_for, token)
    if member is None:
        raise _json_error(web.HTTPUnauthorized, "session expired or unknown: log in again")
    return member


async def login(request: web.Request) -> web.Response:
    """``POST /api/login``: ``{staff_id, password}`` -> ``{token, expires_at, staff}``."""
    try:
        body = LoginRequest.model_validate_json(await request.read())
    except ValidationError as err:
        fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in err.errors())
        raise _json_error(web.HTTPBadRequest, f"invalid log-in request: {fields}") from None
    directory, audit = request.app[DIRECTORY], request.app[AUDIT]
    member = await asyncio.to_thread(directory.check_password, body.staff_id, body.password)
    peer = request.remote or "?"
    if member is None:
        await asyncio.to_thread(audit.append, "login_failed", actor=body.staff_id, address=peer)
        raise _json_error(web.HTTPUnauthorized, "wrong staff id or password")
    token, expires = await asyncio.to_thread(
        request.app[SESSIONS].create, member.staff_id, request.app[SESSION_TTL]
    )
    await asyncio.to_thread(audit.append, "login", actor=member.staff_id, address=peer)
    staff: dict[str, Any] = {
        "id": member.staff_id,
        "name": member.display_name,
        "role": member.role,
    }
    return web.json_response({"token": token, "expires_at": expires, "staff": staff})


async def logout(request: web.Request) -> web.Response:
    """``POST /api/logout``."""
    member = await authenticate(request)
    token = _token(request)
    assert token is not None
    await asyncio.to_thread(request.app[SESSIONS].end, token)
    await asyncio.to_thread(request.app[AUDIT].append, "logout", actor=member.staff_id)
    return web.json_response({"ok": True})


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
) -> None:
    """Mount the staff API on ``app``."""
    app[DIRECTORY] = directory
    app[SESSIONS] = StaffSessions(directory.engine, directory)
    app[AUDIT] = audit
    app[RELAY] = relay
    app[SESSION_TTL] = session_ttl_s
    app.router.add_post("/api/login", login)
    app.router.add_post("/api/logout", logout)
    app.router.add_get("/api/calls", call_socket)
