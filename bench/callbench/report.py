"""The aims, where the figures were taken, and the readable summary lines."""

from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path
from typing import Any

import av

from .common import DEFAULT_GATHER_BOUND_S, FPS

AIMS_TEXT = {
    "whole_median_ms": "whole path median < 300 ms",
    "whole_p95_ms": "whole path p95 < 500 ms",
    "whole_over_bare": "whole path median <= 2.5x bare pair median",
    "dead_stun_whole_median_ms": "dead STUN, whole path (bounded) median < 1000 ms",
    "dead_stun_bare_median_ms": "dead STUN, bare pair (bounded) median < 1000 ms",
    "agent_cpu_over_bare_640": "agent streaming CPU <= 1.3x bare sender at 640x480",
    "agent_cpu_over_bare_1280": "agent streaming CPU <= 1.3x bare sender at 1280x720",
    "agent_rss_mb_640": "agent RSS < 130 MB streaming 640x480",
}
AIM_LIMITS = {
    "whole_median_ms": 300.0,
    "whole_p95_ms": 500.0,
    "whole_over_bare": 2.5,
    "dead_stun_whole_median_ms": 1000.0,
    "dead_stun_bare_median_ms": 1000.0,
    "agent_cpu_over_bare_640": 1.3,
    "agent_cpu_over_bare_1280": 1.3,
    "agent_rss_mb_640": 130.0,
}


def aims(result: dict[str, Any]) -> dict[str, Any]:
    """Each aim from the issue with the measured value and whether it is within the aim."""
    setup, dead, stream = result["setup"], result["dead_stun"], result["streaming"]
    values: dict[str, float | None] = {
        "whole_median_ms": setup["whole_path"]["total_ms"]["median"],
        "whole_p95_ms": setup["whole_path"]["total_ms"]["p95"],
        "whole_over_bare": setup["ratio_median"],
        "dead_stun_whole_median_ms": dead["whole_path_bounded"]["total_ms"]["median"],
        "dead_stun_bare_median_ms": dead["bare_pair_bounded"]["total_ms"]["median"],
        "agent_cpu_over_bare_640": stream["640x480"]["cpu_ratio"],
        "agent_cpu_over_bare_1280": stream["1280x720"]["cpu_ratio"],
        "agent_rss_mb_640": stream["640x480"]["agent"]["rss_mb_max"],
    }
    return {
        name: {
            "aim": AIMS_TEXT[name],
            "value": value,
            "within_aim": None if value is None else value <= AIM_LIMITS[name],
        }
        for name, value in values.items()
    }


def machine() -> dict[str, Any]:
    """Where the figures were taken."""
    import aioice
    import aiortc

    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "aiortc": aiortc.__version__,
        "aioice": aioice.__version__,
        "pyav": av.__version__,
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def summary_lines(result: dict[str, Any]) -> list[str]:
    """Readable lines for a person."""
    lines = [
        "machine: {nproc} CPU, {cpu_model}, Python {python}, aiortc {aiortc}".format(
            **result["machine"]
        )
    ]

    def setup_line(label: str, s: dict[str, Any]) -> str:
        t, p = s["total_ms"], s["phases_median_ms"]
        return (
            f"{label}: median {t['median']} ms, p95 {t['p95']} ms (n={t['samples']}, "
            f"failed {s['failures']}) | gather {p['gather']}, signalling {p['signalling']}, "
            f"ICE+DTLS {p['ice_dtls']}, first keyframe {p['first_keyframe']} ms"
        )

    setup = result["setup"]
    lines.append(setup_line("whole path", setup["whole_path"]))
    lines.append(setup_line("bare pair ", setup["bare_pair"]))
    lines.append(f"whole/bare: median x{setup['ratio_median']}, p95 x{setup['ratio_p95']}")
    rss = setup["agent_rss_mb_before_and_after_each_call"]
    lines.append(f"agent RSS before the calls {rss[0]} MB, after call 1 {rss[1]}, last {rss[-1]}")
    dead = result["dead_stun"]
    lines.append(setup_line("dead STUN, bare, aioice 5 s wait", dead["bare_pair_unbounded"]))
    bound = dead["gather_timeout_s"]
    lines.append(setup_line(f"dead STUN, bare, bound {bound} s", dead["bare_pair_bounded"]))
    lines.append(setup_line(f"dead STUN, whole, bound {bound} s", dead["whole_path_bounded"]))
    if "whole_path_default_bound" in dead:
        lines.append(
            setup_line(
                f"dead STUN, whole, default bound {DEFAULT_GATHER_BOUND_S} s",
                dead["whole_path_default_bound"],
            )
        )
    for size, s in result["streaming"].items():
        a, b = s["agent"], s["bare_sender"]
        lines.append(
            f"streaming {size}@{FPS}: agent {a['cpu_pct_of_one_core']} % CPU, "
            f"(idle {a['cpu_pct_idle_before']}), RSS {a['rss_mb_max']} MB "
            f"(idle {a['rss_mb_idle']}), {a['fps_received']} fps | "
            f"bare sender {b['cpu_pct_of_one_core']} % CPU (idle {b['cpu_pct_idle_before']}), "
            f"RSS {b['rss_mb_max']} MB (idle {b['rss_mb_idle']}), {b['fps_received']} fps | "
            f"CPU x{s['cpu_ratio']}"
        )
    for aim in result["aims"].values():
        verdict = {True: "within aim", False: "MISSES aim", None: "no figure"}[aim["within_aim"]]
        lines.append(f"aim: {aim['aim']}: {aim['value']} -> {verdict}")
    return lines
