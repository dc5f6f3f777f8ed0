"""The TV call benchmark (bench/tv_call.py): its pure helpers, and one short run end to end
(one call to the sleeping unit, a 2 s hold) checked for what it found, not for how fast."""

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bench.tvbench.figures import (
    ProcessSample,
    cpu_percents,
    percentile,
    picture_shown,
    process_figures,
    rate,
    readable,
    remote_frames_from_log,
    stats,
)
from bench.tvbench.main import parse_args, plan_from
from bench.tvbench.unit import GROUP, auto_answer_rules, tv_directory_data
from vaka.central.directory.spec import DirectorySpec
from vaka.provisioning.bundles import AutoAnswerRule

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Event:
    kind: str
    detail: dict[str, Any] = field(default_factory=dict)


def test_stats_median_min_max_p90() -> None:
    got = stats([float(v) for v in range(10, 0, -1)])
    assert got == {"samples": 10, "median": 5.5, "min": 1.0, "max": 10.0, "p90": 9.0}
    assert stats([120.44, 117.0, 130.0])["p90"] == 130.0
    assert stats([42.0]) == {"samples": 1, "median": 42.0, "min": 42.0, "max": 42.0, "p90": 42.0}
    assert stats([])["samples"] == 0 and stats([])["median"] is None


def test_percentile_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="no samples"):
        percentile([], 90)
    with pytest.raises(ValueError, match="not within 0-100"):
        percentile([1.0], 120)


def test_picture_shown_finds_the_call_and_skips_the_rest() -> None:
    events = [
        Event("call", {"action": "picture_shown", "call_id": "other", "at": 5.0}),
        Event("button", {"action": "picture_shown", "call_id": "c-1", "at": 6.0}),
        Event("call", {"action": "started", "call_id": "c-1"}),
        Event("call", {"action": "picture_shown", "call_id": "c-1", "at": "soon"}),
        Event(
            "call",
            {"action": "picture_shown", "call_id": "c-1", "at": 1700.25, "after_answer_ms": 104},
        ),
    ]
    shown = picture_shown(events, "c-1")
    assert shown is not None
    assert (shown.at, shown.after_answer_ms) == (1700.25, 104.0)
    assert picture_shown(events, "c-2") is None
    bad = [Event("call", {"action": "picture_shown", "call_id": "c-3", "at": True})]
    assert picture_shown(bad, "c-3") is None


def test_remote_frames_from_the_unit_log() -> None:
    text = (
        "2026-11-23 16:54:12,835 INFO vaka.agent.media.remote: remote video ended after 2 frames\n"
        "2026-11-23 16:54:22,559 INFO vaka.agent.media.remote: remote video ended after 65 "
        "frames [unit_id=u-bench-tv]\n"
    )
    assert remote_frames_from_log(text) == 65
    assert remote_frames_from_log("nothing here") is None


def test_cpu_and_rss_from_samples() -> None:
    samples = [
        ProcessSample(0.0, 10.0, 100.0),
        ProcessSample(1.0, 10.2, 110.0),
        ProcessSample(2.0, 10.3, 120.0),
        ProcessSample(2.0, 10.3, 120.0),  # no time passed: no interval
    ]
    assert [round(v, 6) for v in cpu_percents(samples)] == [20.0, 10.0]
    figures = process_figures(samples)
    assert figures["cpu_pct_of_one_core"] == 15.0
    assert figures["rss_mb"]["max"] == 120.0 and figures["rss_mb"]["end"] == 120.0
    assert process_figures(samples[:1])["cpu_pct_of_one_core"] is None
    assert rate(30, 2.0) == 15.0 and rate(3, 0.0) is None


def test_plan_from_the_command_line() -> None:
    full = plan_from(parse_args([]))
    assert (full.calls, full.hold_s, full.warmup_call) == (10, 30.0, True)
    quick = plan_from(parse_args(["--quick", "--calls", "1", "--no-warmup-call"]))
    assert (quick.calls, quick.hold_s, quick.warmup_call) == (1, 8.0, False)


def test_the_bench_directory_and_rules_are_valid() -> None:
    spec = DirectorySpec.model_validate(tv_directory_data())
    assert [p.purposes for p in spec.permission] == [["video_visit"]]
    (rule,) = [AutoAnswerRule.model_validate(r) for r in auto_answer_rules()]
    assert rule.countdown_s == 0 and rule.caller_groups == [GROUP]


@pytest.mark.timeout(120)
def test_short_run_end_to_end() -> None:
    """One call to the sleeping TV unit and a 2 s two-way hold (about 11 s here)."""
    args = ["--quick", "--calls", "1", "--hold", "2", "--idle", "1", "--no-warmup-call"]
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "tv_call.py"), *args],
        capture_output=True,
        text=True,
        timeout=110,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    calls, hold = result["calls"], result["hold"]
    assert calls["failures"] == 0, calls["failure_reasons"]
    assert calls["picture_shown_ms"]["samples"] == 1
    (each,) = calls["each"]
    assert each["picture_shown"] > 0 and each["staff_first_frame"] > 0
    assert set(each["staff_timings"]) == {
        "prepared",
        "offer_ready",
        "answered",
        "connected",
        "first_frame",
    }
    # Media flowed both ways: the staff heard the unit's 440 Hz tone and saw its video; the
    # unit counted the staff's frames.
    assert hold["staff_video_fps"] > 0 and hold["staff_audio_frames_per_s"] > 0
    assert abs(hold["staff_audio_dominant_hz"] - 440) < 20
    assert hold["unit_video_frames"] > 0
    assert hold["unit_in_call"]["rss_mb"]["max"] > 0
    assert "picture on the TV" in readable(result)
    assert "dial -> picture on the TV" in done.stderr
