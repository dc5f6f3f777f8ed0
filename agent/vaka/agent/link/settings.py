"""What the unit's link is told and what it tells: its settings, its states, and the shapes of
the handlers it routes to (:mod:`vaka.agent.link.session`)."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from vaka.protocol.messages import AnyMessage

#: a channel's handler of a valid message
Handler = Callable[[AnyMessage], Awaitable[None]]
#: called when central clears a channel's retained message (an order withdrawn)
Cleared = Callable[[], Awaitable[None]]


class LinkState(Enum):
    """Where the link is."""

    IDLE = "idle"
    CONNECTING = "connecting"
    ONLINE = "online"
    WAITING = "waiting"  # between attempts
    CLOSED = "closed"


StateListener = Callable[[LinkState], None]


@dataclass(frozen=True)
class LinkSettings:
    """What the link needs to know. TLS files are re-read on every connect (renewal)."""

    device_id: str
    profile: str
    host: str
    port: int
    server_ca: Path
    cert: Path
    key: Path
    keepalive_s: int = 30
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 60.0
    connect_timeout_s: float = 10.0
    #: how long to wait for central's receipt before sending a kept event again
    receipt_wait_s: float = 10.0
