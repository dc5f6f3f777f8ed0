"""The local stack: PKI, broker, relay, central, simulated units; started in order, torn down
in reverse.

The demo, the tests, the benches and the console screenshots all start the world through
:class:`LocalStack`, so they share one set of defaults (production's: broker persistence, the
CRL, the enrolment listener) and one teardown::

    async with LocalStack(directory) as stack:    # the PKI (made once, or shared)
        stack.start_broker()
        stack.start_postgres()                    # optional: centrals share PostgreSQL
        stack.start_turn()                        # coturn; central then mints relay credentials
        central = await stack.start_central()     # in this event loop
        stack.spawn_unit("u-1", "nightcam")       # a vaka-agent --simulate process
        await stack.wait_online(central, ["u-1"])

A stack without central in the event loop may be used with a plain ``with`` (:meth:`close`).
Every part can be stopped and started again (the broker keeps its port and what it persisted);
crash tests use the broker's and the units' ``kill``/``freeze``/``thaw``.
"""

import contextlib
import logging
import secrets
import shutil
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vaka.central.service import CentralService
from vaka.central.settings.config import CentralConfig, TurnSection
from vaka.devstack.broker import Broker
from vaka.devstack.central import (
    CentralProcess,
    central_config,
    start_central,
    wait_units_online,
)
from vaka.devstack.ports import free_port
from vaka.devstack.postgres import PostgresCluster
from vaka.devstack.turn import TEST_PEER_RANGES, TurnServer, TurnSettings
from vaka.devstack.units import (
    AgentProcess,
    new_unit_config,
    running_agent,
    unit_config,
    write_unit_config,
)
from vaka.errors import ConfigError
from vaka.provisioning.localpki import LocalPki

if TYPE_CHECKING:
    from vaka.agent.app import Agent  # not at import: see vaka.devstack.units

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Part:
    """A started part and how to stop it (``in_loop``: a coroutine, for central in-process)."""

    name: str
    stop: Callable[[], object]
    in_loop: bool = False


class LocalStack:
    """Everything of a Vaka installation on this machine, under one directory.

    ``pki`` shares an existing PKI (a test session's); otherwise one is made under
    ``directory/pki``. ``broker_port`` and ``claim_port`` (the enrolment listener) are free ports
    unless given (a card built for a QEMU test names them). ``database_url`` is the database every
    central of the stack shares (a test's, or :meth:`start_postgres`'s); without it each central
    has a SQLite file of its own. ``claim``, ``crl`` and ``persistence`` switch a broker part off
    for a caller that truly needs it; ``broker_lines`` are appended to ``mosquitto.conf``.
    """

    def __init__(
        self,
        directory: Path,
        *,
        pki: LocalPki | None = None,
        host: str = "127.0.0.1",
        broker_port: int | None = None,
        claim_port: int | None = None,
        claim: bool = True,
        crl: bool = True,
        persistence: bool = True,
        central_identities: tuple[str, ...] = ("central-1", "central-2"),
        broker_lines: tuple[str, ...] = (),
        database_url: str | None = None,
    ) -> None:
        self.directory = directory.resolve()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.pki = pki or LocalPki(self.directory / "pki")
        self.pki.ensure()
        self.broker = Broker(
            self.pki,
            self.directory / "broker",
            broker_port or free_port(host),
            host=host,
            claim=claim,
            crl=crl,
            persistence=persistence,
            central_identities=central_identities,
            extra_lines=broker_lines,
            claim_port=claim_port or free_port(host),
        )
        self.host = host
        self.turn: TurnServer | None = None
        self.database_url = database_url
        self.postgres: PostgresCluster | None = None
        self.units: dict[str, AgentProcess] = {}
        self._parts: list[_Part] = []
        self._broker_started = False

    # -- the broker

    def start_broker(self) -> Broker:
        """Start the broker; the first start forgets what an earlier run in the directory kept."""
        if not self._broker_started:
            self.broker.forget()
            self._broker_started = True
            self._parts.append(_Part("broker", self.broker.stop))
        self.broker.start()
        return self.broker

    def _after_broker(self, part: str) -> None:
        """Parts start in order: central and units come after the broker (which may be down
        again by then, as in a crash test)."""
        if not self._broker_started:
            raise ConfigError(f"start the broker before {part} (stack.start_broker())")

    # -- the relay

    def start_turn(self) -> TurnServer:
        """Start coturn (the shipped ``turnserver.conf``, rendered) on a free port of the stack's
        host, with a fresh shared secret; a central started afterwards hands out per-call relay
        credentials for it. Unlike production, it lets peers on loopback be relayed to (the
        stack's units and staff gather there) besides the test ranges."""
        if self.turn is None:
            work = self.directory / "turn"
            work.mkdir(parents=True, exist_ok=True)
            secret_file = work / "secret"
            secret_file.touch(mode=0o600, exist_ok=True)
            secret_file.write_text(secrets.token_urlsafe(32) + "\n")
            settings = TurnSettings(
                listen_ip=self.host,
                secret_file=secret_file,
                work_dir=work,
                port=free_port(self.host),
                allowed_peers=("127.0.0.0-127.255.255.255", *TEST_PEER_RANGES),
            )
            self.turn = TurnServer(settings)
            self._parts.append(_Part("turn", self.turn.stop))
        self.turn.start()
        return self.turn

    @property
    def turn_section(self) -> TurnSection | None:
        """Central's ``[turn]`` for the stack's relay (``None`` before :meth:`start_turn`)."""
        if self.turn is None:
            return None
        settings = self.turn.settings
        return TurnSection(
            host=settings.listen_ip, port=settings.port, secret_file=settings.secret_file
        )

    # -- the database

    def start_postgres(self) -> str:
        """Start a throw-away PostgreSQL cluster (:mod:`vaka.devstack.postgres`) with a fresh
        database that every central started afterwards shares; its URL. Removed at teardown."""
        if self.postgres is None:
            self.postgres = PostgresCluster.start_new()
            self._parts.append(_Part("postgres", self.postgres.stop))
            self.database_url = self.postgres.fresh_database()
        assert self.database_url is not None
        return self.database_url

    # -- central

    def central_config(self, identity: str = "central-1", **options: Any) -> CentralConfig:
        """Central's configuration for this stack (:func:`vaka.devstack.central.central_config`)."""
        options.setdefault("turn", self.turn_section)
        if self.database_url is not None:
            options.setdefault("database", self.database_url)
        return central_config(self.broker, self.directory, identity, **options)

    async def start_central(
        self, identity: str = "central-1", config: CentralConfig | None = None
    ) -> CentralService:
        """Central in this process, connected to the broker; stopped at teardown."""
        self._after_broker(identity)
        service = await start_central(config or self.central_config(identity))
        self._parts.append(_Part(identity, service.stop, in_loop=True))
        return service

    def start_central_process(
        self, identity: str = "central-1", config: CentralConfig | None = None
    ) -> CentralProcess:
        """Central as a child process (to kill or freeze it); stopped at teardown."""
        self._after_broker(identity)
        process = CentralProcess(config or self.central_config(identity), self.directory)
        process.start()
        self._parts.append(_Part(identity, process.stop))
        return process

    # -- units

    def unit_config(
        self, device_id: str, profile: str = "nightcam", **options: Any
    ) -> dict[str, Any]:
        """A simulated unit's configuration on this stack's broker (see :func:`unit_config`)."""
        return unit_config(self.broker, device_id, profile, **options)

    def spawn_unit(
        self,
        device_id: str,
        profile: str = "nightcam",
        interval_s: float = 30,
        keepalive_s: int = 5,
        *,
        env: Mapping[str, str] | None = None,
        netns: str | None = None,
        **options: Any,
    ) -> AgentProcess:
        """Start ``vaka-agent --simulate`` for ``device_id`` as a child process (inside the
        network namespace ``netns`` if given: a unit behind a test bed's home router).

        A unit spawned again under the same id is restarted on a fresh configuration.
        """
        self._after_broker(device_id)
        config = self.unit_config(
            device_id, profile, interval_s=interval_s, keepalive_s=keepalive_s, **options
        )
        units = self.directory / "units"
        path = write_unit_config(units / f"{device_id}.toml", config)
        previous = self.units.get(device_id)
        if previous is not None:
            previous.stop()
        agent = AgentProcess(
            device_id, path, self.directory / "logs" / f"{device_id}.log", netns=netns
        )
        agent.spawn(env)
        if previous is None:
            self._parts.append(_Part(device_id, lambda: self.units[device_id].stop()))
        self.units[device_id] = agent
        return agent

    def spawn_new_unit(
        self, name: str, profile: str = "tv", interval_s: float = 30, keepalive_s: int = 5
    ) -> AgentProcess:
        """Start ``vaka-agent --simulate`` for a unit fresh from the box (no identity yet: it
        shows an enrolment code and waits for a technician, see :func:`new_unit_config`).

        ``name`` names its files (``units/<name>.toml``, ``units/<name>-credentials/``,
        ``logs/<name>.log``) until central gives it a unit id. Credentials an earlier run left
        there are wiped first: the unit starts as it left the factory.
        """
        self._after_broker(name)
        units = self.directory / "units"
        credentials = units / f"{name}-credentials"
        shutil.rmtree(credentials, ignore_errors=True)
        config = new_unit_config(
            self.broker,
            profile,
            credentials,
            interval_s=interval_s,
            keepalive_s=keepalive_s,
        )
        path = write_unit_config(units / f"{name}.toml", config)
        agent = AgentProcess(name, path, self.directory / "logs" / f"{name}.log")
        agent.spawn()
        self._parts.append(_Part(name, agent.stop))
        self.units[name] = agent
        return agent

    def running_unit(
        self,
        device_id: str,
        profile: str = "nightcam",
        *,
        prepare: Callable[["Agent"], None] | None = None,
        **options: Any,
    ) -> contextlib.AbstractAsyncContextManager["Agent"]:
        """A simulated unit in this process (its fake hardware inspectable), online in the block.

        ``prepare`` sees the agent before it runs (see :func:`running_agent`).
        """
        return running_agent(self.unit_config(device_id, profile, **options), prepare=prepare)

    @staticmethod
    async def wait_online(
        central: CentralService, device_ids: list[str], timeout: float = 20
    ) -> bool:
        """Whether central sees every one of ``device_ids`` online within ``timeout``."""
        return await wait_units_online(central, device_ids, timeout)

    # -- teardown, newest part first

    def close(self) -> None:
        """Stop every part started through this stack, newest first; safe to call twice.

        Central running in this process needs :meth:`aclose`.
        """
        while self._parts:
            part = self._parts[-1]
            if part.in_loop:
                raise RuntimeError(f"{part.name} runs in the event loop: `await stack.aclose()`")
            self._parts.pop()
            try:
                part.stop()
            except Exception:
                log.exception("stopping %s failed", part.name)

    async def aclose(self) -> None:
        """Stop every part, in-process central too, newest first; safe to call twice."""
        while self._parts:
            part = self._parts.pop()
            try:
                result = part.stop()
                if isinstance(result, Awaitable):
                    await result
            except Exception:
                log.exception("stopping %s failed", part.name)

    def __enter__(self) -> "LocalStack":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> "LocalStack":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
