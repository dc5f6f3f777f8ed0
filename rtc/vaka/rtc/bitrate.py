"""Cap the bitrate of aiortc's software video encoders (VP8 and H.264), process-wide.

aiortc keeps three module constants per codec and reads them at run time:

* ``DEFAULT_BITRATE`` — the target each new encoder starts at;
* ``MAX_BITRATE`` / ``MIN_BITRATE`` — the clamp applied whenever the receiver's REMB estimate
  sets ``encoder.target_bitrate`` (so an estimate can never lift it above the maximum).

Capping means lowering ``MAX_BITRATE`` to the cap, and ``DEFAULT_BITRATE`` and ``MIN_BITRATE``
to at most the cap (otherwise the clamp ``max(MIN, min(b, MAX))`` would still give ``MIN``).
It affects every encoder created or re-targeted afterwards in this process; encoders that are
already running pick it up at the next REMB update.
"""

from __future__ import annotations

import logging
from types import ModuleType

from aiortc.codecs import h264, vpx

log = logging.getLogger(__name__)

MIN_CAP_BPS = 50_000
"""Below this neither codec gives a usable picture; smaller caps are refused."""

_ORIGINAL: dict[ModuleType, tuple[int, int, int]] = {
    module: (module.MIN_BITRATE, module.DEFAULT_BITRATE, module.MAX_BITRATE)
    for module in (vpx, h264)
}


def cap_video_bitrate(max_bps: int) -> None:
    """Never let aiortc's VP8 or H.264 encoder aim above ``max_bps`` bits per second.

    Process-wide and idempotent; each call starts again from aiortc's own limits, so a higher
    cap later raises the limit again (up to aiortc's maximum, never beyond it).

    :raises ValueError: if ``max_bps`` is below :data:`MIN_CAP_BPS`.
    """
    if max_bps < MIN_CAP_BPS:
        raise ValueError(f"video bitrate cap {max_bps} bps is below the {MIN_CAP_BPS} bps minimum")
    for module, (low, default, high) in _ORIGINAL.items():
        module.MAX_BITRATE = min(high, max_bps)  # type: ignore[attr-defined]
        module.DEFAULT_BITRATE = min(default, max_bps)  # type: ignore[attr-defined]
        module.MIN_BITRATE = min(low, max_bps)  # type: ignore[attr-defined]
    log.info("video bitrate capped at %d bps (VP8 and H.264)", max_bps)


def video_bitrate_limits() -> dict[str, tuple[int, int, int]]:
    """Current ``(min, default, max)`` bps per codec, e.g. ``{"VP8": (...), "H264": (...)}``."""
    return {
        "VP8": (vpx.MIN_BITRATE, vpx.DEFAULT_BITRATE, vpx.MAX_BITRATE),
        "H264": (h264.MIN_BITRATE, h264.DEFAULT_BITRATE, h264.MAX_BITRATE),
    }
