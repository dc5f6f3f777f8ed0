"""The whole path's rig: the local stack (PKI, Mosquitto, central), a staff client and a
``vaka-agent`` child.

The heavy imports (the local stack, central, staff client, psutil) are made inside the functions
that need them, so that importing this module keeps the ``--bare-sender`` child light.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av

from .common import (
    CALL_TIMEOUT_S,
    FPS,
    FRAME_TIMEOUT_S,
    HOST,
    MAX_BITRATE_BPS,
    PASSWORD,
    SMALL,
    STAFF,
    TOTP_SECRET,
    UNIT,
    log,
)
from .figures import SetupSample
from .streaming import StreamFigures, measure_idle, measure_stream, rss_mb

if TYPE_CHECKING:
    from vaka.central.service import CentralService
    from vaka.devstack.stack import LocalStack
    from vaka.devstack.units import AgentProcess
    from vaka.staff.call import StaffCall
    from vaka.staff.client import StaffClient


def directory_spec_data() -> dict[str, Any]:
    """One night nurse allowed a night check of one citizen's unit now (±2 h)."""
    import datetime as dt
    from zoneinfo import ZoneInfo

    local = dt.datetime.now(ZoneInfo("Europe/Stockholm"))
    return {
        "group": [{"id": "g-night", "name": "Night patrol"}],
        "staff": [
            {
                "id": STAFF,
                "name": "Bench Nurse",
                "role": "night_staff",
                "groups": ["g-night"],
                "password": PASSWORD,
                "totp_secret": TOTP_SECRET,
            }
        ],
        # Clear from the start (set explicitly): the benches decode the pattern for latency.
        "citizen": [{"id": "c-bench", "units": [UNIT], "night_view": "clear"}],
        "permission": [{"group": "g-night", "citizen": "c-bench", "purposes": ["night_check"]}],
        "schedule": [
            {"citizen": "c-bench", "times": [local.strftime("%H:%M")], "tolerance_min": 120}
        ],
    }


@dataclass
class Bench:
    """The running rig: the local stack, central, a staff client and at most one agent."""

    stack: LocalStack
    central: CentralService
    staff: StaffClient
    agent_env: dict[str, str] = field(default_factory=dict)
    agent: AgentProcess | None = None
    agent_media: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    async def unit_status(self) -> str | None:
        """The presence central holds for the unit."""
        from vaka.devstack.central import unit_status

        return await unit_status(self.central, UNIT)

    async def start_agent(self, **media: Any) -> AgentProcess:
        """(Re)start the agent with these media settings and wait until central sees it."""
        await self.stop_agent()
        self.agent_media = media
        self.agent = agent = await asyncio.to_thread(
            self.stack.spawn_unit,
            UNIT,
            "nightcam",
            env=self.agent_env,
            media={
                "width": SMALL[0],
                "height": SMALL[1],
                "fps": FPS,
                "max_bitrate_bps": MAX_BITRATE_BPS,
                "ice_addresses": [HOST],
                **media,
            },
        )
        deadline = time.monotonic() + 30
        while await self.unit_status() != "online":
            if not agent.running:
                raise RuntimeError(f"agent exited: {agent.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"agent not online after 30 s: {agent.tail()}")
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # let it settle (subscriptions, first health report)
        log(f"agent pid {agent.pid} online with media {media or '(defaults)'}")
        return agent

    def agent_rss_mb(self) -> float | None:
        """The running agent's RSS in MB."""
        import psutil

        if self.agent is None:
            return None
        try:
            return rss_mb(psutil.Process(self.agent.proc.pid))
        except psutil.Error:
            return None

    async def stop_agent(self) -> None:
        """Stop the agent (SIGTERM) and wait until central no longer sees it online."""
        agent, self.agent = self.agent, None
        if agent is None:
            return
        await asyncio.to_thread(agent.stop)
        deadline = time.monotonic() + 10
        while await self.unit_status() == "online" and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    async def dial(self) -> StaffCall:
        """Dial a night check; retries (up to 20 x 0.2 s) while the unit is still busy/away."""
        from vaka.staff.client import StaffError

        for attempt in range(20):
            try:
                return await asyncio.wait_for(self.staff.dial(UNIT, "night_check"), CALL_TIMEOUT_S)
            except StaffError as err:
                if attempt == 19:
                    raise
                if "busy" not in str(err):
                    self.notes.append(f"dial retried: {err}")
                await asyncio.sleep(0.2)
        raise AssertionError("unreachable")

    async def whole_call(self) -> SetupSample:
        """One whole-path night check: dial -> first decoded frame, then hang up."""
        call = await self.dial()
        try:
            try:
                await call.next_frame(timeout=FRAME_TIMEOUT_S)
            except TimeoutError:
                state = (call.pc.iceConnectionState, call.pc.connectionState)
                raise TimeoutError(
                    f"no frame within {FRAME_TIMEOUT_S:.0f} s after the answer "
                    f"(ICE/connection state {state}, track {call.track.done()})"
                ) from None
            t = call.timings
            return SetupSample.from_marks(
                t.started, t.offer_ready, t.answered, t.connected, t.first_frame
            )
        finally:
            await call.hangup()
            await asyncio.sleep(0.2)  # central confirms at once; let the unit finish ending

    async def agent_stream(self, warmup_s: float, window_s: float) -> StreamFigures:
        """One long night check; measures the agent process while it streams."""
        import psutil

        assert self.agent is not None
        proc = psutil.Process(self.agent.proc.pid)
        idle = await measure_idle(proc, min(3.0, window_s))
        call = await self.dial()
        try:

            async def next_frame() -> av.VideoFrame:
                return await call.next_frame(timeout=10)

            return await measure_stream(next_frame, proc, idle, warmup_s, window_s)
        finally:
            await call.hangup()
            await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def running_bench(
    directory: Path,
    agent_env: dict[str, str] | None = None,
    broker_lines: Sequence[str] = (),
    relay: bool = False,
) -> AsyncIterator[Bench]:
    """The local stack, central with the directory loaded, a logged-in staff client.

    ``broker_lines`` are appended to ``mosquitto.conf`` (experiments, e.g. ``set_tcp_nodelay``);
    ``relay`` starts the stack's coturn first, so calls carry per-call relay credentials.
    """
    from vaka.devstack.central import load_directory
    from vaka.devstack.stack import LocalStack
    from vaka.staff.client import StaffClient

    stack = await asyncio.to_thread(
        LocalStack, directory, host=HOST, broker_lines=tuple(broker_lines)
    )
    async with stack:
        await asyncio.to_thread(stack.start_broker)
        if relay:
            await asyncio.to_thread(stack.start_turn)
        central = await stack.start_central()
        await load_directory(central, directory_spec_data())
        async with StaffClient(central.url) as staff:
            bench = Bench(stack, central, staff, dict(agent_env or {}))
            await staff.login(STAFF, PASSWORD, totp_secret=TOTP_SECRET)
            try:
                yield bench
            finally:
                await bench.stop_agent()
