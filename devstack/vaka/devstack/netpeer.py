"""One end of a test call, as a process inside a network namespace (``python -m``).

Run by :class:`vaka.devstack.netcall.PeerProcess` with ``ip netns exec NS``. It is a real aiortc
peer: it sends the machine-readable test pattern of :mod:`vaka.rtc.pattern` (each frame stamped
with its capture time), decodes what it receives, and reads the stamp back. Everything goes over
stdin/stdout as JSON lines, one object each:

* first line in: the settings (``host``, ``ice_servers``, ``width``, ``height``, ``fps``,
  ``send``, ``gather_timeout_s``, ``consent_interval_s``, ``consent_failures``, ``audio_hz``);
  with ``audio_hz`` the peer also sends the project's synthetic microphone, a sine tone
  (:class:`vaka.agent.media.audio.ToneTrack`), and measures the sound it receives
  (:class:`vaka.agent.media.audio.AudioSink`: frames, and the strongest frequency of each
  quarter second, to tell the other side's tone);
* out: ``{"ready": true}``;
* in ``{"cmd": "offer"}`` → out ``{"sdp", "type": "offer", "candidates", "started_at"}``
  (full gathering first: aiortc has no trickle ICE);
* in ``{"cmd": "answer", "sdp"}`` → out ``{"sdp", "type": "answer", "candidates"}``;
* in ``{"cmd": "remote", "sdp"}`` (the offerer takes the answer) → out ``{"ok": true}``;
* out, unasked: ``{"event": "state", "state", "at"}`` on each connection state change and
  ``{"event": "first_frame", "at", "latency_ms"}``;
* in ``{"cmd": "report"}`` → out ``{"report": {...}}`` (frames, decoded stamps, latencies, the
  selected candidate pair, and with audio ``audio``: frames, first frame time, the strongest
  frequency of each quarter second heard);
* in ``{"cmd": "close"}`` or end of input: close the peer connection and exit.

Times are ``time.time()``: every namespace shares the host's clock, so the test process can
subtract one peer's time from another's.
"""

from __future__ import annotations

import asyncio
import fractions
import json
import logging
import sys
import time
from typing import Any

import av
from aiortc import (
    MediaStreamTrack,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

from vaka.agent.media.audio import ANALYSIS_WINDOW_S, AudioSink, ToneTrack
from vaka.rtc.ice import configure_ice, rtc_configuration
from vaka.rtc.pattern import decode_pattern, draw_pattern

_CLOCK = 90_000
_MAX_LATENCIES = 2000
_MAX_TONE_READINGS = 2000


class PatternTrack(MediaStreamTrack):
    """Video of the test pattern, stamped at the moment each frame is made."""

    kind = "video"

    def __init__(self, width: int, height: int, fps: float) -> None:
        super().__init__()
        self.width, self.height, self.fps = width, height, fps
        self.counter = 0
        self._start: float | None = None

    async def recv(self) -> av.VideoFrame:
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self.counter / self.fps
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        image = draw_pattern(self.width, self.height, self.counter, int(time.time() * 1000))
        frame = av.VideoFrame.from_ndarray(image, format="bgr24")
        frame.pts = round(self.counter * _CLOCK / self.fps)
        frame.time_base = fractions.Fraction(1, _CLOCK)
        self.counter += 1
        return frame


def _emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def selected_pair(pc: RTCPeerConnection) -> dict[str, Any] | None:
    """The nominated candidate pair: types, addresses and how a relay reaches its server.

    aiortc does not expose it; aioice keeps it in ``Connection._nominated`` (component 1).
    """
    for transceiver in pc.getTransceivers():
        transport = transceiver.receiver.transport
        if transport is None:
            continue
        connection = transport.transport._connection
        pair = connection._nominated.get(1)
        if pair is None:
            continue
        local, remote = pair.local_candidate, pair.remote_candidate
        relay_transport = None
        inner = getattr(pair.protocol.transport, "_TurnTransport__inner_protocol", None)
        if inner is not None:
            tls = inner.transport is not None and inner.transport.get_extra_info("ssl_object")
            kind = "tcp" if "Tcp" in type(inner).__name__ else "udp"
            relay_transport = "tls" if tls else kind
        return {
            "local_type": local.type,
            "remote_type": remote.type,
            "local": f"{local.host}:{local.port}",
            "remote": f"{remote.host}:{remote.port}",
            "relay_transport": relay_transport,
            "type": pair_type(local.type, remote.type),
        }
    return None


def pair_type(local_type: str, remote_type: str) -> str:
    """``relay`` if either end is relayed, else ``srflx`` if either is reflexive, else ``host``."""
    types = {local_type, remote_type}
    if "relay" in types:
        return "relay"
    if types & {"srflx", "prflx"}:
        return "srflx"
    return "host"


class Peer:
    """The peer connection, its pattern track and what it received."""

    def __init__(self, settings: dict[str, Any]) -> None:
        servers = [RTCIceServer(**entry) for entry in settings["ice_servers"]]
        self.pc = RTCPeerConnection(rtc_configuration(servers))
        self.settings = settings
        self.frames = 0
        self.decoded = 0
        self.stamps: list[int] = []
        self.latencies_ms: list[float] = []
        self.first_frame_at: float | None = None
        self.started_at: float | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.pc.on("connectionstatechange", self._on_state)
        self.pc.on("track", self._on_track)
        if settings.get("send", True):
            self.pc.addTrack(PatternTrack(settings["width"], settings["height"], settings["fps"]))
        else:
            self.pc.addTransceiver("video", direction="recvonly")
        self.tone: ToneTrack | None = None
        self.sound: AudioSink | None = None
        self.tone_hz: list[float | None] = []
        if settings.get("audio_hz") is not None:
            self.tone = ToneTrack(float(settings["audio_hz"]))
            self.sound = AudioSink()
            self.pc.addTrack(self.tone)

    def _on_state(self) -> None:
        _emit({"event": "state", "state": self.pc.connectionState, "at": time.time()})

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "video":
            task = asyncio.ensure_future(self._receive(track))
            self._tasks.add(task)
        elif track.kind == "audio" and self.sound is not None:
            self.sound.start(track)
            self._tasks.add(asyncio.ensure_future(self._listen(self.sound)))

    async def _listen(self, sound: AudioSink) -> None:
        """Note the strongest frequency of each quarter second once sound arrives (``None``:
        silence or nothing new), so a report shows how much of the call carried the tone."""
        heard = 0
        while len(self.tone_hz) < _MAX_TONE_READINGS:
            await asyncio.sleep(ANALYSIS_WINDOW_S)
            if sound.frames == 0:
                continue
            fresh = sound.frames > heard
            heard = sound.frames
            hz = sound.dominant_hz if fresh else None
            self.tone_hz.append(None if hz is None else round(hz, 1))

    async def _receive(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                now = time.time()
                self.frames += 1
                image = frame.to_ndarray(format="bgr24")  # type: ignore[union-attr]
                reading = decode_pattern(image)
                if reading is None:
                    continue
                self.decoded += 1
                latency = (now * 1000) - reading.timestamp_ms
                if len(self.latencies_ms) < _MAX_LATENCIES:
                    self.latencies_ms.append(round(latency, 1))
                    self.stamps.append(reading.timestamp_ms)
                if self.first_frame_at is None:
                    self.first_frame_at = now
                    _emit({"event": "first_frame", "at": now, "latency_ms": round(latency, 1)})
        except MediaStreamError:
            return  # the track ends when the call does

    def _candidates(self) -> list[str]:
        """The candidate types in the local description (host, srflx, relay)."""
        description = self.pc.localDescription
        return [
            line.split()[7]
            for line in description.sdp.splitlines()
            if line.startswith("a=candidate:") and len(line.split()) > 7
        ]

    async def offer(self) -> dict[str, Any]:
        self.started_at = time.time()
        await self.pc.setLocalDescription(await self.pc.createOffer())
        sdp = self.pc.localDescription.sdp
        candidates = self._candidates()
        return {
            "sdp": sdp,
            "type": "offer",
            "candidates": candidates,
            "started_at": self.started_at,
        }

    async def answer(self, offer: str) -> dict[str, Any]:
        await self.pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        sdp = self.pc.localDescription.sdp
        return {"sdp": sdp, "type": "answer", "candidates": self._candidates()}

    async def take_answer(self, answer: str) -> dict[str, Any]:
        await self.pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        return {"ok": True}

    def report(self) -> dict[str, Any]:
        return {
            "report": {
                "state": self.pc.connectionState,
                "frames": self.frames,
                "decoded": self.decoded,
                "stamps": self.stamps,
                "latencies_ms": self.latencies_ms,
                "first_frame_at": self.first_frame_at,
                "started_at": self.started_at,
                "pair": selected_pair(self.pc),
                "audio": self._audio_report(),
            }
        }

    def _audio_report(self) -> dict[str, Any] | None:
        if self.sound is None or self.tone is None:
            return None
        return {
            "sent_hz": self.tone.frequency,
            "sent_frames": self.tone.frames,
            "frames": self.sound.frames,
            "first_frame_at": _wall_time(self.sound.first_frame_at),
            "level": round(self.sound.level, 3),
            "tone_hz": self.tone_hz,
        }

    async def close(self) -> None:
        await self.pc.close()
        if self.sound is not None:
            await self.sound.stop()
        for task in self._tasks:
            task.cancel()


def _wall_time(perf_counter_at: float | None) -> float | None:
    """A ``time.perf_counter()`` reading as ``time.time()``, comparable across namespaces."""
    if perf_counter_at is None:
        return None
    return time.time() - (time.perf_counter() - perf_counter_at)


async def _stdin() -> asyncio.StreamReader:
    reader = asyncio.StreamReader(limit=1 << 20)
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def run() -> None:
    """Read the settings, then serve commands until ``close`` or end of input."""
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )
    reader = await _stdin()
    settings = json.loads(await reader.readline())
    configure_ice(
        [settings["host"]],
        gather_timeout_s=settings.get("gather_timeout_s", 2.0),
        consent_interval_s=settings.get("consent_interval_s", 1.0),
        consent_failures=settings.get("consent_failures", 4),
    )
    peer = Peer(settings)
    _emit({"ready": True})
    try:
        while line := await reader.readline():
            command = json.loads(line)
            name = command.get("cmd")
            if name == "offer":
                _emit(await peer.offer())
            elif name == "answer":
                _emit(await peer.answer(command["sdp"]))
            elif name == "remote":
                _emit(await peer.take_answer(command["sdp"]))
            elif name == "report":
                _emit(peer.report())
            elif name == "close":
                break
    finally:
        await peer.close()


if __name__ == "__main__":
    asyncio.run(run())
