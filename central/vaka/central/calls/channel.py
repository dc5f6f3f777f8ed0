"""The staff member's end of a call or of a ring: JSON messages out, text in. The HTTP room
provides it over a WebSocket (:mod:`vaka.central.http.sockets`); the calls room knows only this
interface."""

from typing import Any, Protocol


class StaffChannel(Protocol):
    """One open connection to a staff member's console or client."""

    @property
    def closed(self) -> bool:
        """Whether the connection is closed."""

    async def receive(self, timeout: float | None = None) -> str | bytes | None:
        """The next message: text, binary, or ``None`` once the connection closed or failed.

        :raises TimeoutError: nothing arrived within ``timeout`` seconds.
        """

    async def send_json(self, message: dict[str, Any]) -> None:
        """Send one JSON message.

        :raises ConnectionError: the connection is gone.
        """

    async def close(self) -> None:
        """Close the connection. Safe twice."""
