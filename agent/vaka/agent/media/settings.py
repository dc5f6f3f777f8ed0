"""Media settings (a section of the agent's configuration) and the choice of camera backend.

The settings themselves import no media library: the agent's configuration (and so an idle unit)
does not load aiortc, PyAV or OpenCV; the functions that need them import them when called.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from vaka.errors import ConfigError
from vaka.protocol.ice import IceServer

if TYPE_CHECKING:
    from aiortc import RTCIceServer

    from vaka.agent.media.source import FrameSource

log = logging.getLogger(__name__)

AUDIO_DEVICE_PATTERN = r"^[A-Za-z0-9_.:,=@/-]+$"
"""What an audio device name may contain (ALSA ``plughw:CARD=Speak,DEV=0``, a pulse node name)."""


class MediaSettings(BaseModel):
    """Camera, encoder and ICE settings. Unknown keys are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: Literal["synthetic", "still", "v4l2", "picamera2"] | None = None
    """Camera backend: the synthetic test pattern, the pattern frozen on one frame (``still``: a
    scene where nothing moves), a V4L2 device, or the Pi camera. ``None``: the synthetic pattern
    with ``--simulate``; a real unit refuses to start without one."""
    device: str = Field(default="/dev/video0", min_length=1)
    "V4L2 device node (``source = 'v4l2'`` only)."
    width: int = Field(default=640, ge=64, le=1920, multiple_of=2)
    height: int = Field(default=480, ge=48, le=1080, multiple_of=2)
    fps: int = Field(default=15, ge=1, le=30)
    max_bitrate_bps: int = Field(default=1_000_000, ge=50_000, le=10_000_000)
    "Upper bound for the VP8/H.264 encoder (process-wide)."
    dark_below: float = Field(default=50.0, ge=0, le=255)
    "Mean luma (0-255) under which a scene counts as dark: the IR light goes on while streaming."
    enhance_low_light: bool = True
    "Apply CLAHE to dark (IR/night) frames."
    bed_region: tuple[float, float, float, float] | None = None
    """Where the bed is in the night camera's picture: left, top, width, height as fractions
    (0..1) of the picture, for the night check's "person in bed" estimate; ``None``: the
    estimate says ``unsure`` (docs/privacy.md)."""
    ice_addresses: list[str] | None = None
    "Gather ICE host candidates on exactly these addresses; ``None``: every interface."
    ice_gather_timeout_s: float = Field(default=2.0, gt=0, le=30)
    """Longest wait for STUN/TURN candidates. It must cover a TURN allocation (two round trips)
    over a home line with one retransmission; gathering ends as soon as every server answered,
    so a unit with no servers, or with servers that answer, does not wait for it."""
    ice_servers: list[IceServer] = []
    "STUN/TURN servers (none by default: the unit contacts nobody it was not told to)."
    audio: Literal["none", "synthetic", "pulse", "alsa"] | None = None
    """Two-way audio (``tv``): none, a synthetic tone, or a real device through PulseAudio
    (PipeWire's pulse server) or ALSA. ``None``: ``synthetic`` with ``--simulate``, else ``none``
    (the nightcam sends no sound). See docs/audio.md and :mod:`vaka.agent.media.audio`."""
    audio_input: str = Field(default="default", max_length=200, pattern=AUDIO_DEVICE_PATTERN)
    "Microphone device name for ``audio = 'pulse'`` or ``'alsa'``."
    audio_output: str = Field(default="default", max_length=200, pattern=AUDIO_DEVICE_PATTERN)
    "Loudspeaker device name for ``audio = 'pulse'`` or ``'alsa'``."
    audio_tone_hz: float = Field(default=440.0, ge=20.0, le=20_000.0)
    "Frequency of the synthetic microphone's tone (``audio = 'synthetic'``)."

    def rtc_ice_servers(self) -> list[RTCIceServer]:
        """The configured servers as aiortc wants them."""
        from aiortc import RTCIceServer

        return [RTCIceServer(urls=s.urls, username=s.username) for s in self.ice_servers]

    @field_validator("bed_region")
    @classmethod
    def _bed_inside_picture(
        cls, value: tuple[float, float, float, float] | None
    ) -> tuple[float, float, float, float] | None:
        return None if value is None else check_bed_region(value)

    @field_validator("ice_addresses")
    @classmethod
    def _ip_addresses(cls, value: list[str] | None) -> list[str] | None:
        for address in value or ():
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise ValueError(f"{address!r} is not an IP address") from None
        return value


def check_bed_region(
    region: tuple[float, float, float, float],
) -> tuple[float, float, float, float]:
    """``region`` (left, top, width, height as fractions) if it lies inside the picture.

    :raises ValueError: it does not (the message says how).
    """
    left, top, width, height = region
    if min(region) < 0 or max(region) > 1:
        raise ValueError("bed_region is left, top, width, height as fractions from 0 to 1")
    if width <= 0 or height <= 0:
        raise ValueError("bed_region needs a width and a height above 0")
    if left + width > 1 + 1e-9 or top + height > 1 + 1e-9:
        raise ValueError("bed_region reaches outside the picture (left + width, top + height ≤ 1)")
    return region


#: The message of a real unit whose configuration names no camera.
NO_CAMERA_SOURCE = (
    "[media] source is not set: set media.source to 'picamera2' or 'v4l2' for the unit's camera "
    "(the synthetic test pattern runs only under --simulate or with media.source = 'synthetic')"
)


def settings_in_force(settings: MediaSettings, *, simulate: bool = False) -> MediaSettings:
    """``settings`` with every choice made: the camera source (``[media] source``, else the
    synthetic pattern when simulating) and the audio mode (``[media] audio``, else ``synthetic``
    when simulating, else ``none``). A real unit never falls back to the synthetic pattern.

    :raises ConfigError: a real unit whose configuration names no camera source.
    """
    update: dict[str, str] = {}
    if settings.source is None:
        if not simulate:
            raise ConfigError(NO_CAMERA_SOURCE)
        update["source"] = "synthetic"
    if settings.audio is None:
        update["audio"] = "synthetic" if simulate else "none"
    return settings.model_copy(update=update) if update else settings


def make_source(settings: MediaSettings) -> FrameSource:
    """The frame source ``settings`` ask for (not opened yet).

    :raises ConfigError: no source is set (see :func:`settings_in_force`).
    """
    from vaka.agent.media.picamera2_source import Picamera2Source
    from vaka.agent.media.synthetic import SyntheticSource
    from vaka.agent.media.v4l2 import V4l2Source

    if settings.source == "v4l2":
        return V4l2Source(settings.device, settings.width, settings.height, settings.fps)
    if settings.source == "picamera2":
        return Picamera2Source(settings.width, settings.height, settings.fps)
    if settings.source in ("synthetic", "still"):
        still = settings.source == "still"
        return SyntheticSource(settings.width, settings.height, settings.fps, still=still)
    raise ConfigError(NO_CAMERA_SOURCE)


def apply_process_settings(settings: MediaSettings) -> None:
    """Apply the process-wide parts: the encoder bitrate cap and the ICE settings (idempotent)."""
    from vaka.rtc.bitrate import cap_video_bitrate
    from vaka.rtc.ice import configure_ice

    cap_video_bitrate(settings.max_bitrate_bps)
    configure_ice(settings.ice_addresses, settings.ice_gather_timeout_s)
