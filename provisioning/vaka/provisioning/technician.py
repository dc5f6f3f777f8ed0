"""The technician's unit commands of ``vaka-provision``, over central's HTTP API.

The first command of a sitting logs in (password and one-time code); the session is kept in a
file (:mod:`vaka.provisioning.session`) until central ends it or ``vaka-provision logout``.
"""

import argparse
import json
import sys
import time
import urllib.parse
from typing import Any

from vaka.central_api import ApiError, CentralApi, password_from_env_or_prompt
from vaka.provisioning.session import SessionFile, SessionFileRefused, StoredSession
from vaka.provisioning.update_cli import add_update_options, print_update, update_request
from vaka.provisioning.when import local_time

UNIT_COMMANDS = (
    "login",
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
    "consent",
    "update",
)

CREATE_CITIZEN = (
    "create the citizen if the directory has none of that pseudonym (without it an unknown "
    "citizen is refused, or asked about on a terminal)"
)


def add_unit_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add the unit commands to ``vaka-provision``'s parser."""

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--central", default="http://127.0.0.1:8080", help="central's base URL")
        p.add_argument("--user", required=True, help="your staff id (technician)")
        p.add_argument("--json", action="store_true", help="machine-readable output")
        return p

    command("login", "log in now; later commands use the kept session until it ends")
    sub.add_parser("logout", help="end the kept session and delete its file")
    command("list", "units waiting to enrol, silent units, the fleet")
    command("status", "one unit in detail").add_argument("unit")
    p = command("approve", "approve a waiting unit's enrolment code")
    p.add_argument("code", help="the code the unit shows, e.g. ABCDE-FGH23")
    p.add_argument("--profile", required=True, choices=["nightcam", "tv"])
    p.add_argument("--citizen", required=True, help="the citizen pseudonym")
    p.add_argument("--group", help="the staff group responsible for the unit")
    p.add_argument("--unit-id", help="the unit id to give (default: from the code)")
    p.add_argument("--replaces", help="the unit whose card this one replaces (it is revoked)")
    p.add_argument("--create-citizen", action="store_true", help=CREATE_CITIZEN)
    p = command("assign", "assign a unit to a citizen")
    p.add_argument("unit")
    p.add_argument("--profile", required=True, choices=["nightcam", "tv"])
    p.add_argument("--citizen", required=True)
    p.add_argument("--group")
    p.add_argument("--create-citizen", action="store_true", help=CREATE_CITIZEN)
    _push_config_options(command("push-config", "sign and send the unit's next config version"))
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
    p = command("consent", "record or withdraw a consent (support, administrators; audited)")
    p.add_argument("action", choices=["give", "withdraw"])
    p.add_argument("--citizen", required=True)
    p.add_argument("--scope", required=True, choices=["night_check", "video_visit", "break_glass"])
    p.add_argument("--person", default="citizen", help="a cohabitant (default: the citizen)")
    p.add_argument("--source", help="the signed form's reference, or a note")
    add_update_options(command("update", "system update roll-outs (signed bundles)"))


def _push_config_options(p: argparse.ArgumentParser) -> None:
    """What ``push-config`` may set in the unit's signed configuration."""

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
        help="STUN/TURN servers: a JSON file with a list of {urls, username?}; no credential "
        "(central gives each call its own relay credential)",
    )


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
            "create_citizen": args.create_citizen,
        }
        code = urllib.parse.quote(args.code.replace(" ", ""), safe="")
        return api.request("POST", f"/api/enrolments/{code}/approve", body)
    if cmd == "assign":
        body = {
            "profile": args.profile,
            "citizen": args.citizen,
            "group": args.group,
            "create_citizen": args.create_citizen,
        }
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
    if cmd == "update":
        return update_request(api, args)
    if cmd == "consent":
        body = {"citizen": args.citizen, "person": args.person, "scope": args.scope}
        if args.source is not None:
            body["source"] = args.source
        return api.request("POST", "/api/consent", {**body, "action": args.action})
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


def _print_list(result: dict[str, Any], now: float) -> None:
    print(f"Waiting to enrol ({len(result['pending'])}):")
    for e in result["pending"]:
        print(f"  {e['code']}  {e['profile']:<9} since {local_time(e['first_seen'], now)}")
    print(f"Units ({len(result['units'])}):")
    for u in result["units"]:
        why = f"  ({'; '.join(u['reasons'])})" if u["reasons"] else ""
        since = f" since {local_time(u['since'], now)}" if u.get("since") else ""
        life = (u.get("lifecycle") or {}).get("state", "active")
        print(f"  {u['id']:<22} {u['profile'] or '?':<9} {life:<14} {u['status']}{since}{why}")
    warning = result["candidates"].get("warning")
    if warning:
        print(f"WARNING: {warning}")
        for c in result["candidates"]["candidates"]:
            print(f"  {c['id']:<22} silent {c['silent_days']} days")


#: ``status`` fields shown by :func:`_print_status` itself (others follow as they come)
_STATUS_SHOWN = frozenset(
    {"id", "profile", "status", "since", "reasons", "agent_version", "last_seen", "bdseq"}
    | {"health", "health_received_at", "events", "lifecycle", "health_history", "open_alerts"}
    | {"calls"}
)


def _print_status(result: dict[str, Any], now: float) -> None:
    """One unit, its times on the local clock with their ages."""
    rows: list[tuple[str, object]] = [
        ("unit", result.get("id")),
        ("profile", result.get("profile") or "?"),
        ("status", f"{result.get('status')} since {local_time(result.get('since'), now)}"),
        ("why", "; ".join(result.get("reasons") or []) or "-"),
        ("lifecycle", _lifecycle(result.get("lifecycle"), now)),
        ("agent", result.get("agent_version") or "?"),
        ("last seen", local_time(result.get("last_seen"), now)),
        ("health report", local_time(result.get("health_received_at"), now)),
    ]
    health = result.get("health") or {}
    if "clock_synced" in health:
        rows.append(("clock", "synchronised" if health["clock_synced"] else "NOT synchronised"))
    if health.get("cert_expires_at") is not None:
        rows.append(("certificate", f"expires {local_time(health['cert_expires_at'], now)}"))
    for key, value in result.items():
        if key in _STATUS_SHOWN:
            continue
        shown = local_time(value, now) if key.endswith("_at") and _is_time(value) else value
        rows.append((key.replace("_", " "), shown))
    for label, value in rows:
        print(f"{label:<16} {value}")
    events = result.get("events") or []
    if events:
        print("recent events:")
        for e in events[:5]:
            detail = ", ".join(f"{k}: {v}" for k, v in (e.get("detail") or {}).items())
            print(f"  {local_time(e.get('received_at'), now)}  {e.get('kind')}  {detail}"[:160])


def _lifecycle(record: object, now: float) -> str:
    """``active since 14:52:03 (2 min ago)``, with the reason when one was given."""
    if not isinstance(record, dict):
        return "active"
    text = str(record.get("state", "active"))
    if _is_time(record.get("since")):
        text += f" since {local_time(record['since'], now)}"
    if record.get("reason"):
        text += f" ({record['reason']})"
    return text


def _is_time(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 1e9


def _print(command: str, result: Any) -> None:
    now = time.time()
    if command == "list":
        _print_list(result, now)
    elif command == "status":
        _print_status(result, now)
    elif command == "update":
        print_update(result)
    else:
        for key, value in result.items():
            shown = local_time(value, now) if key.endswith("_at") and _is_time(value) else value
            print(f"{key:<16} {shown}")


def _log_in(api: CentralApi, user: str, sessions: SessionFile) -> None:
    """Log in (password and one-time code, asked or from the environment) and keep the
    session for the next commands."""
    answer = api.login(user, password_from_env_or_prompt(user))
    sessions.save(StoredSession(api.base_url, user, answer["token"], float(answer["expires_at"])))


def _ask_create_citizen(args: argparse.Namespace, err: ApiError) -> bool:
    """On a terminal, whether the technician wants the unknown citizen created (never without a
    terminal: a script must say ``--create-citizen``)."""
    if args.command not in ("approve", "assign") or args.create_citizen:
        return False
    if err.status != 404 or "there is no citizen" not in err.reason or not sys.stdin.isatty():
        return False
    question = f"Citizen {args.citizen} is not in the directory. Create it now? [y/N] "
    answer = input(question).strip().lower()
    return answer in ("y", "yes", "j", "ja")


def _run(api: CentralApi, args: argparse.Namespace, sessions: SessionFile) -> Any:
    """The command on a kept session, logging in first when there is none or central ended it."""
    stored = sessions.session_for(api.base_url, args.user)
    if stored is None:
        _log_in(api, args.user, sessions)
    else:
        api.token = stored.token
    try:
        return _call(api, args)
    except ApiError as err:
        if err.status == 401 and stored is not None:
            # Central ended the kept session (expired, idle, logged out elsewhere): the request
            # was refused before anything was done, so log in again and repeat it.
            sessions.delete()
            print(
                f"vaka-provision: the kept session ended ({err.reason}); logging in again",
                file=sys.stderr,
            )
            _log_in(api, args.user, sessions)
            return _call(api, args)
        if _ask_create_citizen(args, err):
            args.create_citizen = True
            return _call(api, args)
        raise


def run_unit_command(args: argparse.Namespace) -> int:
    """Run one unit command on the kept session (logging in when needed); 2 with central's
    reason when refused."""
    sessions = SessionFile()
    try:
        api = CentralApi(args.central)
        if args.command == "login":
            _log_in(api, args.user, sessions)
            result: Any = {
                "user": args.user,
                "central": api.base_url,
                "session": str(sessions.path),
            }
        else:
            result = _run(api, args, sessions)
    except (ApiError, SessionFileRefused) as err:
        print(f"vaka-provision: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print(args.command, result)
    return 0


def run_logout() -> int:
    """End the kept session in central and delete the session file."""
    sessions = SessionFile()
    try:
        stored = sessions.read()
    except SessionFileRefused as err:
        print(f"vaka-provision: {err}", file=sys.stderr)
        return 2
    if stored is None:
        print("not logged in (no session kept)")
        return 0
    try:
        CentralApi(stored.central, token=stored.token).request("POST", "/api/logout", {})
    except ApiError as err:  # an ended session or an unreachable central: the file goes anyway
        print(f"vaka-provision: {err}", file=sys.stderr)
    sessions.delete()
    print(f"logged out of {stored.central} ({stored.user}); session file deleted")
    return 0
