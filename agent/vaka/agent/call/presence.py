"""Whether the viewer is still there, proven on the call's own media path, not by the broker.

A frozen broker is noticed by MQTT keepalive only after 1.5 times the keepalive (about 45 s in
production); ICE consent checks are answered by the peer's ICE agent (in a browser, whatever
its page does) and authenticated only with the ICE credentials that travel in the SDP through
central and the broker. So the unit asks the viewer itself: :class:`PresenceWatch` sends a ping
with a fresh token on the call's presence data channel (:mod:`vaka.rtc.presence`: SCTP inside
the DTLS session the ticket pins) every :attr:`MediaDeadlines.heartbeat_interval_s`, and ends
the call — closing the shutter — when no answer to a recent ping came for
:attr:`MediaDeadlines.heartbeat_timeout_s`. The broker plays no part in it either way: a broker
that dies does not end a call whose viewer answers, and one that freezes does not keep a camera
open for a viewer who went silent.

Between two units (one citizen's TV calling another's) both ends ping and both answer; the unit
that placed the call also counts the other's pings as its presence (``peer_pings``), so a unit
that only answers pings never makes the other side's camera run alone.

This module imports no aiortc (the manager, which an idle unit loads, uses
:class:`MediaDeadlines`).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from vaka.rtc import presence

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MediaDeadlines:
    """How long a call may take to reach media, and how quickly a silent viewer ends it."""

    setup_s: float = 15.0
    "From taking the call to media flowing (DTLS up, viewer answered, first frame sent)."
    heartbeat_interval_s: float = 0.5
    "How often the unit pings the viewer on the presence channel."
    heartbeat_timeout_s: float = 2.5
    "No answer for this long and the call ends (the shutter closes)."

    def __post_init__(self) -> None:
        if not 0 < self.heartbeat_interval_s < self.heartbeat_timeout_s:
            raise ValueError("the heartbeat interval must be positive and below its timeout")
        if self.setup_s <= 0:
            raise ValueError("the setup deadline must be positive")


EndCall = Callable[[str], Awaitable[None]]


class PresenceWatch:
    """The unit's end of one call's presence channel."""

    def __init__(self, deadlines: MediaDeadlines) -> None:
        self.deadlines = deadlines
        self._channel: Any = None
        self._sent: dict[str, float] = {}
        self.heard = asyncio.Event()
        "Set once the viewer answered a ping."
        self.last_heard: float | None = None
        "``time.monotonic()`` of the last answer."
        self.rtt_ms: float | None = None
        "The round trip of the last answer."
        self.ignored = 0
        "Messages on the channel that answered no recent ping."
        self.peer_pings = False
        """Whether the peer's own pings prove it is there (a call between two units: each
        pings and answers, and a unit that only answers proves itself by its pings)."""

    def adopt(self, channel: Any) -> bool:
        """Take ``channel`` (aiortc's ``RTCDataChannel``) if it is the presence channel."""
        if channel.label != presence.LABEL or self._channel is not None:
            return False
        self._channel = channel
        channel.on("message", self._on_message)
        self._ping(time.monotonic())  # the first one at once: the shutter waits for its answer
        return True

    def _on_message(self, message: object) -> None:
        if self._channel is not None and presence.answer(self._channel, message):
            if self.peer_pings:
                self._heard(time.monotonic(), None)
            return
        token = presence.pong_token(message)
        sent = self._sent.pop(token, None) if token is not None else None
        if sent is None:
            self.ignored += 1
            return
        now = time.monotonic()
        self._heard(now, (now - sent) * 1000)

    def _heard(self, now: float, rtt_ms: float | None) -> None:
        self.last_heard = now
        if rtt_ms is not None:
            self.rtt_ms = rtt_ms
        self.heard.set()

    def _ping(self, now: float) -> None:
        channel = self._channel
        stale = now - self.deadlines.heartbeat_timeout_s
        for token in [t for t, at in self._sent.items() if at < stale]:
            del self._sent[token]
        if channel is None or channel.readyState != "open":
            return
        token = secrets.token_hex(8)
        self._sent[token] = now
        try:
            channel.send(presence.ping(token))
        except Exception as err:  # a channel closing under us: the deadline decides
            log.debug("presence ping not sent: %s", err)

    async def run(self, end: EndCall, call_id: str) -> None:
        """Ping until the call ends; call ``end(reason)`` once the viewer has been silent for
        the timeout (counted from now, when nothing was heard yet)."""
        d = self.deadlines
        since = time.monotonic()
        while True:
            now = time.monotonic()
            heard = self.last_heard if self.last_heard is not None else since
            if now - heard > d.heartbeat_timeout_s:
                what = "answered no ping" if self.last_heard is None else "went silent"
                log.warning("call %s: the viewer %s for %.1f s", call_id, what, now - heard)
                await end(
                    f"viewer silent: no heartbeat on the call's data channel for "
                    f"{d.heartbeat_timeout_s:g} s"
                )
                return
            self._ping(now)
            await asyncio.sleep(d.heartbeat_interval_s)
