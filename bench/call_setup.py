"""Night-check call set-up benchmark: the whole Vaka path next to a bare aiortc pair.

Everything runs on this machine, on loopback (all media on 127.0.0.1), from a private temporary
directory, in one run so that the ratios hold on a noisy machine:

1. **Whole path** — a staff client (:class:`~vaka.staff.client.StaffClient`) dials a night check
   through a real :class:`~vaka.central.service.CentralService` (in this process) and a real
   Mosquitto (TLS, client certificates, ACL) to a real ``vaka-agent --simulate`` in its own
   process; timed from the dial request to the first decoded frame, split into offer gathering,
   ticket + signalling, ICE + DTLS and first keyframe (:class:`~vaka.staff.client.CallTimings`).
2. **Bare pair** — two ``RTCPeerConnection`` in this process exchanging SDP directly (sender:
   :class:`~vaka.agent.media.track.CameraTrack` over a :class:`SyntheticSource`), timed from
   ``createOffer`` to the first decoded frame. Whole-path and bare calls alternate one by one.
3. **Dead STUN server** — both again with a STUN server on 127.0.0.1 that never answers (a bound
   UDP socket nobody reads): the bare pair with aioice's own 5 s gathering wait (emulated with
   ``configure_ice(["127.0.0.1"], 5.0)``: :func:`vaka.rtc.ice.reset_ice` would also drop the
   loopback-only host addresses) and with ``--gather-timeout``; the whole path with that bound on
   both sides and with the shipped default bound (1 s).
4. **Streaming CPU and RSS** — the agent process during a call at 640x480@15 and 1280x720@15
   (restarted for the other size) next to a bare aiortc sender in its own process (this file
   with ``--bare-sender``) streaming the same synthetic source, same bitrate cap, same receiver.

It prints figures, never pass or fail: one JSON object on stdout, readable summary lines and
progress on stderr. ``python bench/call_setup.py --quick`` checks that it works in about a
minute; ``python bench/call_setup.py`` is the full run (20 calls each, 12 s streaming windows).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av
from aiortc import (
    MediaStreamTrack,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)

from vaka.agent.media.capture import Capture
from vaka.agent.media.synthetic import SyntheticSource
from vaka.agent.media.track import CameraTrack
from vaka.rtc.bitrate import cap_video_bitrate
from vaka.rtc.ice import configure_ice, rtc_configuration
from vaka.rtc.pattern import decode_pattern

# The orchestrator's heavier imports (central, staff client, PKI, psutil) are made inside the
# functions that need them, so that the ``--bare-sender`` child stays a bare aiortc sender:
# aiortc, PyAV, OpenCV and numpy, as in a minimal harness.
if TYPE_CHECKING:
    import psutil

    from vaka.central.service import CentralService
    from vaka.provisioning.localpki import LocalPki
    from vaka.staff.client import StaffCall, StaffClient

HOST = "127.0.0.1"
UNIT = "u-bench-cam"
STAFF = "s-bench"
PASSWORD = "correct horse battery"
FPS = 15
SMALL = (640, 480)
LARGE = (1280, 720)
MAX_BITRATE_BPS = 1_000_000
"""The agent's default ``max_bitrate_bps``; the bare sender gets the same cap."""
DEFAULT_GATHER_BOUND_S = 1.0
"""The shipped ``ice_gather_timeout_s`` default (``MediaSettings``)."""
CALL_TIMEOUT_S = 30.0
"""Longest one call set-up may take before the bench gives up on it."""
FRAME_TIMEOUT_S = 5.0
"""Longest wait for the first frame once the whole path's call is answered."""
PHASES = ("gather", "signalling", "ice_dtls", "first_keyframe")

AIMS_TEXT = {
    "whole_median_ms": "whole path median < 300 ms",
    "whole_p95_ms": "whole path p95 < 500 ms",
    "whole_over_bare": "whole path median <= 2.5x bare pair median",
    "dead_stun_whole_median_ms": "dead STUN, whole path (bounded) median < 1000 ms",
    "dead_stun_bare_median_ms": "dead STUN, bare pair (bounded) median < 1000 ms",
    "agent_cpu_over_bare_640": "agent streaming CPU <= 1.3x bare sender at 640x480",
    "agent_cpu_over_bare_1280": "agent streaming CPU <= 1.3x bare sender at 1280x720",
    "agent_rss_mb_640": "agent RSS < 130 MB streaming 640x480",
}
AIM_LIMITS = {
    "whole_median_ms": 300.0,
    "whole_p95_ms": 500.0,
    "whole_over_bare": 2.5,
    "dead_stun_whole_median_ms": 1000.0,
    "dead_stun_bare_median_ms": 1000.0,
    "agent_cpu_over_bare_640": 1.3,
    "agent_cpu_over_bare_1280": 1.3,
    "agent_rss_mb_640": 130.0,
}


def log(text: str) -> None:
    """Progress goes to stderr; stdout carries only the JSON result."""
    print(f"[call_setup {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------ statistics


def summarise(values: Sequence[float]) -> dict[str, Any]:
    """``samples``, ``median``, ``p95`` (linear interpolation), ``min`` and ``max``, in ms."""
    if not values:
        return {"samples": 0, "median": None, "p95": None, "min": None, "max": None}
    ordered = sorted(values)
    p95 = (
        statistics.quantiles(ordered, n=20, method="inclusive")[18]
        if len(ordered) > 1
        else ordered[0]
    )
    return {
        "samples": len(ordered),
        "median": round(statistics.median(ordered), 1),
        "p95": round(p95, 1),
        "min": round(ordered[0], 1),
        "max": round(ordered[-1], 1),
    }


@dataclass
class SetupSample:
    """One call set-up, each step in ms from the start (dial request or ``createOffer``)."""

    offer_ready: float
    answered: float
    connected: float | None
    first_frame: float

    @classmethod
    def from_marks(
        cls, started: float, offer_ready: float, answered: float, connected: float, first: float
    ) -> SetupSample:
        """From ``time.perf_counter`` marks (``connected`` 0 if never seen)."""

        def ms(mark: float) -> float:
            return (mark - started) * 1000

        return cls(ms(offer_ready), ms(answered), ms(connected) if connected else None, ms(first))

    def phases(self) -> dict[str, float | None]:
        """Where the time went: gathering, ticket + signalling, ICE + DTLS, first keyframe."""
        return {
            "gather": self.offer_ready,
            "signalling": self.answered - self.offer_ready,
            "ice_dtls": None if self.connected is None else self.connected - self.answered,
            "first_keyframe": None if self.connected is None else self.first_frame - self.connected,
        }


def summarise_setups(
    samples: Sequence[SetupSample], failures: Sequence[str] = ()
) -> dict[str, Any]:
    """Total (to first frame) statistics plus the median of each phase."""
    phases: dict[str, float | None] = {}
    for name in PHASES:
        values = [v for s in samples if (v := s.phases()[name]) is not None]
        phases[name] = round(statistics.median(values), 1) if values else None
    return {
        "total_ms": summarise([s.first_frame for s in samples]),
        "phases_median_ms": phases,
        "failures": len(failures),
        "failure_reasons": list(failures),
    }


def ratio(a: float | None, b: float | None) -> float | None:
    """``a / b`` rounded, or ``None`` when either is missing or ``b`` is zero."""
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 2)


# ------------------------------------------------------------------------------ bare aiortc pair


@contextlib.contextmanager
def dead_stun_server() -> Iterator[RTCIceServer]:
    """A STUN server on 127.0.0.1 that never answers: a bound UDP socket nobody reads."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((HOST, 0))
    try:
        yield RTCIceServer(f"stun:{HOST}:{sock.getsockname()[1]}")
    finally:
        sock.close()


def synthetic_track(width: int, height: int, fps: int) -> tuple[Capture, CameraTrack]:
    """The agent's media chain without the agent: synthetic pattern -> capture -> track."""
    capture = Capture(SyntheticSource(width, height, fps, night=True), fps)
    return capture, CameraTrack(capture, enhance=False)


async def bare_pair_call(
    width: int = SMALL[0],
    height: int = SMALL[1],
    fps: int = FPS,
    ice_servers: Sequence[RTCIceServer] = (),
) -> SetupSample:
    """One bare aiortc call in this process, createOffer -> first decoded frame.

    Mirrors the whole path's roles: the receiver offers recvonly (like the staff client), the
    sender applies the offer, adds the camera track and answers (like the agent), and the camera
    starts in parallel with the negotiation (like the agent's ``_open_camera``).
    """
    started = time.perf_counter()
    capture, track = synthetic_track(width, height, fps)
    camera = asyncio.create_task(capture.start())
    rx = RTCPeerConnection(rtc_configuration(ice_servers))
    tx = RTCPeerConnection(rtc_configuration(ice_servers))
    remote: asyncio.Future[MediaStreamTrack] = asyncio.get_running_loop().create_future()
    connected = 0.0

    @rx.on("track")
    def _on_track(incoming: MediaStreamTrack) -> None:
        if incoming.kind == "video" and not remote.done():
            remote.set_result(incoming)

    @rx.on("connectionstatechange")
    def _on_state() -> None:
        nonlocal connected
        if rx.connectionState == "connected" and not connected:
            connected = time.perf_counter()

    try:
        rx.addTransceiver("video", direction="recvonly")
        await rx.setLocalDescription(await rx.createOffer())
        offer_ready = time.perf_counter()
        await tx.setRemoteDescription(RTCSessionDescription(rx.localDescription.sdp, "offer"))
        tx.addTrack(track)
        await tx.setLocalDescription(await tx.createAnswer())
        answered = time.perf_counter()
        await rx.setRemoteDescription(RTCSessionDescription(tx.localDescription.sdp, "answer"))
        incoming = await asyncio.wait_for(remote, CALL_TIMEOUT_S)
        frame = await asyncio.wait_for(incoming.recv(), CALL_TIMEOUT_S)
        first = time.perf_counter()
        assert isinstance(frame, av.VideoFrame)
        return SetupSample.from_marks(started, offer_ready, answered, connected, first)
    finally:
        # Peer connections first: the sender then stops asking the track for frames, so
        # stopping the capture does not end a track that is still being read.
        await tx.close()
        await rx.close()
        track.stop()
        camera.cancel()
        with contextlib.suppress(BaseException):
            await camera
        await capture.stop()


# ------------------------------------------------------------------- bare sender (child process)


async def bare_sender_main(width: int, height: int, fps: int, max_bitrate: int) -> None:
    """Child process: a bare aiortc sender, signalled by JSON lines on stdin/stdout.

    Prints ``{"ready": pid}``, reads ``{"sdp": offer}``, answers ``{"sdp": answer}`` and streams
    until stdin reaches its end (the orchestrator closes it), then closes everything.
    """
    configure_ice([HOST])
    cap_video_bitrate(max_bitrate)
    print(json.dumps({"ready": os.getpid()}), flush=True)
    line = await asyncio.to_thread(sys.stdin.readline)
    if not line:
        return
    offer = json.loads(line)["sdp"]
    capture, track = synthetic_track(width, height, fps)
    pc = RTCPeerConnection(rtc_configuration())
    try:
        camera = asyncio.create_task(capture.start())
        await pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
        pc.addTrack(track)
        await pc.setLocalDescription(await pc.createAnswer())
        print(json.dumps({"sdp": pc.localDescription.sdp}), flush=True)
        await camera
        while await asyncio.to_thread(sys.stdin.readline):
            pass
    finally:
        await pc.close()
        track.stop()
        await capture.stop()


@dataclass
class BareSender:
    """The orchestrator's handle on a ``--bare-sender`` child."""

    proc: subprocess.Popen[str]
    log_path: Path

    @classmethod
    def start(cls, directory: Path, width: int, height: int, fps: int) -> BareSender:
        """Start the child (it imports aiortc and says it is ready)."""
        log_path = directory / f"bare-sender-{width}x{height}.log"
        with log_path.open("a") as err:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    str(Path(__file__).resolve()),
                    "--bare-sender",
                    "--width",
                    str(width),
                    "--height",
                    str(height),
                    "--fps",
                    str(fps),
                    "--max-bitrate",
                    str(MAX_BITRATE_BPS),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        return cls(proc, log_path)

    async def read(self, timeout: float = CALL_TIMEOUT_S) -> dict[str, Any]:
        """The child's next JSON line."""
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(self.proc.stdout.readline), timeout)
        if not line:
            raise RuntimeError(f"bare sender exited: {self.log_path.read_text()[-800:]}")
        data: dict[str, Any] = json.loads(line)
        return data

    def send(self, data: dict[str, Any]) -> None:
        """Write one JSON line to the child."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(data) + "\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        """Close its stdin (it hangs up and exits); terminate it if it does not."""
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        stop_process(self.proc)


def stop_process(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """Wait for ``proc`` to exit after a SIGTERM, killing it if it does not. Safe twice."""
    if proc.poll() is None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(2)
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for pipe in (proc.stdout, proc.stdin):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()


# -------------------------------------------------------------------------- streaming figures


@dataclass
class StreamFigures:
    """One sender process over one streaming window."""

    cpu_pct: float
    cpu_pct_idle: float
    rss_mb_idle: float
    rss_mb: float
    rss_mb_max: float
    fps_received: float
    latency_ms: dict[str, Any]
    window_s: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "cpu_pct_of_one_core": round(self.cpu_pct, 1),
            "cpu_pct_idle_before": round(self.cpu_pct_idle, 1),
            "rss_mb_idle": round(self.rss_mb_idle, 1),
            "rss_mb_end": round(self.rss_mb, 1),
            "rss_mb_max": round(self.rss_mb_max, 1),
            "fps_received": round(self.fps_received, 1),
            "capture_to_decoded_ms": self.latency_ms,
            "window_s": round(self.window_s, 1),
        }


def rss_mb(proc: psutil.Process) -> float:
    """Resident set size in MB (10^6 bytes)."""
    return float(proc.memory_info().rss) / 1e6


@dataclass(frozen=True)
class Idle:
    """A process's figures before it streams."""

    cpu_pct: float
    rss_mb: float


async def measure_idle(proc: psutil.Process, seconds: float) -> Idle:
    """CPU (% of one core) over ``seconds`` and RSS at the end, while nothing streams."""
    cpu0, wall0 = proc.cpu_times(), time.monotonic()
    await asyncio.sleep(seconds)
    cpu1, wall1 = proc.cpu_times(), time.monotonic()
    used = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    return Idle(100 * used / (wall1 - wall0), rss_mb(proc))


async def measure_stream(
    next_frame: Callable[[], Awaitable[av.VideoFrame]],
    proc: psutil.Process,
    idle: Idle,
    warmup_s: float,
    window_s: float,
) -> StreamFigures:
    """Receive frames for ``warmup_s``, then measure ``proc``'s CPU and RSS over ``window_s``.

    CPU is user + system time of every thread of ``proc`` over wall time (100 % = one core).
    Every 5th received frame's pattern is decoded for the capture -> decoded delay.
    """
    deadline = time.monotonic() + warmup_s
    while time.monotonic() < deadline:
        await next_frame()
    cpu0, wall0 = proc.cpu_times(), time.monotonic()
    rss_samples: list[float] = []
    latencies: list[float] = []
    frames = 0
    next_rss = wall0
    while (now := time.monotonic()) < wall0 + window_s:
        frame = await next_frame()
        frames += 1
        if frames % 5 == 0:
            reading = decode_pattern(frame.to_ndarray(format="bgr24"))
            if reading is not None:
                latencies.append(reading.age_s(time.time()) * 1000)
        if now >= next_rss:
            rss_samples.append(rss_mb(proc))
            next_rss = now + 0.5
    cpu1, wall1 = proc.cpu_times(), time.monotonic()
    rss_samples.append(rss_mb(proc))
    elapsed = wall1 - wall0
    used = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    return StreamFigures(
        cpu_pct=100 * used / elapsed,
        cpu_pct_idle=idle.cpu_pct,
        rss_mb_idle=idle.rss_mb,
        rss_mb=rss_samples[-1],
        rss_mb_max=max(rss_samples),
        fps_received=frames / elapsed,
        latency_ms=summarise(latencies),
        window_s=elapsed,
    )


async def bare_sender_stream(
    directory: Path, width: int, height: int, warmup_s: float, window_s: float
) -> StreamFigures:
    """Stream from a ``--bare-sender`` child to a receiver here and measure the child."""
    import psutil

    sender = BareSender.start(directory, width, height, FPS)
    rx = RTCPeerConnection(rtc_configuration())
    try:
        ready = await sender.read()
        proc = psutil.Process(int(ready["ready"]))
        await asyncio.sleep(0.5)
        idle = await measure_idle(proc, min(3.0, window_s))
        remote: asyncio.Future[MediaStreamTrack] = asyncio.get_running_loop().create_future()

        @rx.on("track")
        def _on_track(incoming: MediaStreamTrack) -> None:
            if incoming.kind == "video" and not remote.done():
                remote.set_result(incoming)

        rx.addTransceiver("video", direction="recvonly")
        await rx.setLocalDescription(await rx.createOffer())
        sender.send({"sdp": rx.localDescription.sdp})
        answer = await sender.read()
        await rx.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        track = await asyncio.wait_for(remote, CALL_TIMEOUT_S)

        async def next_frame() -> av.VideoFrame:
            frame = await asyncio.wait_for(track.recv(), 10)
            assert isinstance(frame, av.VideoFrame)
            return frame

        return await measure_stream(next_frame, proc, idle, warmup_s, window_s)
    finally:
        await rx.close()
        await asyncio.to_thread(sender.stop)


# ------------------------------------------------------------------ broker, central and agent


def directory_spec_data() -> dict[str, Any]:
    """One night nurse allowed a night check of one citizen's unit now (±2 h)."""
    import datetime as dt
    from zoneinfo import ZoneInfo

    local = dt.datetime.now(ZoneInfo("Europe/Stockholm"))
    return {
        "group": [{"id": "g-night", "name": "Night patrol"}],
        "staff": [
            {
                "id": STAFF,
                "name": "Bench Nurse",
                "role": "night_staff",
                "groups": ["g-night"],
                "password": PASSWORD,
            }
        ],
        "citizen": [{"id": "c-bench", "units": [UNIT]}],
        "permission": [{"group": "g-night", "citizen": "c-bench", "purposes": ["night_check"]}],
        "schedule": [
            {"citizen": "c-bench", "times": [local.strftime("%H:%M")], "tolerance_min": 120}
        ],
    }


@dataclass
class AgentProcess:
    """One ``vaka-agent --simulate`` child with a given ``[media]`` section."""

    proc: subprocess.Popen[bytes]
    log_path: Path
    media: dict[str, Any]

    def tail(self, chars: int = 1500) -> str:
        """The end of its log."""
        return self.log_path.read_text(errors="replace")[-chars:]


@dataclass
class Bench:
    """The running rig: PKI, broker, central, staff client and at most one agent."""

    directory: Path
    pki: LocalPki
    broker_port: int
    central: CentralService
    staff: StaffClient
    agent_env: dict[str, str] = field(default_factory=dict)
    agent: AgentProcess | None = None
    agents_started: int = 0
    notes: list[str] = field(default_factory=list)

    def agent_config(self, media: dict[str, Any]) -> dict[str, Any]:
        """The agent's TOML as a mapping (like ``tests/nightcheck.agent_config``)."""
        files = self.pki.client(UNIT)
        return {
            "unit": {"id": UNIT, "profile": "nightcam", "simulate": True},
            "broker": {
                "host": HOST,
                "port": self.broker_port,
                "server_ca": str(files.server_ca),
                "cert": str(files.cert),
                "key": str(files.key),
                "keepalive_s": 5,
                "reconnect_min_s": 0.2,
                "reconnect_max_s": 1.0,
            },
            "health": {"interval_s": 30},
            "calls": {"ticket_key": str(self.pki.ticket_keys()[1])},
            "media": {
                "width": SMALL[0],
                "height": SMALL[1],
                "fps": FPS,
                "max_bitrate_bps": MAX_BITRATE_BPS,
                "ice_addresses": [HOST],
                **media,
            },
        }

    async def unit_status(self) -> str | None:
        """The presence central holds for the unit."""
        record = await asyncio.to_thread(self.central.store.unit, UNIT)
        return None if record is None else record.presence.status

    async def start_agent(self, **media: Any) -> AgentProcess:
        """(Re)start the agent with these media settings and wait until central sees it."""
        import tomli_w

        await self.stop_agent()
        self.agents_started += 1
        path = self.directory / f"agent-{self.agents_started}.toml"
        path.write_bytes(tomli_w.dumps(self.agent_config(media)).encode())
        log_path = self.directory / f"agent-{self.agents_started}.log"
        with log_path.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "vaka.agent.cli", "--config", str(path), "--simulate"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **self.agent_env},
            )
        self.agent = AgentProcess(proc, log_path, media)
        deadline = time.monotonic() + 30
        while await self.unit_status() != "online":
            if proc.poll() is not None:
                raise RuntimeError(f"agent exited: {self.agent.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"agent not online after 30 s: {self.agent.tail()}")
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # let it settle (subscriptions, first health report)
        log(f"agent pid {proc.pid} online with media {media or '(defaults)'}")
        return self.agent

    def agent_rss_mb(self) -> float | None:
        """The running agent's RSS in MB."""
        import psutil

        if self.agent is None:
            return None
        try:
            return rss_mb(psutil.Process(self.agent.proc.pid))
        except psutil.Error:
            return None

    async def stop_agent(self) -> None:
        """Stop the agent (SIGTERM) and wait until central no longer sees it online."""
        agent, self.agent = self.agent, None
        if agent is None:
            return
        if agent.proc.poll() is None:
            agent.proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(stop_process, agent.proc)
        deadline = time.monotonic() + 10
        while await self.unit_status() == "online" and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    async def dial(self) -> StaffCall:
        """Dial a night check; retries (up to 20 x 0.2 s) while the unit is still busy/away."""
        from vaka.staff.client import StaffError

        for attempt in range(20):
            try:
                return await asyncio.wait_for(self.staff.dial(UNIT, "night_check"), CALL_TIMEOUT_S)
            except StaffError as err:
                if attempt == 19:
                    raise
                if "busy" not in str(err):
                    self.notes.append(f"dial retried: {err}")
                await asyncio.sleep(0.2)
        raise AssertionError("unreachable")

    async def whole_call(self) -> SetupSample:
        """One whole-path night check: dial -> first decoded frame, then hang up."""
        call = await self.dial()
        try:
            try:
                await call.next_frame(timeout=FRAME_TIMEOUT_S)
            except TimeoutError:
                state = (call.pc.iceConnectionState, call.pc.connectionState)
                raise TimeoutError(
                    f"no frame within {FRAME_TIMEOUT_S:.0f} s after the answer "
                    f"(ICE/connection state {state}, track {call.track.done()})"
                ) from None
            t = call.timings
            return SetupSample.from_marks(
                t.started, t.offer_ready, t.answered, t.connected, t.first_frame
            )
        finally:
            await call.hangup()
            await asyncio.sleep(0.2)  # central confirms at once; let the unit finish ending

    async def agent_stream(self, warmup_s: float, window_s: float) -> StreamFigures:
        """One long night check; measures the agent process while it streams."""
        import psutil

        assert self.agent is not None
        proc = psutil.Process(self.agent.proc.pid)
        idle = await measure_idle(proc, min(3.0, window_s))
        call = await self.dial()
        try:

            async def next_frame() -> av.VideoFrame:
                return await call.next_frame(timeout=10)

            return await measure_stream(next_frame, proc, idle, warmup_s, window_s)
        finally:
            await call.hangup()
            await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def running_bench(
    directory: Path,
    agent_env: dict[str, str] | None = None,
    broker_lines: Sequence[str] = (),
) -> AsyncIterator[Bench]:
    """PKI, Mosquitto (TLS, ACL), central with the directory loaded, a logged-in staff client.

    ``broker_lines`` are appended to ``mosquitto.conf`` (experiments, e.g. ``set_tcp_nodelay``).
    """
    from vaka.central.broker import (
        BrokerSettings,
        MosquittoProcess,
        dev_broker_user,
        free_port,
        write_broker_config,
    )
    from vaka.central.config import (
        CentralConfig,
        DatabaseSection,
        HttpSection,
        KeysSection,
        MqttSection,
    )
    from vaka.central.directory import DirectorySpec
    from vaka.central.service import CentralService
    from vaka.provisioning.localpki import LocalPki
    from vaka.staff.client import StaffClient

    pki = LocalPki(directory / "pki").ensure()
    port = free_port()
    conf = write_broker_config(
        directory / "broker",
        BrokerSettings(
            port=port,
            client_ca=pki.client_ca_cert,
            server_cert=pki.broker_cert,
            server_key=pki.broker_key,
            persistence=False,
            user=dev_broker_user(),
            central_identities=("central-1",),
            extra_lines=tuple(broker_lines),
        ),
    )
    broker = MosquittoProcess(conf, HOST, port).start()
    try:
        files = pki.client("central-1")
        central = CentralService(
            CentralConfig(
                mqtt=MqttSection(
                    port=port,
                    server_ca=files.server_ca,
                    cert=files.cert,
                    key=files.key,
                    identity="central-1",
                    keepalive_s=5,
                ),
                keys=KeysSection(ticket_key=pki.ticket_keys()[0]),
                http=HttpSection(port=0),
                database=DatabaseSection(url=f"sqlite:///{directory / 'central.db'}"),
            )
        )
        await central.start()
        try:
            await asyncio.wait_for(central.link.connected.wait(), 15)
            await asyncio.to_thread(
                central.directory.load, DirectorySpec.model_validate(directory_spec_data())
            )
            async with StaffClient(central.url) as staff:
                await staff.login(STAFF, PASSWORD)
                bench = Bench(directory, pki, port, central, staff, dict(agent_env or {}))
                try:
                    yield bench
                finally:
                    await bench.stop_agent()
        finally:
            await central.stop()
    finally:
        broker.stop()


# ---------------------------------------------------------------------------------- the run


@dataclass
class Plan:
    """What one run does."""

    calls: int
    dead_unbounded_calls: int
    default_bound_calls: int
    warmup_s: float
    window_s: float
    gather_timeout_s: float
    quick: bool
    agent_env: dict[str, str] = field(default_factory=dict)
    broker_nodelay: bool = False


async def timed_calls(
    label: str, n: int, make: Callable[[], Awaitable[SetupSample]]
) -> tuple[list[SetupSample], list[str]]:
    """``n`` call set-ups from ``make``; a failed one is skipped and its error returned."""
    samples: list[SetupSample] = []
    failures: list[str] = []
    for _ in range(n):
        try:
            samples.append(await asyncio.wait_for(make(), 2 * CALL_TIMEOUT_S))
        except Exception as err:
            failures.append(f"{type(err).__name__}: {err}"[:300])
            log(f"{label}: a call failed: {failures[-1]}")
    return samples, failures


async def interleaved(
    n: int,
    whole: Callable[[], Awaitable[SetupSample]],
    bare: Callable[[], Awaitable[SetupSample]],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``n`` whole-path and ``n`` bare calls, alternating, after one unmeasured warm-up each."""
    await timed_calls("warm-up whole", 1, whole)
    await timed_calls("warm-up bare", 1, bare)
    whole_samples: list[SetupSample] = []
    bare_samples: list[SetupSample] = []
    whole_failed: list[str] = []
    bare_failed: list[str] = []
    for i in range(n):
        got, failed = await timed_calls("whole path", 1, whole)
        whole_samples += got
        whole_failed += failed
        got, failed = await timed_calls("bare pair", 1, bare)
        bare_samples += got
        bare_failed += failed
        if (i + 1) % 5 == 0 or i + 1 == n:
            log(f"  {i + 1}/{n} calls each")
    return summarise_setups(whole_samples, whole_failed), summarise_setups(
        bare_samples, bare_failed
    )


def median_total(summary: dict[str, Any]) -> float | None:
    """The median set-up time of a :func:`summarise_setups` result."""
    value = summary["total_ms"]["median"]
    return None if value is None else float(value)


async def run(plan: Plan, directory: Path) -> dict[str, Any]:
    """The whole benchmark; returns the result object."""
    from vaka.staff.client import StaffClient

    configure_ice([HOST], plan.gather_timeout_s)
    result: dict[str, Any] = {"machine": machine(), "plan": plan.__dict__}
    broker_lines = ["set_tcp_nodelay true"] if plan.broker_nodelay else []
    async with running_bench(directory, plan.agent_env, broker_lines) as bench:
        # 1 + 2: whole path and bare pair, no ICE servers, 640x480.
        await bench.start_agent()
        await asyncio.sleep(1.0)
        rss_after: list[float | None] = [bench.agent_rss_mb()]

        async def whole_call() -> SetupSample:
            try:
                return await bench.whole_call()
            finally:
                rss_after.append(bench.agent_rss_mb())

        log(f"whole path vs bare pair, {plan.calls} calls each")
        whole, bare = await interleaved(plan.calls, whole_call, bare_pair_call)
        result["setup"] = {
            "whole_path": whole,
            "bare_pair": bare,
            "ratio_median": ratio(median_total(whole), median_total(bare)),
            "ratio_p95": ratio(whole["total_ms"]["p95"], bare["total_ms"]["p95"]),
            "agent_rss_mb_before_and_after_each_call": [
                None if v is None else round(v, 1) for v in rss_after
            ],
        }

        # 4: streaming, agent vs bare sender, at both sizes.
        streaming: dict[str, Any] = {}
        for size in (SMALL, LARGE):
            name = f"{size[0]}x{size[1]}"
            # A fresh agent for each size, as fresh as the bare sender child.
            await bench.start_agent(width=size[0], height=size[1])
            await asyncio.sleep(1.0)
            log(f"streaming {name}@{FPS}: agent, then bare sender ({plan.window_s:.0f} s each)")
            agent = await bench.agent_stream(plan.warmup_s, plan.window_s)
            bare_tx = await bare_sender_stream(
                directory, size[0], size[1], plan.warmup_s, plan.window_s
            )
            streaming[name] = {
                "agent": agent.as_dict(),
                "bare_sender": bare_tx.as_dict(),
                "cpu_ratio": ratio(agent.cpu_pct, bare_tx.cpu_pct),
                "rss_ratio": ratio(agent.rss_mb, bare_tx.rss_mb),
            }
        result["streaming"] = streaming

        # 3: a STUN server that never answers.
        dead_stun: dict[str, Any] = {}
        with dead_stun_server() as stun:
            url = stun.urls if isinstance(stun.urls, str) else stun.urls[0]
            dead_stun["server"] = url
            servers = [stun]
            log(f"dead STUN {url}: bare pair with aioice's own 5 s wait")
            configure_ice([HOST], 5.0)
            try:
                samples, failed = await timed_calls(
                    "bare, unbounded",
                    plan.dead_unbounded_calls,
                    lambda: bare_pair_call(ice_servers=servers),
                )
            finally:
                configure_ice([HOST], plan.gather_timeout_s)
            dead_stun["bare_pair_unbounded"] = summarise_setups(samples, failed)

            bound = plan.gather_timeout_s
            await bench.start_agent(ice_servers=[{"urls": [url]}], ice_gather_timeout_s=bound)
            log(f"dead STUN, gathering bounded to {bound} s both sides, {plan.calls} calls each")
            original = bench.staff.ice_servers
            bench.staff.ice_servers = servers
            try:
                whole, bare = await interleaved(
                    plan.calls, bench.whole_call, lambda: bare_pair_call(ice_servers=servers)
                )
            finally:
                bench.staff.ice_servers = original
            dead_stun["gather_timeout_s"] = bound
            dead_stun["whole_path_bounded"] = whole
            dead_stun["bare_pair_bounded"] = bare

            if plan.default_bound_calls:
                default = DEFAULT_GATHER_BOUND_S
                await bench.start_agent(ice_servers=[{"urls": [url]}])
                configure_ice([HOST], default)
                log(f"dead STUN, shipped default bound {default} s, whole path")
                try:
                    with_stun = StaffClient(bench.central.url, ice_servers=servers)
                    async with with_stun:
                        await with_stun.login(STAFF, PASSWORD)
                        bench.staff, plain = with_stun, bench.staff
                        try:
                            samples, failed = await timed_calls(
                                "whole, default bound", plan.default_bound_calls, bench.whole_call
                            )
                        finally:
                            bench.staff = plain
                finally:
                    configure_ice([HOST], plan.gather_timeout_s)
                dead_stun["whole_path_default_bound"] = summarise_setups(samples, failed)
        result["dead_stun"] = dead_stun
        result["notes"] = bench.notes
    result["aims"] = aims(result)
    return result


def aims(result: dict[str, Any]) -> dict[str, Any]:
    """Each aim from the issue with the measured value and whether it is within the aim."""
    setup, dead, stream = result["setup"], result["dead_stun"], result["streaming"]
    values: dict[str, float | None] = {
        "whole_median_ms": setup["whole_path"]["total_ms"]["median"],
        "whole_p95_ms": setup["whole_path"]["total_ms"]["p95"],
        "whole_over_bare": setup["ratio_median"],
        "dead_stun_whole_median_ms": dead["whole_path_bounded"]["total_ms"]["median"],
        "dead_stun_bare_median_ms": dead["bare_pair_bounded"]["total_ms"]["median"],
        "agent_cpu_over_bare_640": stream["640x480"]["cpu_ratio"],
        "agent_cpu_over_bare_1280": stream["1280x720"]["cpu_ratio"],
        "agent_rss_mb_640": stream["640x480"]["agent"]["rss_mb_max"],
    }
    return {
        name: {
            "aim": AIMS_TEXT[name],
            "value": value,
            "within_aim": None if value is None else value <= AIM_LIMITS[name],
        }
        for name, value in values.items()
    }


def machine() -> dict[str, Any]:
    """Where the figures were taken."""
    import aioice
    import aiortc

    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "aiortc": aiortc.__version__,
        "aioice": aioice.__version__,
        "pyav": av.__version__,
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def summary_lines(result: dict[str, Any]) -> list[str]:
    """Readable lines for a person."""
    lines = [
        "machine: {nproc} CPU, {cpu_model}, Python {python}, aiortc {aiortc}".format(
            **result["machine"]
        )
    ]

    def setup_line(label: str, s: dict[str, Any]) -> str:
        t, p = s["total_ms"], s["phases_median_ms"]
        return (
            f"{label}: median {t['median']} ms, p95 {t['p95']} ms (n={t['samples']}, "
            f"failed {s['failures']}) | gather {p['gather']}, signalling {p['signalling']}, "
            f"ICE+DTLS {p['ice_dtls']}, first keyframe {p['first_keyframe']} ms"
        )

    setup = result["setup"]
    lines.append(setup_line("whole path", setup["whole_path"]))
    lines.append(setup_line("bare pair ", setup["bare_pair"]))
    lines.append(f"whole/bare: median x{setup['ratio_median']}, p95 x{setup['ratio_p95']}")
    rss = setup["agent_rss_mb_before_and_after_each_call"]
    lines.append(f"agent RSS before the calls {rss[0]} MB, after call 1 {rss[1]}, last {rss[-1]}")
    dead = result["dead_stun"]
    lines.append(setup_line("dead STUN, bare, aioice 5 s wait", dead["bare_pair_unbounded"]))
    bound = dead["gather_timeout_s"]
    lines.append(setup_line(f"dead STUN, bare, bound {bound} s", dead["bare_pair_bounded"]))
    lines.append(setup_line(f"dead STUN, whole, bound {bound} s", dead["whole_path_bounded"]))
    if "whole_path_default_bound" in dead:
        lines.append(
            setup_line(
                f"dead STUN, whole, default bound {DEFAULT_GATHER_BOUND_S} s",
                dead["whole_path_default_bound"],
            )
        )
    for size, s in result["streaming"].items():
        a, b = s["agent"], s["bare_sender"]
        lines.append(
            f"streaming {size}@{FPS}: agent {a['cpu_pct_of_one_core']} % CPU, "
            f"(idle {a['cpu_pct_idle_before']}), RSS {a['rss_mb_max']} MB "
            f"(idle {a['rss_mb_idle']}), {a['fps_received']} fps | "
            f"bare sender {b['cpu_pct_of_one_core']} % CPU (idle {b['cpu_pct_idle_before']}), "
            f"RSS {b['rss_mb_max']} MB (idle {b['rss_mb_idle']}), {b['fps_received']} fps | "
            f"CPU x{s['cpu_ratio']}"
        )
    for aim in result["aims"].values():
        verdict = {True: "within aim", False: "MISSES aim", None: "no figure"}[aim["within_aim"]]
        lines.append(f"aim: {aim['aim']}: {aim['value']} -> {verdict}")
    return lines


# ----------------------------------------------------------------------------- command line


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command line."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--calls", type=int, default=20, help="call set-ups of each kind (20)")
    p.add_argument("--quick", action="store_true", help="5 calls, short streaming windows")
    p.add_argument("--json", type=Path, default=None, help="also write the result here")
    p.add_argument(
        "--gather-timeout",
        type=float,
        default=0.3,
        help="ICE gathering bound (s) for the dead-STUN runs, both sides (0.3)",
    )
    p.add_argument("--window", type=float, default=12.0, help="streaming window (s) (12)")
    p.add_argument("--timeout", type=float, default=900.0, help="give up after this long (900 s)")
    p.add_argument(
        "--agent-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the agent processes (experiments, e.g. MALLOC_ARENA_MAX=2)",
    )
    p.add_argument(
        "--broker-nodelay",
        action="store_true",
        help="experiment: `set_tcp_nodelay true` in mosquitto.conf (Nagle off, broker side)",
    )
    p.add_argument("--bare-sender", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--width", type=int, default=SMALL[0], help=argparse.SUPPRESS)
    p.add_argument("--height", type=int, default=SMALL[1], help=argparse.SUPPRESS)
    p.add_argument("--fps", type=int, default=FPS, help=argparse.SUPPRESS)
    p.add_argument("--max-bitrate", type=int, default=MAX_BITRATE_BPS, help=argparse.SUPPRESS)
    return p.parse_args(argv)


async def _main(plan: Plan, timeout: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    with tempfile.TemporaryDirectory(prefix="vaka-call-bench-") as tmp:
        return await asyncio.wait_for(run(plan, Path(tmp)), timeout)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; the exit status says only whether the benchmark ran."""
    args = parse_args(argv)
    if args.bare_sender:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        asyncio.run(bare_sender_main(args.width, args.height, args.fps, args.max_bitrate))
        return 0
    quick = bool(args.quick)
    plan = Plan(
        calls=5 if quick and args.calls == 20 else args.calls,
        dead_unbounded_calls=1 if quick else 2,
        default_bound_calls=1 if quick else 3,
        warmup_s=1.0 if quick else 2.0,
        window_s=4.0 if quick else args.window,
        gather_timeout_s=args.gather_timeout,
        quick=quick,
        agent_env=dict(item.split("=", 1) for item in args.agent_env),
        broker_nodelay=bool(args.broker_nodelay),
    )
    started = time.monotonic()
    result = asyncio.run(_main(plan, args.timeout))
    result["run_s"] = round(time.monotonic() - started, 1)
    result["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    text = json.dumps(result, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")
    for line in summary_lines(result):
        print(line, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
