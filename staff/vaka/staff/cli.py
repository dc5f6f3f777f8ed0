"""``vaka-staff``: staff tools on the command line. This version lists the fleet."""

import argparse
import json
import os
import sys
import time
import urllib.parse
from typing import Any

from vaka import otp
from vaka.central_api import ApiError, CentralApi, password_from_env_or_prompt


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``vaka-staff`` (its tests parse with it too)."""
    p = argparse.ArgumentParser(prog="vaka-staff", description="Vaka staff tools.")
    p.add_argument("--central", default="http://127.0.0.1:8080", help="central's base URL")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--totp-secret-file",
        help="file with your TOTP secret, to compute the one-time code (else it is asked)",
    )
    sub = p.add_subparsers(dest="command", required=True)
    units = sub.add_parser("units", help="list units and their status")
    units.add_argument("--status", choices=["online", "degraded", "offline"])
    units.add_argument("--user", required=True, help="your staff id (support, technician, admin)")
    dial = sub.add_parser(
        "dial",
        help="dial in to a unit and receive its video",
        description="Dial in to a unit and receive its video. While a TV rings, Ctrl-C or a line "
        "'cancel' on standard input cancels the call. Exit status: 0 the call ran its --seconds, "
        "2 refused, 3 the unit ended it early, 130 cancelled.",
    )
    dial.add_argument("unit", help="unit id, e.g. u-demo-nightcam")
    dial.add_argument("--user", required=True, help="your staff id")
    dial.add_argument(
        "--purpose", default="night_check", choices=["night_check", "video_visit", "break_glass"]
    )
    dial.add_argument("--reason", help="typed reason (required for break_glass)")
    dial.add_argument("--seconds", type=float, default=5.0, help="how long to stay in the call")
    dial.add_argument("--show", action="store_true", help="show the video in a window")
    dial.add_argument(
        "--escalate",
        metavar="REASON",
        help="once the picture shows, ask for the clear view of a blurred night check with "
        "this reason (audited; docs/privacy.md)",
    )
    dial.add_argument(
        "--ice-address", action="append", help="gather ICE candidates only on this address"
    )
    duty = sub.add_parser("duty", help="go on or off duty, see the watch, listen for rings")
    duty.add_argument("action", choices=["on", "off", "status", "listen"])
    duty.add_argument("--user", required=True, help="your staff id")
    duty.add_argument("--answer", action="store_true", help="listen: answer the first ring")
    duty.add_argument(
        "--seconds", type=float, default=0, help="listen: stop after this long (0: never)"
    )
    duty.add_argument(
        "--ice-address", action="append", help="gather ICE candidates only on this address"
    )
    message = sub.add_parser("message", help="send a message or reminder to a TV unit")
    message.add_argument("unit", help="unit id, e.g. u-demo-tv")
    message.add_argument("text", help="what the TV shows (up to 500 characters)")
    message.add_argument("--user", required=True, help="your staff id")
    message.add_argument("--at", help="when: HH:MM local time (today, or tomorrow if past)")
    message.add_argument(
        "--reminder", action="store_true", help="a reminder: reported missed if not acknowledged"
    )
    message.add_argument("--picture", help="a JPEG to show with it (at most 40 KiB, 1280x720)")
    message.add_argument(
        "--ack-within", type=int, help="seconds the citizen has to acknowledge (default 900)"
    )
    return p


def fetch_units(
    central: str, status: str | None = None, api: CentralApi | None = None
) -> list[dict[str, Any]]:
    """``GET /api/units`` from central (``api`` logged in); :class:`ApiError` with a reason."""
    query = f"?{urllib.parse.urlencode({'status': status})}" if status else ""
    api = api or CentralApi(central)
    units: list[dict[str, Any]] = api.request("GET", f"/api/units{query}")["units"]
    return units


async def _duty(args: argparse.Namespace, password: str) -> dict[str, Any]:
    from vaka.staff.client import StaffClient

    async with StaffClient(args.central) as client:
        await client.login(args.user, password)
        if args.action in ("on", "off"):
            return await client.duty(args.action == "on")
        if args.action == "status":
            return await client.duty_status()
        rings: list[dict[str, Any]] = []
        answered: dict[str, Any] | None = None
        deadline = time.monotonic() + args.seconds if args.seconds > 0 else None
        async with client.ring_socket() as socket:
            print("on duty and listening for rings", flush=True)
            while deadline is None or time.monotonic() < deadline:
                left = 60.0 if deadline is None else max(0.01, deadline - time.monotonic())
                try:
                    message = await socket.next(min(left, 60.0))
                except TimeoutError:
                    continue
                if not args.json:
                    print(_describe_ring(message), flush=True)
                if message.get("type") == "off_duty":
                    break
                if message.get("type") != "ring":
                    continue
                rings.append(message)
                if args.answer and answered is None:
                    call = await client.answer(message["request_id"], message["unit"])
                    answered = {"request_id": message["request_id"], "call_id": call.call_id}
                    if not args.json:
                        print(f"answered: call {call.call_id}", flush=True)
                    await call.hangup()
                    break
        return {"rings": rings, "answered": answered}


def _describe_ring(message: dict[str, Any]) -> str:
    kind = message.get("type")
    if kind == "ring":
        return (
            f"RING {message.get('request_id')}: citizen {message.get('citizen')} "
            f"on unit {message.get('unit')} ({message.get('group')})"
        )
    if kind == "stop_ringing":
        return f"stopped ringing {message.get('request_id')}: {message.get('reason')}"
    return f"{kind}: {message.get('reason', '')}"


def run_duty(args: argparse.Namespace) -> int:
    """``vaka-staff duty on|off|status|listen``; exit status 2 with a reason when refused."""
    from vaka.staff.dial import run_as_staff

    result = run_as_staff(args, lambda password: _duty(args, password))
    if result is None:
        return 2
    if args.json:
        print(json.dumps(result, indent=2))
    elif args.action in ("on", "off"):
        since = result.get("since")
        when = time.strftime(" since %H:%M:%S", time.localtime(since)) if since else ""
        print(f"{args.user} is {'on' if result['on'] else 'off'} duty{when}")
    elif args.action == "status":
        me = result["me"]
        print(f"you are {'on' if me['on'] else 'off'} duty")
        for watch in result["watch"]:
            names = ", ".join(s["name"] for s in watch["staff"]) or "nobody"
            print(f"{watch['group']:<16} {names}")
    return 0


async def _message(args: argparse.Namespace, password: str, picture: bytes | None) -> Any:
    from vaka.staff.client import StaffClient

    async with StaffClient(args.central) as client:
        await client.login(args.user, password)
        return await client.send_message(
            args.unit,
            args.text,
            reminder=args.reminder,
            at=args.at,
            picture=picture,
            ack_within_s=args.ack_within,
        )


def run_message(args: argparse.Namespace) -> int:
    """``vaka-staff message UNIT TEXT``; exit status 2 with a reason when refused."""
    from vaka.staff.dial import run_as_staff

    picture = None
    if args.picture:
        try:
            with open(args.picture, "rb") as file:
                picture = file.read()
        except OSError as err:
            print(f"vaka-staff: cannot read {args.picture}: {err.strerror}", file=sys.stderr)
            return 2
    created = run_as_staff(args, lambda password: _message(args, password, picture))
    if created is None:
        return 2
    if args.json:
        print(json.dumps(created, indent=2))
    else:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(created["send_at"]))
        print(
            f"{created['kind']} {created['mid']} for {created['unit']}: {created['status']}, "
            f"sent {when}"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.totp_secret_file:
        os.environ[otp.SECRET_FILE_ENV] = args.totp_secret_file
    if args.command == "dial":
        from vaka.staff.dial import run_dial

        return run_dial(args)
    if args.command == "duty":
        return run_duty(args)
    if args.command == "message":
        return run_message(args)
    try:
        api = CentralApi(args.central)
        api.login(args.user, password_from_env_or_prompt(args.user))
        units = fetch_units(args.central, args.status, api)
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
