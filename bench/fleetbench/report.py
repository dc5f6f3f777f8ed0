"""The result: the machine it ran on, the JSON object and the one-line summary."""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import psutil


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return ""


def machine() -> dict[str, Any]:
    """What this ran on."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    try:
        mosq = subprocess.run(
            ["mosquitto", "-h"], capture_output=True, text=True, timeout=5, check=False
        ).stdout.splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        mosq = ""
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "mem_total_mb": round(psutil.virtual_memory().total / 2**20),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "mosquitto": mosq.strip(),
        "paho_mqtt": _version("paho-mqtt"),
        "sqlalchemy": _version("sqlalchemy"),
    }


def summary(r: dict[str, Any]) -> str:
    """One readable line."""
    p = r.get("params", {})
    s = r.get("steady")
    if not s:
        return f"fleet: {p.get('units')} units: no steady-state figures (see JSON)"
    cpu = s["cpu_pct_of_one_core"]
    rss = s["rss_mb"]
    lat = s["publish_to_commit_ms"]
    agent = r.get("agent", {})
    agent_text = (
        f"agent {agent['cpu_pct_of_one_core']}% CPU {agent['rss_mb']['mean']} MB"
        if agent.get("rss_mb")
        else "agent n/a"
    )
    top = max((x["written_msg_s"] for x in r.get("max_rate", [])), default=None)
    backlog = r.get("backlog")
    events = r.get("events")
    extra = ""
    if backlog:
        extra += (
            f"; backlog {backlog['queued_at_restart']} drained in {backlog['drain_s']} s, central "
            f"peak RSS {backlog['central_peak_rss_mb_from_the_dial']} MB, night check "
            f"{backlog['night_check_setup_ms_before']} ms before / "
            f"{backlog['night_check_setup_ms_during_drain']} ms during the drain"
        )
    if events:
        acked = events["published_and_acked_by_broker"]
        extra += f"; events lost {events['events_lost']} of {acked}"
    return (
        f"fleet: {p.get('centrals', 1)} central on {p.get('database', 'sqlite')}, "
        f"{s['units_connected']}/{p['units']} units @ {p['interval_s']} s, ramp "
        f"{r['ramp']['seconds']} s; written {s['written_msg_s']}/s (offered "
        f"{s['offered_msg_s']}/s), p50 {lat['p50']} ms p99 {lat['p99']} ms, central "
        f"{s.get('central_cpu_us_per_msg')} µs/msg (bare subscriber "
        f"{s.get('bare_subscriber_cpu_us_per_msg')}), refused "
        f"{s['refused']}; CPU broker {cpu['broker']}% central {cpu['central']}% loadgen "
        f"{cpu['loadgen']}% (machine {cpu['machine_busy']}%); RSS broker "
        f"{rss['broker']['max']} MB central {rss['central']['max']} MB loadgen "
        f"{rss['loadgen']['max']} MB; {agent_text}"
        + (f"; max written {top}/s" if top is not None else "")
        + extra
    )


def emit(result: dict[str, Any], json_path: Path | None) -> None:
    """Print the JSON object (also written to ``json_path``) and the summary line on stdout."""
    text = json.dumps(result, indent=2)
    print(text)
    if json_path is not None:
        json_path.write_text(text + "\n")
    print(summary(result))
