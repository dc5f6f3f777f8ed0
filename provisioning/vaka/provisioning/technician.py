"""The technician's unit commands of ``vaka-provision``, over central's HTTP API."""

import argparse
import datetime as dt
import json
import sys
import urllib.parse
from typing import Any

from vaka.central_api import ApiError, CentralApi, password_from_env_or_prompt

UNIT_COMMANDS = (
    "list",
    "status",
    "approve",
    "assign",
    "push-config",
    "rotate",
    "suspend",
    "resume",
    "revoke",
    "reenrol",
    "decommission",
)


def add_unit_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add the unit commands to ``vaka-provision``'s parser."""

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--central", default="http://127.0.0.1:8080", help="central's base URL")
        p.add_argument("--user", required=True, help="your staff id (technician)")
        p.add_argument("--json", action="store_true", help="machine-readable output")
        return p

    command("list", "units waiting to enrol, silent units, the fleet")
    command("status", "one unit in detail").add_argument("unit")
    p = command("approve", "approve a waiting unit's enrolment code")
    p.add_argument("code", help="the code the unit shows, e.g. ABCDE-FGH23")
    p.add_argument("--profile", required=True, choices=["nightcam", "tv"])
    p.add_argument("--citizen", required=True, help="the citizen pseudonym")
    p.add_argument("--group", help="the staff group responsible for the unit")
    p.add_argument("--unit-id", help="the unit id to give (default: from the code)")
    p.add_argument("--replaces", help="the unit whose card this one replaces (it is revoked)")
    p = command("assign", "assign a unit to a citizen")
    p.add_argument("unit")
    p.add_argument("--profile", required=True, choices=["nightcam", "tv"])
    p.add_argument("--citizen", required=True)
    p.add_argument("--group")
    p = command("push-config", "sign and send the unit's next config version")
    p.add_argument("unit")
    p.add_argument("--profile", required=True, choices=["nightcam", "tv"])
    p.add_argument("--health-interval", type=float, dest="health_interval_s")
    p.add_argument("--call-max-duration", type=int, dest="call_max_duration_s")
    p.add_argument("--language", choices=["sv", "da", "en"], help="the TV screen's language")
    p.add_argument(
        "--auto-answer",
        action="append",
        type=auto_answer_rule,
        metavar="PURPOSE:GROUP[,GROUP]:SECONDS",
        help="a TV answers these calls by itself after a countdown (repeatable), "
        "e.g. video_visit:g-home-care:10",
    )
    p.add_argument(
        "--night-hours",
        type=night_hours,
        metavar="HH:MM-HH:MM",
        help="the care provider's night hours, when the TV's button calls the night staff "
        "(default 21:00-07:00)",
    )
    p.add_argument("--day-phone", help="the care provider's daytime number, shown on the TV by day")
    p.add_argument(
        "--day-calls",
        action=argparse.BooleanOptionalAction,
        help="whether the TV's button rings the staff on duty by day (default yes); "
        "--no-day-calls shows the day phone number instead",
    )
    p.add_argument("--timezone", help="the unit's time zone (default: central's)")
    p.add_argument(
        "--ice-servers",
        type=ice_servers_file,
        metavar="FILE",
        help="STUN/TURN servers: a JSON list of {urls, username?, credential?} (a file, so that "
        "TURN secrets stay out of the process list and shell history)",
    )
    command("rotate", "make the unit renew its key and certificate now").add_argument("unit")
    for name, what in (
        ("suspend", "take a unit out of service for a while (no alerts for it)"),
        ("revoke", "revoke a unit now (stolen, compromised)"),
        ("reenrol", "make a unit show a new enrolment code; approve it with --unit-id UNIT"),
        ("decommission", "wipe a unit and take it out of service"),
    ):
        p = command(name, what)
        p.add_argument("unit")
        p.add_argument("--reason", required=True)
    p = command("resume", "put a suspended unit back in service")
    p.add_argument("unit")
    p.add_argument("--reason", default="resumed")


def _call(api: CentralApi, args: argparse.Namespace) -> Any:
    cmd = args.command
    if cmd == "list":
        return {
            "pending": api.request("GET", "/api/enrolments")["pending"],
            "candidates": api.request("GET", "/api/decommission-candidates"),
            "units": api.request("GET", "/api/units")["units"],
        }
    if cmd == "status":
        return api.request("GET", f"/api/units/{args.unit}")
    if cmd == "approve":
        body = {
            "profile": args.profile,
            "citizen": args.citizen,
            "group": args.group,
            "unit_id": args.unit_id,
            "replaces": args.replaces,
        }
        code = urllib.parse.quote(args.code.replace(" ", ""), safe="")
        return api.request("POST", f"/api/enrolments/{code}/approve", body)
    if cmd == "assign":
        body = {"profile": args.profile, "citizen": args.citizen, "group": args.group}
        return api.request("POST", f"/api/units/{args.unit}/assign", body)
    if cmd == "push-config":
        body = {"profile": args.profile}
        keys = (
            "health_interval_s",
            "call_max_duration_s",
            "language",
            "auto_answer",
            "ice_servers",
            "day_phone",
            "day_calls",
            "timezone",
        )
        for key in keys:
            if getattr(args, key) is not None:
                body[key] = getattr(args, key)
        if args.night_hours is not None:
            body["night_from"], body["night_until"] = args.night_hours
        return api.request("POST", f"/api/units/{args.unit}/config", body)
    if cmd == "rotate":
        return api.request("POST", f"/api/units/{args.unit}/rotate", {})
    return api.request("POST", f"/api/units/{args.unit}/{cmd}", {"reason": args.reason})


def auto_answer_rule(text: str) -> dict[str, object]:
    """``PURPOSE:GROUP[,GROUP]:SECONDS`` as an auto-answer rule (``argparse`` type)."""
    parts = text.split(":")
    if len(parts) != 3 or not parts[0] or not parts[1] or not parts[2].isdigit():
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected PURPOSE:GROUP[,GROUP]:SECONDS, e.g. video_visit:g-home-care:10"
        )
    groups = [g.strip() for g in parts[1].split(",") if g.strip()]
    return {"purpose": parts[0], "caller_groups": groups, "countdown_s": int(parts[2])}


def night_hours(text: str) -> tuple[str, str]:
    """``HH:MM-HH:MM`` as ``(night_from, night_until)`` (``argparse`` type); central checks the
    times."""
    start, dash, end = text.partition("-")
    if not dash or not start.strip() or not end.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: expected HH:MM-HH:MM, e.g. 21:00-07:00")
    return start.strip(), end.strip()


def ice_servers_file(path: str) -> list[object]:
    """The STUN/TURN servers in a JSON file (``argparse`` type); central checks each entry."""
    try:
        with open(path, encoding="utf-8") as file:
            servers = json.load(file)
    except OSError as err:
        raise argparse.ArgumentTypeError(f"cannot read {path}: {err.strerror}") from None
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{path} is not JSON: {err}") from None
    if not isinstance(servers, list):
        raise argparse.ArgumentTypeError(f"{path} must hold a JSON list of servers")
    return servers


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _print(command: str, result: Any) -> None:
    if command == "list":
        print(f"Waiting to enrol ({len(result['pending'])}):")
        for e in result["pending"]:
            print(f"  {e['code']}  {e['profile']:<9} since {_when(e['first_seen'])}")
        print(f"Units ({len(result['units'])}):")
        for u in result["units"]:
            why = f"  ({'; '.join(u['reasons'])})" if u["reasons"] else ""
            life = u.get("lifecycle", {}).get("state", "active")
            print(f"  {u['id']:<22} {u['profile'] or '?':<9} {life:<14} {u['status']}{why}")
        warning = result["candidates"].get("warning")
        if warning:
            print(f"WARNING: {warning}")
            for c in result["candidates"]["candidates"]:
                print(f"  {c['id']:<22} silent {c['silent_days']} days")
        return
    for key, value in result.items():
        if key not in ("health", "events", "health_history"):
            print(f"{key:<16} {value}")


def run_unit_command(args: argparse.Namespace) -> int:
    """Log in and run one unit command; 2 with central's reason when refused."""
    try:
        api = CentralApi(args.central)
        api.login(args.user, password_from_env_or_prompt(args.user))
        result = _call(api, args)
    except ApiError as err:
        print(f"vaka-provision: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print(args.command, result)
    return 0
