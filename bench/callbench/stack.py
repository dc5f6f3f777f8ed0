"""The whole path's rig: PKI, Mosquitto, central, a staff client and a ``vaka-agent`` child.

The heavy imports (central, staff client, PKI, psutil, tomli_w) are made inside the functions
that need them, so that importing this module keeps the ``--bare-sender`` child light.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
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
    stop_process,
)
from .figures import SetupSample
from .streaming import StreamFigures, measure_idle, measure_stream, rss_mb

if TYPE_CHECKING:
    from vaka.central.service import CentralService
    from vaka.provisioning.localpki import LocalPki
    from vaka.staff.client import StaffCall, StaffClient


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
        "citizen": [{"id": "c-bench", "units": [UNIT]}],
        "permission": [{"group": "g-night", "citizen": "c-bench", "purposes": ["night_check"]}],
        "schedule": [
            {"citizen": "c-bench", "times": [local.strftime("%H:%M")], "tolerance_min": 120}
        ],
    }


@dataclass
class AgentProcess:
    """One ``vaka-agent --simulate`` child with a given ``[media]`` section."""

    proc: subprocess.Popen[bytes]
    log_path: Path
    media: dict[str, Any]

    def tail(self, chars: int = 1500) -> str:
        """The end of its log."""
        return self.log_path.read_text(errors="replace")[-chars:]


@dataclass
class Bench:
    """The running rig: PKI, broker, central, staff client and at most one agent."""

    directory: Path
    pki: LocalPki
    broker_port: int
    central: CentralService
    staff: StaffClient
    agent_env: dict[str, str] = field(default_factory=dict)
    agent: AgentProcess | None = None
    agents_started: int = 0
    notes: list[str] = field(default_factory=list)

    def agent_config(self, media: dict[str, Any]) -> dict[str, Any]:
        """The agent's TOML as a mapping (like ``tests/nightcheck.agent_config``)."""
        files = self.pki.client(UNIT)
        return {
            "unit": {"id": UNIT, "profile": "nightcam", "simulate": True},
            "broker": {
                "host": HOST,
                "port": self.broker_port,
                "server_ca": str(files.server_ca),
                "cert": str(files.cert),
                "key": str(files.key),
                "keepalive_s": 5,
                "reconnect_min_s": 0.2,
                "reconnect_max_s": 1.0,
            },
            "health": {"interval_s": 30},
            "calls": {"ticket_key": str(self.pki.ticket_keys()[1])},
            "media": {
                "width": SMALL[0],
                "height": SMALL[1],
                "fps": FPS,
                "max_bitrate_bps": MAX_BITRATE_BPS,
                "ice_addresses": [HOST],
                **media,
            },
        }

    async def unit_status(self) -> str | None:
        """The presence central holds for the unit."""
        record = await asyncio.to_thread(self.central.store.unit, UNIT)
        return None if record is None else record.presence.status

    async def start_agent(self, **media: Any) -> AgentProcess:
        """(Re)start the agent with these media settings and wait until central sees it."""
        import tomli_w

        await self.stop_agent()
        self.agents_started += 1
        path = self.directory / f"agent-{self.agents_started}.toml"
        path.write_bytes(tomli_w.dumps(self.agent_config(media)).encode())
        log_path = self.directory / f"agent-{self.agents_started}.log"
        with log_path.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "vaka.agent.cli", "--config", str(path), "--simulate"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **self.agent_env},
            )
        self.agent = AgentProcess(proc, log_path, media)
        deadline = time.monotonic() + 30
        while await self.unit_status() != "online":
            if proc.poll() is not None:
                raise RuntimeError(f"agent exited: {self.agent.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"agent not online after 30 s: {self.agent.tail()}")
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # let it settle (subscriptions, first health report)
        log(f"agent pid {proc.pid} online with media {media or '(defaults)'}")
        return self.agent

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
        if agent.proc.poll() is None:
            agent.proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(stop_process, agent.proc)
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
) -> AsyncIterator[Bench]:
    """PKI, Mosquitto (TLS, ACL), central with the directory loaded, a logged-in staff client.

    ``broker_lines`` are appended to ``mosquitto.conf`` (experiments, e.g. ``set_tcp_nodelay``).
    """
    from vaka.central.broker.broker import BrokerSettings, write_broker_config
    from vaka.central.directory.spec import DirectorySpec
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
    from vaka.staff.client import StaffClient

    pki = LocalPki(directory / "pki").ensure()
    port = free_port()
    conf = write_broker_config(
        directory / "broker",
        BrokerSettings(
            port=port,
            client_ca=pki.client_ca_cert,
            server_cert=pki.broker_cert,
            server_key=pki.broker_key,
            persistence=False,
            user=dev_broker_user(),
            central_identities=("central-1",),
            extra_lines=tuple(broker_lines),
        ),
    )
    broker = MosquittoProcess(conf, HOST, port).start()
    try:
        files = pki.client("central-1")
        central = CentralService(
            CentralConfig(
                mqtt=MqttSection(
                    port=port,
                    server_ca=files.server_ca,
                    cert=files.cert,
                    key=files.key,
                    identity="central-1",
                    keepalive_s=5,
                ),
                keys=KeysSection(ticket_key=pki.ticket_keys()[0]),
                http=HttpSection(port=0),
                database=DatabaseSection(url=f"sqlite:///{directory / 'central.db'}"),
            )
        )
        await central.start()
        try:
            await asyncio.wait_for(central.link.connected.wait(), 15)
            await asyncio.to_thread(
                central.directory.load, DirectorySpec.model_validate(directory_spec_data())
            )
            async with StaffClient(central.url) as staff:
                await staff.login(STAFF, PASSWORD, totp_secret=TOTP_SECRET)
                bench = Bench(directory, pki, port, central, staff, dict(agent_env or {}))
                try:
                    yield bench
                finally:
                    await bench.stop_agent()
        finally:
            await central.stop()
    finally:
        broker.stop()
