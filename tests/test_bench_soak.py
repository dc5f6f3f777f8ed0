"""The soak benchmark (bench/soak.py): its arithmetic, and a short run end to end that must
complete and report — never a size or time threshold (the figures are in docs/benchmarks.md)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.soak import parse_args, readable, rss_figures, slope_per_call

ROOT = Path(__file__).resolve().parent.parent


def test_slope_is_the_least_squares_growth_per_call() -> None:
    assert slope_per_call([100.0, 100.5, 101.0, 101.5]) == pytest.approx(0.5)
    assert slope_per_call([90.0, 90.0, 90.0]) == pytest.approx(0.0)
    assert slope_per_call([90.0, 92.0, 90.0, 92.0]) == pytest.approx(0.4)
    assert slope_per_call([1.0]) is None
    assert slope_per_call([]) is None


def test_figures_leave_the_warm_up_out() -> None:
    figures = rss_figures(80.0, [85.0, 95.0, 95.0, 95.1, 95.2], warmup=2)
    assert figures["rss_mb_after_warmup"] == 95.0
    assert figures["rss_mb_at_end"] == 95.2
    assert figures["growth_mb_per_call_after_warmup"] == pytest.approx(0.1)
    assert figures["total_growth_mb_after_warmup"] == 0.2
    assert figures["rss_mb_max"] == 95.2


def test_command_line() -> None:
    full = parse_args([])
    assert (full.calls, full.warmup) == (200, 20)
    quick = parse_args(["--quick"])
    assert (quick.calls, quick.warmup) == (5, 2)
    assert parse_args(["--calls", "1"]).warmup == 0  # at least one call is measured


@pytest.mark.timeout(300)
def test_short_soak_completes_and_reports() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "soak.py"), "--calls", "3", "--warmup", "1"],
        capture_output=True,
        text=True,
        timeout=280,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    for profile in ("nightcam", "tv"):
        figures = result[profile]
        assert figures["calls"] == 3
        assert figures["failures"] == 0, figures["failure_reasons"]
        assert len(figures["rss_mb_after_each_call"]) == 3
        assert figures["growth_mb_per_call_after_warmup"] is not None
    assert readable(result).startswith("soak: nightcam: 3 night checks")
    assert "MB/call after warm-up" in done.stderr
