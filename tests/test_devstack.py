"""The local stack itself: the broker keeps what it persisted across a restart and a kill -9,
central runs as a process that can be frozen and stopped, and teardown is safe twice."""

import asyncio
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import collecting
from vaka.devstack.central import unit_status
from vaka.devstack.polling import wait_for
from vaka.devstack.process import ChildProcess
from vaka.devstack.stack import LocalStack
from vaka.errors import ConfigError
from vaka.provisioning.localpki import LocalPki

TOPIC = "vaka/v1/dev/u-kept/config"


async def _retained(stack: LocalStack) -> list[bytes]:
    async with stack.broker.client("central-2") as reader:
        async with collecting(reader, TOPIC) as seen:
            await asyncio.sleep(0.5)
    return [bytes(m.payload) for m in seen if isinstance(m.payload, bytes)]


async def test_broker_keeps_retained_messages_across_restart_and_kill_9(
    pki: LocalPki, tmp_path: Path
) -> None:
    with LocalStack(tmp_path, pki=pki) as stack:
        broker = stack.start_broker()
        port = broker.port
        async with broker.client("central-1") as writer:
            await writer.publish(TOPIC, b"kept", qos=1, retain=True)
        broker.restart()
        assert broker.port == port
        assert await _retained(stack) == [b"kept"]

        async with broker.client("central-1") as writer:
            await writer.publish(TOPIC, b"autosaved", qos=1, retain=True)
        # The store is written every second while something changes (Mosquitto skips a save
        # when idle, so on a busy machine it may take a few): wait until it holds the message.
        store = broker.directory / "mosquitto.db"
        await wait_for(
            lambda: store.exists() and b"autosaved" in store.read_bytes(), 15, what="autosave"
        )
        broker.kill()
        assert not broker.running
        broker.start()
        assert await _retained(stack) == [b"autosaved"]
    assert not broker.running


async def test_a_fresh_stack_forgets_what_the_last_run_in_its_directory_kept(
    pki: LocalPki, tmp_path: Path
) -> None:
    with LocalStack(tmp_path, pki=pki) as stack:
        async with stack.start_broker().client("central-1") as writer:
            await writer.publish(TOPIC, b"old", qos=1, retain=True)
    with LocalStack(tmp_path, pki=pki) as stack:
        stack.start_broker()
        assert await _retained(stack) == []


async def test_central_as_a_process_frozen_thawed_and_stopped(
    pki: LocalPki, tmp_path: Path
) -> None:
    stack = LocalStack(tmp_path, pki=pki)
    stack.start_broker()
    try:
        central = stack.start_central_process()
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{central.url}/") as response:
                assert response.status == 200
            central.freeze()
            try:
                async with http.get(f"{central.url}/", timeout=aiohttp.ClientTimeout(total=1)):
                    raise AssertionError("a frozen central answered")
            except TimeoutError:
                pass
            central.thaw()
            async with http.get(f"{central.url}/") as response:
                assert response.status == 200
    finally:
        stack.close()
        stack.close()
    assert central.proc.returncode == 0, central.tail()
    assert not stack.broker.running


async def test_units_spawned_and_stopped_before_the_broker(pki: LocalPki, tmp_path: Path) -> None:
    async with LocalStack(tmp_path, pki=pki) as stack:
        stack.start_broker()
        central = await stack.start_central()
        unit = stack.spawn_unit("u-stack", "nightcam")
        assert await stack.wait_online(central, ["u-stack"], 15), unit.tail()
        unit.kill()
        assert unit.proc.returncode == -signal.SIGKILL

        async def offline() -> bool:
            return await unit_status(central, "u-stack") == "offline"

        await wait_for(offline, 10, what="the will")
        again = stack.spawn_unit("u-stack", "nightcam")
        assert await stack.wait_online(central, ["u-stack"], 15), again.tail()
    # Units first (a clean stop, exit 0), then central, then the broker.
    assert again.proc.returncode == 0, again.tail()
    assert "agent u-stack stopped" in again.log()
    assert not stack.broker.running
    await stack.aclose()


def test_parts_start_in_order(pki: LocalPki, tmp_path: Path) -> None:
    with LocalStack(tmp_path, pki=pki) as stack:
        with pytest.raises(ConfigError, match=r"start the broker before u-early"):
            stack.spawn_unit("u-early")


async def test_two_centrals_share_the_stacks_own_postgresql(pki: LocalPki, tmp_path: Path) -> None:
    """``start_postgres`` makes a throw-away cluster (as an unprivileged user when run as root)
    whose database every central of the stack shares; teardown removes the cluster."""
    async with LocalStack(tmp_path, pki=pki) as stack:
        stack.start_broker()
        url = stack.start_postgres()
        assert stack.postgres is not None
        cluster = stack.postgres.directory
        assert url.startswith("postgresql+psycopg://") and stack.start_postgres() == url
        first = await stack.start_central("central-1")
        second = await stack.start_central("central-2")
        assert first.config.database.url == second.config.database.url == url
        unit = stack.spawn_unit("u-pg", "nightcam")
        assert await stack.wait_online(first, ["u-pg"], 15), unit.tail()
        assert await stack.wait_online(second, ["u-pg"], 15), unit.tail()
        await asyncio.to_thread(first.audit.append, "test", actor="central-1")
        entries = await asyncio.to_thread(second.audit.entries, kind="test")
        assert [e.actor for e in entries] == ["central-1"]
    assert not cluster.exists()


def test_a_process_reads_only_its_own_part_of_a_kept_log(tmp_path: Path) -> None:
    """A demo started again in the same directory appends to the logs of the last one; what a
    unit announces (its enrolment code) is read from this run's part only."""
    path = tmp_path / "new-tv.log"
    path.write_text("enrolment code AAAAA-AAAAA\n")  # what the last run in this directory wrote
    code = "print('enrolment code BBBBB-BBBBB')"
    child = ChildProcess("new-tv", [sys.executable, "-c", code], path)
    child.spawn()
    assert child.proc.wait(30) == 0
    assert child.log() == "enrolment code BBBBB-BBBBB\n"
    child.spawn()  # started again by the same run: both of its parts
    assert child.proc.wait(30) == 0
    assert child.log() == "enrolment code BBBBB-BBBBB\n" * 2
    assert path.read_text().startswith("enrolment code AAAAA-AAAAA\n")  # the old log is kept
