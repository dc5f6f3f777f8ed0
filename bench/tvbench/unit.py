"""The TV unit under test: a ``vaka-agent --simulate`` child with the ``tv`` profile, and what
central holds about it.

The rig around it (PKI, Mosquitto, central in this process) is the call set-up benchmark's
:func:`bench.callbench.stack.running_bench`; this module adds a day-care group, a staff member
and a citizen with a TV unit to its directory (``DirectoryStore.load`` adds, it does not
replace), starts the unit and pushes its signed configuration.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.callbench.common import HOST, MAX_BITRATE_BPS, PASSWORD, TOTP_SECRET, stop_process

if TYPE_CHECKING:
    from vaka.central.service import CentralService
    from vaka.provisioning.localpki import LocalPki

UNIT = "u-bench-tv"
CITIZEN = "c-bench-tv"
GROUP = "g-bench-day"
CALLER = "s-bench-day"
WIDTH, HEIGHT, FPS = 640, 480, 15
IDLE_STANDBY_S = 1.0
"""``[tv] idle_standby_s``: how soon after a call the unit puts the TV back to standby."""
HEALTH_INTERVAL_S = 1.0
"""Health every second (agent file and bundle), so that the TV's standby is seen soon."""


def tv_directory_data() -> dict[str, Any]:
    """A day-care group whose one member may make video visits to the bench citizen's TV."""
    return {
        "group": [{"id": GROUP, "name": "Home care, day (bench)"}],
        "staff": [
            {
                "id": CALLER,
                "name": "Bench Carer",
                "role": "day_staff",
                "groups": [GROUP],
                "password": PASSWORD,
                "totp_secret": TOTP_SECRET,
            }
        ],
        "citizen": [{"id": CITIZEN, "units": [UNIT]}],
        "permission": [{"group": GROUP, "citizen": CITIZEN, "purposes": ["video_visit"]}],
    }


def auto_answer_rules() -> list[dict[str, Any]]:
    """Answer the group's video visits at once: ``countdown_s = 0`` keeps the countdown out of
    the measured time by construction."""
    return [{"purpose": "video_visit", "caller_groups": [GROUP], "countdown_s": 0}]


def tv_agent_config(pki: LocalPki, broker_port: int) -> dict[str, Any]:
    """The unit's TOML as a mapping: ``tv`` profile, headless screen, 640x480@15, tone mic."""
    files = pki.client(UNIT)
    return {
        "unit": {"id": UNIT, "profile": "tv", "simulate": True},
        "broker": {
            "host": HOST,
            "port": broker_port,
            "server_ca": str(files.server_ca),
            "cert": str(files.cert),
            "key": str(files.key),
            "keepalive_s": 5,
            "reconnect_min_s": 0.2,
            "reconnect_max_s": 1.0,
        },
        "health": {"interval_s": HEALTH_INTERVAL_S},
        "calls": {"ticket_key": str(pki.ticket_keys()[1])},
        "trust": {"config_key": str(pki.config_keys()[1])},
        "media": {
            "width": WIDTH,
            "height": HEIGHT,
            "fps": FPS,
            "max_bitrate_bps": MAX_BITRATE_BPS,
            "ice_addresses": [HOST],
            "audio": "synthetic",
        },
        "tv": {"screen": "headless", "language": "en", "idle_standby_s": IDLE_STANDBY_S},
    }


@dataclass
class TvUnit:
    """The running unit child and central's view of it."""

    proc: subprocess.Popen[bytes]
    log_path: Path
    central: CentralService

    @property
    def pid(self) -> int:
        """The child's process id (what psutil measures)."""
        return self.proc.pid

    def log_text(self) -> str:
        """Everything the unit logged so far."""
        return self.log_path.read_text(errors="replace")

    def tail(self, chars: int = 1500) -> str:
        """The end of its log (for error messages)."""
        return self.log_text()[-chars:]

    async def health(self) -> tuple[dict[str, Any] | None, float | None]:
        """The newest health sample central holds, and when it arrived (central's clock)."""
        record = await asyncio.to_thread(self.central.store.unit, UNIT)
        if record is None:
            return None, None
        return record.health, record.health_received_at

    async def until(self, what: str, check: Callable[[], Any], timeout: float) -> None:
        """Poll the (async) ``check`` until it is true; :class:`TimeoutError` naming ``what``."""
        deadline = time.monotonic() + timeout
        while not await check():
            if self.proc.poll() is not None:
                raise RuntimeError(f"the unit exited while waiting for {what}: {self.tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {what} within {timeout:.0f} s: {self.tail()}")
            await asyncio.sleep(0.05)

    async def until_health(
        self, what: str, check: Callable[[dict[str, Any]], bool], after: float, timeout: float
    ) -> dict[str, Any]:
        """Wait for a health sample received after ``after`` (``time.time()``) that passes."""
        found: dict[str, Any] = {}

        async def ok() -> bool:
            health, received = await self.health()
            if health is None or received is None or received < after or not check(health):
                return False
            found.update(health)
            return True

        await self.until(what, ok, timeout)
        return found

    async def events(self) -> list[Any]:
        """The unit's newest events at central, newest first."""
        return await asyncio.to_thread(self.central.store.recent_events, UNIT, 50)

    async def stop(self) -> None:
        """SIGTERM and wait (killed if it hangs) until central no longer sees it online.

        Safe twice."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(stop_process, self.proc)
        deadline = time.monotonic() + 10
        while await self.presence() == "online" and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    async def presence(self) -> str | None:
        """The unit's presence at central (``online``, ``offline``, ``stopped``)."""
        record = await asyncio.to_thread(self.central.store.unit, UNIT)
        return None if record is None else record.presence.status


async def start_tv_unit(
    central: CentralService, pki: LocalPki, broker_port: int, directory: Path
) -> TvUnit:
    """Start the unit child and wait until central sees it online."""
    import tomli_w

    path = directory / "tv-unit.toml"
    path.write_bytes(tomli_w.dumps(tv_agent_config(pki, broker_port)).encode())
    log_path = directory / "tv-unit.log"
    with log_path.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vaka.agent.cli", "--config", str(path), "--simulate"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    unit = TvUnit(proc, log_path, central)

    async def online() -> bool:
        return await unit.presence() == "online"

    try:
        await unit.until("unit online at central", online, 30)
    except BaseException:
        await unit.stop()
        raise
    return unit


async def push_tv_bundle(
    unit: TvUnit, pki: LocalPki, version: int = 1, *, after: float = 0.0
) -> None:
    """Sign and push the unit's configuration (auto-answer at once, health every second) and
    wait until its health, received after ``after`` (``time.time()``), reports that version."""
    from vaka.central.units.config_push import build_bundle, push_config
    from vaka.provisioning.bundles import load_config_key

    central = unit.central
    bundle = build_bundle(
        UNIT,
        version,
        "tv",
        central.ticket_public_pem,
        language="en",
        health_interval_s=HEALTH_INTERVAL_S,
        auto_answer=auto_answer_rules(),
    )
    await push_config(central, UNIT, bundle, load_config_key(pki.config_keys()[0]))
    await unit.until_health(
        f"config version {version} in the unit's health",
        lambda h: h.get("config_version") == version,
        after,
        15,
    )
