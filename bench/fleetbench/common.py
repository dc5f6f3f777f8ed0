"""What every part of the fleet benchmark shares: addresses, progress log, figures, limits."""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
#: Soft and hard RLIMIT_NOFILE asked for (root may raise the hard limit up to fs.nr_open).
NOFILE_WANTED = 262_144
AGENT_ID = "u-bench-agent"
#: the bare subscriber's identity (a central identity: it may read every unit's health)
BARE_IDENTITY = "central-bare"


def log(text: str) -> None:
    """Progress goes to stderr; stdout carries only the result."""
    print(f"[fleet {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def percentiles(values: Sequence[float], qs: Sequence[float] = (0.5, 0.9, 0.99)) -> dict[str, Any]:
    """``samples``, the given quantiles (as ``p50``...) and ``max`` of ``values``, rounded."""
    out: dict[str, Any] = {"samples": len(values)}
    ordered = sorted(values)
    for q in qs:
        at = min(len(ordered) - 1, int(q * len(ordered)))
        out[f"p{round(q * 100):d}"] = round(ordered[at], 1) if values else None
    out["max"] = round(ordered[-1], 1) if values else None
    return out


def raise_nofile(wanted: int = NOFILE_WANTED) -> tuple[int, int]:
    """Raise RLIMIT_NOFILE of this process (and so of every child) as far as allowed."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        nr_open = int(Path("/proc/sys/fs/nr_open").read_text())
    except (OSError, ValueError):
        nr_open = hard
    target = min(wanted, nr_open)
    if target > hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, target))
        except (ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    else:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def merge_errors(answers: list[dict[str, Any]]) -> dict[str, int]:
    """The ten most frequent errors over the workers' answers."""
    merged: dict[str, int] = {}
    for a in answers:
        for k, v in a.get("errors", {}).items():
            merged[k] = merged.get(k, 0) + v
    return dict(sorted(merged.items(), key=lambda kv: -kv[1])[:10])
