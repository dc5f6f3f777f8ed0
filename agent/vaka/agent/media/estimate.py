"""An estimate of a night check's scene, made on the unit beside the blurred picture.

While a night check runs, :class:`EstimateWatch` looks at the camera's frames a few times a
second (before any blur, on the unit, in memory only) and :class:`SceneEstimator` says in words
what they show:

* ``movement``: ``yes`` if something moved in the last :data:`WINDOW_S` seconds; ``no`` once the
  picture has been judged for :data:`WARM_UP_S` seconds without movement; ``unsure`` while it
  warms up, and while the picture is too dark or too uniform to judge (a closed shutter, a
  covered lens, no IR light).
* ``person_in_bed``: from a configured bed region (``[media] bed_region``, fractions of the
  picture). Nobody gets into or out of bed without moving, so the estimator remembers where it
  last saw movement: in the bed region (``yes``) or outside it (``no``: someone is up). Until it
  has seen movement it cannot tell a still sleeper from an empty bed (``unsure``), and without
  a bed region it never guesses.

The method is frame differencing: each sample is shrunk to :data:`SAMPLE_WIDTH` pixels wide,
made grey and smoothed (so that sensor noise does not count), and compared with the sample
before; a pixel that changed by more than :data:`CHANGED_LEVEL` grey levels changed. A change
over most of the picture at once is the light (the IR light switching, the shutter opening,
exposure), not movement: the estimator starts its warm-up again. Only the last sample (a
160-pixel grey image) is kept, in memory, for the length of the call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from vaka.agent.media.capture import Capture
from vaka.agent.media.settings import check_bed_region
from vaka.agent.media.source import BgrImage, CameraUnavailable

log = logging.getLogger(__name__)

#: One reading: ``yes``, ``no`` or ``unsure`` (:data:`vaka.protocol.messages.Reading`).
Reading = Literal["yes", "no", "unsure"]
#: A bed region: left, top, width, height as fractions (0..1) of the picture.
BedRegion = tuple[float, float, float, float]
GreyImage = npt.NDArray[np.uint8]

SAMPLE_WIDTH = 160
"""Width in pixels of the grey sample the estimate is made on."""
SAMPLE_S = 0.2
"""Seconds between samples (5 a second, whatever the camera's rate)."""
REPORT_S = 2.0
"""At most one report this often, and only when the estimate changed."""
WARM_UP_S = 3.0
"""How long the picture must be judged before "no movement" is said."""
WINDOW_S = 4.0
"""Movement seen this recently is ``movement: yes``."""
CHANGED_LEVEL = 25
"""Grey levels a smoothed pixel must change by to count as changed (above sensor noise)."""
MOVED_FRACTION = 0.001
"""Changed pixels (as a fraction of the sample) that count as movement: 19 at 160x120."""
LIGHT_FRACTION = 0.5
"""More than this changed at once is a change of light, not movement."""
DARK_BELOW = 12.0
"""Mean grey level under which the picture is too dark to judge."""
UNIFORM_BELOW = 4.0
"""Standard deviation of the grey levels under which the picture is too uniform to judge."""


@dataclass(frozen=True)
class Estimate:
    """What the estimator says about the scene."""

    movement: Reading = "unsure"
    person_in_bed: Reading = "unsure"


UNSURE = Estimate()


class SceneEstimator:
    """Frame differencing on small grey samples; :meth:`feed` one frame at a time.

    :param bed: the bed region (fractions of the picture), or ``None``: ``person_in_bed`` is
        always ``unsure``.
    """

    def __init__(
        self,
        bed: BedRegion | None = None,
        *,
        warm_up_s: float = WARM_UP_S,
        window_s: float = WINDOW_S,
    ) -> None:
        self.bed = check_bed_region(bed) if bed is not None else None
        self.warm_up_s = warm_up_s
        self.window_s = window_s
        self.estimate = UNSURE
        "The estimate after the last :meth:`feed`."
        self._previous: GreyImage | None = None
        self._judged_since: float | None = None
        self._last_movement: float | None = None
        self._last_place: Reading = "unsure"  # where movement was last seen: in bed or not

    def _sample(self, image: BgrImage) -> GreyImage:
        import cv2

        height, width = image.shape[:2]
        size = (SAMPLE_WIDTH, max(1, round(height * SAMPLE_WIDTH / width)))
        small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY) if small.ndim == 3 else small
        return np.asarray(cv2.GaussianBlur(grey, (5, 5), 0), dtype=np.uint8)

    def _bed_mask(self, shape: tuple[int, ...]) -> tuple[slice, slice] | None:
        if self.bed is None:
            return None
        left, top, width, height = self.bed
        rows, columns = shape[:2]
        return (
            slice(round(top * rows), max(round((top + height) * rows), round(top * rows) + 1)),
            slice(
                round(left * columns),
                max(round((left + width) * columns), round(left * columns) + 1),
            ),
        )

    def _restart(self, sample: GreyImage | None, now: float) -> Estimate:
        """The picture cannot be compared with the one before: judge afresh from ``now``."""
        self._previous = sample
        self._judged_since = now if sample is not None else None
        self._last_movement = None
        self.estimate = Estimate("unsure", self._in_bed())
        return self.estimate

    def _in_bed(self) -> Reading:
        return "unsure" if self.bed is None else self._last_place

    def feed(self, image: BgrImage, now: float) -> Estimate:
        """Look at one frame taken at ``now`` (monotonic seconds); the estimate after it."""
        sample = self._sample(image)
        mean, deviation = (float(v) for v in (sample.mean(), sample.std()))
        if mean < DARK_BELOW or deviation < UNIFORM_BELOW:
            return self._restart(None, now)
        previous = self._previous
        if previous is None or previous.shape != sample.shape:
            return self._restart(sample, now)
        changed = np.abs(sample.astype(np.int16) - previous) > CHANGED_LEVEL
        self._previous = sample
        count = int(changed.sum())
        if count > LIGHT_FRACTION * changed.size:
            return self._restart(sample, now)
        least = max(1, round(MOVED_FRACTION * changed.size))
        if count >= least:
            self._last_movement = now
            area = self._bed_mask(changed.shape)
            if area is not None:
                in_bed = int(changed[area].sum())
                if in_bed >= least or count - in_bed >= least:
                    self._last_place = "yes" if in_bed >= count - in_bed else "no"
        self.estimate = Estimate(self._movement(now), self._in_bed())
        return self.estimate

    def _movement(self, now: float) -> Reading:
        if self._last_movement is not None and now - self._last_movement <= self.window_s:
            return "yes"
        if self._judged_since is not None and now - self._judged_since >= self.warm_up_s:
            return "no"
        return "unsure"


Report = Callable[[Estimate], Awaitable[None]]


class EstimateWatch:
    """Feeds a capture's frames to a :class:`SceneEstimator` during a call and reports the
    estimate when it changes (at most every ``report_s``; the first at once).

    :meth:`run` returns when the capture stops; cancel it to stop earlier. A failure of the
    estimator ends the watch (logged), never the call.
    """

    def __init__(
        self,
        capture: Capture,
        estimator: SceneEstimator,
        report: Report,
        *,
        sample_s: float = SAMPLE_S,
        report_s: float = REPORT_S,
    ) -> None:
        self.capture = capture
        self.estimator = estimator
        self._report = report
        self.sample_s = sample_s
        self.report_s = report_s
        self.reported: Estimate | None = None
        "The last estimate reported."

    @property
    def latest(self) -> Estimate:
        """The estimate after the last frame looked at."""
        return self.estimator.estimate

    async def run(self) -> None:
        """Look at frames until the capture stops."""
        after = -1
        next_report = 0.0
        try:
            while True:
                frame = await self.capture.next_frame(after)
                after = frame.index
                estimate = await asyncio.to_thread(
                    self.estimator.feed, frame.image, time.monotonic()
                )
                now = time.monotonic()
                if now >= next_report and estimate != self.reported:
                    next_report = now + self.report_s
                    self.reported = estimate
                    await self._send(estimate)
                await asyncio.sleep(self.sample_s)
        except CameraUnavailable:
            return
        except Exception:
            log.exception("the scene estimate stopped")

    async def _send(self, estimate: Estimate) -> None:
        with contextlib.suppress(Exception):
            await self._report(estimate)


def estimate_detail(estimate: Estimate) -> dict[str, Any]:
    """The estimate as the keys of a call event (``estimate_movement``, ...)."""
    return {
        "estimate_movement": estimate.movement,
        "estimate_person_in_bed": estimate.person_in_bed,
    }
