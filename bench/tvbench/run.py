"""The run: set-up calls to the sleeping TV unit, then one two-way call held for a while."""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.callbench.common import HOST, PASSWORD, TOTP_SECRET
from bench.callbench.report import machine
from bench.callbench.stack import running_bench

from .figures import (
    PictureShown,
    ProcessSample,
    picture_shown,
    process_figures,
    rate,
    remote_frames_from_log,
    stats,
)
from .unit import (
    CALLER,
    FPS,
    HEIGHT,
    UNIT,
    WIDTH,
    TvUnit,
    push_tv_bundle,
    start_tv_unit,
    tv_directory_data,
)

if TYPE_CHECKING:
    import psutil

    from vaka.staff.call import StaffCall
    from vaka.staff.client import StaffClient

STAFF_TONE_HZ = 1000.0
FRAME_TIMEOUT_S = 10.0
EVENT_TIMEOUT_S = 10.0
STANDBY_TIMEOUT_S = 30.0
WARM_UP_S = 1.0


def log(text: str) -> None:
    """Progress goes to stderr; stdout carries only the result."""
    import sys

    print(f"[tv_call {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


@dataclass
class Plan:
    """What one run does."""

    calls: int = 10
    hold_s: float = 30.0
    idle_s: float = 5.0
    warmup_call: bool = True
    fresh_hold: bool = False
    """Restart the unit before the held call (its RSS as on a freshly started unit)."""
    quick: bool = False


@dataclass
class CallSample:
    """One call to the sleeping unit, in ms from just before ``dial``."""

    picture_shown: float
    staff_first_frame: float | None
    unit_after_answer: float | None
    staff_timings: dict[str, float] = field(default_factory=dict)


def pattern_track_15fps(width: int, height: int) -> Any:
    """The staff member's picture: the synthetic pattern, paced at 15 frames/s like the unit's
    camera (:class:`PatternVideoTrack` itself runs at aiortc's default 30)."""
    from aiortc.mediastreams import VIDEO_CLOCK_RATE, VIDEO_TIME_BASE, MediaStreamError

    from vaka.staff.call import PatternVideoTrack

    class PatternTrack(PatternVideoTrack):
        _start: float
        _timestamp: int

        async def next_timestamp(self) -> tuple[int, fractions.Fraction]:
            if self.readyState != "live":
                raise MediaStreamError
            if hasattr(self, "_timestamp"):
                self._timestamp += VIDEO_CLOCK_RATE // FPS
                await asyncio.sleep(self._start + self._timestamp / VIDEO_CLOCK_RATE - time.time())
            else:
                self._start, self._timestamp = time.time(), 0
            return self._timestamp, VIDEO_TIME_BASE

    return PatternTrack(width, height)


async def dial_two_way(staff: StaffClient) -> tuple[StaffCall, float]:
    """A two-way 640x480 video visit with a 1000 Hz tone; returns it and ``time.time()`` taken
    just before ``dial``. Retries while central still sees the unit busy with the last call."""
    from vaka.agent.media.audio import ToneTrack
    from vaka.staff.client import StaffError

    for attempt in range(20):
        t0 = time.time()
        try:
            call = await staff.dial(
                UNIT,
                "video_visit",
                send_video=pattern_track_15fps(WIDTH, HEIGHT),
                send_audio=ToneTrack(STAFF_TONE_HZ),
            )
            return call, t0
        except StaffError as err:
            if "busy" not in str(err) or attempt == 19:
                raise
            await asyncio.sleep(0.2)
    raise AssertionError("unreachable")


async def wait_picture(unit: TvUnit, call_id: str) -> PictureShown:
    """The unit's ``picture_shown`` event of ``call_id``, as stored by central."""
    found: list[PictureShown] = []

    async def seen() -> bool:
        shown = picture_shown(await unit.events(), call_id)
        if shown is not None:
            found.append(shown)
        return shown is not None

    await unit.until(f"picture_shown event of call {call_id}", seen, EVENT_TIMEOUT_S)
    return found[0]


async def wait_standby(unit: TvUnit, after: float) -> None:
    """Until a health sample received after ``after`` says the TV is in standby."""
    await unit.until_health(
        "TV back in standby", lambda h: h.get("tv") == "standby", after, STANDBY_TIMEOUT_S
    )


async def one_call(unit: TvUnit, staff: StaffClient, after: float) -> tuple[CallSample, float]:
    """Wait for the TV's standby, dial, time the picture on the TV, hang up.

    Returns the sample and the ``time.time()`` of the hang-up."""
    await wait_standby(unit, after)
    call, t0 = await dial_two_way(staff)
    try:
        await call.next_frame(FRAME_TIMEOUT_S)
        shown = await wait_picture(unit, call.call_id)
        timings = call.timings.as_ms()
    finally:
        await call.hangup()
    return (
        CallSample(
            picture_shown=(shown.at - t0) * 1000,
            staff_first_frame=timings.get("first_frame"),
            unit_after_answer=shown.after_answer_ms,
            staff_timings=timings,
        ),
        time.time(),
    )


async def sample_process(proc: psutil.Process, into: list[ProcessSample], every: float) -> None:
    """Append a reading of ``proc`` every ``every`` seconds until cancelled."""
    while True:
        times = proc.cpu_times()
        into.append(
            ProcessSample(time.monotonic(), times.user + times.system, proc.memory_info().rss / 1e6)
        )
        await asyncio.sleep(every)


async def sampled(proc: psutil.Process, seconds: float) -> list[ProcessSample]:
    """Readings of ``proc`` once a second over ``seconds`` (both ends included)."""
    samples: list[ProcessSample] = []
    task = asyncio.create_task(sample_process(proc, samples, 1.0))
    await asyncio.sleep(seconds + 0.05)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return samples


async def hold_call(unit: TvUnit, staff: StaffClient, plan: Plan, after: float) -> dict[str, Any]:
    """Idle figures of the sleeping unit, then one two-way call held for ``plan.hold_s``."""
    import psutil

    from vaka.agent.media.audio import AudioSink

    proc = psutil.Process(unit.pid)
    await wait_standby(unit, after)
    log(f"unit idle for {plan.idle_s:.0f} s, then a two-way call held {plan.hold_s:.0f} s")
    idle = await sampled(proc, plan.idle_s)
    log_offset = len(unit.log_text())
    call, t0 = await dial_two_way(staff)
    ear = AudioSink()
    frames = 0

    async def count_frames() -> None:
        nonlocal frames
        while True:
            await call.next_frame(FRAME_TIMEOUT_S)
            frames += 1

    counter = asyncio.create_task(count_frames())
    try:
        assert call.audio is not None
        ear.start(await asyncio.wait_for(call.audio, FRAME_TIMEOUT_S))
        shown = await wait_picture(unit, call.call_id)
        await asyncio.sleep(WARM_UP_S)
        frames0, audio0, started = frames, ear.frames, time.monotonic()
        busy = await sampled(proc, plan.hold_s)
        elapsed = time.monotonic() - started
        video_frames, audio_frames = frames - frames0, ear.frames - audio0
        dominant = ear.dominant_hz
    finally:
        counter.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await counter
        hung_up = time.time()
        await call.hangup()
        await ear.stop()
    await asyncio.sleep(1.0)  # let the unit end the call and log its count
    unit_frames = remote_frames_from_log(unit.log_text()[log_offset:])
    return {
        "video": f"{WIDTH}x{HEIGHT}@{FPS} VP8 both ways, Opus both ways",
        "seconds": round(elapsed, 1),
        "picture_shown_ms": round((shown.at - t0) * 1000, 1),
        "unit_idle": process_figures(idle),
        "unit_in_call": process_figures(busy),
        "staff_video_fps": rate(video_frames, elapsed),
        "staff_audio_frames_per_s": rate(audio_frames, elapsed),
        "staff_audio_dominant_hz": None if dominant is None else round(dominant, 1),
        "unit_video_frames": unit_frames,
        "unit_video_fps": None if unit_frames is None else rate(unit_frames, hung_up - shown.at),
        "unit_video_fps_source": (
            "the unit's log line 'remote video ended after N frames' over the time from its "
            "picture_shown event to the hang-up (whole call, warm-up included)"
            if unit_frames is not None
            else "not available: the unit logged no frame count for this call"
        ),
    }


def summarise_calls(samples: list[CallSample], failures: list[str]) -> dict[str, Any]:
    """Statistics of the set-up calls."""
    staff_first = [s.staff_first_frame for s in samples if s.staff_first_frame is not None]
    after_answer = [s.unit_after_answer for s in samples if s.unit_after_answer is not None]
    answered = [s.staff_timings["answered"] for s in samples if "answered" in s.staff_timings]
    before_answer = [
        s.picture_shown - s.unit_after_answer for s in samples if s.unit_after_answer is not None
    ]
    return {
        "picture_shown_ms": stats([s.picture_shown for s in samples]),
        "dial_to_unit_answering_ms": stats(before_answer),
        "staff_first_frame_ms": stats(staff_first),
        "staff_answered_ms": stats(answered),
        "unit_answer_to_picture_ms": stats(after_answer),
        "each": [asdict(s) for s in samples],
        "failures": len(failures),
        "failure_reasons": failures,
    }


async def run(plan: Plan, directory: Path) -> dict[str, Any]:
    """The whole benchmark; returns the result object."""
    import psutil

    from vaka.devstack.central import load_directory
    from vaka.rtc.ice import configure_ice
    from vaka.staff.client import StaffClient

    configure_ice([HOST], 0.3)
    result: dict[str, Any] = {"machine": machine(), "plan": asdict(plan)}
    async with running_bench(directory) as bench:
        central = bench.central
        await load_directory(central, tv_directory_data())
        unit = await start_tv_unit(central, bench.stack)
        try:
            await push_tv_bundle(unit)
            log(f"unit pid {unit.pid} online, configured (auto-answer at once)")
            result["unit_rss_mb_before_first_call"] = round(
                psutil.Process(unit.pid).memory_info().rss / 1e6, 1
            )
            async with StaffClient(central.url) as staff:
                await staff.login(CALLER, PASSWORD, totp_secret=TOTP_SECRET)
                after = 0.0
                if plan.warmup_call:
                    sample, after = await one_call(unit, staff, after)
                    result["first_call_after_start_ms"] = round(sample.picture_shown, 1)
                    log(f"first call after start: picture after {sample.picture_shown:.0f} ms")
                samples: list[CallSample] = []
                failures: list[str] = []
                rss_after: list[float] = []
                for i in range(plan.calls):
                    try:
                        sample, after = await one_call(unit, staff, after)
                    except Exception as err:
                        failures.append(f"{type(err).__name__}: {err}"[:300])
                        log(f"call {i + 1} failed: {failures[-1]}")
                        after = time.time()
                        continue
                    finally:
                        rss_after.append(round(psutil.Process(unit.pid).memory_info().rss / 1e6, 1))
                    samples.append(sample)
                    log(
                        f"call {i + 1}/{plan.calls}: picture on the TV after "
                        f"{sample.picture_shown:.0f} ms (staff's first frame "
                        f"{sample.staff_first_frame} ms)"
                    )
                result["calls"] = summarise_calls(samples, failures)
                result["calls"]["unit_rss_mb_after_each_call"] = rss_after
                if plan.fresh_hold:
                    await unit.stop()
                    restarted = time.time()
                    unit = await start_tv_unit(central, bench.stack)
                    await push_tv_bundle(unit, 2, after=restarted)
                    log(f"unit restarted for the held call (pid {unit.pid})")
                    after = 0.0
                result["hold"] = await hold_call(unit, staff, plan, after)
                result["hold"]["fresh_unit"] = plan.fresh_hold
        finally:
            await unit.stop()
    return result
