"""Two-way call benchmark: a bare aiortc pair on this machine, both sides sending video and audio.

What a ``tv`` unit does in a video visit: it sends its camera (640x480 pattern, night greys) and
its microphone (a 440 Hz tone) and receives the staff member's camera (640x480 day pattern) and
voice (a 1000 Hz tone), which it turns into BGR pictures for the screen (:class:`RemoteVideo`
with a callback, as the TV screen will use it) and measures (:class:`AudioSink`).

The unit side runs in a child process (``--unit``), so that the CPU and memory figures are its
own; the staff side runs here. SDP goes over the child's stdin/stdout as JSON lines; media over
127.0.0.1. After both sides have received their first frames and a warm-up second, the counts
and the child's CPU time are sampled at the start and end of a window of ``--seconds``::

    python bench/two_way_call.py                 # 20 s window
    python bench/two_way_call.py --seconds 5     # quick check

Prints one JSON object and one readable line. Figures: docs/benchmarks.md, "Two-way call".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

if not __package__:  # run as a script: make ``vaka`` importable from the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription

from vaka.agent.media.audio import AudioSink, ToneTrack
from vaka.agent.media.capture import Capture
from vaka.agent.media.remote import RemoteVideo
from vaka.agent.media.settings import MediaSettings, apply_process_settings
from vaka.agent.media.source import BgrImage
from vaka.agent.media.synthetic import SyntheticSource
from vaka.agent.media.track import CameraTrack
from vaka.rtc.ice import rtc_configuration
from vaka.rtc.pattern import decode_pattern

WIDTH, HEIGHT, FPS = 640, 480, 15
UNIT_TONE_HZ, STAFF_TONE_HZ = 440.0, 1000.0
WARM_UP_S = 1.0
SETTINGS = MediaSettings(ice_addresses=["127.0.0.1"], ice_gather_timeout_s=1.0)


class Side:
    """One end of the call: a camera and a tone out, a screen and a sink in."""

    def __init__(self, *, night: bool, tone_hz: float) -> None:
        self.capture = Capture(SyntheticSource(WIDTH, HEIGHT, FPS, night=night))
        self.tone_hz = tone_hz
        self.pc = RTCPeerConnection(rtc_configuration())
        self.shown = 0
        self.video = RemoteVideo(on_frame=self._show)
        self.audio = AudioSink()
        self.pc.on("track", self._on_track)

    def _show(self, image: BgrImage) -> None:
        self.shown += 1  # where the TV screen would draw the picture

    def _on_track(self, track: MediaStreamTrack) -> None:
        (self.video if track.kind == "video" else self.audio).start(track)

    async def start(self) -> None:
        await self.capture.start()
        self.pc.addTrack(CameraTrack(self.capture))
        self.pc.addTrack(ToneTrack(self.tone_hz))

    def counts(self) -> dict[str, Any]:
        latest = self.video.latest
        return {
            "video_frames": self.video.frames,
            "audio_frames": self.audio.frames,
            "video_readable": latest is not None and decode_pattern(latest) is not None,
            "dominant_hz": round(hz, 1) if (hz := self.audio.dominant_hz) is not None else None,
        }

    async def close(self) -> None:
        await self.pc.close()
        await self.video.stop()
        await self.audio.stop()
        await self.capture.stop()


# -- the unit: a child process driven over stdin/stdout ---------------------------------------


async def _stdin_lines() -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


def _send(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def run_unit() -> None:
    """The ``--unit`` child: answer the offer, then report counts on each ``mark``."""
    apply_process_settings(SETTINGS)
    unit = Side(night=True, tone_hz=UNIT_TONE_HZ)
    await unit.start()
    reader = await _stdin_lines()
    _send({"ready": True})
    try:
        while line := await reader.readline():
            command = json.loads(line)
            if "offer" in command:
                await unit.pc.setRemoteDescription(RTCSessionDescription(command["offer"], "offer"))
                await unit.pc.setLocalDescription(await unit.pc.createAnswer())
                _send({"answer": unit.pc.localDescription.sdp})
            elif command.get("cmd") == "mark":
                _send(unit.counts())
            elif command.get("cmd") == "stop":
                break
    finally:
        await unit.close()


# -- the staff side and the measurement -----------------------------------------------------------


async def _ask(proc: asyncio.subprocess.Process, message: dict[str, Any] | None) -> dict[str, Any]:
    """Send ``message`` (if any) to the unit child and return its next answer."""
    assert proc.stdin is not None and proc.stdout is not None
    if message is not None:
        proc.stdin.write((json.dumps(message) + "\n").encode())
        await proc.stdin.drain()
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    if not line:
        raise RuntimeError("the unit process ended early (see its stderr)")
    answer: dict[str, Any] = json.loads(line)
    return answer


async def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def run_staff(seconds: float) -> dict[str, Any]:
    """Start the unit child, call it, measure a window of ``seconds``; returns the figures."""
    import psutil  # only the measuring side needs it

    apply_process_settings(SETTINGS)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(Path(__file__).resolve()),
        "--unit",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    unit_proc = psutil.Process(proc.pid)
    staff = Side(night=False, tone_hz=STAFF_TONE_HZ)
    try:
        await staff.start()
        await _ask(proc, None)  # the unit has imported everything and opened its camera
        started = time.perf_counter()
        await staff.pc.setLocalDescription(await staff.pc.createOffer())
        answer = await _ask(proc, {"offer": staff.pc.localDescription.sdp})
        await staff.pc.setRemoteDescription(RTCSessionDescription(answer["answer"], "answer"))
        await _wait(lambda: staff.video.frames and staff.audio.frames, 20, "media from the unit")
        first_frame_ms = ((staff.video.first_frame_at or 0) - started) * 1000
        await asyncio.sleep(WARM_UP_S)

        unit_before, staff_before = await _ask(proc, {"cmd": "mark"}), staff.counts()
        cpu_before, t_before = unit_proc.cpu_times(), time.perf_counter()
        rss: list[float] = []
        while time.perf_counter() - t_before < seconds:
            await asyncio.sleep(min(1.0, seconds / 5))
            rss.append(unit_proc.memory_info().rss / 2**20)
        unit_after, staff_after = await _ask(proc, {"cmd": "mark"}), staff.counts()
        cpu_after, elapsed = unit_proc.cpu_times(), time.perf_counter() - t_before
    finally:
        if proc.returncode is None and proc.stdin is not None:
            proc.stdin.write(b'{"cmd": "stop"}\n')
            await proc.stdin.drain()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        await staff.close()

    cpu_s = (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)

    def rate(after: dict[str, Any], before: dict[str, Any], key: str) -> float:
        return round((after[key] - before[key]) / elapsed, 1)

    return {
        "window_s": round(elapsed, 1),
        "video": f"{WIDTH}x{HEIGHT}@{FPS} VP8 both ways",
        "cpu_count": os.cpu_count(),
        "first_frame_ms": round(first_frame_ms),
        "unit_to_staff": {
            "video_fps": rate(staff_after, staff_before, "video_frames"),
            "audio_frames_per_s": rate(staff_after, staff_before, "audio_frames"),
            "audio_frames": staff_after["audio_frames"],
            "video_readable": staff_after["video_readable"],
            "dominant_hz": staff_after["dominant_hz"],
        },
        "staff_to_unit": {
            "video_fps": rate(unit_after, unit_before, "video_frames"),
            "audio_frames_per_s": rate(unit_after, unit_before, "audio_frames"),
            "audio_frames": unit_after["audio_frames"],
            "video_readable": unit_after["video_readable"],
            "dominant_hz": unit_after["dominant_hz"],
        },
        "unit_cpu_percent": round(100 * cpu_s / elapsed, 1),
        "unit_rss_mb": {"mean": round(sum(rss) / len(rss), 1), "max": round(max(rss), 1)},
    }


def readable(f: dict[str, Any]) -> str:
    """One line for people."""
    out, into = f["unit_to_staff"], f["staff_to_unit"]
    return (
        f"two-way {f['video']}, {f['window_s']} s: unit->staff {out['video_fps']} fps video, "
        f"{out['audio_frames_per_s']} audio frames/s ({out['dominant_hz'] or 0:.0f} Hz); "
        f"staff->unit {into['video_fps']} fps, {into['audio_frames_per_s']} audio frames/s "
        f"({into['dominant_hz'] or 0:.0f} Hz); unit process CPU {f['unit_cpu_percent']} % of a "
        f"core, RSS {f['unit_rss_mb']['mean']} MB (max {f['unit_rss_mb']['max']})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="measuring window (s)")
    parser.add_argument("--unit", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.unit:
        asyncio.run(run_unit())
        return 0
    figures = asyncio.run(run_staff(args.seconds))
    print(json.dumps(figures, indent=2))
    print(readable(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
