"""`vaka-provision` guards a technician against the everyday mistakes: a config of the wrong
profile, a mistyped citizen; it keeps its log-in between commands (a 0600 session file that ends
with central's session) and shows times on the local clock — all through the real CLI against
the real broker, central and a simulated unit."""

import asyncio
import json
import os
import re
import sqlite3
import stat
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from tests.test_enrolment import generic_unit, load_technician, pending_code
from tests.test_unit_lifecycle import provision
from vaka.central.service import CentralService
from vaka.central_api import ApiError, CentralApi
from vaka.devstack.broker import Broker
from vaka.devstack.central import unit_status
from vaka.devstack.polling import wait_for
from vaka.protocol.enrolment import display_code
from vaka.provisioning.when import age, local_time

#: no password and no one-time code: a command that needs to log in cannot
NO_CREDENTIALS: dict[str, str] = {}
#: a zone away from UTC (+05:30), so that local times cannot pass for UTC ones
ZONE = "Asia/Kolkata"
EPOCH = re.compile(r"\b1[6-9]\d{8}(\.\d+)?\b")


def session_file(state: Path) -> Path:
    return state / "vaka" / "provision-session.json"


def logins(central: CentralService) -> int:
    return sum(e.actor == "t-tech" for e in central.audit.entries(kind="login"))


async def test_a_sitting_logs_in_once_and_the_guards_refuse_with_reasons(
    broker: Broker, central: CentralService, tmp_path: Path
) -> None:
    await load_technician(central)
    state = tmp_path / "state"
    creds = tmp_path / "creds"
    async with generic_unit(broker, creds):
        code = display_code(await pending_code(central))
        before = await asyncio.to_thread(logins, central)

        # A mistyped citizen: refused with the reason, nothing created, the code still waiting.
        typo = await asyncio.to_thread(
            provision,
            central,
            "approve",
            code,
            "--profile",
            "nightcam",
            "--citizen",
            "c-99",
            "--group",
            "g-night",
            state=state,
        )
        assert typo.returncode == 2, typo.stdout + typo.stderr
        assert "central refused (404): there is no citizen c-99 in the directory" in typo.stderr
        assert "--create-citizen" in typo.stderr
        assert not await asyncio.to_thread(central.directory.citizen_exists, "c-99")
        assert central.provisioner is not None
        assert [e.code for e in await asyncio.to_thread(central.provisioner.queue.pending)] == [
            code.replace("-", "")
        ]
        # The session file: 0600, in its own 0700 directory, the token but never the password.
        kept = session_file(state)
        assert stat.S_IMODE(kept.stat().st_mode) == 0o600
        assert stat.S_IMODE(kept.parent.stat().st_mode) == 0o700
        stored = json.loads(kept.read_text())
        assert stored["user"] == "t-tech" and stored["central"] == central.url
        assert stored["expires_at"] > time.time() and "correct horse" not in kept.read_text()

        # The next commands of the sitting need no password and no code.
        approved = await asyncio.to_thread(
            provision,
            central,
            "approve",
            code,
            "--profile",
            "nightcam",
            "--citizen",
            "c-new",
            "--create-citizen",
            "--group",
            "g-night",
            "--json",
            state=state,
            env=NO_CREDENTIALS,
        )
        assert approved.returncode == 0, approved.stderr
        answer = json.loads(approved.stdout)
        unit = answer["unit"]
        assert answer["citizen_created"] is True
        assert await asyncio.to_thread(central.directory.citizen_of, unit) == "c-new"
        await wait_for(
            lambda: _is_online(central, unit), 20, what=f"{unit} online with its certificate"
        )

        # A tv config for a night camera: refused by central, the unit never gets it.
        wrong = await asyncio.to_thread(
            provision,
            central,
            "push-config",
            unit,
            "--profile",
            "tv",
            "--language",
            "da",
            state=state,
            env=NO_CREDENTIALS,
        )
        assert wrong.returncode == 2, wrong.stdout + wrong.stderr
        assert (
            f"central refused (409): unit {unit} is a nightcam unit: a tv config does not fit it"
            in wrong.stderr
        )
        unknown = await asyncio.to_thread(
            provision,
            central,
            "push-config",
            "u-nowhere",
            "--profile",
            "tv",
            state=state,
            env=NO_CREDENTIALS,
        )
        assert unknown.returncode == 2
        assert "central refused (404): central knows no unit u-nowhere" in unknown.stderr
        pushed = await asyncio.to_thread(central.audit.entries, kind="config_pushed")
        assert pushed == [] and not (creds / "config.jws").exists()

        # The right one goes through.
        right = await asyncio.to_thread(
            provision,
            central,
            "push-config",
            unit,
            "--profile",
            "nightcam",
            state=state,
            env=NO_CREDENTIALS,
        )
        assert right.returncode == 0, right.stderr
        await wait_for(lambda: (creds / "config.jws").exists(), 10, what="config stored")

        # Status on the local clock with ages, no epoch seconds.
        shown = await asyncio.to_thread(
            provision,
            central,
            "status",
            unit,
            state=state,
            env={"TZ": ZONE},
        )
        assert shown.returncode == 0, shown.stderr
        record = await asyncio.to_thread(central.store.unit, unit)
        assert record is not None
        since = _local_clock(record.status_since)
        assert re.search(
            rf"status\s+online since {since} \((just now|\d+ s ago)\)", shown.stdout
        ), shown.stdout
        assert re.search(r"last seen\s+\d\d:\d\d:\d\d \((just now|\d+ s ago)\)", shown.stdout)
        assert re.search(r"certificate\s+expires .* \(in \d+ (h|days)\)", shown.stdout), (
            shown.stdout
        )
        assert not EPOCH.search(shown.stdout), shown.stdout
        listed = await asyncio.to_thread(provision, central, "list", state=state, env={"TZ": ZONE})
        assert listed.returncode == 0 and not EPOCH.search(listed.stdout), listed.stdout

    # One log-in for the whole sitting.
    assert await asyncio.to_thread(logins, central) == before + 1


def _local_clock(ts: float) -> str:
    return datetime.fromtimestamp(ts, ZoneInfo(ZONE)).strftime("%H:%M:%S")


async def _is_online(central: CentralService, unit: str) -> bool:
    return await unit_status(central, unit) == "online"


async def test_the_session_file_ends_with_central_s_session(
    central: CentralService, tmp_path: Path
) -> None:
    await load_technician(central)
    state = tmp_path / "state"
    kept = session_file(state)

    logged_in = await asyncio.to_thread(provision, central, "login", state=state)
    assert logged_in.returncode == 0, logged_in.stderr
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600

    # A file others may read is refused, not used (its token may have leaked).
    kept.chmod(0o644)
    loose = await asyncio.to_thread(provision, central, "list", state=state, env=NO_CREDENTIALS)
    assert loose.returncode == 2
    assert "may be read by others (mode 0644, expected 0600)" in loose.stderr
    kept.chmod(0o600)
    assert (
        await asyncio.to_thread(provision, central, "list", state=state, env={})
    ).returncode == 0

    # Central ends the session: the file goes, and the technician is asked to log in again.
    token = json.loads(kept.read_text())["token"]
    _expire_sessions(central)
    ended = await asyncio.to_thread(provision, central, "list", state=state, env=NO_CREDENTIALS)
    assert ended.returncode == 2
    assert (
        "the kept session ended (session expired or unknown: log in again); logging in again"
        in ended.stderr
    )
    assert not kept.exists()
    # With the credentials at hand, the command logs in again and goes on.
    again = await asyncio.to_thread(provision, central, "list", state=state)
    assert again.returncode == 0, again.stderr
    assert json.loads(kept.read_text())["token"] != token

    # Past its expiry the file is not even tried.
    stored = json.loads(kept.read_text())
    kept.write_text(json.dumps({**stored, "expires_at": time.time() - 1}))
    stale = await asyncio.to_thread(provision, central, "list", state=state, env=NO_CREDENTIALS)
    assert stale.returncode == 2 and not kept.exists()

    # logout ends the session in central and deletes the file.
    assert (await asyncio.to_thread(provision, central, "login", state=state)).returncode == 0
    token = json.loads(kept.read_text())["token"]
    out = await asyncio.to_thread(_logout, state)
    assert out.returncode == 0 and "session file deleted" in out.stdout, out.stderr
    assert not kept.exists()
    assert await asyncio.to_thread(central_refuses, central, token)


def _expire_sessions(central: CentralService) -> None:
    db = Path(central.config.database.url.removeprefix("sqlite:///"))
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE staff_sessions SET expires_at = 0 WHERE staff_id = 't-tech'")


def _logout(state: Path) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(
        [sys.executable, "-m", "vaka.provisioning.cli", "logout"],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, "XDG_STATE_HOME": str(state)},
    )


def central_refuses(central: CentralService, token: str) -> bool:
    try:
        CentralApi(central.url, token=token).request("GET", "/api/units")
    except ApiError as err:
        return err.status == 401
    return False


def test_times_read_as_a_technician_reads_them() -> None:
    assert age(2) == "just now"
    assert age(45) == "45 s ago"
    assert age(150) == "2 min ago"
    assert age(3 * 3600) == "3 h ago"
    assert age(3 * 86400) == "3 days ago"
    assert age(-600) == "in 10 min"
    now = time.time()
    assert re.fullmatch(r"\d\d:\d\d:\d\d \(2 min ago\)", local_time(now - 120, now))
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d \(\d+ days ago\)", local_time(now - 5 * 86400, now)
    )
    assert local_time(None) == "-"


def _assign_on_a_terminal(central: CentralService, state: Path, answer: str) -> tuple[int, str]:
    """`vaka-provision assign` with a terminal on stdin that answers ``answer``."""
    master, slave = os.openpty()
    try:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "vaka.provisioning.cli",
                "assign",
                "u-spare",
                "--profile",
                "tv",
                "--citizen",
                "c-typo",
                "--central",
                central.url,
                "--user",
                "t-tech",
            ],
            stdin=slave,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            env={**os.environ, "XDG_STATE_HOME": str(state)},
        )
        os.write(master, answer.encode() + b"\n")
        out, _ = proc.communicate(timeout=60)
    finally:
        os.close(master)
        os.close(slave)
    return proc.returncode, out


async def test_an_unknown_citizen_is_asked_about_on_a_terminal_only(
    central: CentralService, tmp_path: Path
) -> None:
    await load_technician(central)
    state = tmp_path / "state"
    assert (await asyncio.to_thread(provision, central, "login", state=state)).returncode == 0
    scripted = await asyncio.to_thread(
        provision,
        central,
        "assign",
        "u-spare",
        "--profile",
        "tv",
        "--citizen",
        "c-typo",
        state=state,
        env=NO_CREDENTIALS,
    )
    assert scripted.returncode == 2 and "there is no citizen c-typo" in scripted.stderr
    assert "Create it now?" not in scripted.stdout + scripted.stderr
    status, out = await asyncio.to_thread(_assign_on_a_terminal, central, state, "n")
    assert status == 2, out
    assert "Citizen c-typo is not in the directory. Create it now? [y/N]" in out, out
    assert "there is no citizen c-typo" in out
    assert not await asyncio.to_thread(central.directory.citizen_exists, "c-typo")
    status, out = await asyncio.to_thread(_assign_on_a_terminal, central, state, "y")
    assert status == 0, out
    assert await asyncio.to_thread(central.directory.citizen_of, "u-spare") == "c-typo"
