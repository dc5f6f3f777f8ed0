"""Placing a call from the staff side once central has said which ICE servers to use: the peer
connection, the offer, the unit's ringing, its answer; and cancelling before the answer."""

import asyncio
import contextlib
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal, NamedTuple

import aiohttp
from aiortc import MediaStreamTrack, RTCIceServer, RTCPeerConnection, RTCSessionDescription

from vaka.rtc import presence
from vaka.rtc.ice import rtc_configuration
from vaka.staff.call import CallTimings, StaffCall, StaffError, read_until_ended

RelayTransport = Literal["udp", "tcp", "tls"]


def relay_servers(
    entries: Sequence[Mapping[str, Any]], prefer: RelayTransport = "udp"
) -> list[RTCIceServer]:
    """Central's ICE servers for a call, the TURN URL of the ``prefer`` transport first.

    aiortc uses only the first STUN and the first TURN URL it is given: behind a firewall that
    lets only TCP 443 out, ``prefer="tls"`` picks ``turns:``.
    """

    def transport(url: str) -> str:
        if url.startswith("turns:"):
            return "tls"
        return "tcp" if url.endswith("transport=tcp") else "udp"

    servers = [
        RTCIceServer(
            urls=str(entry["urls"]),
            username=entry.get("username"),
            credential=entry.get("credential"),
        )
        for entry in entries
        if isinstance(entry, Mapping) and isinstance(entry.get("urls"), str)
    ]
    stun = [s for s in servers if str(s.urls).startswith("stun:")]
    turn = [s for s in servers if not str(s.urls).startswith("stun:")]
    turn.sort(key=lambda s: transport(str(s.urls)) != prefer)
    return stun + turn


class Waits(NamedTuple):
    """How long to wait for central's word (``answer_s``), and for a ringing unit when central
    does not say (``ring_s``)."""

    answer_s: float
    ring_s: float


async def place_call(
    ws: aiohttp.ClientWebSocketResponse,
    fields: Mapping[str, str],
    servers: list[RTCIceServer],
    timings: CallTimings,
    waits: Waits,
    *,
    send_video: MediaStreamTrack | None = None,
    send_audio: MediaStreamTrack | None = None,
) -> StaffCall:
    """Offer the call on ``ws`` (prepared) and wait for the unit's answer.

    Cancelled before the answer, it cancels the call (central stops the unit's ringing); refused
    or unanswered, it raises :class:`StaffError`. Either way the peer connection and the socket
    are closed.
    """
    pc, track, audio = _peer(servers, timings, send_video, send_audio)
    dialled = False
    try:
        await pc.setLocalDescription(await pc.createOffer())
        timings.offer_ready = time.perf_counter()
        await ws.send_json({"type": "dial", **fields, "sdp": pc.localDescription.sdp})
        dialled = True
        reply = await _answer(ws, waits)
    except asyncio.CancelledError:
        await (_cancel_dial(ws) if dialled else ws.close())
        await pc.close()
        raise
    except StaffError:
        await pc.close()
        await ws.close()
        raise
    timings.answered = time.perf_counter()
    await pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))
    call = StaffCall(reply["call_id"], pc, ws, timings, track, audio=audio, ice_servers=servers)
    call._reader = asyncio.create_task(read_until_ended(call))
    return call


def _peer(
    servers: list[RTCIceServer],
    timings: CallTimings,
    send_video: MediaStreamTrack | None,
    send_audio: MediaStreamTrack | None,
) -> tuple[RTCPeerConnection, asyncio.Future[MediaStreamTrack], asyncio.Future[MediaStreamTrack]]:
    """The staff side's peer connection, and the unit's video and audio tracks to come."""
    pc = RTCPeerConnection(rtc_configuration(servers))
    if send_video is None:
        pc.addTransceiver("video", direction="recvonly")
    else:
        pc.addTransceiver(send_video, direction="sendrecv")
    if send_audio is not None:
        pc.addTransceiver(send_audio, direction="sendrecv")
    # The unit keeps its shutter open only while this channel answers its pings.
    heartbeat = pc.createDataChannel(presence.LABEL, ordered=False, maxRetransmits=0)
    heartbeat.on("message", lambda message: presence.answer(heartbeat, message))
    loop = asyncio.get_running_loop()
    track: asyncio.Future[MediaStreamTrack] = loop.create_future()
    audio: asyncio.Future[MediaStreamTrack] = loop.create_future()

    @pc.on("track")
    def _on_track(remote: MediaStreamTrack) -> None:
        if remote.kind == "video" and not track.done():
            track.set_result(remote)
        elif remote.kind == "audio" and not audio.done():
            audio.set_result(remote)

    @pc.on("connectionstatechange")
    def _on_state() -> None:
        if pc.connectionState == "connected" and not timings.connected:
            timings.connected = time.perf_counter()

    return pc, track, audio


async def _answer(ws: aiohttp.ClientWebSocketResponse, waits: Waits) -> dict[str, Any]:
    """The unit's answer to the dial, through its ringing; :class:`StaffError` otherwise."""
    try:
        # Read all along (aiohttp answers central's pings inside receive): a TV rings for
        # up to half a minute, and a socket whose pings go unanswered is closed.
        reply = await ws.receive_json(timeout=waits.answer_s)
        while reply.get("type") == "ringing":  # a TV unit rings until it is answered
            ring_s = float(reply.get("ring_s") or waits.ring_s)
            reply = await ws.receive_json(timeout=waits.answer_s + ring_s)
    except (TimeoutError, TypeError, ValueError) as err:
        raise StaffError(f"no answer from central: {err!r}") from None
    if not isinstance(reply, dict) or reply.get("type") != "answer":
        reason = reply.get("reason", reply) if isinstance(reply, dict) else reply
        outcome = reply.get("outcome") if isinstance(reply, dict) else None
        raise StaffError(f"call refused: {reason}", outcome=outcome)
    return reply


async def _cancel_dial(ws: aiohttp.ClientWebSocketResponse, timeout: float = 3.0) -> None:
    """Cancel a call that is not answered yet: tell central (which stops the unit's ringing),
    wait a moment for its word, close."""
    with contextlib.suppress(ConnectionError, aiohttp.ClientError):
        await ws.send_json({"type": "cancel"})
        with contextlib.suppress(TimeoutError, TypeError, ValueError):
            async with asyncio.timeout(timeout):
                while (await ws.receive_json()).get("type") not in ("ended", "refused"):
                    pass
    await ws.close()
