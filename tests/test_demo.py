"""`make demo` run non-interactively: broker, central and two simulated units, then a clean exit."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_make_demo_runs_and_exits_zero(tmp_path: Path) -> None:
    result = subprocess.run(
        ["make", "-s", "demo", "DEMO_SECONDS=1", f"DEMO_DIR={tmp_path / 'demo'}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    # Online; "degraded" only for a reason of this host (e.g. a container whose clock is unsynced).
    assert re.search(r"u-demo-tv\s+tv\s+(online|degraded)", out), out
    assert re.search(r"u-demo-nightcam\s+nightcam\s+(online|degraded)", out), out
    assert re.search(r"Staff console:\s+http://127\.0\.0\.1:\d+/", out), out
    assert re.search(r"python -m vaka\.otp [A-Z2-7]{16,}", out), out
    # The night check was dialled in end to end and audited.
    assert re.search(r"\d+ frames received \([1-9]\d* pixel-checked\)", out), out
    assert (
        "audit trail: ticket_issued, call_started, shutter_open, shutter_closed, call_ended" in out
    )
    # The agents stopped cleanly: each logged its orderly stop.
    for unit in ("u-demo-tv", "u-demo-nightcam"):
        log = (tmp_path / "demo" / "logs" / f"{unit}.log").read_text()
        assert f"agent {unit} stopped" in log
