"""Citizens' calls over HTTP: the ring socket of a staff member on duty (``GET /api/duty/ring``)
and the recent escalations (``GET /api/escalations``); see :mod:`vaka.central.calls.citizen`."""

import asyncio
import contextlib

from aiohttp import web

from vaka.central.calls.duty import RING_REFRESH_S
from vaka.central.calls.ringing import send
from vaka.central.http.auth import authenticate
from vaka.central.http.deps import deps
from vaka.central.http.sockets import WebSocketChannel, open_socket


async def ring_socket(request: web.Request) -> web.StreamResponse:
    """``GET /api/duty/ring`` (WebSocket): rings for a staff member on duty."""
    member = await authenticate(request)
    desk = deps(request).citizen_calls
    roster, instance = desk.roster, desk.identity
    channel = await open_socket(request, heartbeat=10)
    staff_id = member.staff_id
    if not await asyncio.to_thread(roster.mark_ringable, staff_id, instance):
        await send(channel, {"type": "refused", "reason": f"staff {staff_id} is not on duty"})
        await channel.close()
        return channel.ws
    desk.sockets.add(staff_id, channel)
    since = await asyncio.to_thread(roster.since, staff_id)
    try:
        with contextlib.suppress(ConnectionError):
            await channel.send_json({"type": "ready", "staff": staff_id, "since": since})
            await _hold(channel, staff_id, request)
    finally:
        if desk.sockets.discard(staff_id, channel):
            await asyncio.to_thread(roster.clear_ringable, staff_id, instance)
        await channel.close()
    return channel.ws


async def _hold(ws: WebSocketChannel, staff_id: str, request: web.Request) -> None:
    """Keep the socket until it closes or its member goes off duty, refreshing the stamp that
    says it is open."""
    desk = deps(request).citizen_calls
    while not ws.closed:
        try:
            msg = await ws.receive(timeout=RING_REFRESH_S)
        except TimeoutError:
            if not await asyncio.to_thread(desk.roster.mark_ringable, staff_id, desk.identity):
                await send(ws, {"type": "off_duty", "reason": "you went off duty"})
                return
            continue
        if msg is None:
            return


async def escalations(request: web.Request) -> web.Response:
    """``GET /api/escalations``: recent escalations concerning the caller's groups."""
    member = await authenticate(request)
    desk = deps(request).citizen_calls
    groups = await asyncio.to_thread(desk.directory.groups_of, member.staff_id)
    rows = await asyncio.to_thread(desk.book.recent_escalations, groups)
    return web.json_response({"escalations": rows})


def add_citizen_call_routes(app: web.Application) -> None:
    """Mount the ring socket and the escalation list on ``app``."""
    app.router.add_get("/api/duty/ring", ring_socket)
    app.router.add_get("/api/escalations", escalations)
