"""`make demo` run non-interactively: broker, central and two simulated units, a night check,
a new unit provisioned from the box, then a clean exit; SIGTERM and Ctrl-C stop the broker and
every unit it started."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

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
    # Online; "degraded" only for a reason of this host (memory, load), never the host's clock:
    # the simulated units' clock is a fake that says synchronised.
    assert re.search(r"u-demo-tv\s+tv\s+(online|degraded)", out), out
    assert re.search(r"u-demo-nightcam\s+nightcam\s+(online|degraded)", out), out
    assert "clock not synchronised" not in out, out
    assert re.search(r"Staff console:\s+http://127\.0\.0\.1:\d+/", out), out
    assert re.search(r"python -m vaka\.otp [A-Z2-7]{16,}", out), out
    # The night check was dialled in end to end and audited.
    assert re.search(r"\d+ frames received \([1-9]\d* pixel-checked\)", out), out
    assert (
        "audit trail: ticket_issued, call_started, shutter_open, shutter_closed, call_ended" in out
    )
    # A new TV from the box: its code on the screen, approved and configured through
    # vaka-provision, online with its own certificate.
    shown = re.search(r"Its screen shows the enrolment code ([A-Z2-7]{5}-[A-Z2-7]{5})\.", out)
    assert shown, out
    code = shown.group(1)
    unit = "u-" + code.replace("-", "").lower()
    assert f"vaka-provision approve {code} --profile tv --citizen c-demo-3" in out
    assert f"central signed a certificate for {unit}" in out
    assert "config version 1 signed and sent" in out
    assert f"{unit} is online with its own certificate and config version 1." in out
    assert re.search(rf"{unit}\s+tv\s+(online|degraded)", out), out
    # The agents stopped cleanly: each logged its orderly stop.
    for name, unit_id in (("u-demo-tv",) * 2, ("u-demo-nightcam",) * 2, ("new-tv", unit)):
        log = (tmp_path / "demo" / "logs" / f"{name}.log").read_text()
        assert f"agent {unit_id} stopped" in log


def _started_by(directory: Path) -> list[psutil.Process]:
    """Every process on this machine whose command line names the demo's directory (the broker
    and the units: their configuration files live there)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if str(directory) in cmdline and "vaka.demo" not in cmdline:
            found.append(proc)
    return found


def _stop_demo_with(sig: signal.Signals, wait_for: str, tmp_path: Path) -> None:
    directory = tmp_path / "demo"
    out_path = tmp_path / "demo.out"
    with out_path.open("w") as out:
        demo = subprocess.Popen(
            [sys.executable, "-m", "vaka.demo.cli", "--dir", str(directory), "--http-port", "0"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        deadline = time.monotonic() + 120
        while wait_for not in out_path.read_text():
            assert demo.poll() is None, out_path.read_text()
            assert time.monotonic() < deadline, out_path.read_text()
            time.sleep(0.2)
        children = psutil.Process(demo.pid).children(recursive=True)
        names = " ".join(" ".join(c.cmdline()) for c in children)
        assert "mosquitto" in names and "vaka.agent.cli" in names, names
        demo.send_signal(sig)
        assert demo.wait(60) == 0, out_path.read_text()
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    text = out_path.read_text()
    assert f"Stopped ({sig.name}): the broker and every unit were stopped." in text, text
    assert "Traceback" not in text, text
    left = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert left == [], left
    assert _started_by(directory) == []


def test_sigterm_stops_the_broker_and_every_unit(tmp_path: Path) -> None:
    # Up and running: the units online, the night check done, the new unit provisioned.
    _stop_demo_with(signal.SIGTERM, "Running; press Ctrl-C to stop.", tmp_path)
    for unit in ("u-demo-tv", "u-demo-nightcam"):
        log = (tmp_path / "demo" / "logs" / f"{unit}.log").read_text()
        assert f"agent {unit} stopped" in log


def test_ctrl_c_while_starting_stops_what_was_started(tmp_path: Path) -> None:
    # Ctrl-C in the middle: after the night check, while the new unit is being provisioned.
    _stop_demo_with(signal.SIGINT, "New unit: a TV", tmp_path)
