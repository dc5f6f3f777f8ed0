"""Command line and entry point of the TV call benchmark (``bench/tv_call.py``)."""

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
from .figures import readable
from .run import Plan, run


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command line."""
    p = argparse.ArgumentParser(
        description=package_doc, formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--calls", type=int, default=None, help="measured set-up calls (10; quick 3)")
    p.add_argument("--hold", type=float, default=None, help="held call (s) (30; quick 8)")
    p.add_argument("--idle", type=float, default=None, help="idle sampling (s) (5; quick 3)")
    p.add_argument("--quick", action="store_true", help="3 calls, an 8 s hold")
    p.add_argument(
        "--fresh-hold", action="store_true", help="restart the unit before the held call"
    )
    p.add_argument("--no-warmup-call", action="store_true", help="measure from the first call")
    p.add_argument("--json", type=Path, default=None, help="also write the result here")
    p.add_argument("--keep", action="store_true", help="keep the working directory (unit log)")
    p.add_argument("--timeout", type=float, default=600.0, help="give up after this long (600 s)")
    return p.parse_args(argv)


def plan_from(args: argparse.Namespace) -> Plan:
    """The run's plan from the command line (``--quick`` changes only what is not given)."""
    quick = bool(args.quick)
    return Plan(
        calls=args.calls if args.calls is not None else (3 if quick else 10),
        hold_s=args.hold if args.hold is not None else (8.0 if quick else 30.0),
        idle_s=args.idle if args.idle is not None else (3.0 if quick else 5.0),
        warmup_call=not args.no_warmup_call,
        fresh_hold=bool(args.fresh_hold),
        quick=quick,
    )


async def _main(plan: Plan, timeout: float, keep: bool) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    if keep:
        kept = Path(tempfile.mkdtemp(prefix="vaka-tv-bench-"))
        print(f"working directory kept: {kept}", file=sys.stderr)
        return await asyncio.wait_for(run(plan, kept), timeout)
    with tempfile.TemporaryDirectory(prefix="vaka-tv-bench-") as tmp:
        return await asyncio.wait_for(run(plan, Path(tmp)), timeout)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; the exit status says only whether the benchmark ran."""
    args = parse_args(argv)
    plan = plan_from(args)
    started = time.monotonic()
    result = asyncio.run(_main(plan, args.timeout, bool(args.keep)))
    result["run_s"] = round(time.monotonic() - started, 1)
    result["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    text = json.dumps(result, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")
    print(readable(result), file=sys.stderr)
    return 0
