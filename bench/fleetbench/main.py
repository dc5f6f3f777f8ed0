"""Command line and orchestration of the fleet benchmark (``python -m bench.fleet``)."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import time
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from . import __doc__ as package_doc
from .common import log, raise_nofile
from .phases import Bench
from .report import emit, machine, summary


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command line; ``--quick`` is a small run that checks everything works."""
    p = argparse.ArgumentParser(prog="bench.fleet", description=package_doc.split("\n\n")[0])
    p.add_argument("--units", type=int, default=None, help="simulated units (default 20000)")
    p.add_argument("--interval", type=float, default=None, help="health interval s (default 30)")
    p.add_argument("--duration", type=float, default=None, help="steady window s (default 60)")
    p.add_argument("--quick", action="store_true", help="500 units, interval 5 s, 15 s window")
    p.add_argument("--workers", type=int, default=2, help="load-generator processes (default 2)")
    p.add_argument(
        "--centrals",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1],
        help="central instances in the share group (default 1); several counts, comma-separated "
        "(1,2), run the whole benchmark once per count, one after the other, and print each",
    )
    p.add_argument(
        "--database",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="the centrals' shared database: a SQLite file, or a throw-away PostgreSQL cluster "
        "(initdb/pg_ctl, as the tests make) (default sqlite)",
    )
    p.add_argument(
        "--ramp-rate", type=float, default=250.0, help="new connections per second (default 250)"
    )
    p.add_argument("--keepalive", type=int, default=60, help="units' MQTT keepalive s (default 60)")
    p.add_argument("--max-rate", action="store_true", help="then step the offered rate up")
    p.add_argument(
        "--rates",
        type=lambda s: [float(x) for x in s.split(",")],
        default=[1000.0, 2000.0, 3000.0, 4000.0, 5000.0, 6000.0, 8000.0],
        help="offered rates (msg/s) for --max-rate, comma-separated",
    )
    p.add_argument("--step-duration", type=float, default=20.0, help="window per --max-rate step")
    p.add_argument(
        "--backlog",
        type=int,
        default=None,
        help="health reports queued while central is killed, then drained (default 60000; "
        "--quick 5000; 0: skip the restart, the night checks and the events)",
    )
    p.add_argument(
        "--fill-rate", type=float, default=3000.0, help="offered msg/s while the backlog fills"
    )
    p.add_argument("--agent-seconds", type=float, default=None, help="agent sampling s (20)")
    p.add_argument("--no-agent", action="store_true", help="skip the real agent measurement")
    p.add_argument(
        "--broker-line",
        action="append",
        default=[],
        metavar="LINE",
        help="extra mosquitto.conf line (repeatable), e.g. 'max_inflight_messages 1000'",
    )
    p.add_argument(
        "--calls-first-s",
        type=float,
        default=None,
        help="central's [mqtt] calls_first_s (default: central's own, 2; 0: health never pauses)",
    )
    p.add_argument(
        "--profile-central", default=None, help="write cProfile stats of central's loop here"
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", type=Path, default=None, help="also write the result here")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = p.parse_args(argv)
    quick = {
        "units": 500,
        "interval": 5.0,
        "duration": 15.0,
        "agent_seconds": 10.0,
        "backlog": 5000,
    }
    full = {
        "units": 20000,
        "interval": 30.0,
        "duration": 60.0,
        "agent_seconds": 20.0,
        "backlog": 60000,
    }
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.units < 1 or args.units > 60000 or args.workers < 1 or args.ramp_rate <= 0:
        p.error("--units must be 1..60000, --workers >= 1, --ramp-rate > 0")
    if not all(1 <= n <= 8 for n in args.centrals):
        p.error("--centrals must be 1..8 (or a comma-separated list of such counts)")
    args.workers = min(args.workers, args.units)
    return args


@contextlib.contextmanager
def _signals_as_interrupt() -> Iterator[None]:
    def handler(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark once per ``--centrals`` count; prints one JSON object and one summary
    line on stdout per run (with several counts, also a JSON list of every run to ``--json``)."""
    args = parse_args(argv)
    counts = args.centrals
    results = []
    status = 0
    for n in counts:
        one = argparse.Namespace(**{**vars(args), "centrals": n, "json": None})
        if len(counts) > 1:
            log(f"run with {n} central instance{'s' if n > 1 else ''} on {args.database}")
        status, result = _run(one)
        results.append(result)
        if status:
            break
    if args.json is not None:
        args.json.write_text(
            json.dumps(results[0] if len(counts) == 1 else results, indent=2) + "\n"
        )
    if len(results) > 1:
        for result in results:
            print(f"centrals={result['params']['centrals']}: {summary(result)}")
    return status


def _run(args: argparse.Namespace) -> tuple[int, dict[str, Any]]:
    """One run of the benchmark (one count of central instances); exit status and result."""
    soft, hard = raise_nofile()
    bench = Bench(args)
    bench.result = {
        "benchmark": "fleet",
        "machine": machine(),
        "params": {
            "units": args.units,
            "interval_s": args.interval,
            "duration_s": args.duration,
            "workers": args.workers,
            "centrals": args.centrals,
            "database": args.database,
            "ramp_rate_per_s": args.ramp_rate,
            "keepalive_s": args.keepalive,
            "qos": 1,
            "broker_extra_lines": args.broker_line,
            "backlog": args.backlog,
            "backlog_fill_rate_msg_s": args.fill_rate,
        },
        "rlimit_nofile": {"soft": soft, "hard": hard},
    }
    log(f"RLIMIT_NOFILE {soft}/{hard}; working in {bench.dir}")
    started = time.monotonic()
    interrupted = False
    with _signals_as_interrupt():
        try:
            bench.setup()
            bench.ramp()
            if args.backlog:
                bench.start_events()
            bench.steady()
            if args.max_rate:
                bench.max_rate()
            if args.backlog:
                bench.backlog()
                bench.check_events()
            bench.drain()
            if not args.no_agent:
                bench.measure_agent()
        except KeyboardInterrupt:
            interrupted = True
            log("interrupted; cleaning up")
        except Exception as err:
            log(f"failed: {traceback.format_exc()}")
            bench.result["error"] = f"{type(err).__name__}: {err}"
            bench.result["broker_log_tail"] = bench.broker_log()[-1500:]
        finally:
            bench.teardown()
    result = bench.result
    result["elapsed_s"] = round(time.monotonic() - started, 1)
    if interrupted:
        result["interrupted"] = True
    emit(result, None)
    return (130 if interrupted else 0), result
