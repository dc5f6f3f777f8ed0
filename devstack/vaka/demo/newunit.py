"""The demo's new unit, from the box to online: a TV switched on for the first time shows its
enrolment code, the demo technician approves it and pushes its config with ``vaka-provision``
(the real CLI, as a technician types it), and the unit comes online with its own certificate.
"""

import asyncio
import contextlib
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from vaka.central.service import CentralService
from vaka.demo.nightcheck import NEW_CITIZEN, PASSWORD, TECHNICIAN, TOTP_SECRET
from vaka.devstack.central import wait_units_online
from vaka.devstack.units import AgentProcess
from vaka.errors import VakaError

#: what the agent logs (and shows on the TV) while it waits for approval
CODE_LINE = re.compile(r"enrolment code ([A-Z2-7]{5}-[A-Z2-7]{5})")
GROUP = "g-demo-night"


class NewUnitFailed(VakaError, RuntimeError):
    """A step of the new unit's story did not happen; the message says which."""


class Technician:
    """``vaka-provision`` run as the demo technician would: the password and one-time code come
    from files in the demo's directory, the session is kept there (the second command asks for
    nothing)."""

    def __init__(self, central_url: str, directory: Path) -> None:
        self.central_url = central_url
        self.state = directory / "technician"
        self.state.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.secret_file = self.state / "totp-secret"
        fd = os.open(self.secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(TOTP_SECRET)

    async def run(self, *args: str) -> Any:
        """One command (``--json``); its answer, or :class:`NewUnitFailed` with central's reason."""
        argv = [
            sys.executable,
            "-m",
            "vaka.provisioning.cli",
            args[0],
            "--central",
            self.central_url,
            "--user",
            TECHNICIAN,
            "--json",
            *args[1:],
        ]
        env = {
            **os.environ,
            "VAKA_PASSWORD": PASSWORD,
            "VAKA_TOTP_SECRET_FILE": str(self.secret_file),
            "XDG_STATE_HOME": str(self.state),
        }
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        try:
            out, err = await proc.communicate()
        finally:
            if proc.returncode is None:  # interrupted (the demo is stopping): no CLI left behind
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if proc.returncode != 0:
            raise NewUnitFailed(f"vaka-provision {args[0]} failed: {err.decode().strip()}")
        return json.loads(out)


async def enrolment_code(unit: AgentProcess, timeout: float = 30) -> str:
    """The code the new unit shows, read from what it announces."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = CODE_LINE.search(unit.log())
        if found:
            return found.group(1)
        if not unit.running:
            raise NewUnitFailed(f"the new unit stopped: {unit.tail()}")
        await asyncio.sleep(0.2)
    raise NewUnitFailed(f"the new unit showed no enrolment code within {timeout:.0f} s")


async def _config_applied(central: CentralService, unit: str, version: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = await asyncio.to_thread(central.store.recent_events, unit, 20)
        if any(
            e.kind == "info"
            and e.detail.get("config") == "applied"
            and e.detail.get("version") == version
            for e in events
        ):
            return True
        await asyncio.sleep(0.2)
    return False


async def provision_new_unit(central: CentralService, unit: AgentProcess, directory: Path) -> str:
    """Tell the new unit's story in a few lines; its unit id, or :class:`NewUnitFailed`."""
    print(f"\nNew unit: a TV ({unit.name}) is switched on for the first time, with no identity.")
    code = await enrolment_code(unit)
    print(f"  Its screen shows the enrolment code {code}.")
    technician = Technician(central.url, directory)
    print(
        f"  Technician: vaka-provision approve {code} --profile tv --citizen {NEW_CITIZEN} "
        f"--group {GROUP}"
    )
    approved = await technician.run(
        "approve", code, "--profile", "tv", "--citizen", NEW_CITIZEN, "--group", GROUP
    )
    unit_id = str(approved["unit"])
    until = time.strftime("%Y-%m-%d %H:%M", time.localtime(approved["expires_at"]))
    print(f"    -> central signed a certificate for {unit_id} (valid until {until})")
    print(f"  Technician: vaka-provision push-config {unit_id} --profile tv --language en")
    print("    (the same sitting: no password or one-time code asked again)")
    pushed = await technician.run("push-config", unit_id, "--profile", "tv", "--language", "en")
    version = int(pushed["version"])
    print(f"    -> config version {version} signed and sent")
    if not await wait_units_online(central, [unit_id], timeout=30):
        raise NewUnitFailed(f"{unit_id} did not come online with its certificate")
    if not await _config_applied(central, unit_id, version, timeout=20):
        raise NewUnitFailed(f"{unit_id} did not apply config version {version}")
    print(f"  {unit_id} is online with its own certificate and config version {version}.")
    return unit_id
