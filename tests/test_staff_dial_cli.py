"""``vaka-staff dial`` as the real CLI in its own process, calling the real TV agent.

It keeps its call socket alive while the TV rings (past both ends' heartbeat and pong time), ends
with one line and exit status 3 when the citizen hangs up, and Ctrl-C or a typed ``cancel``
while the TV rings cancels the call: the TV stops ringing within a second, the CLI says so on
one line with exit status 130. Never a traceback.
"""

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.conftest import totp_secret_file
from tests.nightcheck import PASSWORD
from tests.tvunit import DAY, TV, push_tv_config, running_tv, screen_of, tv_directory
from vaka.agent.app import Agent
from vaka.agent.ui import ButtonId, Idle, InCall, Incoming
from vaka.central.service import CentralService
from vaka.central.settings.calls import CallLimits
from vaka.devstack.central import running_central
from vaka.devstack.polling import wait_for
from vaka.devstack.stack import LocalStack

pytestmark = pytest.mark.timeout(150)

#: Past the ~30 s after which the call socket used to die of an unanswered ping (and past several
#: heartbeats, 10 s, and their pong time, 5 s, at either end).
RING_FOR_S = 32


@contextlib.asynccontextmanager
async def tv_and_central(stack: LocalStack) -> AsyncIterator[tuple[CentralService, Agent]]:
    # Rings longer than the default 30 s, so that the socket has to live through it.
    config = stack.central_config().model_copy(update={"calls": CallLimits(ring_timeout_s=45)})
    async with running_central(config) as central, running_tv(stack.broker) as tv:
        await asyncio.to_thread(central.directory.load, tv_directory())
        await push_tv_config(central, tv)  # no auto-answer: the TV rings until pressed
        yield central, tv


@contextlib.contextmanager
def vaka_staff_dial(central: CentralService, seconds: float) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vaka.staff.cli",
            "--central",
            central.url,
            "dial",
            TV,
            "--user",
            DAY,
            "--purpose",
            "video_visit",
            "--seconds",
            str(seconds),
            "--ice-address",
            "127.0.0.1",
        ],
        env={
            **os.environ,
            "VAKA_PASSWORD": PASSWORD,
            "VAKA_TOTP_SECRET_FILE": str(totp_secret_file()),
        },
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


async def finished(proc: subprocess.Popen[bytes]) -> tuple[int, list[str]]:
    """The exit status and the lines of output, once the process has ended."""
    out, _ = await asyncio.to_thread(proc.communicate, timeout=30)
    return proc.returncode, out.decode().splitlines()


def ringing(agent: Agent) -> bool:
    return isinstance(screen_of(agent).state, Incoming)


async def test_dial_stays_up_while_the_tv_rings_and_ends_on_one_line_when_it_hangs_up(
    stack: LocalStack,
) -> None:
    async with tv_and_central(stack) as (central, agent):
        with vaka_staff_dial(central, seconds=60) as proc:
            await wait_for(lambda: ringing(agent), 30, what="the TV ringing")
            await asyncio.sleep(RING_FOR_S)
            assert proc.poll() is None, "vaka-staff gave up while the TV rang"
            assert ringing(agent)
            screen_of(agent).press(ButtonId.ANSWER)
            await wait_for(lambda: isinstance(screen_of(agent).state, InCall), 15, what="in call")
            await asyncio.sleep(1)
            screen_of(agent).press(ButtonId.HANG_UP)
            status, lines = await finished(proc)
    assert status == 3, lines
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{TV}: ") and "ended by the unit: " in lines[0], lines
    assert "hung up by the citizen" in lines[0]


@pytest.mark.parametrize("how", ["ctrl-c", "typed"])
async def test_ctrl_c_or_cancel_while_the_tv_rings_cancels_the_call(
    stack: LocalStack, how: str
) -> None:
    async with tv_and_central(stack) as (central, agent):
        with vaka_staff_dial(central, seconds=60) as proc:
            await wait_for(lambda: ringing(agent), 30, what="the TV ringing")
            if how == "ctrl-c":
                proc.send_signal(signal.SIGINT)
            else:
                assert proc.stdin is not None
                proc.stdin.write(b"cancel\n")
                proc.stdin.flush()
            asked = time.monotonic()
            await wait_for(lambda: not ringing(agent), 1.0, what="the TV leaving the incoming call")
            assert time.monotonic() - asked < 1.0
            status, lines = await finished(proc)
        assert isinstance(screen_of(agent).state, Idle)
        kinds = [e.kind for e in await asyncio.to_thread(central.audit.entries)]
        assert "call_cancelled" in kinds
    assert status == 130, lines
    assert lines == [f"vaka-staff: call to {TV} cancelled"]
