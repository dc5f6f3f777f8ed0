"""The bare aiortc pair in this process and the ``--bare-sender`` child it is compared with.

Only aiortc, PyAV and the agent's media chain here: the child stays a bare aiortc sender.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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

from .common import CALL_TIMEOUT_S, FPS, HOST, MAX_BITRATE_BPS, SMALL, stop_process
from .figures import SetupSample

ENTRY_POINT = Path(__file__).resolve().parent.parent / "call_setup.py"
"""The script the ``--bare-sender`` child runs (``bench/call_setup.py``)."""


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
                    str(ENTRY_POINT),
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
