"""``vaka-demo``: broker, central and simulated units on this machine, with a night check."""

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from vaka.demo.run import demo_seconds_from_env, run_demo
from vaka.errors import VakaError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vaka-demo", description="Broker, central and simulated units on this machine."
    )
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--dir", type=Path, default=Path(".vaka-demo"))
    p.add_argument(
        "--seconds", type=float, default=None, help="stop after this long (default: $DEMO_SECONDS)"
    )
    p.add_argument("--http-port", type=int, default=8080)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    seconds = args.seconds if args.seconds is not None else demo_seconds_from_env()
    try:
        return asyncio.run(run_demo(args.dir, args.http_port, seconds))
    except VakaError as err:
        print(f"vaka-demo: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
