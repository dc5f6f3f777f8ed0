"""The audit trail is tamper-evident and is the record the care provider is paid on."""

import asyncio
import csv
import datetime as dt
import io
import sqlite3
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import TOTP_SECRET
from tests.nightcheck import PASSWORD, UNIT, audit_kinds, load_directory, running_agent
from vaka.central.audit.trail import AuditEntry, AuditLog
from vaka.central.service import CentralService
from vaka.central.storage.engine import open_engine
from vaka.devstack.broker import Broker
from vaka.devstack.polling import wait_for
from vaka.staff.client import StaffClient


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vaka.central.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
async def real_log(broker: Broker, central: CentralService) -> Path:
    """An audit trail written by a real night check; returns the database file."""
    await load_directory(central)
    async with running_agent(broker) as _unit, StaffClient(central.url) as staff:
        await staff.login("s-nurse", PASSWORD, totp_secret=TOTP_SECRET)
        call = await staff.dial(UNIT, "night_check")
        await call.next_frame()

        async def recorded(kind: str) -> bool:
            return kind in await audit_kinds(central)

        # A nurse looks before hanging up: the shutter has opened (a call hung up at the first
        # frame may end before it opens, and its trail then has no shutter_open to tamper with).
        await wait_for(lambda: recorded("shutter_open"), 10, what="shutter_open")
        await call.hangup()

    await wait_for(lambda: recorded("call_ended"), 5, what="call_ended")
    url = central.config.database.url
    return Path(url.removeprefix("sqlite:///"))


def test_verify_passes_on_a_real_log(real_log: Path) -> None:
    result = cli("audit", "verify", "--database", f"sqlite:///{real_log}")
    assert result.returncode == 0, result.stderr
    assert "audit trail intact" in result.stdout


def _tamper(db: Path, sql: str) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(sql)


def test_verify_detects_an_edited_entry(real_log: Path) -> None:
    _tamper(real_log, "UPDATE audit SET actor = 's-someone-else' WHERE kind = 'call_ended'")
    result = cli("audit", "verify", "--database", f"sqlite:///{real_log}")
    assert result.returncode == 1
    assert "was changed" in result.stderr


def test_verify_detects_a_removed_entry(real_log: Path) -> None:
    _tamper(real_log, "DELETE FROM audit WHERE kind = 'shutter_open'")
    result = cli("audit", "verify", "--database", f"sqlite:///{real_log}")
    assert result.returncode == 1
    assert "is missing (the sequence jumps" in result.stderr


def test_verify_detects_a_cut_tail_against_an_anchor(real_log: Path) -> None:
    url = f"sqlite:///{real_log}"
    anchor = cli("audit", "head", "--database", url).stdout.strip()
    _tamper(real_log, "DELETE FROM audit WHERE seq = (SELECT MAX(seq) FROM audit)")
    assert cli("audit", "verify", "--database", url).returncode == 0  # a shorter chain is valid...
    result = cli("audit", "verify", "--database", url, "--expect-head", anchor)
    assert result.returncode == 1  # ...but not against the anchored head
    assert "are missing (anchored head is" in result.stderr


def test_supervision_report_contains_the_night_check(real_log: Path, tmp_path: Path) -> None:
    today = dt.datetime.now(dt.UTC).date()
    out = tmp_path / "report.csv"
    result = cli(
        "report",
        "supervisions",
        "--database",
        f"sqlite:///{real_log}",
        "--from",
        str(today - dt.timedelta(days=1)),
        "--to",
        str(today + dt.timedelta(days=1)),
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 1
    row = rows[0]
    assert (row["unit"], row["citizen"], row["staff"], row["purpose"]) == (
        UNIT,
        "c-1001",
        "s-nurse",
        "night_check",
    )
    assert float(row["duration_s"]) > 0


def test_report_refuses_a_bad_date() -> None:
    result = cli(
        "report",
        "supervisions",
        "--database",
        "sqlite://",
        "--from",
        "yesterday",
        "--to",
        "2026-01-01",
    )
    assert result.returncode == 2
    assert "'yesterday' is not a date (YYYY-MM-DD)" in result.stderr


async def test_concurrent_appends_keep_one_chain(central: CentralService) -> None:
    await asyncio.gather(*(asyncio.to_thread(central.audit.append, "test", n=i) for i in range(40)))
    result = await asyncio.to_thread(central.audit.verify)
    assert result.ok and result.entries == 40


def test_two_instances_appending_at_once_keep_one_chain_without_gaps(db_url: str) -> None:
    """Two engines on one database (two central instances), four writers each: the chain's lock
    makes them take turns, so every entry is there once, in one gapless chain; a decision made
    under the lock ("end the call once") sees what the other instance appended."""
    engines = [open_engine(db_url) for _ in range(2)]
    logs = [AuditLog(engine) for engine in engines]
    try:

        def write(writer: int) -> None:
            for n in range(25):
                logs[writer % 2].append("test", actor=f"w{writer}", n=n)

        with ThreadPoolExecutor(8) as pool:
            for done in [pool.submit(write, w) for w in range(8)]:
                done.result()
        result = logs[0].verify()
        assert (result.ok, result.entries, result.problem) == (True, 200, None)
        entries = logs[1].entries()
        assert [e.seq for e in entries] == list(range(1, 201))
        for w in range(8):  # each writer's entries in its own order
            assert [e.detail["n"] for e in entries if e.actor == f"w{w}"] == list(range(25))

        def end_once(log: AuditLog) -> AuditEntry | None:
            return log.append_decided(
                "central-1.0123456789abcdef",
                lambda so_far: (
                    None
                    if so_far
                    else {"kind": "call_ended", "call_id": "central-1.0123456789abcdef"}
                ),
            )

        with ThreadPoolExecutor(8) as pool:
            ended = list(pool.map(end_once, [logs[k % 2] for k in range(8)]))
        assert sum(e is not None for e in ended) == 1
        assert [e.kind for e in logs[0].entries_of_call("central-1.0123456789abcdef")] == [
            "call_ended"
        ]
        assert logs[1].verify().entries == 201
    finally:
        for engine in engines:
            engine.dispose()
