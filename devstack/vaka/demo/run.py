"""``vaka-demo``: broker, central and simulated units on this machine.

Everything lives under one directory (default ``.vaka-demo``): a local PKI, the broker's
configuration, central's database, the units' configurations and logs. The world is started by
:class:`vaka.devstack.stack.LocalStack`, like the tests' and the benches'. The demo dials a
night check in to the simulated night camera, then provisions a new TV from the box
(:mod:`vaka.demo.newunit`). SIGTERM and SIGINT (Ctrl-C) cancel it at any point; the stack's
teardown then stops every unit and the broker, newest first.
"""

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from vaka.central.fleet.status import derive_status
from vaka.central.service import CentralService
from vaka.demo.newunit import NewUnitFailed, provision_new_unit
from vaka.demo.nightcheck import ADMIN, NURSE, PASSWORD, TECHNICIAN, TOTP_SECRET, demo_directory
from vaka.devstack.ports import port_or_free
from vaka.devstack.stack import LocalStack
from vaka.errors import ConfigError

DEMO_UNITS = (("u-demo-tv", "tv"), ("u-demo-nightcam", "nightcam"))
#: the demo's unit fresh from the box (named by its files until central gives it an id)
NEW_UNIT = "new-tv"

T = TypeVar("T")


async def run_demo(
    directory: Path, http_port: int, seconds: float | None, interval_s: float = 5
) -> int:
    """Run the demo; 0 when every simulated unit came online, the night check streamed and the
    new unit was provisioned — or when SIGTERM or SIGINT (Ctrl-C) stopped it, after the broker
    and every unit it started have stopped."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    received: list[signal.Signals] = []

    def stop(sig: signal.Signals) -> None:
        if not received:  # a second signal must not cut the teardown short
            received.append(sig)
            task.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop, sig)
    try:
        return await _demo(directory, http_port, seconds, interval_s)
    except asyncio.CancelledError:
        if not received:
            raise
        task.uncancel()
        print(f"\nStopped ({received[0].name}): the broker and every unit were stopped.")
        return 0
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _whole(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``call`` on a worker thread, finished even when the demo is stopped meanwhile: what it
    starts (a broker, a unit) is then in the stack, and the teardown stops it."""
    work = asyncio.ensure_future(asyncio.to_thread(call, *args, **kwargs))
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await asyncio.wait([work])
        raise


async def _demo(directory: Path, http_port: int, seconds: float | None, interval_s: float) -> int:
    stack = await _whole(LocalStack, directory)
    async with stack:
        await _whole(stack.start_broker)
        relay = await _start_relay(stack)
        database = stack.directory / "central.db"
        for stale in stack.directory.glob("central.db*"):
            stale.unlink()
        config = stack.central_config(http_port=port_or_free(http_port), database=database)
        central = await stack.start_central(config=config)
        await _whole(central.directory.load, demo_directory(central.config.calls.timezone))
        for device_id, profile in DEMO_UNITS:
            await _whole(
                stack.spawn_unit, device_id, profile, interval_s=interval_s, keepalive_s=10
            )
        new_unit = await _whole(stack.spawn_new_unit, NEW_UNIT, "tv", interval_s=interval_s)
        ok = await stack.wait_online(central, [d for d, _ in DEMO_UNITS], timeout=20)
        _print_fleet(central)
        print(f"\nStaff console:              {central.url}/")
        print(f"Fleet API:                  {central.url}/api/units")
        print(f"Relay (coturn, STUN/TURN):  {relay}")
        print(f"Logs and configuration:     {stack.directory}")
        if not ok:
            print("Some units did not come online; see the logs above.", file=sys.stderr)
            return 1
        if not await _night_check(central):
            return 1
        try:
            await provision_new_unit(central, new_unit, stack.directory)
        except NewUnitFailed as err:
            print(f"New unit: {err}", file=sys.stderr)
            return 1
        _print_fleet(central)
        _print_accounts(central)
        await _wait(seconds)
        return 0


async def _start_relay(stack: LocalStack) -> str:
    """Start coturn; without it (not installed) calls still run, only without a relay."""
    try:
        turn = await _whole(stack.start_turn)
    except ConfigError as err:
        print(f"No relay: {err}", file=sys.stderr)
        return "none (calls run without a relay)"
    settings = turn.settings
    return f"{settings.listen_ip}:{settings.port} (UDP and TCP), per-call credentials"


async def _night_check(central: CentralService) -> bool:
    """Load the demo directory and dial in to the night camera as the demo nurse."""
    from vaka.demo.nightcheck import dial_night_check
    from vaka.rtc.ice import configure_ice
    from vaka.staff.client import StaffError

    configure_ice(["127.0.0.1"])
    print("\nNight check: demo nurse dials in to u-demo-nightcam ...")
    try:
        seen = await dial_night_check(central.url, "u-demo-nightcam")
    except (StaffError, TimeoutError) as err:
        print(f"Night check failed: {err}", file=sys.stderr)
        return False
    t = seen["timings_ms"]
    print(
        f"  {seen['frames']} frames received ({seen['pattern_frames']} pixel-checked), "
        f"first frame {t.get('first_frame', '?')} ms after dialling, "
        f"camera-to-screen latency {seen['median_latency_ms']} ms; ended: {seen['ended']}"
    )
    await asyncio.sleep(0.5)  # the unit's call-ended and shutter events reach the audit trail
    entries = await asyncio.to_thread(central.audit.entries)
    print("  audit trail:", ", ".join(e.kind for e in entries if e.call_id == seen["call_id"]))
    return seen["pattern_frames"] > 0


def _print_accounts(central: CentralService) -> None:
    print(f"\nOpen the staff console at {central.url}/ and log in as {NURSE} (night round),")
    print(f"{ADMIN} (fleet, audit, reports) or {TECHNICIAN} (enrolment), password {PASSWORD};")
    print(f"the one-time code: .venv/bin/python -m vaka.otp {TOTP_SECRET}")
    print("  (or add that key to an authenticator app: TOTP, 30 s)")


def _print_fleet(central: CentralService) -> None:
    now = time.time()
    print("\nUnits in the fleet registry:")
    for unit in central.store.units():
        status = derive_status(unit, now, central.config.fleet)
        why = f" ({'; '.join(status.reasons)})" if status.reasons else ""
        print(f"  {unit.device_id:<20} {unit.profile or '?':<9} {status.status}{why}")


async def _wait(seconds: float | None) -> None:
    if seconds is not None:
        await asyncio.sleep(seconds)
        return
    print("\nRunning; press Ctrl-C to stop.", flush=True)
    await asyncio.Event().wait()  # until SIGINT or SIGTERM cancels the demo


def demo_seconds_from_env() -> float | None:
    """``DEMO_SECONDS`` from the environment, for non-interactive runs."""
    value = os.environ.get("DEMO_SECONDS", "").strip()
    return float(value) if value else None
