"""A call from the staff side: its peer connection, the unit's picture and sound, its end.

:class:`StaffCall` is what :meth:`vaka.staff.client.StaffClient.dial` returns; its reader
(:func:`read_until_ended`) follows central's call WebSocket until the call ends. Frames are kept
in memory only.
"""

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import av
from aiortc import MediaStreamTrack, RTCIceServer, RTCPeerConnection, VideoStreamTrack

from vaka.errors import BadMessage, CallError
from vaka.protocol.guard import parse_json
from vaka.rtc.pattern import draw_pattern


class StaffError(CallError, RuntimeError):
    """Central refused or could not be reached; the message says why.

    :attr:`outcome` names, for a call that was not taken, why in one word (``cancelled``,
    ``no_answer``, ``declined``, ``busy``), where central said it."""

    def __init__(self, message: str, outcome: str | None = None) -> None:
        super().__init__(message)
        self.outcome = outcome


@dataclass
class CallTimings:
    """Where the time of a call set-up went (``time.perf_counter`` seconds)."""

    started: float = 0.0
    prepared: float = 0.0  # central allowed the call and sent its ICE servers
    offer_ready: float = 0.0  # local description with gathered candidates
    answered: float = 0.0  # answer from the unit arrived
    connected: float = 0.0  # ICE + DTLS up
    first_frame: float = 0.0  # first decoded frame

    def as_ms(self) -> dict[str, float]:
        """Each step in milliseconds from :attr:`started`."""
        return {
            name: round((getattr(self, name) - self.started) * 1000, 1)
            for name in ("prepared", "offer_ready", "answered", "connected", "first_frame")
            if getattr(self, name)
        }


@dataclass
class StaffCall:
    """A call in progress from the staff side."""

    call_id: str
    pc: RTCPeerConnection
    ws: aiohttp.ClientWebSocketResponse
    timings: CallTimings
    track: "asyncio.Future[MediaStreamTrack]"
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    end_reason: str | None = None
    #: the unit's sound (resolved when its audio track arrives; calls with audio only)
    audio: "asyncio.Future[MediaStreamTrack] | None" = None
    _reader: "asyncio.Task[None] | None" = None
    #: the ICE servers the call was made with (central's per-call relay credential among them)
    ice_servers: list[RTCIceServer] = field(default_factory=list)
    #: central's ``view`` messages (the unit's view level after an escalation, or why not)
    views: "asyncio.Queue[dict[str, Any]]" = field(default_factory=asyncio.Queue)
    #: the unit's latest scene estimate of a night check (``{"type": "estimate", "level": …,
    #: "movement": …, "person_in_bed": …}``), ``None`` until one came
    estimate: dict[str, Any] | None = None

    async def escalate(self, reason: str, timeout: float = 10.0) -> dict[str, Any]:
        """Ask for the clear view with ``reason``; central's answer (``{"type": "view",
        "level": "clear" | "blurred", "reason": …}``) once the unit (or central) decided."""
        await self.ws.send_json({"type": "escalate", "reason": reason})
        return await asyncio.wait_for(self.views.get(), timeout)

    async def next_frame(self, timeout: float = 10.0) -> av.VideoFrame:
        """The next decoded video frame from the unit."""
        track = await asyncio.wait_for(asyncio.shield(self.track), timeout)
        frame = await asyncio.wait_for(track.recv(), timeout)
        assert isinstance(frame, av.VideoFrame)
        if not self.timings.first_frame:
            self.timings.first_frame = time.perf_counter()
        return frame

    async def hangup(self, timeout: float = 5.0) -> str | None:
        """Hang up and wait for central to confirm; returns the end reason."""
        if not self.ended.is_set() and not self.ws.closed:
            with contextlib.suppress(ConnectionError, aiohttp.ClientError):
                await self.ws.send_json({"type": "hangup"})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.ended.wait(), timeout)
        await self.close()
        return self.end_reason

    async def close(self) -> None:
        """Close the peer connection and the WebSocket. Safe twice."""
        if self._reader is not None:
            self._reader.cancel()
        await self.pc.close()
        await self.ws.close()
        self.ended.set()


class PatternVideoTrack(VideoStreamTrack):
    """The synthetic test pattern (:mod:`vaka.rtc.pattern`) as the staff member's picture."""

    def __init__(self, width: int = 320, height: int = 240) -> None:
        super().__init__()
        self.width, self.height = width, height
        self.counter = 0

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        image = draw_pattern(self.width, self.height, self.counter, int(time.time() * 1000))
        self.counter += 1
        frame = av.VideoFrame.from_ndarray(image, format="bgr24")
        frame.pts, frame.time_base = pts, time_base
        return frame


async def read_until_ended(call: StaffCall) -> None:
    """Follow central's call WebSocket until it says the call ended (or closes)."""
    async for msg in call.ws:
        if msg.type is not aiohttp.WSMsgType.TEXT:
            continue
        with contextlib.suppress(BadMessage):
            data = parse_json(msg.data, what="call message")
            if isinstance(data, dict) and data.get("type") == "view":
                call.views.put_nowait(data)
            if isinstance(data, dict) and data.get("type") == "estimate":
                call.estimate = data
            if isinstance(data, dict) and data.get("type") == "ended":
                call.end_reason = data.get("reason")
                break
    if call.end_reason is None:
        call.end_reason = "call channel closed"
    call.ended.set()
    # Shielded: StaffCall.close() cancels this reader, and an aiortc close() cancelled halfway
    # never completes, so that a second close() would wait for it for ever.
    await asyncio.shield(call.pc.close())
