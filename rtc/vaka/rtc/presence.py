"""The viewer's presence on a call's own media path: the wire format both ends share.

The staff peer (the Python :class:`~vaka.staff.client.StaffClient` and the browser console's
``rtc.js``) opens one data channel labelled :data:`LABEL` before it makes its offer. The unit
sends ``ping <token>`` on it every few hundred milliseconds; the staff peer answers each with
``pong <token>`` from its message handler. The unit keeps its shutter open only while answers
keep coming (:mod:`vaka.agent.call.presence`).

Why a data channel and not the broker or ICE consent: the channel is SCTP inside the call's
DTLS session, whose key the ticket pins by fingerprint, so only the ticketed peer can answer —
not central, not the broker, not someone on the path who read the ICE credentials in the SDP
(ICE consent checks are authenticated with those alone). An answer comes from the staff
peer's own code (the page's script in a browser), so a frozen or vanished viewer stops
answering even where the browser's ICE agent would go on answering consent checks. The
channel is unordered and never retransmits: a late ping is worthless, the next one is due.

This module imports no aiortc, so that the unit's offer checks can use :func:`offers_presence`
without loading the media stack.
"""

from __future__ import annotations

import re
from typing import Protocol

LABEL = "vaka-presence"
"""The data channel's label; the unit takes no other channel."""

MAX_TOKEN_CHARS = 32
_PING = re.compile(r"^ping ([0-9a-f]{1,32})$")
_PONG = re.compile(r"^pong ([0-9a-f]{1,32})$")
_DATA_CHANNEL_LINE = re.compile(r"^m=application \d+ \S*DTLS/SCTP webrtc-datachannel\s*$", re.M)


class Channel(Protocol):
    """What this module needs of a data channel (aiortc's ``RTCDataChannel``)."""

    @property
    def readyState(self) -> str: ...

    def send(self, data: str) -> None: ...


def ping(token: str) -> str:
    """The unit's ping carrying ``token`` (lower-case hex)."""
    return f"ping {token}"


def pong_token(message: object) -> str | None:
    """The token of a ``pong`` message, or ``None`` for anything else."""
    if not isinstance(message, str):
        return None
    found = _PONG.match(message)
    return found.group(1) if found else None


def answer(channel: Channel, message: object) -> bool:
    """Answer ``message`` on ``channel`` if it is a ping; ``True`` if it was one."""
    if not isinstance(message, str):
        return False
    found = _PING.match(message)
    if found is None:
        return False
    if channel.readyState == "open":
        channel.send(f"pong {found.group(1)}")
    return True


def offers_presence(sdp: str) -> bool:
    """Whether an offer carries a WebRTC data channel (where the presence channel rides)."""
    return _DATA_CHANNEL_LINE.search(sdp) is not None
