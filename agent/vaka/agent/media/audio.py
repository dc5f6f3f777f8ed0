"""Two-way audio for the ``tv`` unit: a microphone track, a loudspeaker sink, and choosing them.

* :class:`ToneTrack` — a synthetic microphone: a sine tone as an aiortc audio track (48 kHz,
  20 ms frames, ``s16``), paced in real time with sample-exact ``pts``.
* :class:`AudioSink` — consumes a remote audio track in a task: counts frames, keeps the RMS level
  and (on demand) the dominant frequency of the last quarter second, and optionally plays the
  sound on an :class:`AudioOutput`.
* :class:`DeviceOutput` — a real loudspeaker through FFmpeg's ``alsa`` or ``pulse`` output,
  written on its own thread.
* :func:`make_microphone` / :func:`make_speaker` — what ``[media] audio`` asks for.

aiortc has no echo canceller: on a unit the microphone must be an echo-cancelled source (PipeWire's
echo-cancel module, or a speakerphone that cancels its own echo). See docs/audio.md.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fractions
import logging
import os
import queue
import threading
import time
from typing import Any, Literal

import av
import numpy as np
import numpy.typing as npt
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from vaka.agent.media.reader import TrackReader
from vaka.agent.media.settings import MediaSettings
from vaka.errors import ConfigError

log = logging.getLogger(__name__)

SAMPLE_RATE = 48_000
"""Samples per second everywhere in this module (what aiortc's Opus codec runs at)."""
FRAME_SAMPLES = 960
"""Samples per channel in one 20 ms frame."""
AUDIO_TIME_BASE = fractions.Fraction(1, SAMPLE_RATE)
ANALYSIS_WINDOW_S = 0.25
"""How much recent sound :attr:`AudioSink.dominant_hz` looks at."""
ALSA_CONFIG_DIR = "/usr/share/alsa"
"""The system's ALSA configuration. PyAV's wheel bundles its own alsa-lib, which looks for its
configuration under the wheel's build path and so knows no device, not even ``default``; the
``ALSA_CONFIG_DIR`` environment variable points it here."""

AudioMode = Literal["none", "synthetic", "pulse", "alsa"]
Samples = npt.NDArray[np.float64]


def audio_mode(settings: MediaSettings, *, simulate: bool = False) -> AudioMode:
    """The audio mode in force: ``[media] audio`` if set, else ``synthetic`` when simulating,
    else ``none``.

    :raises ConfigError: the setting names no known mode.
    """
    mode = settings.audio
    if mode is None:
        return "synthetic" if simulate else "none"
    if mode not in ("none", "synthetic", "pulse", "alsa"):
        raise ConfigError(
            f"[media] audio = {mode!r} is not one of 'none', 'synthetic', 'pulse', 'alsa'"
        )
    return mode


# -- the synthetic microphone --------------------------------------------------------------------


class ToneTrack(MediaStreamTrack):
    """An audio track that plays a sine tone: the simulated microphone.

    Each :meth:`recv` returns 20 ms (960 samples) of ``s16`` audio at 48 kHz, mono or stereo,
    with ``pts`` counting samples (``time_base`` 1/48000) and the phase continuing across frames.
    Frames are paced to real time from the first :meth:`recv`; a reader that fell more than half
    a second behind is not given a burst to catch up (the clock restarts, ``pts`` stays
    continuous).
    """

    kind = "audio"

    def __init__(
        self, frequency: float = 440.0, *, amplitude: float = 0.3, channels: int = 1
    ) -> None:
        super().__init__()
        if not 0 < frequency < SAMPLE_RATE / 2:
            raise ValueError(f"tone frequency must be between 0 and 24000 Hz, got {frequency}")
        if not 0 <= amplitude <= 1:
            raise ValueError(f"tone amplitude must be 0..1, got {amplitude}")
        if channels not in (1, 2):
            raise ValueError(f"a tone has 1 or 2 channels, got {channels}")
        self.frequency = frequency
        self.amplitude = amplitude
        self.channels = channels
        self.frames = 0
        "Frames handed out so far."
        self._samples = 0
        self._clock_start: float | None = None
        self._clock_samples = 0

    async def recv(self) -> av.AudioFrame:
        """The next 20 ms of the tone.

        :raises MediaStreamError: the track has ended.
        """
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._clock_start is None:
            self._clock_start, self._clock_samples = now, self._samples
        else:
            due = self._clock_start + (self._samples - self._clock_samples) / SAMPLE_RATE
            if due - now > 0:
                await asyncio.sleep(due - now)
            elif now - due > 0.5:
                self._clock_start, self._clock_samples = now, self._samples
        frame = self._frame(self._samples)
        self._samples += FRAME_SAMPLES
        self.frames += 1
        return frame

    def _frame(self, first_sample: int) -> av.AudioFrame:
        n = np.arange(first_sample, first_sample + FRAME_SAMPLES, dtype=np.float64)
        # The phase is taken modulo one period first so that it stays exact for hours.
        cycles = np.mod(n * self.frequency / SAMPLE_RATE, 1.0)
        wave = np.round(np.sin(2 * np.pi * cycles) * self.amplitude * 32767).astype(np.int16)
        if self.channels == 2:
            wave = np.repeat(wave, 2)  # packed s16: L R L R ...
        frame = av.AudioFrame.from_ndarray(
            wave.reshape(1, -1), format="s16", layout="stereo" if self.channels == 2 else "mono"
        )
        frame.sample_rate = SAMPLE_RATE
        frame.pts = first_sample
        frame.time_base = AUDIO_TIME_BASE
        return frame


# -- analysis -------------------------------------------------------------------------------------


def frame_samples(frame: av.AudioFrame) -> Samples:
    """The frame's sound as mono ``float64`` samples in -1..1, whatever its format and layout."""
    data = frame.to_ndarray()
    channels = max(1, len(frame.layout.channels))
    if np.issubdtype(data.dtype, np.integer):
        scale = float(2 ** (8 * data.dtype.itemsize - 1))
        values = data.astype(np.float64) / scale
    else:
        values = data.astype(np.float64)
    if frame.format.is_planar:
        return np.asarray(values.mean(axis=0), dtype=np.float64)
    return np.asarray(values.reshape(-1, channels).mean(axis=1), dtype=np.float64)


def rms(samples: Samples) -> float:
    """Root mean square of ``samples`` (0 for silence, about 0.707 x amplitude for a sine)."""
    if samples.size == 0:
        return 0.0
    return float(np.sqrt(np.mean(np.square(samples))))


def dominant_frequency(samples: Samples, sample_rate: int = SAMPLE_RATE) -> float | None:
    """The strongest frequency in ``samples`` (Hann window, FFT, parabolic peak interpolation).

    :returns: Hz, or ``None`` for silence or fewer than 64 samples.
    """
    if samples.size < 64 or rms(samples) < 1e-4:
        return None
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    spectrum[0] = 0.0
    peak = int(np.argmax(spectrum))
    offset = 0.0
    if 0 < peak < spectrum.size - 1:
        left, centre, right = np.log(spectrum[peak - 1 : peak + 2] + 1e-12)
        denominator = left - 2 * centre + right
        if denominator != 0:
            offset = 0.5 * (left - right) / denominator
    return float((peak + offset) * sample_rate / samples.size)


# -- the loudspeaker -------------------------------------------------------------------------------


class AudioOutput:
    """Where received sound is played. An implementation **must** override :meth:`play` (take one
    frame, never block the event loop) and **may** override :meth:`close` (release the device;
    safe twice)."""

    def play(self, frame: av.AudioFrame) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release the device; the default has nothing to release."""


def _use_system_alsa_config() -> None:
    if "ALSA_CONFIG_DIR" not in os.environ and os.path.isdir(ALSA_CONFIG_DIR):
        os.environ["ALSA_CONFIG_DIR"] = ALSA_CONFIG_DIR
        log.info("ALSA_CONFIG_DIR set to %s for PyAV's bundled alsa-lib", ALSA_CONFIG_DIR)


def _check_format(fmt: str) -> None:
    if fmt not in av.formats_available:
        hint = " (use [media] audio = 'alsa' through pipewire-alsa)" if fmt == "pulse" else ""
        raise ConfigError(f"this PyAV build has no FFmpeg {fmt!r} device support{hint}")


class DeviceOutput(AudioOutput):
    """A real loudspeaker through FFmpeg's ``alsa`` or ``pulse`` output (``s16`` stereo 48 kHz).

    The device is opened in the constructor (20 ms of silence are written, which is when ALSA and
    PulseAudio really open it), so a missing device is a :class:`ConfigError` at once, not a
    silent call. Writing blocks at the device's pace, so it happens on a thread of its own fed
    by a short queue; when the device falls behind, the oldest frames are dropped
    (:attr:`dropped`) rather than letting the delay grow.

    :raises ConfigError: the device cannot be opened.
    """

    QUEUE_FRAMES = 10
    "At most 200 ms of sound wait for the device."

    def __init__(self, device: str, fmt: Literal["alsa", "pulse"] = "alsa") -> None:
        _check_format(fmt)
        if fmt == "alsa":
            _use_system_alsa_config()
        self.device = device
        self.fmt = fmt
        self.dropped = 0
        "Frames dropped because the device was not keeping up."
        self.error: str | None = None
        "Why the output stopped on its own, if it did."
        self._queue: queue.Queue[av.AudioFrame | None] = queue.Queue(self.QUEUE_FRAMES)
        self._resampler = av.AudioResampler(format="s16", layout="stereo", rate=SAMPLE_RATE)
        try:
            self._container: Any = av.open(device, "w", format=fmt)
            self._stream: Any = self._container.add_stream("pcm_s16le", rate=SAMPLE_RATE)
            self._stream.layout = "stereo"
            silence = av.AudioFrame.from_ndarray(
                np.zeros((1, 2 * FRAME_SAMPLES), dtype=np.int16), format="s16", layout="stereo"
            )
            silence.sample_rate = SAMPLE_RATE
            self._write(silence)
        except (OSError, av.FFmpegError, ValueError) as err:
            raise ConfigError(f"cannot open the {fmt} loudspeaker {device!r}: {err}") from err
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"speaker {device}", daemon=True)
        self._thread.start()
        log.info("loudspeaker %s (%s) opened", device, fmt)

    def _write(self, frame: av.AudioFrame) -> None:
        frame.pts = None
        for resampled in self._resampler.resample(frame):
            resampled.pts = None
            for packet in self._stream.encode(resampled):
                self._container.mux(packet)

    def _run(self) -> None:
        while (frame := self._queue.get()) is not None:
            try:
                self._write(frame)
            except (OSError, av.FFmpegError, ValueError) as err:
                self.error = f"{type(err).__name__}: {err}"
                log.warning("loudspeaker %s stopped: %s", self.device, self.error)
                return

    def play(self, frame: av.AudioFrame) -> None:
        """Queue ``frame`` for the device; drops the oldest queued frame when the queue is full."""
        if self._closed or self.error is not None:
            return
        while True:
            try:
                self._queue.put_nowait(frame)
                return
            except queue.Full:
                with contextlib.suppress(queue.Empty):
                    self._queue.get_nowait()
                    self.dropped += 1

    def close(self) -> None:
        """Stop the writer thread and close the device. Safe twice."""
        if self._closed:
            return
        self._closed = True
        while True:
            try:
                self._queue.put_nowait(None)
                break
            except queue.Full:
                with contextlib.suppress(queue.Empty):
                    self._queue.get_nowait()
        self._thread.join(timeout=2.0)
        with contextlib.suppress(OSError, av.FFmpegError, ValueError):
            self._container.close()
        log.info("loudspeaker %s closed (%d frames dropped)", self.device, self.dropped)


class AudioSink(TrackReader):
    """Consumes a remote audio track: counts, measures and (with an ``output``) plays it.

    :meth:`start` runs a task on the current event loop that reads the track until it ends or
    :meth:`stop` is called (which also closes the output). The measurements are cheap per frame
    (an RMS); :attr:`dominant_hz` runs an FFT over the last quarter second only when asked.
    """

    kind = "audio"
    frame_type = av.AudioFrame

    def __init__(self, output: AudioOutput | None = None) -> None:
        super().__init__()
        self.output = output
        self.level = 0.0
        "RMS of the newest frame (0..1 of full scale)."
        self._recent: collections.deque[Samples] = collections.deque()
        self._recent_samples = 0
        self._window = round(ANALYSIS_WINDOW_S * SAMPLE_RATE)
        self._sample_rate = SAMPLE_RATE

    @property
    def dominant_hz(self) -> float | None:
        """The strongest frequency in the last quarter second, ``None`` for silence or no sound."""
        if not self._recent:
            return None
        return dominant_frequency(np.concatenate(list(self._recent)), self._sample_rate)

    async def _close(self) -> None:
        if self.output is not None:
            await asyncio.to_thread(self.output.close)

    def _take(self, frame: av.AudioFrame) -> None:
        samples = frame_samples(frame)
        self.level = rms(samples)
        self._sample_rate = frame.sample_rate or SAMPLE_RATE
        self._recent.append(samples)
        self._recent_samples += samples.size
        while self._recent_samples - self._recent[0].size >= self._window:
            self._recent_samples -= self._recent.popleft().size
        if self.output is not None:
            self.output.play(frame)


# -- choosing --------------------------------------------------------------------------------------


def _open_microphone(device: str, fmt: Literal["alsa", "pulse"]) -> MediaStreamTrack:
    _check_format(fmt)
    if fmt == "alsa":
        _use_system_alsa_config()
    from aiortc.contrib.media import MediaPlayer  # only real devices need it

    options = {"sample_rate": str(SAMPLE_RATE), "channels": "1"}
    try:
        player = MediaPlayer(device, format=fmt, options=options)
    except (OSError, av.FFmpegError, ValueError) as err:
        raise ConfigError(f"cannot open the {fmt} microphone {device!r}: {err}") from err
    if player.audio is None:
        raise ConfigError(f"the {fmt} device {device!r} gives no audio")
    log.info("microphone %s (%s) opened", device, fmt)
    return player.audio


def make_microphone(settings: MediaSettings, *, simulate: bool = False) -> MediaStreamTrack | None:
    """The microphone track ``[media] audio`` asks for, or ``None`` for ``none``.

    ``synthetic`` gives a :class:`ToneTrack` at ``audio_tone_hz``; ``pulse`` and ``alsa`` open
    ``audio_input`` through FFmpeg (aiortc's ``MediaPlayer``), which starts capturing at once;
    stopping the returned track releases the device.

    :raises ConfigError: an unknown mode, or the device cannot be opened.
    """
    mode = audio_mode(settings, simulate=simulate)
    if mode == "none":
        return None
    if mode == "synthetic":
        return ToneTrack(settings.audio_tone_hz)
    return _open_microphone(settings.audio_input, mode)


def make_speaker(settings: MediaSettings, *, simulate: bool = False) -> AudioSink | None:
    """The sink for the remote party's sound that ``[media] audio`` asks for, or ``None``.

    ``synthetic`` gives an :class:`AudioSink` that only measures; ``pulse`` and ``alsa`` one that
    also plays on ``audio_output`` (:class:`DeviceOutput`, opened now).

    :raises ConfigError: an unknown mode, or the device cannot be opened.
    """
    mode = audio_mode(settings, simulate=simulate)
    if mode == "none":
        return None
    if mode == "synthetic":
        return AudioSink()
    return AudioSink(DeviceOutput(settings.audio_output, mode))
