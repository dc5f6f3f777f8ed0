"""Soak: the memory of a unit over many calls.

N night checks on a nightcam unit, then N two-way video visits on a TV unit (640x480 VP8 and
Opus both ways, the TV's screen headless), each a ``vaka-agent --simulate`` child of the local
stack (PKI, Mosquitto, central in this process; with ``--relay`` also coturn, so every call
carries per-call relay credentials and allocates on it). After each call, once the unit is idle
again (the nightcam: its release of the call's memory has run; the TV: back in standby), the
agent's RSS is sampled. Reported per profile: the RSS before the first call, after the warm-up
and at the end, and the growth per call after the warm-up (least-squares slope over the calls
after it). The goal (docs/benchmarks.md, "Soak") is at most 0.1 MB per call after warm-up::

    python bench/soak.py                 # 200 calls of each kind (about 25 minutes here)
    python bench/soak.py --quick         # 5 of each, warm-up 2: that it works
    python bench/soak.py --calls 50 --warmup 10 --json soak.json

Prints one JSON object on stdout and one readable line on stderr; the exit status says only
whether it ran.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

if not __package__:  # run as a script (python bench/soak.py): make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.callbench.common import log
from bench.callbench.report import machine

NIGHTCAM_SETTLE_S = 1.5
"""After a night check's hang-up: the unit releases the call's memory 1 s after it ended."""


def slope_per_call(values: Sequence[float]) -> float | None:
    """Least-squares growth per step of ``values`` (``None`` with fewer than two)."""
    n = len(values)
    if n < 2:
        return None
    mean_x = (n - 1) / 2
    mean_y = sum(values) / n
    num = sum((i - mean_x) * (v - mean_y) for i, v in enumerate(values))
    den = sum((i - mean_x) ** 2 for i in range(n))
    return num / den


def rss_figures(before: float, after_each: Sequence[float], warmup: int) -> dict[str, Any]:
    """RSS (MB) before the first call, after the warm-up and at the end, and the growth."""
    measured = list(after_each[warmup:])
    growth = slope_per_call(measured)
    return {
        "calls": len(after_each),
        "warmup_calls": warmup,
        "rss_mb_before_first_call": round(before, 1),
        "rss_mb_after_warmup": round(after_each[warmup - 1], 1)
        if 0 < warmup <= len(after_each)
        else None,
        "rss_mb_at_end": round(after_each[-1], 1) if after_each else None,
        "rss_mb_max": round(max(after_each), 1) if after_each else None,
        "growth_mb_per_call_after_warmup": None if growth is None else round(growth, 4),
        "total_growth_mb_after_warmup": round(measured[-1] - measured[0], 1)
        if len(measured) > 1
        else None,
        "rss_mb_after_each_call": [round(v, 1) for v in after_each],
    }


def readable(result: dict[str, Any]) -> str:
    """One line for people."""
    parts = []
    for name, what in (("nightcam", "night checks"), ("tv", "two-way calls")):
        f = result.get(name)
        if not f:
            continue
        growth = f["growth_mb_per_call_after_warmup"]
        parts.append(
            f"{name}: {f['calls']} {what}, RSS {f['rss_mb_before_first_call']} MB before, "
            f"{f['rss_mb_after_warmup']} after {f['warmup_calls']} warm-up, "
            f"{f['rss_mb_at_end']} at the end; "
            f"{'?' if growth is None else f'{growth:+.3f}'} MB/call after warm-up"
            f" ({f['failures']} failed)"
        )
    return "soak: " + "; ".join(parts)


async def _calls(
    n: int, call: Callable[[], Awaitable[None]], rss: Callable[[], float], what: str
) -> tuple[list[float], list[str]]:
    after_each: list[float] = []
    failures: list[str] = []
    for i in range(n):
        try:
            await call()
        except Exception as err:
            failures.append(f"{type(err).__name__}: {err}"[:300])
            log(f"{what} {i + 1} failed: {failures[-1]}")
        after_each.append(rss())
        if (i + 1) % 10 == 0 or i + 1 == n:
            log(f"{what} {i + 1}/{n}: unit RSS {after_each[-1]:.1f} MB")
    return after_each, failures


async def run(calls: int, warmup: int, relay: bool, directory: Path) -> dict[str, Any]:
    """Both soaks in one local stack; the result object."""
    import psutil

    from bench.callbench.common import HOST, PASSWORD, TOTP_SECRET
    from bench.callbench.stack import running_bench
    from bench.tvbench.run import one_call, wait_standby
    from bench.tvbench.unit import CALLER, push_tv_bundle, start_tv_unit, tv_directory_data
    from vaka.devstack.central import load_directory
    from vaka.rtc.ice import configure_ice
    from vaka.staff.client import StaffClient

    configure_ice([HOST], 1.0)
    result: dict[str, Any] = {"machine": machine(), "relay": relay}
    async with running_bench(directory, relay=relay) as bench:
        agent = await bench.start_agent()
        proc = psutil.Process(agent.proc.pid)

        def rss() -> float:
            return float(proc.memory_info().rss) / 1e6

        async def night_check() -> None:
            await bench.whole_call()
            await asyncio.sleep(NIGHTCAM_SETTLE_S)

        before = rss()
        log(f"nightcam: {calls} night checks")
        after_each, failures = await _calls(calls, night_check, rss, "night check")
        result["nightcam"] = rss_figures(before, after_each, warmup)
        result["nightcam"]["failures"] = len(failures)
        result["nightcam"]["failure_reasons"] = failures[:10]
        await bench.stop_agent()

        await load_directory(bench.central, tv_directory_data())
        unit = await start_tv_unit(bench.central, bench.stack)
        try:
            await push_tv_bundle(unit)
            tv = psutil.Process(unit.pid)
            async with StaffClient(bench.central.url) as staff:
                await staff.login(CALLER, PASSWORD, totp_secret=TOTP_SECRET)
                last = [0.0]

                async def two_way() -> None:
                    try:
                        _, last[0] = await one_call(unit, staff, last[0])
                    finally:
                        last[0] = last[0] or time.time()
                    await wait_standby(unit, last[0])

                await wait_standby(unit, 0.0)
                before = float(tv.memory_info().rss) / 1e6
                log(f"tv: {calls} two-way calls")
                after_each, failures = await _calls(
                    calls, two_way, lambda: float(tv.memory_info().rss) / 1e6, "two-way call"
                )
            result["tv"] = rss_figures(before, after_each, warmup)
            result["tv"]["failures"] = len(failures)
            result["tv"]["failure_reasons"] = failures[:10]
        finally:
            await unit.stop()
    return result


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command line."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--calls", type=int, default=None, help="calls of each kind (200; quick 5)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up calls (20; quick 2)")
    p.add_argument("--quick", action="store_true", help="5 calls of each kind, warm-up 2")
    p.add_argument("--relay", action="store_true", help="coturn in the stack: relayed calls")
    p.add_argument("--json", type=Path, default=None, help="also write the result here")
    p.add_argument("--timeout", type=float, default=7200.0, help="give up after this long (s)")
    args = p.parse_args(argv)
    if args.calls is None:
        args.calls = 5 if args.quick else 200
    if args.warmup is None:
        args.warmup = 2 if args.quick else 20
    args.warmup = max(0, min(args.warmup, args.calls - 1))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    args = parse_args(argv)
    started = time.monotonic()

    async def _main() -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="vaka-soak-") as tmp:
            return await asyncio.wait_for(
                run(args.calls, args.warmup, args.relay, Path(tmp)), args.timeout
            )

    result = asyncio.run(_main())
    result["run_s"] = round(time.monotonic() - started, 1)
    result["command"] = "python bench/soak.py " + " ".join(sys.argv[1:] if argv is None else argv)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")
    print(readable(result), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
