"""``vaka-staff``: staff tools on the command line. This version lists the fleet."""

import argparse
import json
import sys
import urllib.parse
from typing import Any

from vaka.central_api import ApiError, CentralApi


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vaka-staff", description="Vaka staff tools.")
    p.add_argument("--central", default="http://127.0.0.1:8080", help="central's base URL")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    sub = p.add_subparsers(dest="command", required=True)
    units = sub.add_parser("units", help="list units and their status")
    units.add_argument("--status", choices=["online", "degraded", "offline"])
    dial = sub.add_parser("dial", help="dial in to a unit and receive its video")
    dial.add_argument("unit", help="unit id, e.g. u-demo-nightcam")
    dial.add_argument("--user", required=True, help="your staff id")
    dial.add_argument(
        "--purpose", default="night_check", choices=["night_check", "video_visit", "break_glass"]
    )
    dial.add_argument("--reason", help="typed reason (required for break_glass)")
    dial.add_argument("--seconds", type=float, default=5.0, help="how long to stay in the call")
    dial.add_argument("--show", action="store_true", help="show the video in a window")
    dial.add_argument(
        "--ice-address", action="append", help="gather ICE candidates only on this address"
    )
    return p


def fetch_units(central: str, status: str | None = None) -> list[dict[str, Any]]:
    """``GET /api/units`` from central; :class:`ApiError` with a readable reason."""
    query = f"?{urllib.parse.urlencode({'status': status})}" if status else ""
    units: list[dict[str, Any]] = CentralApi(central).request("GET", f"/api/units{query}")["units"]
    return units


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "dial":
        from vaka.staff.dial import run_dial

        return run_dial(args)
    try:
        units = fetch_units(args.central, args.status)
    except ApiError as err:
        print(f"vaka-staff: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(units, indent=2))
        return 0
    for unit in units:
        why = f"  ({'; '.join(unit['reasons'])})" if unit["reasons"] else ""
        print(f"{unit['id']:<24} {unit['profile'] or '?':<9} {unit['status']}{why}")
    if not units:
        print("no units")
    return 0


if __name__ == "__main__":
    sys.exit(main())
