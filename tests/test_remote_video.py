"""vaka.agent.media.remote: the staff member's video received on the TV, over a real aiortc pair.

The staff side sends the synthetic pattern (:mod:`vaka.rtc.pattern`) through the unit's own camera
track; the counter decoded from :attr:`RemoteVideo.latest` shows that new pictures keep arriving.
Media stays on 127.0.0.1.
"""

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiortc import MediaStreamTrack, RTCPeerConnection

from vaka.agent.media.capture import Capture
from vaka.agent.media.remote import RemoteVideo
from vaka.agent.media.source import BgrImage
from vaka.agent.media.synthetic import SyntheticSource
from vaka.agent.media.track import CameraTrack
from vaka.devstack.polling import wait_for
from vaka.rtc.ice import rtc_configuration
from vaka.rtc.pattern import decode_pattern


@pytest.fixture
async def staff_camera() -> AsyncIterator[Capture]:
    """The staff member's camera: the day pattern at 640x480, 15 frames a second."""
    capture = Capture(SyntheticSource(640, 480, 15, night=False))
    await capture.start()
    try:
        yield capture
    finally:
        await capture.stop()


async def _call(
    staff_camera: Capture, remote: RemoteVideo
) -> tuple[RTCPeerConnection, RTCPeerConnection]:
    """Staff sends video, the unit receives it into ``remote``; returns (staff, unit)."""
    staff = RTCPeerConnection(rtc_configuration())
    unit = RTCPeerConnection(rtc_configuration())

    def on_track(track: MediaStreamTrack) -> None:
        if track.kind == "video":
            remote.start(track)

    unit.on("track", on_track)
    staff.addTrack(CameraTrack(staff_camera))
    await staff.setLocalDescription(await staff.createOffer())
    await unit.setRemoteDescription(staff.localDescription)
    await unit.setLocalDescription(await unit.createAnswer())
    await staff.setRemoteDescription(unit.localDescription)
    return staff, unit


def _counter(image: BgrImage | None) -> int | None:
    if image is None:
        return None
    reading = decode_pattern(image)
    return reading.counter if reading is not None else None


async def test_remote_pattern_arrives_and_keeps_moving(
    loopback_ice: None, staff_camera: Capture
) -> None:
    shown: list[int | None] = []
    remote = RemoteVideo(on_frame=lambda image: shown.append(_counter(image)))
    assert remote.latest is None and remote.frames == 0 and remote.first_frame_at is None
    staff, unit = await _call(staff_camera, remote)
    try:
        await wait_for(lambda: remote.frames >= 3, 10, what="the first remote frames")
        assert remote.first_frame_at is not None
        assert remote.size == (640, 480)
        image = remote.latest
        assert image is not None and image.shape == (480, 640, 3) and image.dtype.name == "uint8"
        first = _counter(image)
        assert first is not None, "the received picture does not carry the pattern"
        await wait_for(lambda: (_counter(remote.latest) or -1) >= first + 5, 10, what="5 more")
        # Every picture handed to the screen was readable, in order, without repeats.
        readable = [c for c in shown if c is not None]
        assert len(readable) >= 0.9 * len(shown)
        assert readable == sorted(set(readable))
        assert remote.frames == len(shown)
        assert remote.callback_errors == 0
    finally:
        await staff.close()
        await unit.close()
    await asyncio.wait_for(remote.ended.wait(), 5)
    assert not remote.running
    assert remote.latest is not None  # the last picture stays for the screen
    await remote.stop()


async def test_a_failing_screen_does_not_stop_reception(
    loopback_ice: None, staff_camera: Capture
) -> None:
    def broken_screen(image: BgrImage) -> None:
        raise RuntimeError("display gone")

    remote = RemoteVideo(on_frame=broken_screen)
    staff, unit = await _call(staff_camera, remote)
    try:
        await wait_for(lambda: remote.frames >= 5, 10, what="frames despite the failing screen")
        assert remote.callback_errors == remote.frames
        assert _counter(remote.latest) is not None
        await remote.stop()
        assert remote.ended.is_set() and not remote.running
        stopped_at = remote.frames
        await asyncio.sleep(0.3)
        assert remote.frames == stopped_at  # stop() really stops reading
        await remote.stop()
    finally:
        await staff.close()
        await unit.close()


async def test_remote_video_refuses_audio_and_a_second_track() -> None:
    remote = RemoteVideo()

    class Audio(MediaStreamTrack):
        kind = "audio"

        async def recv(self) -> None:  # type: ignore[override]
            await asyncio.Event().wait()

    class Video(MediaStreamTrack):
        kind = "video"

        async def recv(self) -> None:  # type: ignore[override]
            await asyncio.Event().wait()

    with pytest.raises(ValueError, match="reads video tracks, got audio"):
        remote.start(Audio())
    remote.start(Video())
    with pytest.raises(ValueError, match="already reads a track"):
        remote.start(Video())
    await remote.stop()
