"""``GET /api/contact/ring`` (WebSocket): the contact's page waits here for the TV's calls.

The page opens it once the contact is logged in and keeps it open (it opens it again when it
drops). Central sends ``{"type": "ready"}``, then ``{"type": "ring", "request_id", "unit"}``
when the citizen's TV calls this contact and ``{"type": "stop_ringing", "request_id", "reason",
"reason_code"}`` when that call ends before it was answered (:mod:`vaka.central.circle.
tv_calls`). The page answers by dialling over ``/api/contact/call`` with the request; it
declines with ``{"type": "decline", "request_id"}`` here. Every :data:`CHECK_S` the socket
checks that the log-in still holds: a contact removed or revoked meanwhile is told so and the
socket closes.
"""

import contextlib
import json

from aiohttp import web

from vaka.central.calls.tv_calls import TvCalls
from vaka.central.http.auth import same_origin
from vaka.central.http.contact_page import refused, session_of
from vaka.central.http.sockets import WebSocketChannel, open_socket

#: how often an open ring socket checks that the contact's log-in still holds (seconds)
CHECK_S = 30.0


async def ring_socket(request: web.Request) -> web.StreamResponse:
    """``GET /api/contact/ring`` (WebSocket): rings for the contact when their citizen's TV
    calls."""
    if not same_origin(request):
        raise refused(403, "open the ring from the contact page itself", "other_site")
    session, contact, d = await session_of(request)
    channel = await open_socket(request, heartbeat=10, max_msg_size=4 * 1024)
    desk = d.tv_calls
    desk.add_socket(contact.contact_id, channel)
    try:
        with contextlib.suppress(ConnectionError):
            await channel.send_json({"type": "ready"})
            await _hold(channel, contact.contact_id, session.token_hash, desk, request)
    finally:
        desk.discard_socket(contact.contact_id, channel)
        await channel.close()
    return channel.ws


async def _hold(
    ws: WebSocketChannel, contact_id: str, token_hash: str, desk: TvCalls, request: web.Request
) -> None:
    """Take the page's declines until the socket closes or the log-in ends."""
    while not ws.closed:
        try:
            msg = await ws.receive(timeout=CHECK_S)
        except TimeoutError:
            if not await _still_logged_in(request, token_hash):
                await ws.send_json({"type": "ended", "code": "session_ended"})
                return
            continue
        if msg is None:
            return
        try:
            said = json.loads(msg)
        except (ValueError, TypeError, RecursionError):
            continue
        if isinstance(said, dict) and said.get("type") == "decline":
            request_id = str(said.get("request_id", ""))[:80]
            await desk.decline(contact_id, request_id)


async def _still_logged_in(request: web.Request, token_hash: str) -> bool:
    try:
        session, _contact, _d = await session_of(request)
    except web.HTTPException:
        return False
    return session.token_hash == token_hash


def add_contact_ring_routes(app: web.Application) -> None:
    """Mount the contact's ring socket on ``app``."""
    app.router.add_get("/api/contact/ring", ring_socket)
