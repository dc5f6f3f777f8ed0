"""Shared fixtures: a real Mosquitto with TLS and ACLs on a free port, central, agent processes."""

import asyncio
import contextlib
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt
import pytest

from vaka.central.broker.broker import BrokerSettings, write_broker_config
from vaka.central.service import CentralService
from vaka.central.settings.config import (
    CentralConfig,
    DatabaseSection,
    HttpSection,
    KeysSection,
    MqttSection,
    PkiSection,
)
from vaka.demo.run import write_unit_config
from vaka.devstack.broker import MosquittoProcess, dev_broker_user, free_port
from vaka.provisioning.localpki import LocalPki
from vaka.provisioning.tls import client_tls_context


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> LocalPki:
    """One local PKI for the whole test session."""
    return LocalPki(tmp_path_factory.mktemp("pki")).ensure()


@dataclass
class Broker:
    """A running Mosquitto for one test."""

    pki: LocalPki
    directory: Path
    port: int
    host: str = "127.0.0.1"
    process: MosquittoProcess | None = None
    claim_port: int = field(default_factory=free_port)

    def start(self) -> None:
        """(Re)start on the same port."""
        conf = write_broker_config(
            self.directory,
            BrokerSettings(
                port=self.port,
                client_ca=self.pki.client_ca_cert,
                server_cert=self.pki.broker_cert,
                server_key=self.pki.broker_key,
                # As in production: central's persistent session (and the messages queued for
                # it) survives a broker restart.
                persistence=True,
                user=dev_broker_user(),
                crl=self.pki.crl_path,
                pid_file=self.directory / "mosquitto.pid",
                claim_port=self.claim_port,
                central_identities=("central-1", "central-2"),
            ),
        )
        self.process = MosquittoProcess(conf, self.host, self.port).start()

    def stop(self) -> None:
        """Stop the broker process."""
        if self.process is not None:
            self.process.stop()

    def client(self, cn: str, **kwargs: object) -> aiomqtt.Client:
        """An MQTT 5 client authenticated as ``cn`` (issued by the test client CA)."""
        files = self.pki.client(cn)
        return aiomqtt.Client(
            self.host,
            self.port,
            identifier=cn,
            protocol=aiomqtt.ProtocolVersion.V5,
            tls_context=client_tls_context(files.server_ca, files.cert, files.key),
            timeout=5,
            **kwargs,  # type: ignore[arg-type]
        )

    def client_with(
        self,
        tls_context: ssl.SSLContext,
        identifier: str,
        *,
        port: int | None = None,
        timeout: float = 5,
    ) -> aiomqtt.Client:
        """An MQTT 5 client with a TLS context of the test's making (foreign CA, no cert...)."""
        return aiomqtt.Client(
            self.host,
            port or self.port,
            identifier=identifier,
            protocol=aiomqtt.ProtocolVersion.V5,
            tls_context=tls_context,
            timeout=timeout,
        )

    def log(self) -> str:
        """The broker's log so far."""
        return (self.directory / "mosquitto.log").read_text(errors="replace")


@pytest.fixture
def broker(pki: LocalPki, tmp_path: Path) -> Iterator[Broker]:
    """A real Mosquitto (TLS, client certificates, ACL) on a free loopback port."""
    b = Broker(pki, tmp_path / "broker", free_port())
    b.start()
    try:
        yield b
    finally:
        b.stop()


def central_config(broker: Broker, tmp_path: Path, identity: str = "central-1") -> CentralConfig:
    """A central configuration pointing at ``broker`` with a SQLite file in ``tmp_path``."""
    files = broker.pki.client(identity)
    return CentralConfig(
        mqtt=MqttSection(
            port=broker.port,
            server_ca=files.server_ca,
            cert=files.cert,
            key=files.key,
            identity=identity,
            keepalive_s=5,
        ),
        keys=KeysSection(
            ticket_key=broker.pki.ticket_keys()[0], config_key=broker.pki.config_keys()[0]
        ),
        pki=PkiSection(
            issuing_cert=broker.pki.issuing_ca_cert,
            issuing_key=broker.pki.root / "client-ca.key",
            broker_crl=broker.directory / "crl.pem",
            broker_pid_file=broker.directory / "mosquitto.pid",
        ),
        http=HttpSection(port=0),
        database=DatabaseSection(url=f"sqlite:///{tmp_path / f'{identity}.db'}"),
    )


@pytest.fixture
async def central(broker: Broker, tmp_path: Path) -> AsyncIterator[CentralService]:
    """A running central service subscribed to ``broker``."""
    service = CentralService(central_config(broker, tmp_path))
    await service.start()
    await asyncio.wait_for(service.link.connected.wait(), 10)
    try:
        yield service
    finally:
        await service.stop()


@dataclass
class AgentProcess:
    """A ``vaka-agent --simulate`` child process."""

    device_id: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        """What the agent has logged so far."""
        return self.log_path.read_text(errors="replace")


@dataclass
class AgentFactory:
    """Starts simulated agents as real processes and stops them after the test."""

    broker: Broker
    directory: Path
    started: list[AgentProcess] = field(default_factory=list)

    def __call__(
        self,
        device_id: str,
        profile: str = "nightcam",
        interval_s: float = 30,
        keepalive_s: int = 5,
    ) -> AgentProcess:
        path = write_unit_config(
            self.directory / f"{device_id}.toml",
            self.broker.pki,
            device_id,
            profile,
            self.broker.port,
            interval_s,
            keepalive_s=keepalive_s,
            reconnect_min_s=0.2,
            reconnect_max_s=1.0,
        )
        log_path = self.directory / f"{device_id}.log"
        with log_path.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "vaka.agent.cli", "--config", str(path), "--simulate"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        agent = AgentProcess(device_id, proc, log_path)
        self.started.append(agent)
        return agent

    def stop_all(self) -> None:
        """Terminate every agent started by this factory."""
        for agent in self.started:
            if agent.proc.poll() is None:
                agent.proc.send_signal(signal.SIGTERM)
        for agent in self.started:
            try:
                agent.proc.wait(10)
            except subprocess.TimeoutExpired:
                agent.proc.kill()
                agent.proc.wait()


@pytest.fixture
def start_agent(broker: Broker, tmp_path: Path) -> Iterator[AgentFactory]:
    """Start simulated agent processes; all are stopped after the test."""
    factory = AgentFactory(broker, tmp_path / "agents")
    factory.directory.mkdir()
    try:
        yield factory
    finally:
        factory.stop_all()


async def wait_for(
    predicate: Callable[[], object], timeout: float, interval: float = 0.02, what: str = ""
) -> float:
    """Poll ``predicate`` (sync or async) until truthy; returns seconds taken."""
    started = time.monotonic()
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        await asyncio.sleep(interval)


async def unit_status(central: CentralService, device_id: str) -> str | None:
    """The presence status central's registry holds for ``device_id``."""
    record = await asyncio.to_thread(central.store.unit, device_id)
    return None if record is None else record.presence.status


@contextlib.asynccontextmanager
async def collecting(
    client: aiomqtt.Client, topic_filter: str
) -> AsyncIterator[list[aiomqtt.Message]]:
    """Subscribe and collect messages in the background while the block runs."""
    received: list[aiomqtt.Message] = []
    await client.subscribe(topic_filter, qos=1)

    async def pump() -> None:
        async for message in client.messages:
            received.append(message)

    task = asyncio.create_task(pump())
    try:
        yield received
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# ---------------------------------------------------------------- staff log-in

#: the TOTP secret test staff accounts are enrolled with (``totp_secret`` in a directory spec)
TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
_secret_file: Path | None = None


def totp_secret_file() -> Path:
    """A file holding :data:`TOTP_SECRET` (for ``VAKA_TOTP_SECRET_FILE``)."""
    global _secret_file
    if _secret_file is None or not _secret_file.exists():
        fd, name = tempfile.mkstemp(prefix="vaka-test-totp-")
        os.write(fd, TOTP_SECRET.encode())
        os.close(fd)
        _secret_file = Path(name)
    return _secret_file


async def staff_token(
    central_url: str, staff_id: str, password: str, secret: str = TOTP_SECRET
) -> str:
    """Log in through the API with a code from ``secret``; the bearer token."""
    from vaka.staff.client import StaffClient

    async with StaffClient(central_url) as client:
        await client.login(staff_id, password, totp_secret=secret)
        assert client.token is not None
        return client.token


@pytest.fixture
def loopback_ice() -> Iterator[None]:
    """ICE on 127.0.0.1 only, restored to aioice's own behaviour afterwards."""
    from vaka.rtc.ice import configure_ice, reset_ice

    configure_ice(["127.0.0.1"], gather_timeout_s=1.0)
    try:
        yield
    finally:
        reset_ice()
