"""Command line and entry point of the call set-up benchmark (``bench/call_setup.py``)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __doc__ as package_doc
from .bare import bare_sender_main
from .common import FPS, MAX_BITRATE_BPS, SMALL
from .phases import Plan, run
from .report import summary_lines


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command line."""
    p = argparse.ArgumentParser(
        description=package_doc, formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--calls", type=int, default=20, help="call set-ups of each kind (20)")
    p.add_argument("--quick", action="store_true", help="5 calls, short streaming windows")
    p.add_argument("--json", type=Path, default=None, help="also write the result here")
    p.add_argument(
        "--gather-timeout",
        type=float,
        default=0.3,
        help="ICE gathering bound (s) for the dead-STUN runs, both sides (0.3)",
    )
    p.add_argument("--window", type=float, default=12.0, help="streaming window (s) (12)")
    p.add_argument("--timeout", type=float, default=900.0, help="give up after this long (900 s)")
    p.add_argument(
        "--agent-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the agent processes (experiments, e.g. MALLOC_ARENA_MAX=2)",
    )
    p.add_argument(
        "--broker-nodelay",
        action="store_true",
        help="experiment: `set_tcp_nodelay true` in mosquitto.conf (Nagle off, broker side)",
    )
    p.add_argument("--bare-sender", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--width", type=int, default=SMALL[0], help=argparse.SUPPRESS)
    p.add_argument("--height", type=int, default=SMALL[1], help=argparse.SUPPRESS)
    p.add_argument("--fps", type=int, default=FPS, help=argparse.SUPPRESS)
    p.add_argument("--max-bitrate", type=int, default=MAX_BITRATE_BPS, help=argparse.SUPPRESS)
    return p.parse_args(argv)


async def _main(plan: Plan, timeout: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    with tempfile.TemporaryDirectory(prefix="vaka-call-bench-") as tmp:
        return await asyncio.wait_for(run(plan, Path(tmp)), timeout)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; the exit status says only whether the benchmark ran."""
    args = parse_args(argv)
    if args.bare_sender:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        asyncio.run(bare_sender_main(args.width, args.height, args.fps, args.max_bitrate))
        return 0
    quick = bool(args.quick)
    plan = Plan(
        calls=5 if quick and args.calls == 20 else args.calls,
        dead_unbounded_calls=1 if quick else 2,
        default_bound_calls=1 if quick else 3,
        warmup_s=1.0 if quick else 2.0,
        window_s=4.0 if quick else args.window,
        gather_timeout_s=args.gather_timeout,
        quick=quick,
        agent_env=dict(item.split("=", 1) for item in args.agent_env),
        broker_nodelay=bool(args.broker_nodelay),
    )
    started = time.monotonic()
    result = asyncio.run(_main(plan, args.timeout))
    result["run_s"] = round(time.monotonic() - started, 1)
    result["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    text = json.dumps(result, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")
    for line in summary_lines(result):
        print(line, file=sys.stderr)
    return 0
