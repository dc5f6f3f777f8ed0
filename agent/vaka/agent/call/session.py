"""One call on the unit, from a verified offer to a closed shutter.

State machine: ``connecting -> streaming -> ending -> ended``. The shutter opens and the camera
starts only after the offer passed :class:`~vaka.agent.call.guard.OfferGuard` *and* the peer
connection is up (DTLS with the fingerprint the ticket names); whatever ends the
call — hang-up, maximum duration, ICE/DTLS failure, loss of the broker link, the agent stopping,
a shutter fault — runs the same :meth:`CallSession.end`, which always closes the shutter.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Any

from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription

from vaka.agent.call.observer import CallObserver
from vaka.agent.hw.hardware import Hardware
from vaka.agent.media.capture import Capture
from vaka.agent.media.settings import MediaSettings, make_source
from vaka.agent.media.track import CameraTrack
from vaka.provisioning.tickets import TicketClaims
from vaka.rtc.ice import rtc_configuration

log = logging.getLogger(__name__)

Report = Callable[[str, dict[str, Any]], Awaitable[None]]
Hangup = Callable[[str, str], Awaitable[None]]


class CallState(Enum):
    """Where a call is."""

    CONNECTING = "connecting"
    STREAMING = "streaming"
    ENDING = "ending"
    ENDED = "ended"


class CallSession:
    """A verified call: peer connection, camera, shutter, limits."""

    def __init__(
        self,
        claims: TicketClaims,
        max_duration_s: float,
        hardware: Hardware,
        media: MediaSettings,
        report: Report,
        hangup: Hangup,
        observer: CallObserver | None = None,
    ) -> None:
        self.claims = claims
        self.call_id = claims.cid
        self.max_duration_s = max_duration_s
        self.hardware = hardware
        self.media = media
        self._report = report
        self._hangup = hangup
        self.observer = observer or CallObserver()
        self.state = CallState.CONNECTING
        self.started_at = time.monotonic()
        self.end_reason: str | None = None
        self.ended = asyncio.Event()
        self._pc = RTCPeerConnection(rtc_configuration(media.rtc_ice_servers()))
        self._capture: Capture | None = None
        self._track: CameraTrack | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._extra: list[MediaStreamTrack] = []

    @property
    def capture(self) -> Capture | None:
        """The camera capture of this call (for a self view), once started."""
        return self._capture

    def _set_state(self, new: CallState) -> None:
        old, self.state = self.state, new
        if old is not new:
            log.info("call %s: %s -> %s", self.call_id, old.value, new.value)

    def _info(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "caller": self.claims.sub,
            "purpose": self.claims.purpose,
        }

    async def start(self, offer_sdp: str) -> str:
        """Open shutter and camera, answer the offer; returns the answer SDP."""
        capture = Capture(
            make_source(self.media), self.media.fps, dark_threshold=self.media.dark_below
        )
        self._capture = capture
        self._track = CameraTrack(capture, enhance=self.media.enhance_low_light)
        pc = self._pc

        @pc.on("connectionstatechange")
        async def _on_state() -> None:
            state = pc.connectionState
            if state == "connected" and self.state is CallState.CONNECTING:
                # Only now does the shutter open: DTLS has proven that the peer holds the key
                # whose fingerprint the ticket names, so a replayed ticket never opens it.
                self._set_state(CallState.STREAMING)
                self._tasks.append(
                    asyncio.create_task(self._open_camera(), name=f"open-{self.call_id}")
                )
                self.observer.call_connected(self)
            elif state in ("failed", "closed"):
                await self.end(f"connection {state} (ICE/DTLS)")

        @pc.on("track")
        def _on_track(track: MediaStreamTrack) -> None:
            self.observer.remote_track(self, track)

        self._tasks.append(asyncio.create_task(self._limit(), name=f"limit-{self.call_id}"))
        await pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        pc.addTrack(self._track)
        offered = frozenset(
            line[2:].split(" ", 1)[0] for line in offer_sdp.splitlines() if line.startswith("m=")
        )
        for track in self.observer.extra_tracks(self.claims, offered):
            if track.kind in offered:
                self._extra.append(track)
                pc.addTrack(track)
        await pc.setLocalDescription(await pc.createAnswer())
        return pc.localDescription.sdp

    async def report_started(self) -> None:
        """Report the call as started (after the answer went out, so as not to delay it)."""
        await self._report(
            "call",
            {
                **self._info(),
                "action": "started",
                "fingerprint": self.claims.fp,
                "break_glass": self.claims.brk,
            },
        )

    async def _open_camera(self) -> None:
        hw = self.hardware
        try:
            if hw.shutter is not None:
                await hw.shutter.open()
            if hw.led is not None:
                hw.led.on()
            assert self._capture is not None
            await self._capture.start()
        except Exception as err:
            log.error("call %s: cannot start the camera: %s", self.call_id, err)
            await self.end(f"camera or shutter failed: {err}")
            return
        while self.state in (CallState.CONNECTING, CallState.STREAMING):
            if hw.ir_light is not None and self._capture is not None:
                if self._capture.is_dark:
                    hw.ir_light.on()
                else:
                    hw.ir_light.off()
            await asyncio.sleep(1.0)

    async def _limit(self) -> None:
        await asyncio.sleep(self.max_duration_s)
        await self.end("maximum duration reached")

    async def end(self, reason: str) -> None:
        """End the call (safe to call many times; the first reason wins)."""
        if self.state in (CallState.ENDING, CallState.ENDED):
            await self.ended.wait()
            return
        self.end_reason = reason
        self._set_state(CallState.ENDING)
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        hw = self.hardware
        # The shutter first: nothing that fails below may keep it open.
        if hw.shutter is not None:
            try:
                await hw.shutter.close()
            except Exception as err:
                log.error("call %s: shutter did not close: %s", self.call_id, err)
        if self._track is not None:
            self._track.stop()
        for track in self._extra:
            track.stop()
        if self._capture is not None:
            await self._capture.stop()
        if hw.ir_light is not None:
            hw.ir_light.off()
        if hw.led is not None:
            hw.led.off()
        with contextlib.suppress(Exception):
            await self._pc.close()
        duration = round(time.monotonic() - self.started_at, 3)
        log.info("call %s ended after %.1f s: %s", self.call_id, duration, reason)
        with contextlib.suppress(Exception):
            await self._hangup(self.call_id, reason)
        with contextlib.suppress(Exception):
            await self._report(
                "call",
                {**self._info(), "action": "ended", "duration_s": duration, "reason": reason},
            )
        self._set_state(CallState.ENDED)
        self.ended.set()
        try:
            self.observer.call_ended(self)
        except Exception:
            log.exception("call %s: the end of the call was not shown", self.call_id)
