"""vaka.rtc: ICE settings, SDP checks and fingerprints, the test pattern, the bitrate cap.

All media traffic stays on 127.0.0.1: every peer connection here is made after
``configure_ice(["127.0.0.1"])`` and with no ICE servers except a dead one on loopback.
"""

import fractions
import socket
import time

import av
import numpy as np
import pytest
from aiortc import RTCIceServer, RTCPeerConnection
from aiortc.codecs import depayload, get_decoder, get_encoder
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from vaka.errors import CallError
from vaka.rtc import bitrate
from vaka.rtc.bitrate import cap_video_bitrate, video_bitrate_limits
from vaka.rtc.ice import configure_ice, ice_settings, rtc_configuration
from vaka.rtc.pattern import (
    BAR_COUNT,
    CODE_COLUMNS,
    _layout,
    decode_pattern,
    draw_pattern,
    expected_bar_colour,
)
from vaka.rtc.sdp import MAX_SDP_BYTES, BadSdp, check_sdp, sdp_fingerprints

T0_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z

# Codec tolerance for bar colours (max channel error, 0..255). Measured here through the
# BGR -> yuv420p -> VP8 -> BGR round trip at 250 kbps..1.5 Mbps: day bars <= 17 (saturated
# colours lose most in 4:2:0 chroma and limited-range YUV), night greys <= 6. The bounds stay
# below half the distance between neighbouring expected colours (day >= 255, night 36), so
# a bar measured within tolerance cannot be a different bar.
DAY_TOLERANCE = 30.0
NIGHT_TOLERANCE = 15.0


# -- ICE ----------------------------------------------------------------------------------------


def test_configure_ice_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match=r"^ICE host address 'eth0' is not an IP address$"):
        configure_ice(["eth0"])
    with pytest.raises(ValueError, match="not one string"):
        configure_ice("127.0.0.1")
    with pytest.raises(ValueError, match=r"^ICE gathering timeout must be positive, got 0$"):
        configure_ice(None, gather_timeout_s=0)


def test_configure_ice_is_idempotent(loopback_ice: None) -> None:
    configure_ice(["127.0.0.1"], 0.5)
    configure_ice(["127.0.0.1"], 0.5)
    assert ice_settings() == (("127.0.0.1",), 0.5)


async def test_offer_has_only_loopback_candidates(loopback_ice: None) -> None:
    pc = RTCPeerConnection(rtc_configuration())
    try:
        pc.addTransceiver("video", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        candidates = [
            line for line in pc.localDescription.sdp.splitlines() if line.startswith("a=candidate")
        ]
        assert candidates
        assert all(" 127.0.0.1 " in line and "typ host" in line for line in candidates)
    finally:
        await pc.close()


async def test_dead_stun_server_costs_at_most_the_gather_timeout(loopback_ice: None) -> None:
    configure_ice(["127.0.0.1"], gather_timeout_s=0.5)
    dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # bound, never read
    dead.bind(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    pc = RTCPeerConnection(rtc_configuration([RTCIceServer(f"stun:127.0.0.1:{port}")]))
    try:
        pc.addTransceiver("video", direction="recvonly")
        offer = await pc.createOffer()
        started = time.perf_counter()
        await pc.setLocalDescription(offer)
        elapsed = time.perf_counter() - started
        print(f"setLocalDescription with a dead STUN server: {elapsed * 1000:.0f} ms")
        assert elapsed < 3.0  # aioice alone waits 5 s
        assert "typ srflx" not in pc.localDescription.sdp
        assert "typ host" in pc.localDescription.sdp
    finally:
        await pc.close()
        dead.close()


def test_rtc_configuration_has_no_default_stun() -> None:
    assert rtc_configuration().iceServers == []


# -- SDP ----------------------------------------------------------------------------------------

FP256 = ":".join(f"{b:02X}" for b in bytes.fromhex("6aa6b23884d75dd1a59042d62415a3ab" * 2))
SDP_SESSION_FP = (
    "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
    f"a=fingerprint:SHA-256 {FP256.lower()}\r\n"
    "a=setup:actpass\r\n"
    "m=video 9 UDP/TLS/RTP/SAVPF 97\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=rtpmap:97 VP8/90000\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=rtpmap:0 PCMU/8000\r\n"
    "a=fingerprint:sha-384 AB:CD\r\n"
)


def test_check_sdp_refusals() -> None:
    cases = {
        "": "SDP is empty",
        " \r\n ": "SDP is empty",
        "hello world": "SDP could not be parsed: it must start with 'v=0', not 'hello world'",
        "v=0\r\ns=-\r\n": "SDP could not be parsed: it has no media section ('m=' line)",
        "v=0\r\nm=video x\r\n": "SDP could not be parsed: a line is malformed",
        "v=0\r\nm=video 9 RTP/AVP 97\r\na=setup:sideways\r\n": (
            "SDP could not be parsed: KeyError: 'sideways'"
        ),
        "v=0\r\n" + "a=x\r\n" * (MAX_SDP_BYTES // 5): (
            f"SDP is {5 + 5 * (MAX_SDP_BYTES // 5)} bytes, more than the 16384 allowed"
        ),
    }
    for sdp, message in cases.items():
        with pytest.raises(BadSdp) as caught:
            check_sdp(sdp)
        assert str(caught.value) == message
        assert isinstance(caught.value, ValueError) and isinstance(caught.value, CallError)
    assert check_sdp(SDP_SESSION_FP) == SDP_SESSION_FP


def test_sdp_fingerprints_normalised_and_deduplicated() -> None:
    assert sdp_fingerprints(SDP_SESSION_FP) == [("sha-256", FP256), ("sha-384", "AB:CD")]


# -- the test pattern ---------------------------------------------------------------------------


@pytest.mark.parametrize("night", [False, True])
@pytest.mark.parametrize("size", [(64, 48), (320, 240), (640, 480), (1280, 720), (1920, 1080)])
def test_pattern_round_trip_exact(size: tuple[int, int], night: bool) -> None:
    width, height = size
    for counter, stamp in [(0, 0), (1, T0_MS), (2**32 - 1, 2**48 - 1), (123_456_789, T0_MS + 7)]:
        image = draw_pattern(width, height, counter, stamp, night=night)
        assert image.shape == (height, width, 3) and image.dtype == np.uint8
        reading = decode_pattern(image)
        assert reading is not None
        assert (reading.counter, reading.timestamp_ms, reading.night) == (counter, stamp, night)
        assert reading.max_error == 0
        assert [bar.expected for bar in reading.bars] == [
            expected_bar_colour(i, night=night) for i in range(BAR_COUNT)
        ]
    assert decode_pattern(draw_pattern(width, height, 2**32 + 5, T0_MS)).counter == 5  # type: ignore[union-attr]


def test_pattern_bad_decodes_are_detected() -> None:
    image = draw_pattern(640, 480, 42, T0_MS)
    layout = _layout(640, 480)
    # Flip one code block (the last bit of the counter): the CRC catches it.
    y0, y1 = layout.code_y[1], layout.code_y[2]
    x0, x1 = layout.code_x[31 - CODE_COLUMNS], layout.code_x[32 - CODE_COLUMNS]
    flipped = image.copy()
    flipped[y0:y1, x0:x1] = 255 - flipped[y0:y1, x0:x1]
    assert decode_pattern(flipped) is None
    # A block that is neither black nor white.
    unsure = image.copy()
    unsure[y0:y1, x0:x1] = 128
    assert decode_pattern(unsure) is None
    rng = np.random.default_rng(1)
    assert decode_pattern(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)) is None
    assert decode_pattern(np.zeros((480, 640, 3), dtype=np.uint8)) is None
    assert decode_pattern(np.zeros((480, 640), dtype=np.uint8)) is None
    assert decode_pattern(np.zeros((40, 60, 3), dtype=np.uint8)) is None


def test_pattern_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"^pattern needs at least 64x48 pixels, got 32x32$"):
        draw_pattern(32, 32, 0, 0)
    with pytest.raises(ValueError, match="48 bits"):
        draw_pattern(320, 240, 0, 2**48)
    with pytest.raises(ValueError, match="bar index"):
        expected_bar_colour(8)


def _vp8_round_trip(width: int, height: int, frames: int, night: bool) -> list[np.ndarray]:
    codec = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=97)
    encoder, decoder = get_encoder(codec), get_decoder(codec)
    decoded = []
    for i in range(frames):
        image = draw_pattern(width, height, 1000 + i, T0_MS + 66 * i, night=night)
        frame = av.VideoFrame.from_ndarray(image, format="bgr24")
        frame.pts, frame.time_base = 6000 * i, fractions.Fraction(1, 90000)
        payloads, timestamp = encoder.encode(frame)
        data = b"".join(depayload(codec, payload) for payload in payloads)
        for out in decoder.decode(JitterFrame(data, timestamp)):
            assert isinstance(out, av.VideoFrame)
            decoded.append(out.to_ndarray(format="bgr24"))
    return decoded


@pytest.mark.parametrize("night", [False, True])
@pytest.mark.parametrize("size", [(320, 240), (640, 480), (1280, 720)])
def test_pattern_survives_vp8(size: tuple[int, int], night: bool) -> None:
    decoded = _vp8_round_trip(*size, frames=5, night=night)
    assert len(decoded) == 5
    tolerance = NIGHT_TOLERANCE if night else DAY_TOLERANCE
    for i, image in enumerate(decoded):
        reading = decode_pattern(image)
        assert reading is not None, f"frame {i} at {size} did not decode"
        assert (reading.counter, reading.timestamp_ms) == (1000 + i, T0_MS + 66 * i)
        assert reading.night is night
        assert reading.max_error <= tolerance, reading.bars


def test_pattern_survives_vp8_at_capped_bitrate() -> None:
    cap_video_bitrate(100_000)
    try:
        decoded = _vp8_round_trip(1280, 720, frames=4, night=False)
    finally:
        cap_video_bitrate(10**9)
    readings = [decode_pattern(image) for image in decoded]
    assert [r.counter for r in readings if r is not None] == [1000, 1001, 1002, 1003]


# -- bitrate ------------------------------------------------------------------------------------


def test_cap_video_bitrate() -> None:
    original = video_bitrate_limits()
    try:
        cap_video_bitrate(400_000)
        assert video_bitrate_limits() == {
            "VP8": (250_000, 400_000, 400_000),
            "H264": (400_000, 400_000, 400_000),
        }
        cap_video_bitrate(400_000)  # idempotent
        assert bitrate.vpx.MAX_BITRATE == 400_000
        encoder = get_encoder(
            RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=97)
        )
        encoder.target_bitrate = 5_000_000  # type: ignore[attr-defined]  # what a REMB does
        assert encoder.target_bitrate == 400_000  # type: ignore[attr-defined]
        with pytest.raises(ValueError, match="below the 50000 bps minimum"):
            cap_video_bitrate(1000)
    finally:
        cap_video_bitrate(10**9)
    assert video_bitrate_limits() == original
