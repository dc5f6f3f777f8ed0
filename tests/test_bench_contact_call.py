"""The contact-call benchmark (bench/contact_call.py): one short run end to end, checked for
what it found (both paths measured, a ratio), not for how fast."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.contact_call import figures

ROOT = Path(__file__).resolve().parent.parent


def test_figures_median_p90_min_max() -> None:
    got = figures([float(v) for v in range(10, 0, -1)])
    assert got == {"median_ms": 5.5, "p90_ms": 10.0, "min_ms": 1.0, "max_ms": 10.0}


@pytest.mark.timeout(240)
def test_a_quick_run_measures_both_paths() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "contact_call.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=220,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["calls_per_path"] == 3
    for path in ("staff_video_visit", "contact_call"):
        assert 0 < result[path]["min_ms"] <= result[path]["median_ms"] <= result[path]["max_ms"]
    assert result["contact_to_staff_ratio"] > 0
    assert "shutter closed without having opened" not in done.stderr
