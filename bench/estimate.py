"""CPU cost of the night check's scene estimate (:mod:`vaka.agent.media.estimate`) at 640x480@15.

Two measurements in one run:

* ``per_sample``: :meth:`SceneEstimator.feed` on pre-drawn 640x480 frames of the moving test
  pattern, process CPU time per call; the watch samples :data:`SAMPLE_S` apart (5 a second),
  so its share of a core is 5 x that (and 15 x, had it looked at every frame);
* ``in_situ``: a :class:`Capture` of the synthetic camera at 640x480@15 for ``--seconds``, first
  alone (the baseline: drawing the pattern is itself work), then with an :class:`EstimateWatch`
  on it; the difference in process CPU time (all threads) over the wall time is the estimate's
  share of a core.

One JSON object on stdout, one readable line on stderr::

    .venv/bin/python bench/estimate.py                # 20 s each
    .venv/bin/python bench/estimate.py --seconds 5

Figures: docs/benchmarks.md, "Scene estimate".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

import cv2  # noqa: F401  (OpenCV before PyAV, see PITFALLS)

from vaka.agent.media.capture import Capture
from vaka.agent.media.estimate import SAMPLE_S, Estimate, EstimateWatch, SceneEstimator
from vaka.agent.media.synthetic import SyntheticSource
from vaka.rtc.pattern import draw_pattern

WIDTH, HEIGHT, FPS = 640, 480, 15


def per_sample(count: int = 600) -> dict[str, float]:
    """Seconds of CPU per :meth:`SceneEstimator.feed` of a 640x480 frame."""
    frames = [draw_pattern(WIDTH, HEIGHT, i, 1_700_000_000_000 + i * 67) for i in range(50)]
    estimator = SceneEstimator((0.2, 0.3, 0.6, 0.5))
    for i in range(20):  # warm caches and OpenCV's first-call set-up
        estimator.feed(frames[i % len(frames)], i * SAMPLE_S)
    start = time.process_time()
    for i in range(count):
        estimator.feed(frames[i % len(frames)], 10 + i * SAMPLE_S)
    each = (time.process_time() - start) / count
    return {
        "feed_ms": round(each * 1000, 3),
        "core_percent_at_5_per_s": round(each * (1 / SAMPLE_S) * 100, 2),
        "core_percent_every_frame_15_per_s": round(each * FPS * 100, 2),
    }


async def _run(seconds: float, watch: bool) -> tuple[float, int]:
    """CPU seconds a capture (with or without the watch) used over ``seconds``, and reports."""
    reports: list[Estimate] = []

    async def report(estimate: Estimate) -> None:
        reports.append(estimate)

    async with Capture(SyntheticSource(WIDTH, HEIGHT, FPS), FPS) as capture:
        task = None
        if watch:
            estimator = SceneEstimator((0.2, 0.3, 0.6, 0.5))
            task = asyncio.create_task(EstimateWatch(capture, estimator, report).run())
        await asyncio.sleep(1.0)  # settle
        cpu, wall = time.process_time(), time.monotonic()
        await asyncio.sleep(seconds)
        used = (time.process_time() - cpu) / (time.monotonic() - wall)
        if task is not None:
            task.cancel()
    return used, len(reports)


async def in_situ(seconds: float) -> dict[str, Any]:
    """The capture alone, then with the watch: process CPU as a share of one core."""
    alone, _ = await _run(seconds, watch=False)
    watched, reports = await _run(seconds, watch=True)
    return {
        "capture_alone_core_percent": round(alone * 100, 2),
        "capture_with_estimate_core_percent": round(watched * 100, 2),
        "estimate_core_percent": round((watched - alone) * 100, 2),
        "ratio_to_capture_alone": round(watched / alone, 3) if alone else None,
        "reports": reports,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each in-situ run")
    args = parser.parse_args()
    sample, situ = per_sample(), asyncio.run(in_situ(args.seconds))
    result = {
        "frame": f"{WIDTH}x{HEIGHT}@{FPS}",
        "sample_s": SAMPLE_S,
        "per_sample": sample,
        "in_situ": situ,
    }
    print(
        f"feed {sample['feed_ms']} ms -> {sample['core_percent_at_5_per_s']} % of a core at "
        f"5/s; in situ {situ['estimate_core_percent']} % of a core over the capture's "
        f"{situ['capture_alone_core_percent']} %",
        file=sys.stderr,
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
