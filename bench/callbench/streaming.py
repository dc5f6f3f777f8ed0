"""Streaming CPU and RSS of one sender process: the agent or the ``--bare-sender`` child."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription

from vaka.rtc.ice import rtc_configuration
from vaka.rtc.pattern import decode_pattern

from .bare import BareSender
from .common import CALL_TIMEOUT_S, FPS
from .figures import summarise

if TYPE_CHECKING:
    import psutil


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
