"""Who is asking: the one authentication of central's routes.

Two ways to carry a session: the console keeps it in an HttpOnly cookie ``vaka_session`` and
sends a CSRF token (cookie ``vaka_csrf`` echoed in the ``X-CSRF-Token`` header) with every
request that is not a GET; API and command-line clients send ``Authorization: Bearer``. Every
route that needs a staff member calls :func:`authenticate`, which also enforces the networks
allowed for the role, the idle time-out and the restricted state of a fresh account.

Every state-changing request (any method but GET, HEAD, OPTIONS), log-in included, passes
:func:`origin_guard` first. A browser always sends ``Origin`` on such a request, so:

* with an ``Origin`` header, it must be central's own (scheme http/https, same host and port):
  another site's page cannot post to central, not even a form to ``/api/login``;
* without one, the request is a tool's (the technician CLI, the Python staff client, scripts):
  it is let through only if it carries no session cookie, i.e. it authenticates with a bearer
  token or is a log-in asking for a token. A log-in asking for a cookie session must carry the
  console's ``Origin``.
"""

import asyncio
import dataclasses
import hmac
import urllib.parse
from collections.abc import Awaitable, Callable, Collection

from aiohttp import web

from vaka.central.access.accounts import AccountState, address_allowed
from vaka.central.access.second_factor import AccessRefused
from vaka.central.access.sessions import SessionInfo, digest
from vaka.central.access.throttle import RateLimited
from vaka.central.directory.directory import StaffMember
from vaka.central.http.deps import deps
from vaka.central.http.errors import json_error
from vaka.central.settings.config import LOOPBACK

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
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: what the restricted states may call besides /api/me and /api/logout
RESTRICTED = {
    "enrol_totp": "set up your one-time code first",
    "change_password": "your password is too old: change it first",
}


#: the statuses an :class:`AccessRefused` is answered with (any other: 403)
_REFUSAL_STATUSES = frozenset({400, 401, 403, 409, 429})


def refusal(err: AccessRefused) -> web.HTTPException:
    """The HTTP error for a refused log-in or request."""
    return json_error(err.status if err.status in _REFUSAL_STATUSES else 403, str(err))


def rate_limited(err: RateLimited) -> web.HTTPException:
    """429 with ``Retry-After`` for a request over a per-address limit."""
    return json_error(429, str(err), {"Retry-After": str(err.retry_after)})


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
    trusted = tuple(deps(request).access.trusted_proxies)
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


def over_tls(request: web.Request) -> bool:
    """Whether the browser reached central over TLS (directly, or through a trusted proxy that
    says so in ``X-Forwarded-Proto``)."""
    if request.secure:
        return True
    trusted = tuple(deps(request).access.trusted_proxies)
    proto = request.headers.get("X-Forwarded-Proto", "").lower()
    return proto == "https" and address_allowed(request.remote or "", trusted)


def cookie_secure(request: web.Request) -> bool:
    """Cookies are ``Secure`` unless the console is used over plain http on loopback (a browser
    drops a ``Secure`` cookie sent over plain http)."""
    return over_tls(request) or not address_allowed(request.remote or "", LOOPBACK)


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
        raise json_error(
            403,
            f"missing CSRF token: the console sends it in the {CSRF_HEADER} header "
            "(reload the page and try again)",
        )
    if (
        info.csrf_hash is None
        or not hmac.compare_digest(sent, cookie)
        or not hmac.compare_digest(digest(sent), info.csrf_hash)
    ):
        raise json_error(403, "wrong CSRF token for this session: reload the page and try again")


def same_origin(request: web.Request) -> bool:
    """Whether the request's ``Origin`` is central's own (scheme http/https, same host)."""
    parsed = urllib.parse.urlsplit(request.headers.get("Origin", ""))
    return parsed.scheme in ("http", "https") and parsed.netloc.lower() == request.host.lower()


@web.middleware
async def origin_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse a state-changing request from another site (see the module's docstring)."""
    if request.method in SAFE_METHODS:
        return await handler(request)
    origin = request.headers.get("Origin")
    if origin is not None:
        if not same_origin(request):
            raise json_error(
                403,
                f"refused a request sent from another site ({origin[:100]}): "
                "use the console itself",
            )
    elif SESSION_COOKIE in request.cookies and _credentials(request)[1] == "cookie":
        raise json_error(
            403, "refused a request with the console's cookie but no Origin: use the console"
        )
    return await handler(request)


def _check_origin(request: web.Request) -> None:
    """A WebSocket carrying the console's cookie must be opened by the console's own page
    (browsers send the cookie whatever page opens the socket; the CSRF token does not apply)."""
    origin = request.headers.get("Origin", "")
    if not same_origin(request):
        raise json_error(
            403,
            f"refused a call channel opened by another site ({origin[:100] or 'no Origin'}): "
            "open the console itself",
        )


async def session_member(
    request: web.Request,
    roles: Collection[str] | None = None,
    action: str | None = None,
    allow: Collection[str | None] = (None,),
) -> StaffMember:
    """:func:`authenticate` that also lets sessions in the restricted states named in
    ``allow`` through (``None`` is a full session)."""
    token, carrier = _credentials(request)
    if token is None:
        raise json_error(401, "log in first (no session token)")
    sessions, audit = deps(request).sessions, deps(request).audit
    info = await asyncio.to_thread(sessions.find, token)
    if info is None or info.ended == "expired":
        raise json_error(401, "session expired or unknown: log in again")
    address = client_address(request)
    if info.ended == "idle":
        if info.newly_ended:
            await asyncio.to_thread(
                audit.append, "logout_idle", actor=info.staff_id, address=address
            )
        raise json_error(
            401,
            f"logged out after {duration_words(info.idle_timeout_s)} without activity",
        )
    if carrier == "cookie" and request.method not in SAFE_METHODS:
        _check_csrf(request, info)
    if carrier == "cookie" and request.headers.get("Upgrade", "").lower() == "websocket":
        _check_origin(request)
    member = await asyncio.to_thread(deps(request).directory.staff_member, info.staff_id)
    if member is None or not member.active:
        raise json_error(401, "this account is no longer active")
    accounts = deps(request).accounts
    try:
        await asyncio.to_thread(accounts.check_address, member, address)
    except AccessRefused as err:
        raise refusal(err) from None
    state = await asyncio.to_thread(accounts.state, member.staff_id)
    if state.restriction not in allow:
        reason = RESTRICTED.get(state.restriction or "", "this session may not do that")
        raise json_error(403, reason)
    if roles is not None and member.role not in roles:
        what = action or f"use this (it is for {', '.join(sorted(roles))})"
        raise json_error(403, f"the role {member.role} may not {what}")
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
    return await session_member(request, roles, action)
