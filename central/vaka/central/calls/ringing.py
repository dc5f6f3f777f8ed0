"""The ring sockets of the staff on duty (``GET /api/duty/ring``) that one central instance
holds, and ringing them for a citizen's request: ``ring`` when it starts, ``stop_ringing`` when
someone took it, the citizen cancelled or nobody answered in time."""

import asyncio
from dataclasses import dataclass, field
from typing import Any

from vaka.central.calls.channel import StaffChannel
from vaka.central.calls.duty import OnDuty
from vaka.central.calls.requests import CallRequest
from vaka.protocol.reasons import Reason, with_code

#: why a ring stopped when nothing more exact is known
NO_LONGER_RINGING = Reason("no longer ringing", "no_longer_ringing")


@dataclass
class Ring:
    """One request ringing on this instance's ring sockets."""

    request: CallRequest
    sockets: dict[StaffChannel, str] = field(default_factory=dict)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    reason: str | None = None
    stopped: bool = False

    def stop(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        self.done.set()


class RingSockets:
    """Staff id -> the ring sockets open to this instance."""

    def __init__(self) -> None:
        self._sockets: dict[str, set[StaffChannel]] = {}

    def add(self, staff_id: str, ws: StaffChannel) -> None:
        """A ring socket of ``staff_id`` opened."""
        self._sockets.setdefault(staff_id, set()).add(ws)

    def of(self, staff_id: str) -> frozenset[StaffChannel]:
        """The ring sockets of ``staff_id`` open to this instance."""
        return frozenset(self._sockets.get(staff_id, ()))

    def discard(self, staff_id: str, ws: StaffChannel) -> bool:
        """A ring socket closed; whether it was the member's last one here."""
        sockets = self._sockets.get(staff_id, set())
        sockets.discard(ws)
        if sockets:
            return False
        self._sockets.pop(staff_id, None)
        return True

    async def ring(self, ring: Ring, watch: list[OnDuty]) -> dict[str, str]:
        """Ring every socket of the watch for ``ring``'s request; staff id -> group of those
        rung."""
        request = ring.request
        rung: dict[str, str] = {}
        for entry in watch:
            if entry.staff_id in rung:
                continue
            for ws in list(self._sockets.get(entry.staff_id, ())):
                message = {
                    "type": "ring",
                    "request_id": request.request_id,
                    "unit": request.unit,
                    "citizen": request.citizen,
                    "group": entry.group,
                    "since": request.created_at,
                }
                if await send(ws, message):
                    ring.sockets[ws] = entry.staff_id
                    rung[entry.staff_id] = entry.group
        return rung

    async def stop(self, ring: Ring) -> None:
        """Tell every socket ``ring`` rang to stop. Safe twice."""
        if ring.stopped:
            return
        ring.stopped = True
        message = {
            "type": "stop_ringing",
            "request_id": ring.request.request_id,
            **with_code(ring.reason or NO_LONGER_RINGING),
        }
        await asyncio.gather(*(send(ws, message) for ws in ring.sockets))


async def send(ws: StaffChannel, message: dict[str, Any]) -> bool:
    """Send ``message`` unless the socket is gone; whether it went."""
    if ws.closed:
        return False
    try:
        await ws.send_json(message)
    except (ConnectionError, RuntimeError):
        return False
    return True
