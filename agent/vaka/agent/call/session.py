"""One call on the unit, from a verified offer to a closed shutter.

State machine: ``connecting -> streaming -> ending -> ended``. A call the unit places to another
TV (:meth:`CallSession.offer`, then :meth:`CallSession.accept`) comes up the same way once the
answer's ticket passed the same checks. After the offer passed
:class:`~vaka.agent.call.guard.OfferGuard`, the call reaches media in steps, each waiting for
the one before: the peer connection is up (DTLS with the fingerprint the ticket names), the
viewer answered on the call's presence channel (:mod:`vaka.agent.call.presence`), the camera
runs and its first frame went out (with the shutter still closed) — only then is the call
reported ``started`` and the shutter opened. A call that does not get there within the setup
deadline ends and frees the unit. Whatever ends the call — hang-up, maximum duration, the
viewer going silent, ICE/DTLS failure, no media in time, the agent stopping, a shutter fault —
runs the same :meth:`CallSession.end`, which always closes the shutter first. The broker link is
not among them: the viewer's presence is proven on the media path.

A night check also runs the scene estimate (:mod:`vaka.agent.media.estimate`) while it streams:
each change goes to the caller with the view level (a ``state`` with an ``estimate``), and the
last one is in the call's ``ended`` event, for the supervision's audit entry.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from enum import Enum
from typing import Any

from aiortc import (
    MediaStreamTrack,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)

from vaka.agent.call.observer import CallObserver
from vaka.agent.call.presence import MediaDeadlines, PresenceWatch
from vaka.agent.hw.hardware import Hardware
from vaka.agent.media.capture import Capture
from vaka.agent.media.estimate import (
    Estimate,
    EstimateWatch,
    SceneEstimator,
    estimate_detail,
)
from vaka.agent.media.privacy import ViewGate
from vaka.agent.media.settings import MediaSettings, make_source
from vaka.agent.media.track import CameraTrack
from vaka.protocol.messages import SceneEstimate, SignalPayload
from vaka.provisioning.tickets import TicketClaims, start_view
from vaka.rtc import presence
from vaka.rtc.ice import rtc_configuration

log = logging.getLogger(__name__)

Report = Callable[[str, dict[str, Any]], Awaitable[None]]
Hangup = Callable[[str, str], Awaitable[None]]
Say = Callable[[SignalPayload], Awaitable[None]]


def call_ice_servers(claims: TicketClaims, media: MediaSettings) -> list[RTCIceServer]:
    """The relay credential central put in the ticket for this call, then the configured servers.

    The ticket's come first because aiortc uses only the first STUN and the first TURN URL; a
    unit's configuration may name servers too, but carries no long-lived relay secret.
    """
    servers = media.rtc_ice_servers()
    relay = claims.rly
    if relay is None:
        return servers
    stun = [url for url in relay.urls if url.startswith("stun:")]
    turn = [url for url in relay.urls if not url.startswith("stun:")]
    ticket = [RTCIceServer(urls=stun)] if stun else []
    if turn:
        ticket.append(RTCIceServer(urls=turn, username=relay.username, credential=relay.credential))
    return ticket + servers


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
        deadlines: MediaDeadlines | None = None,
        say: Say | None = None,
    ) -> None:
        self.claims = claims
        self.call_id = claims.cid
        self.max_duration_s = max_duration_s
        self.hardware = hardware
        self.media = media
        self._report = report
        self._hangup = hangup
        self._say = say
        self.observer = observer or CallObserver()
        self.deadlines = deadlines or MediaDeadlines()
        self.presence = PresenceWatch(self.deadlines)
        #: what the picture shows: the ticket's level, ``clear`` only after a verified escalation
        self.view = ViewGate(start_view(claims))
        self.state = CallState.CONNECTING
        self.started_at = time.monotonic()
        self.end_reason: str | None = None
        self.ended = asyncio.Event()
        self._pc = RTCPeerConnection(rtc_configuration(call_ice_servers(claims, media)))
        self._capture: Capture | None = None
        self._track: CameraTrack | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._extra: list[MediaStreamTrack] = []
        self._sender: RTCRtpSender | None = None
        self._watch: EstimateWatch | None = None
        self._connected = False
        self.media_after_s: float | None = None
        "Seconds from taking the call to media flowing (``None`` until it does)."

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
        """Answer the offer (returns the answer SDP); the call then comes up by itself."""
        self._wire()
        pc = self._pc
        self._spawn(self._limit(), "limit")
        self._spawn(self._setup_deadline(), "setup")
        await pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        assert self._track is not None
        self._sender = pc.addTrack(self._track)
        offered = frozenset(
            line[2:].split(" ", 1)[0] for line in offer_sdp.splitlines() if line.startswith("m=")
        )
        for track in self.observer.extra_tracks(self.claims, offered):
            if track.kind in offered:
                self._extra.append(track)
                pc.addTrack(track)
        await pc.setLocalDescription(await pc.createAnswer())
        return pc.localDescription.sdp

    async def offer(self) -> str:
        """Make the offer of a call this unit places (to another citizen's TV): the presence
        channel, the camera and the microphone; returns the offer SDP. Nothing runs until
        :meth:`accept` takes the answer, and the camera only once the other side's heartbeat
        came (a ping of its own counts, as does an answer to ours)."""
        self._wire()
        pc = self._pc
        self.presence.peer_pings = True
        self.presence.adopt(pc.createDataChannel(presence.LABEL, ordered=False, maxRetransmits=0))
        assert self._track is not None
        self._sender = pc.addTrack(self._track)
        for track in self.observer.extra_tracks(self.claims, frozenset({"audio", "video"})):
            if track.kind == "audio":
                self._extra.append(track)
                pc.addTrack(track)
        await pc.setLocalDescription(await pc.createOffer())
        return pc.localDescription.sdp

    async def accept(self, answer_sdp: str, claims: TicketClaims, max_duration_s: float) -> None:
        """Take the other side's answer to :meth:`offer`, with the ticket that names its
        fingerprint (checked by the caller); the call then comes up by itself."""
        self.claims, self.max_duration_s = claims, max_duration_s
        self.started_at = time.monotonic()
        self._spawn(self._limit(), "limit")
        self._spawn(self._setup_deadline(), "setup")
        await self._pc.setRemoteDescription(RTCSessionDescription(answer_sdp, "answer"))

    async def discard(self) -> None:
        """Drop an offer that was never answered: no camera ran, nothing to report."""
        if self.state in (CallState.ENDING, CallState.ENDED):
            return
        self.end_reason = "not answered"
        self._set_state(CallState.ENDED)
        for task in self._tasks:
            task.cancel()
        for track in (self._track, *self._extra):
            if track is not None:
                track.stop()
        with contextlib.suppress(Exception):
            await self._pc.close()
        self.ended.set()

    def _wire(self) -> None:
        """The camera's track and the peer connection's handlers (both directions)."""
        capture = Capture(
            make_source(self.media), self.media.fps, dark_threshold=self.media.dark_below
        )
        self._capture = capture
        self._track = CameraTrack(capture, enhance=self.media.enhance_low_light, view=self.view)
        pc = self._pc

        @pc.on("connectionstatechange")
        async def _on_state() -> None:
            state = pc.connectionState
            if state == "connected" and not self._connected and self.state is CallState.CONNECTING:
                self._connected = True
                # DTLS has proven that the peer holds the key whose fingerprint the ticket
                # names, so a replayed ticket never gets further than this.
                self._spawn(self.presence.run(self.end, self.call_id), "presence")
                self._spawn(self._bring_up(), "bring-up")
            elif state in ("failed", "closed"):
                await self.end(f"connection {state} (ICE/DTLS)")

        @pc.on("datachannel")
        def _on_channel(channel: Any) -> None:
            if not self.presence.adopt(channel):
                log.warning("call %s: data channel %r refused", self.call_id, channel.label)
                channel.close()

        @pc.on("track")
        def _on_track(track: MediaStreamTrack) -> None:
            self.observer.remote_track(self, track)

    def _spawn(self, coro: Coroutine[Any, Any, None], what: str) -> None:
        self._tasks.append(asyncio.create_task(coro, name=f"{what}-{self.call_id}"))

    async def _bring_up(self) -> None:
        """From DTLS up to media flowing: the viewer answers, the camera's first frame goes out
        (shutter still closed), the call is reported started, then the shutter opens."""
        hw = self.hardware
        try:
            await self.presence.heard.wait()
            assert self._capture is not None
            await self._capture.start()
            await self._first_frame_sent()
        except Exception as err:
            log.error("call %s: cannot start the camera: %s", self.call_id, err)
            await self.end(f"camera or shutter failed: {err}")
            return
        if self.state is not CallState.CONNECTING:
            return
        self.media_after_s = round(time.monotonic() - self.started_at, 3)
        self._set_state(CallState.STREAMING)
        await self._report_started()
        self.observer.call_connected(self)
        self._watch_scene()
        try:
            if hw.shutter is not None:
                await hw.shutter.open()
            if hw.led is not None:
                hw.led.on()
        except Exception as err:
            log.error("call %s: cannot open the shutter: %s", self.call_id, err)
            await self.end(f"camera or shutter failed: {err}")
            return
        while self.state is CallState.STREAMING:
            await asyncio.sleep(1.0)
            if hw.ir_light is not None and self._capture is not None:
                if self._capture.is_dark:
                    hw.ir_light.on()
                else:
                    hw.ir_light.off()

    def _watch_scene(self) -> None:
        """A night check: estimate the scene while it streams (the estimate's task ends with
        the capture, or is cancelled with the call's other tasks)."""
        if self.claims.purpose != "night_check" or self._capture is None:
            return
        estimator = SceneEstimator(self.media.bed_region)
        self._watch = EstimateWatch(self._capture, estimator, self._tell_estimate)
        self._spawn(self._watch.run(), "estimate")

    async def _tell_estimate(self, estimate: Estimate) -> None:
        """The estimate to the caller, with the view it goes beside."""
        if self._say is None or self.state is not CallState.STREAMING:
            return
        scene = SceneEstimate(movement=estimate.movement, person_in_bed=estimate.person_in_bed)
        await self._say(
            SignalPayload(kind="state", call_id=self.call_id, state=self.view.level, estimate=scene)
        )

    async def _first_frame_sent(self) -> None:
        """Return once the camera's first RTP packet went out to the viewer."""
        while self._sender is not None:
            for stats in (await self._sender.getStats()).values():
                if getattr(stats, "type", None) == "outbound-rtp" and stats.packetsSent > 0:
                    return
            await asyncio.sleep(0.02)

    async def _report_started(self) -> None:
        """Report the call as started: media flows (the record's "call started")."""
        with contextlib.suppress(Exception):
            await self._report(
                "call",
                {
                    **self._info(),
                    "action": "started",
                    "fingerprint": self.claims.fp,
                    "break_glass": self.claims.brk,
                    "media_after_s": self.media_after_s,
                    "view": self.view.level,
                },
            )

    async def _setup_deadline(self) -> None:
        await asyncio.sleep(self.deadlines.setup_s)
        if self.state is CallState.CONNECTING:
            await self.end(f"no media within {self.deadlines.setup_s:g} s of taking the call")

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
        # The unit is free before anything goes to the broker, which may be frozen: the events
        # wait on the link, the unit does not wait for them.
        self._set_state(CallState.ENDED)
        self.ended.set()
        try:
            self.observer.call_ended(self)
        except Exception:
            log.exception("call %s: the end of the call was not shown", self.call_id)
        with contextlib.suppress(Exception):
            await self._hangup(self.call_id, reason)
        with contextlib.suppress(Exception):
            await self._report(
                "call",
                {
                    **self._info(),
                    "action": "ended",
                    "duration_s": duration,
                    "reason": reason,
                    # A call that never reached media is no supervision performed.
                    "media": self.media_after_s is not None,
                    # The last estimate, never a picture: what the night check could tell.
                    **(estimate_detail(self._watch.latest) if self._watch is not None else {}),
                },
            )
