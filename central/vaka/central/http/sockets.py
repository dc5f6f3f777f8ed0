"""The WebSocket as the calls room sees a staff member's end
(:class:`vaka.central.calls.channel.StaffChannel`)."""

from typing import Any

from aiohttp import WSMsgType, web

_GONE = frozenset({WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR})


class WebSocketChannel:
    """A prepared :class:`aiohttp.web.WebSocketResponse` as a staff channel."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws

    @property
    def closed(self) -> bool:
        """Whether the socket is closed."""
        return self.ws.closed

    async def receive(self, timeout: float | None = None) -> str | bytes | None:
        """Text as ``str``, anything else that is not the end as ``bytes``; ``None`` at the end."""
        msg = await self.ws.receive(timeout=timeout)
        if msg.type is WSMsgType.TEXT:
            return str(msg.data)
        if msg.type in _GONE:
            return None
        return msg.data if isinstance(msg.data, bytes) else b""

    async def send_json(self, message: dict[str, Any]) -> None:
        """Send one JSON message."""
        await self.ws.send_json(message)

    async def close(self) -> None:
        """Close the socket. Safe twice."""
        await self.ws.close()


async def open_socket(request: web.Request, **options: Any) -> WebSocketChannel:
    """Accept the WebSocket of ``request`` (``options`` for :class:`web.WebSocketResponse`)."""
    ws = web.WebSocketResponse(**options)
    await ws.prepare(request)
    return WebSocketChannel(ws)
