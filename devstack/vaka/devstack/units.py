"""Simulated units in the local stack: configuration, ``vaka-agent`` processes, in-process agents.

A unit runs ``python -m vaka.agent.cli --simulate`` as a child process (as on a real board), or
as an :class:`~vaka.agent.app.Agent` in the caller's event loop where the caller inspects its fake
hardware. Both get the same configuration from :func:`unit_config`.
"""

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tomli_w

from vaka.devstack.broker import Broker
from vaka.devstack.process import ChildProcess
from vaka.tasks import cancel_and_wait

if TYPE_CHECKING:
    # Imported where an agent runs in process: the agent pulls in PyAV, and a process that
    # opens the TV window must load OpenCV's GUI first (vaka.agent.gui_preload).
    from vaka.agent.app import Agent


def unit_config(
    broker: Broker,
    device_id: str,
    profile: str = "nightcam",
    *,
    interval_s: float = 30,
    keepalive_s: int = 5,
    reconnect_min_s: float = 0.2,
    reconnect_max_s: float = 1.0,
    media: Mapping[str, Any] | None = None,
    **sections: Mapping[str, Any],
) -> dict[str, Any]:
    """A simulated unit's agent configuration (as a mapping), issuing its certificate.

    The unit pins central's ticket and config keys, reconnects fast, and keeps its media on this
    machine's loopback (see :mod:`vaka.rtc.ice`). ``media`` adds to the ``[media]`` section;
    ``sections`` are further sections (``tv``, ``storage``...).
    """
    pki = broker.pki
    files = pki.client(device_id)
    return {
        "unit": {"id": device_id, "profile": profile, "simulate": True},
        "broker": {
            "host": broker.host,
            "port": broker.port,
            "server_ca": str(files.server_ca),
            "cert": str(files.cert),
            "key": str(files.key),
            "keepalive_s": keepalive_s,
            "reconnect_min_s": reconnect_min_s,
            "reconnect_max_s": reconnect_max_s,
        },
        "health": {"interval_s": interval_s},
        "calls": {"ticket_key": str(pki.ticket_keys()[1])},
        "trust": {"config_key": str(pki.config_keys()[1])},
        "media": {"ice_addresses": ["127.0.0.1"], **(media or {})},
        **{name: dict(section) for name, section in sections.items()},
    }


def new_unit_config(
    broker: Broker,
    profile: str,
    credentials_dir: Path,
    *,
    interval_s: float = 30,
    keepalive_s: int = 5,
    repeat_s: float = 1.0,
) -> dict[str, Any]:
    """A unit fresh from the box: the generic image's claim identity, no id and no certificate.

    It makes its key in ``credentials_dir``, shows its enrolment code (on a ``tv`` unit, on the
    TV's screen) and asks over the broker's enrolment listener every ``repeat_s`` until a
    technician approves the code; then it runs as the unit id central gave it.
    """
    pki = broker.pki
    claim = pki.claim()
    return {
        "unit": {"profile": profile, "simulate": True},
        "broker": {
            "host": broker.host,
            "port": broker.port,
            "server_ca": str(claim.server_ca),
            "keepalive_s": keepalive_s,
            "reconnect_min_s": 0.2,
            "reconnect_max_s": 1.0,
        },
        "health": {"interval_s": interval_s},
        "calls": {"ticket_key": str(pki.ticket_keys()[1])},
        "trust": {"config_key": str(pki.config_keys()[1])},
        "media": {"ice_addresses": ["127.0.0.1"]},
        "storage": {"credentials_dir": str(credentials_dir)},
        "enrolment": {
            "claim_cert": str(claim.cert),
            "claim_key": str(claim.key),
            "port": broker.claim_port,
            "repeat_s": repeat_s,
        },
    }


def write_unit_config(path: Path, config: Mapping[str, Any]) -> Path:
    """Write a unit configuration as the agent's TOML file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps(dict(config)))
    return path


class AgentProcess(ChildProcess):
    """``vaka-agent --simulate`` as a child process."""

    def __init__(
        self, device_id: str, config_path: Path, log_path: Path, netns: str | None = None
    ) -> None:
        argv = [sys.executable, "-m", "vaka.agent.cli", "--config", str(config_path), "--simulate"]
        # `ip netns exec` execs the agent, so the child's pid stays the agent's own.
        prefix = ["ip", "netns", "exec", netns] if netns is not None else []
        super().__init__(device_id, [*prefix, *argv], log_path)
        self.device_id = device_id
        self.config_path = config_path


@contextlib.asynccontextmanager
async def running_agent(
    config: Mapping[str, Any],
    timeout: float = 10.0,
    prepare: Callable[["Agent"], None] | None = None,
) -> AsyncIterator["Agent"]:
    """An agent in this process (its fake hardware inspectable), online, for the block.

    ``prepare`` sees the agent before it runs (to pin a fake's reading before the first report).
    """
    from vaka.agent.app import Agent
    from vaka.agent.config import parse_config

    agent = Agent(parse_config(dict(config)))
    if prepare is not None:
        prepare(agent)
    task = asyncio.create_task(agent.run())
    try:
        await agent.link.wait_online(timeout)
        yield agent
    finally:
        # Cancelled again if the first cancellation was swallowed (Python 3.11, see
        # vaka.tasks): a plain ``await task`` would then wait for ever. The pause before the
        # second is longer than any clean stop, which it must not cut short.
        await cancel_and_wait([task], retry_s=10.0)
        failure = None if task.cancelled() else task.exception()
        if failure is not None:  # the agent failed on its own: say so
            raise failure
