"""A unit's life after enrolment: renewal during a call, config pushes, rotation, silence,
decommissioning back to the enrolment state — through `vaka-provision`."""

import asyncio
import functools
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import TOTP_SECRET, totp_secret_file
from tests.nightcheck import hhmm
from tests.test_enrolment import PASSWORD, generic_unit, load_technician, pending_code
from vaka.central.directory.spec import DirectorySpec
from vaka.central.fleet.lifecycle import LifecycleRefused
from vaka.central.http.staff import LOGIN_REFUSED
from vaka.central.service import CentralService
from vaka.devstack.broker import Broker
from vaka.devstack.central import central_config, running_central, unit_status
from vaka.devstack.polling import wait_for
from vaka.provisioning import pki
from vaka.rtc.pattern import decode_pattern
from vaka.staff.client import StaffClient


def provision(
    central: CentralService,
    *args: str,
    state: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `vaka-provision` as the technician would: password and one-time code from the
    environment (``env`` replaces them), the kept session under ``state`` (a fresh directory per
    command when not given: every command logs in)."""
    if state is None:
        with tempfile.TemporaryDirectory(prefix="vaka-provision-") as fresh:
            return provision(central, *args, state=Path(fresh), env=env)
    credentials = {
        "VAKA_PASSWORD": PASSWORD,
        "VAKA_TOTP_SECRET_FILE": str(totp_secret_file()),
    }
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "vaka.provisioning.cli",
            args[0],
            "--central",
            central.url,
            "--user",
            "t-tech",
            *args[1:],
        ],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # no terminal: nothing may wait for a prompt
        env={
            **{k: v for k, v in os.environ.items() if k not in credentials},
            **(credentials if env is None else env),
            "XDG_STATE_HOME": str(state),
        },
    )


async def enrol(central: CentralService, broker: Broker, creds: Path, citizen: str = "c-9") -> str:
    """Approve the unit waiting with a code (via the CLI); returns its unit id."""
    code = await pending_code(central)
    result = await asyncio.to_thread(
        provision,
        central,
        "approve",
        code,
        "--profile",
        "nightcam",
        "--citizen",
        citizen,
        "--group",
        "g-night",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    unit = json.loads(result.stdout)["unit"]
    await wait_for(lambda: _is(central, unit, "online"), 15, what=f"{unit} online")
    return unit


async def _is(central: CentralService, unit: str, status: str) -> bool:
    return await unit_status(central, unit) == status


async def test_decommission_wipes_the_unit_and_it_shows_a_code_again(
    broker: Broker, central: CentralService, tmp_path: Path
) -> None:
    await load_technician(central)
    creds = tmp_path / "creds"
    async with generic_unit(broker, creds):
        unit = await enrol(central, broker, creds)
        first_code = unit.removeprefix("u-").upper()
        assert (creds / "unit.crt").exists()
        result = await asyncio.to_thread(
            provision, central, "decommission", unit, "--reason", "citizen moved out"
        )
        assert result.returncode == 0, result.stderr
        assert "wipe_ordered" in result.stdout
        # The unit wiped its credentials and is back to enrolment, with a new key and code.
        assert not (creds / "unit.crt").exists()
        await wait_for(lambda: (creds / "unit.key").exists(), 10, what="a new key")
        new_code = await pending_code(central)
        assert new_code != first_code
        assert await unit_status(central, unit) in ("offline", "stopped")
    entries = await asyncio.to_thread(central.audit.entries, kind="unit_decommissioned")
    assert entries[0].unit == unit and entries[0].detail["wipe_ordered"] is True
    assert await asyncio.to_thread(central.directory.citizen_of, unit) is None


async def test_silent_units_are_listed_as_decommission_candidates(
    broker: Broker, central: CentralService, tmp_path: Path
) -> None:
    await load_technician(central)
    async with generic_unit(broker, tmp_path / "creds"):
        unit = await enrol(central, broker, tmp_path / "creds")
    await wait_for(lambda: _is(central, unit, "stopped"), 5, what="the unit's clean stop")
    db = Path(central.config.database.url.removeprefix("sqlite:///"))
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE units SET last_seen = last_seen - 40 * 86400 WHERE device_id = ?", (unit,)
        )
    result = await asyncio.to_thread(provision, central, "list")
    assert result.returncode == 0, result.stderr
    assert "WARNING: 1 unit(s) silent for more than 30 days" in result.stdout
    assert unit in result.stdout.split("WARNING")[1]


async def test_config_push_and_rotation_through_the_cli(
    broker: Broker, central: CentralService, tmp_path: Path
) -> None:
    await load_technician(central)
    creds = tmp_path / "creds"
    async with generic_unit(broker, creds):
        unit = await enrol(central, broker, creds)
        serial = pki.load_cert(creds / "unit.crt").serial_number
        result = await asyncio.to_thread(
            provision,
            central,
            "push-config",
            unit,
            "--profile",
            "nightcam",
            "--health-interval",
            "5",
            "--json",
        )
        assert result.returncode == 0 and json.loads(result.stdout)["version"] == 1
        await wait_for(lambda: (creds / "config.jws").exists(), 10, what="config stored")
        result = await asyncio.to_thread(provision, central, "rotate", unit)
        assert result.returncode == 0, result.stderr
        await wait_for(
            lambda: pki.load_cert(creds / "unit.crt").serial_number != serial,
            10,
            what="a renewed certificate",
        )
    kinds = [e.kind for e in await asyncio.to_thread(central.audit.entries)]
    assert "config_pushed" in kinds and "rotate_ordered" in kinds and "cert_renewed" in kinds


async def test_cli_refusals_exit_2_with_the_reason(central: CentralService, tmp_path: Path) -> None:
    await load_technician(central)
    result = await asyncio.to_thread(
        provision, central, "approve", "AAAAA-AAAAA", "--profile", "nightcam", "--citizen", "c-1"
    )
    assert result.returncode == 2
    assert "no unit is waiting with code AAAAA-AAAAA" in result.stderr
    wrong = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "vaka.provisioning.cli",
            "list",
            "--central",
            central.url,
            "--user",
            "t-tech",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # no terminal: nothing may wait for a prompt
        env={**os.environ, "VAKA_PASSWORD": "nope", "XDG_STATE_HOME": str(tmp_path)},
    )
    assert wrong.returncode == 2 and LOGIN_REFUSED in wrong.stderr


async def test_renewal_with_a_short_lifetime_does_not_drop_a_call(
    broker: Broker, tmp_path: Path
) -> None:
    config = central_config(broker, tmp_path)
    assert config.pki is not None
    short = config.pki.model_copy(update={"unit_cert_days": 9 / 86400})  # 9 s certificates
    async with running_central(config.model_copy(update={"pki": short})) as central:
        await load_technician(central)
        creds = tmp_path / "creds"
        async with generic_unit(broker, creds):
            unit = await enrol(central, broker, creds, citizen="c-9")
            spec = DirectorySpec.model_validate(
                {
                    "group": [{"id": "g-night", "name": "Night patrol"}],
                    "staff": [
                        {
                            "id": "s-nurse",
                            "name": "Nina",
                            "role": "night_staff",
                            "groups": ["g-night"],
                            "password": PASSWORD,
                            "totp_secret": TOTP_SECRET,
                        }
                    ],
                    # Clear from the start (set explicitly): the test reads the pattern's code.
                    "citizen": [{"id": "c-9", "night_view": "clear"}],
                    "permission": [
                        {"group": "g-night", "citizen": "c-9", "purposes": ["night_check"]}
                    ],
                    "schedule": [{"citizen": "c-9", "times": [hhmm(0)], "tolerance_min": 120}],
                }
            )
            await asyncio.to_thread(central.directory.load, spec)
            serial = pki.load_cert(creds / "unit.crt").serial_number
            async with StaffClient(central.url) as staff:
                await staff.login("s-nurse", PASSWORD, totp_secret=TOTP_SECRET)
                call = await staff.dial(unit, "night_check")
                await call.next_frame()
                await wait_for(
                    lambda: pki.load_cert(creds / "unit.crt").serial_number != serial,
                    15,
                    what="renewal during the call",
                )
                # Still streaming after the renewal: new frames, no hang-up.
                seen = [
                    decode_pattern((await call.next_frame()).to_ndarray(format="bgr24"))
                    for _ in range(5)
                ]
                assert all(r is not None for r in seen)
                assert not call.ended.is_set()
                assert await unit_status(central, unit) == "online"
                await call.hangup()


async def test_suspend_resume_and_revoke_through_the_cli(
    broker: Broker, central: CentralService, tmp_path: Path, db_url: str
) -> None:
    assert central.config.database.url == db_url  # the lifecycle on each backend
    await load_technician(central)
    async with generic_unit(broker, tmp_path / "creds"):
        unit = await enrol(central, broker, tmp_path / "creds")
        await wait_for(
            lambda: _lifecycle(central, unit, "active"), 10, what="active on first connection"
        )
        # One sitting: the technician logs in once, the later commands use the kept session.
        sitting = tmp_path / "sitting"
        run = functools.partial(provision, central, state=sitting)
        result = await asyncio.to_thread(run, "suspend", unit, "--reason", "in hospital")
        assert result.returncode == 0, result.stderr
        listed = await asyncio.to_thread(run, "list")
        assert f"{unit:<22} nightcam  suspended" in listed.stdout
        again = await asyncio.to_thread(run, "suspend", unit, "--reason", "again")
        assert again.returncode == 2
        assert f"unit {unit} is suspended already" in again.stderr
        result = await asyncio.to_thread(run, "resume", unit)
        assert result.returncode == 0, result.stderr
        assert central.provisioner is not None
        await central.provisioner.revoke(unit, "stolen", "t-tech")
        assert await _lifecycle(central, unit, "revoked")
        with pytest.raises(LifecycleRefused, match=f"unit {unit} is revoked: it cannot be made"):
            await central.standing.resume(unit, "t-tech", "found again")
    kinds = [e.kind for e in await asyncio.to_thread(central.audit.entries) if e.unit == unit]
    assert [k for k in kinds if k.startswith("unit_")] == [
        "unit_enrolled",
        "unit_activated",
        "unit_suspended",
        "unit_resumed",
        "unit_revoked",
    ]


async def _lifecycle(central: CentralService, unit: str, state: str) -> bool:
    return (await central.standing.get(unit)).state.value == state
