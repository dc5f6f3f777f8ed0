"""vaka.agent.media: sources, the capture thread, the camera track, over a real aiortc pair.

Media stays on 127.0.0.1 (``configure_ice(["127.0.0.1"])``, no ICE servers).
"""

import asyncio
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from aiortc import MediaStreamTrack, RTCPeerConnection
from aiortc.mediastreams import VIDEO_TIME_BASE, MediaStreamError
from pydantic import ValidationError

from vaka.agent.media.capture import Capture
from vaka.agent.media.enhance import enhance_low_light, mean_luma
from vaka.agent.media.picamera2_source import Picamera2Source
from vaka.agent.media.settings import MediaSettings, make_source, settings_in_force
from vaka.agent.media.source import BgrImage, CameraUnavailable, FrameSource
from vaka.agent.media.synthetic import SyntheticSource
from vaka.agent.media.track import CameraTrack
from vaka.agent.media.v4l2 import V4l2Source
from vaka.errors import CallError, ConfigError
from vaka.rtc.ice import rtc_configuration
from vaka.rtc.pattern import PatternReading, decode_pattern, draw_pattern
from vaka.rtc.sdp import sdp_fingerprints

# See tests/test_rtc.py for how these were measured; night greys lose least in VP8.
NIGHT_TOLERANCE = 15.0


def _dim_picture(width: int, height: int) -> BgrImage:
    """The night pattern at 15 % brightness with sensor noise: mean luma ~15."""
    image = draw_pattern(width, height, 0, 0, night=True).astype(np.float64) * 0.15
    noise = np.random.default_rng(0).normal(0, 2, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def _luma_std(image: BgrImage) -> float:
    return float(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).std())


class DarkSource(FrameSource):
    """A dim picture (mean luma ~20) with detail, as an IR camera gives without light."""

    name = "dark test camera"

    def __init__(self, fail_after: int | None = None) -> None:
        super().__init__(160, 120, 50)
        self.fail_after = fail_after
        self.reads = 0
        self.closed = 0

    def _open(self) -> None:
        self.reads = 0

    def _read(self) -> tuple[BgrImage, float]:
        time.sleep(0.02)
        self.reads += 1
        if self.fail_after is not None and self.reads > self.fail_after:
            raise OSError("USB disconnect")
        return _dim_picture(160, 120), time.time()

    def _close(self) -> None:
        self.closed += 1


# -- the real pair ------------------------------------------------------------------------------


async def test_camera_track_over_real_peer_pair(loopback_ice: None) -> None:
    capture = Capture(SyntheticSource(640, 480, 15))
    await capture.start()
    sender = RTCPeerConnection(rtc_configuration())
    receiver = RTCPeerConnection(rtc_configuration())
    arrived: asyncio.Future[MediaStreamTrack] = asyncio.get_running_loop().create_future()
    receiver.on("track", arrived.set_result)
    try:
        sender.addTrack(CameraTrack(capture, enhance=True))
        started = time.perf_counter()
        await sender.setLocalDescription(await sender.createOffer())
        await receiver.setRemoteDescription(sender.localDescription)
        await receiver.setLocalDescription(await receiver.createAnswer())
        await sender.setRemoteDescription(receiver.localDescription)
        remote = await asyncio.wait_for(arrived, 5)

        readings: list[PatternReading] = []
        latencies: list[float] = []
        first_frame_s = 0.0
        while len(readings) < 12:
            frame = await asyncio.wait_for(remote.recv(), 5)
            received_at = time.time()
            if not first_frame_s:
                first_frame_s = time.perf_counter() - started
            reading = decode_pattern(frame.to_ndarray(format="bgr24"))  # type: ignore[union-attr]
            assert reading is not None, "a decoded frame did not carry a readable pattern"
            readings.append(reading)
            latencies.append(reading.age_s(received_at))
        print(
            f"createOffer -> first decoded frame {first_frame_s * 1000:.0f} ms; "
            f"latency median {sorted(latencies)[6] * 1000:.0f} ms"
        )
        counters = [r.counter for r in readings]
        assert counters == sorted(set(counters)), counters
        assert counters[-1] - counters[0] >= 11
        assert all(r.night for r in readings)
        assert max(r.max_error for r in readings) <= NIGHT_TOLERANCE
        assert all(0 < latency < 2 for latency in latencies), latencies

        # DTLS: both SDPs announce sha-256 fingerprints, and they are the certificates in use.
        assert sender.connectionState == "connected"
        for pc in (sender, receiver):
            found = sdp_fingerprints(pc.localDescription.sdp)
            assert any(algorithm == "sha-256" for algorithm, _ in found)
            dtls = pc.getTransceivers()[0].sender.transport
            reported = [(f.algorithm, f.value) for f in dtls.getLocalParameters().fingerprints]
            assert found == reported
        assert sdp_fingerprints(sender.localDescription.sdp) != sdp_fingerprints(
            receiver.localDescription.sdp
        )
    finally:
        await sender.close()
        await receiver.close()
        await capture.stop()
    assert capture.consumers == 0  # the sender stopped the track, which detached it


# -- sources ------------------------------------------------------------------------------------


def test_v4l2_source_without_camera() -> None:
    source = V4l2Source("/dev/video99")
    with pytest.raises(CameraUnavailable) as caught:
        source.open()
    assert str(caught.value) == (
        "no camera at /dev/video99: the device node does not exist "
        "(is the camera plugged in and its driver loaded?)"
    )
    assert isinstance(caught.value, CallError) and isinstance(caught.value, RuntimeError)
    assert not source.is_open
    source.close()  # safe without a successful open


def test_picamera2_source_off_raspberry_pi() -> None:
    with pytest.raises(CameraUnavailable) as caught:
        Picamera2Source().open()
    assert str(caught.value).startswith(
        "Raspberry Pi camera 0 cannot be used: picamera2 is not installed ("
    )
    assert str(caught.value).endswith(
        "it needs python3-picamera2 from Raspberry Pi OS (apt install python3-picamera2)"
    )


def test_synthetic_source_paces_and_counts() -> None:
    with SyntheticSource(320, 240, 50, night=False) as source:
        started = time.monotonic()
        frames = [source.read() for _ in range(5)]
        elapsed = time.monotonic() - started
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]
    readings = [decode_pattern(f.image) for f in frames]
    assert [r.counter for r in readings if r] == [0, 1, 2, 3, 4]
    assert all(r is not None and not r.night for r in readings)
    assert abs(readings[0].timestamp_ms - frames[0].captured_at * 1000) <= 1  # type: ignore[union-attr]
    assert elapsed >= 0.07  # four periods of 20 ms
    with pytest.raises(CameraUnavailable, match=r"^synthetic camera is not open$"):
        source.read()


def test_media_settings_and_make_source() -> None:
    simulated = settings_in_force(MediaSettings(), simulate=True)
    assert isinstance(make_source(simulated), SyntheticSource)
    # A real unit never falls back to the synthetic pattern: it names its camera, or stops.
    with pytest.raises(ConfigError, match=r"^\[media\] source is not set: set media\.source "):
        settings_in_force(MediaSettings())
    with pytest.raises(ConfigError, match=r"^\[media\] source is not set"):
        make_source(MediaSettings())
    assert settings_in_force(MediaSettings(source="synthetic")).source == "synthetic"
    assert settings_in_force(MediaSettings(source="v4l2")).audio == "none"
    v4l2 = make_source(MediaSettings(source="v4l2", device="/dev/video2", width=1280, height=720))
    assert isinstance(v4l2, V4l2Source) and v4l2.device == "/dev/video2"
    assert (v4l2.width, v4l2.height, v4l2.fps) == (1280, 720, 15)
    assert isinstance(make_source(MediaSettings(source="picamera2")), Picamera2Source)
    for bad in (
        {"colour": "red"},
        {"fps": 0},
        {"fps": 31},
        {"source": "webcam"},
        {"ice_addresses": ["localhost"]},
        {"width": 641},
    ):
        with pytest.raises(ValidationError):
            MediaSettings.model_validate(bad)
    with pytest.raises(ValidationError, match="'localhost' is not an IP address"):
        MediaSettings(ice_addresses=["localhost"])


# -- capture ------------------------------------------------------------------------------------


def _open_files() -> set[str]:
    """Regular files this process has open (from /proc/self/fd)."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("/") and os.path.isfile(target):
            found.add(target)
    return found


async def test_capture_start_stop_twice_and_nothing_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # cwd and TMPDIR point at empty directories of our own, so any file the capture wrote
    # there would show, whatever else runs on the machine; /proc/self/fd shows files opened
    # anywhere else.
    workdir, tmpdir = tmp_path / "cwd", tmp_path / "tmp"
    workdir.mkdir()
    tmpdir.mkdir()
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("TMPDIR", str(tmpdir))
    monkeypatch.setattr(tempfile, "tempdir", str(tmpdir))
    files_before = _open_files()

    capture = Capture(SyntheticSource(320, 240, 30))
    await capture.start()
    await capture.start()  # already running: nothing happens
    assert capture.running
    first = await asyncio.wait_for(capture.next_frame(), 2)
    second = await asyncio.wait_for(capture.next_frame(first.index), 2)
    assert second.index > first.index
    assert capture.brightness is not None and not capture.is_dark
    assert _open_files() <= files_before
    await capture.stop()
    await capture.stop()
    assert not capture.running and not capture.source.is_open
    with pytest.raises(CameraUnavailable, match="is not running"):
        await capture.next_frame()

    # A stopped capture starts again; numbering continues.
    async with capture:
        again = await asyncio.wait_for(capture.next_frame(second.index), 2)
        assert again.index > second.index
    assert list(workdir.iterdir()) == [] and list(tmpdir.iterdir()) == []


async def test_capture_wakes_waiters_on_stop() -> None:
    capture = Capture(SyntheticSource(320, 240, 5))
    await capture.start()
    latest = await capture.next_frame()
    waiter = asyncio.create_task(capture.next_frame(latest.index + 1000))
    await asyncio.sleep(0.05)
    await capture.stop()
    with pytest.raises(CameraUnavailable, match="not running"):
        await asyncio.wait_for(waiter, 2)


async def test_capture_open_failure_is_reported() -> None:
    capture = Capture(V4l2Source("/dev/video99"))
    with pytest.raises(CameraUnavailable, match=r"^no camera at /dev/video99"):
        await capture.start()
    assert not capture.running
    await capture.stop()


async def test_camera_failure_ends_the_track() -> None:
    source = DarkSource(fail_after=3)
    capture = Capture(source)
    await capture.start()
    track = CameraTrack(capture)
    try:
        with pytest.raises(MediaStreamError, match=r"dark test camera failed: OSError: USB"):
            for _ in range(10):
                await asyncio.wait_for(track.recv(), 2)
        assert track.readyState == "ended"
        assert isinstance(capture.error, CameraUnavailable)
        assert capture.consumers == 0
    finally:
        await capture.stop()
    assert source.closed == 1


async def test_capture_drops_frames_above_its_rate() -> None:
    capture = Capture(SyntheticSource(160, 120, 30), fps=10)
    async with capture:
        await asyncio.sleep(0.5)
    reads = capture.frames
    assert 2 <= reads <= 8, reads  # ~5 at 10 fps, not ~15


# -- track and enhancement ----------------------------------------------------------------------


async def test_tracks_share_a_capture_and_enhance_dark_frames() -> None:
    capture = Capture(DarkSource())
    async with capture:
        plain, enhanced = CameraTrack(capture), CameraTrack(capture, enhance=True)
        assert capture.consumers == 2
        frames_plain = [await asyncio.wait_for(plain.recv(), 2) for _ in range(3)]
        frame_enhanced = await asyncio.wait_for(enhanced.recv(), 2)
        assert capture.is_dark
        luma_plain = mean_luma(frames_plain[-1].to_ndarray(format="bgr24"))
        luma_enhanced = mean_luma(frame_enhanced.to_ndarray(format="bgr24"))
        assert luma_enhanced > 1.5 * luma_plain
        pts = [f.pts for f in frames_plain]
        assert pts[0] == 0 and pts == sorted(set(pts))  # type: ignore[type-var]
        assert all(f.time_base == VIDEO_TIME_BASE for f in frames_plain)
        # 50 fps source: consecutive frames ~20 ms = ~1800 ticks apart at 90 kHz.
        assert 900 < pts[1] - pts[0] < 9000  # type: ignore[operator]
        plain.stop()
        assert capture.consumers == 1
        with pytest.raises(MediaStreamError):
            await plain.recv()
        enhanced.stop()
    assert capture.consumers == 0


def test_enhance_low_light() -> None:
    image = _dim_picture(640, 480)
    original = image.copy()
    started = time.perf_counter()
    out = enhance_low_light(image)
    print(f"enhance_low_light 640x480: {(time.perf_counter() - started) * 1000:.1f} ms")
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.array_equal(image, original)  # the input is kept
    assert mean_luma(out) > 1.5 * mean_luma(image)
    assert _luma_std(out) > 1.5 * _luma_std(image)


async def test_a_consumer_waiting_before_start_gets_the_first_frame() -> None:
    """The peer connection may be up before the shutter opened and the capture started."""
    capture = Capture(SyntheticSource(320, 240, 15))
    waiter = asyncio.create_task(capture.next_frame())
    await asyncio.sleep(0.1)
    assert not waiter.done()
    await capture.start()
    try:
        frame = await asyncio.wait_for(waiter, 2)
        assert frame.index == 0
    finally:
        await capture.stop()
