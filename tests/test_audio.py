"""vaka.agent.media.audio: the tone microphone and the audio sink over a real aiortc pair, and the
choice of devices by ``[media] audio``.

Media stays on 127.0.0.1 (``configure_ice(["127.0.0.1"])``, no ICE servers). The ALSA tests use
ALSA's ``null`` device (always defined in alsa-lib's configuration): they go through the real
FFmpeg/ALSA path without a sound card.
"""

import asyncio
import os

import av
import numpy as np
import pytest
from aiortc import MediaStreamTrack, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError
from pydantic import ValidationError

from vaka.agent.media.audio import (
    AUDIO_TIME_BASE,
    FRAME_SAMPLES,
    SAMPLE_RATE,
    AudioSink,
    DeviceOutput,
    ToneTrack,
    audio_mode,
    dominant_frequency,
    frame_samples,
    make_microphone,
    make_speaker,
    rms,
)
from vaka.agent.media.settings import MediaSettings
from vaka.devstack.polling import wait_for
from vaka.errors import ConfigError
from vaka.rtc.ice import rtc_configuration

HAVE_ALSA_CONFIG = os.path.isdir("/usr/share/alsa")


async def _connect(offerer: RTCPeerConnection, answerer: RTCPeerConnection) -> None:
    await offerer.setLocalDescription(await offerer.createOffer())
    await answerer.setRemoteDescription(offerer.localDescription)
    await answerer.setLocalDescription(await answerer.createAnswer())
    await offerer.setRemoteDescription(answerer.localDescription)


def _sink_on_track(pc: RTCPeerConnection, sink: AudioSink) -> None:
    def on_track(track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            sink.start(track)

    pc.on("track", on_track)


# -- the tone and the analysis, without a network --------------------------------------------------


async def test_tone_track_frames_are_paced_and_timestamped() -> None:
    track = ToneTrack(440.0, channels=2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    frames = [await track.recv() for _ in range(10)]
    elapsed = loop.time() - started
    assert [f.pts for f in frames] == [i * FRAME_SAMPLES for i in range(10)]
    assert all(f.time_base == AUDIO_TIME_BASE and f.sample_rate == SAMPLE_RATE for f in frames)
    assert all(f.samples == FRAME_SAMPLES and f.format.name == "s16" for f in frames)
    assert frames[0].layout.name == "stereo"
    # Ten 20 ms frames: the last one is due 180 ms after the first.
    assert elapsed >= 0.17
    samples = np.concatenate([frame_samples(f) for f in frames])
    assert dominant_frequency(samples) == pytest.approx(440.0, abs=2.0)
    assert rms(samples) == pytest.approx(0.3 / np.sqrt(2), rel=0.02)
    # The phase continues across frames: no jump between the last sample of one and the next.
    assert np.max(np.abs(np.diff(samples))) < 2 * np.pi * 440 / SAMPLE_RATE * 0.3 * 1.01
    track.stop()
    with pytest.raises(MediaStreamError):
        await track.recv()


def test_tone_track_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="frequency"):
        ToneTrack(30_000)
    with pytest.raises(ValueError, match="amplitude"):
        ToneTrack(440, amplitude=2)
    with pytest.raises(ValueError, match="1 or 2 channels"):
        ToneTrack(440, channels=6)


def test_silence_has_no_dominant_frequency() -> None:
    assert dominant_frequency(np.zeros(4800)) is None
    assert dominant_frequency(np.ones(10)) is None
    assert rms(np.zeros(0)) == 0.0


async def test_sink_refuses_video_and_a_second_track() -> None:
    sink = AudioSink()
    with pytest.raises(ValueError, match="audio track"):
        sink.start(_VideoTrack())
    tone = ToneTrack(300)
    sink.start(tone)
    with pytest.raises(ValueError, match="already"):
        sink.start(ToneTrack(300))
    await wait_for(lambda: sink.frames >= 15, 5, what="15 frames")
    assert sink.dominant_hz == pytest.approx(300, abs=3)
    tone.stop()
    await asyncio.wait_for(sink.ended.wait(), 5)
    await sink.stop()
    await sink.stop()


class _VideoTrack(MediaStreamTrack):
    kind = "video"

    async def recv(self) -> av.VideoFrame:
        raise NotImplementedError


# -- over a real aiortc pair ---------------------------------------------------------------------


async def test_tone_arrives_over_a_real_pair(loopback_ice: None) -> None:
    unit = RTCPeerConnection(rtc_configuration())
    staff = RTCPeerConnection(rtc_configuration())
    sink = AudioSink()
    _sink_on_track(staff, sink)
    try:
        unit.addTrack(ToneTrack(440.0))
        await _connect(unit, staff)
        await wait_for(lambda: sink.frames >= 50, 10, what="a second of audio")
        assert sink.first_frame_at is not None
        # Opus keeps a pure tone: the strongest frequency is the tone's, the level about its RMS.
        assert sink.dominant_hz == pytest.approx(440.0, abs=5.0)
        assert 0.1 < sink.level < 0.35
    finally:
        await unit.close()
        await staff.close()
    await asyncio.wait_for(sink.ended.wait(), 5)
    await sink.stop()


async def test_both_directions_at_once(loopback_ice: None) -> None:
    unit = RTCPeerConnection(rtc_configuration())
    staff = RTCPeerConnection(rtc_configuration())
    at_unit, at_staff = AudioSink(), AudioSink()
    _sink_on_track(unit, at_unit)
    _sink_on_track(staff, at_staff)
    try:
        unit.addTrack(ToneTrack(440.0))
        staff.addTrack(ToneTrack(1000.0, channels=2))
        await _connect(staff, unit)
        await wait_for(
            lambda: at_unit.frames >= 50 and at_staff.frames >= 50, 10, what="audio both ways"
        )
        assert at_staff.dominant_hz == pytest.approx(440.0, abs=5.0)
        assert at_unit.dominant_hz == pytest.approx(1000.0, abs=5.0)
        for pc in (unit, staff):
            assert {t.kind for t in pc.getTransceivers()} == {"audio"}
            assert all(t.currentDirection == "sendrecv" for t in pc.getTransceivers())
    finally:
        await unit.close()
        await staff.close()
        await at_unit.stop()
        await at_staff.stop()


# -- choosing by [media] audio -----------------------------------------------------------------


def test_audio_mode_defaults() -> None:
    settings = MediaSettings()
    assert settings.audio is None
    assert audio_mode(settings) == "none"
    assert audio_mode(settings, simulate=True) == "synthetic"
    assert make_microphone(settings) is None
    assert make_speaker(settings) is None
    none = MediaSettings(audio="none")
    assert make_microphone(none, simulate=True) is None
    assert make_speaker(none, simulate=True) is None


async def test_synthetic_mode_gives_tone_and_measuring_sink() -> None:
    settings = MediaSettings(audio_tone_hz=523.0)
    microphone = make_microphone(settings, simulate=True)
    assert isinstance(microphone, ToneTrack)
    assert microphone.frequency == 523.0
    speaker = make_speaker(MediaSettings(audio="synthetic"))
    assert isinstance(speaker, AudioSink)
    assert speaker.output is None
    microphone.stop()


def test_unknown_audio_settings_are_refused_readably() -> None:
    with pytest.raises(ValidationError, match=r"audio\n.*'none', 'synthetic', 'pulse' or 'alsa'"):
        MediaSettings.model_validate({"audio": "bluetooth"})
    with pytest.raises(ValidationError, match="audio_input"):
        MediaSettings(audio="alsa", audio_input="hw:0; rm -rf /")
    with pytest.raises(ValidationError, match="audio_tone_hz"):
        MediaSettings(audio_tone_hz=5)
    # Past validation (a model built without it), make_* still refuse with a ConfigError.
    unchecked = MediaSettings.model_construct(audio="bluetooth")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"\[media\] audio = 'bluetooth' is not one of"):
        make_microphone(unchecked)
    with pytest.raises(ConfigError, match="is not one of"):
        make_speaker(unchecked)


@pytest.mark.skipif("pulse" in av.formats_available, reason="this PyAV has PulseAudio support")
def test_pulse_without_pyav_support_is_a_config_error() -> None:
    settings = MediaSettings(audio="pulse")
    with pytest.raises(ConfigError, match=r"no FFmpeg 'pulse' device support.*'alsa'"):
        make_microphone(settings)
    with pytest.raises(ConfigError, match="no FFmpeg 'pulse' device support"):
        make_speaker(settings)


@pytest.mark.skipif(not HAVE_ALSA_CONFIG, reason="no /usr/share/alsa on this machine")
def test_missing_alsa_device_is_a_config_error() -> None:
    settings = MediaSettings(audio="alsa", audio_input="hw:CARD=Absent", audio_output="hw:9,0")
    with pytest.raises(ConfigError, match="cannot open the alsa microphone 'hw:CARD=Absent'"):
        make_microphone(settings)
    with pytest.raises(ConfigError, match="cannot open the alsa loudspeaker 'hw:9,0'"):
        make_speaker(settings)


@pytest.mark.skipif(not HAVE_ALSA_CONFIG, reason="no /usr/share/alsa on this machine")
async def test_alsa_null_device_both_ways() -> None:
    """The real device path (MediaPlayer in, DeviceOutput out) on ALSA's null device."""
    settings = MediaSettings(audio="alsa", audio_input="null", audio_output="null")
    microphone = make_microphone(settings)
    speaker = make_speaker(settings)
    assert microphone is not None and speaker is not None
    assert isinstance(speaker.output, DeviceOutput)
    try:
        frame = await asyncio.wait_for(microphone.recv(), 5)
        assert isinstance(frame, av.AudioFrame)
        assert frame.sample_rate == SAMPLE_RATE and frame.format.name == "s16"
        tone = ToneTrack(440.0)
        speaker.start(tone)
        await wait_for(lambda: speaker.frames >= 10, 5, what="frames played")
        assert speaker.output.error is None
        tone.stop()
    finally:
        microphone.stop()
        await speaker.stop()
    await speaker.stop()
