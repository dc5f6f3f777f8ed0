"""``vaka-demo``: broker, central and simulated units on this machine.

Everything lives under one directory (default ``.vaka-demo``): a local PKI, the broker's
configuration, central's database, the units' configurations and logs.
"""

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import tomli_w

from vaka.central.broker.broker import BrokerSettings, write_broker_config
from vaka.central.fleet.status import derive_status
from vaka.central.service import CentralService
from vaka.central.settings.config import (
    CentralConfig,
    DatabaseSection,
    HttpSection,
    KeysSection,
    MqttSection,
)
from vaka.devstack.broker import MosquittoProcess, dev_broker_user, free_port
from vaka.provisioning.localpki import LocalPki

log = logging.getLogger(__name__)

DEMO_UNITS = (("u-demo-tv", "tv"), ("u-demo-nightcam", "nightcam"))


def _port_or_free(preferred: int) -> int:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            return free_port()


def write_unit_config(
    path: Path,
    pki: LocalPki,
    device_id: str,
    profile: str,
    broker_port: int,
    interval_s: float,
    **broker_options: float,
) -> Path:
    """Issue a unit certificate and write a simulated unit's agent configuration.

    ``broker_options`` are further ``[broker]`` settings (``keepalive_s``, ``reconnect_min_s``...).
    """
    files = pki.client(device_id)
    config = {
        "unit": {"id": device_id, "profile": profile, "simulate": True},
        "broker": {
            "host": "127.0.0.1",
            "port": broker_port,
            "server_ca": str(files.server_ca),
            "cert": str(files.cert),
            "key": str(files.key),
            "keepalive_s": 10,
            **broker_options,
        },
        "health": {"interval_s": interval_s},
        "calls": {"ticket_key": str(pki.ticket_keys()[1])},
        # Media stays on this machine's loopback (see vaka.rtc.ice).
        "media": {"ice_addresses": ["127.0.0.1"]},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps(config))
    return path


def start_agent(config: Path, log_path: Path) -> subprocess.Popen[bytes]:
    """Start ``vaka-agent --simulate`` as a child process."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "vaka.agent.cli", "--config", str(config), "--simulate"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )


@dataclass(frozen=True)
class DemoPlan:
    """Files and ports of one demo run, prepared before the event loop starts."""

    directory: Path
    pki: LocalPki
    broker_conf: Path
    broker_port: int
    central: CentralConfig
    unit_configs: tuple[tuple[str, Path], ...]


def prepare_demo(directory: Path, http_port: int = 8080, interval_s: float = 5) -> DemoPlan:
    """Create the PKI, the broker configuration and the units' configurations."""
    directory = directory.resolve()
    pki = LocalPki(directory / "pki").ensure()
    broker_port = free_port()
    central_files = pki.client("central-1")
    conf = write_broker_config(
        directory / "broker",
        BrokerSettings(
            port=broker_port,
            client_ca=pki.client_ca_cert,
            server_cert=pki.broker_cert,
            server_key=pki.broker_key,
            persistence=False,
            user=dev_broker_user(),
        ),
    )
    db = directory / "central.db"
    for stale in directory.glob("central.db*"):
        stale.unlink()
    central = CentralConfig(
        mqtt=MqttSection(
            port=broker_port,
            server_ca=central_files.server_ca,
            cert=central_files.cert,
            key=central_files.key,
        ),
        keys=KeysSection(ticket_key=pki.ticket_keys()[0], config_key=pki.config_keys()[0]),
        http=HttpSection(port=_port_or_free(http_port)),
        database=DatabaseSection(url=f"sqlite:///{db}"),
    )
    units = tuple(
        (
            device_id,
            write_unit_config(
                directory / "units" / f"{device_id}.toml",
                pki,
                device_id,
                profile,
                broker_port,
                interval_s,
            ),
        )
        for device_id, profile in DEMO_UNITS
    )
    return DemoPlan(directory, pki, conf, broker_port, central, units)


async def run_demo(plan: DemoPlan, seconds: float | None) -> int:
    """Run the demo; returns 0 when every simulated unit came online."""
    directory = plan.directory
    agents: list[subprocess.Popen[bytes]] = []
    with MosquittoProcess(plan.broker_conf, "127.0.0.1", plan.broker_port):
        async with CentralService(plan.central) as central:
            for device_id, path in plan.unit_configs:
                agents.append(start_agent(path, directory / "logs" / f"{device_id}.log"))
            try:
                ok = await _wait_online(central, [d for d, _ in DEMO_UNITS], timeout=20)
                _print_fleet(central)
                print(f"\nStaff console:              {central.url}/")
                print(f"Fleet API:                  {central.url}/api/units")
                print(f"Logs and configuration:     {directory}")
                if not ok:
                    print("Some units did not come online; see the logs above.", file=sys.stderr)
                    return 1
                if not await _night_check(central):
                    return 1
                await _wait(seconds)
                return 0
            finally:
                for proc in agents:
                    with contextlib.suppress(ProcessLookupError):
                        proc.send_signal(signal.SIGTERM)
                for proc in agents:
                    try:
                        proc.wait(10)
                    except subprocess.TimeoutExpired:
                        proc.kill()


async def _night_check(central: CentralService) -> bool:
    """Load the demo directory and dial in to the night camera as the demo nurse."""
    from vaka.demo.nightcheck import (
        ADMIN,
        NURSE,
        PASSWORD,
        TOTP_SECRET,
        demo_directory,
        dial_night_check,
    )
    from vaka.rtc.ice import configure_ice
    from vaka.staff.client import StaffError

    await asyncio.to_thread(central.directory.load, demo_directory(central.config.calls.timezone))
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
    print(f"\nOpen the staff console at {central.url}/ and log in as {NURSE} (night round)")
    print(f"or {ADMIN} (fleet, audit, reports), password {PASSWORD}; the one-time code:")
    print(f"  .venv/bin/python -m vaka.otp {TOTP_SECRET}")
    print("  (or add that key to an authenticator app: TOTP, 30 s)")
    return seen["pattern_frames"] > 0


async def _wait_online(central: CentralService, ids: list[str], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        units = await asyncio.to_thread(central.store.units)
        online = {u.device_id for u in units if u.presence.status == "online"}
        if set(ids) <= online:
            return True
        await asyncio.sleep(0.2)
    return False


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
    print("\nRunning; press Ctrl-C to stop.")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def demo_seconds_from_env() -> float | None:
    """``DEMO_SECONDS`` from the environment, for non-interactive runs."""
    value = os.environ.get("DEMO_SECONDS", "").strip()
    return float(value) if value else None
