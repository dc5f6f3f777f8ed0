"""``GET /api/calls``: the call WebSocket (one call; the relay runs it, see
:mod:`vaka.central.calls.relay`)."""

from aiohttp import web

from vaka.central.http.auth import authenticate
from vaka.central.http.deps import deps


async def call_socket(request: web.Request) -> web.StreamResponse:
    """``GET /api/calls`` (WebSocket): one call, see :mod:`vaka.central.calls.relay`."""
    member = await authenticate(request)
    return await deps(request).relay.handle(request, member)


def add_call_routes(app: web.Application) -> None:
    """Mount the call WebSocket on ``app``."""
    app.router.add_get("/api/calls", call_socket)
