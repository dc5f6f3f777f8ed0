"""``GET /api/calls``: the call WebSocket (one call; the relay runs it, see
:mod:`vaka.central.calls.relay`)."""

from aiohttp import web

from vaka.central.http.auth import authenticate
from vaka.central.http.deps import deps
from vaka.central.http.sockets import open_socket


async def call_socket(request: web.Request) -> web.StreamResponse:
    """``GET /api/calls`` (WebSocket): one call, see :mod:`vaka.central.calls.relay`."""
    member = await authenticate(request)
    channel = await open_socket(request, heartbeat=10, max_msg_size=64 * 1024)
    await deps(request).relay.handle(channel, member)
    return channel.ws


def add_call_routes(app: web.Application) -> None:
    """Mount the call WebSocket on ``app``."""
    app.router.add_get("/api/calls", call_socket)
