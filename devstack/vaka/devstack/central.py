"""Central in the local stack: its configuration, in-process or as a process, and queries.

Central's configuration is built and central is started here; elsewhere the local stack only
names central's types (:mod:`vaka.devstack.stack`) and writes the broker's configuration with
central's writer (:mod:`vaka.devstack.broker`). When central's modules move, these imports change.
"""

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import tomli_w

from vaka.central.directory.spec import DirectorySpec
from vaka.central.service import CentralService
from vaka.central.settings.config import (
    CentralConfig,
    DatabaseSection,
    HttpSection,
    KeysSection,
    MqttSection,
    PkiSection,
    TurnSection,
)
from vaka.central.settings.passwords import PasswordHashing
from vaka.central.settings.privacy import PrivacySettings
from vaka.central.units.config_push import build_bundle, push_config
from vaka.devstack.broker import Broker
from vaka.devstack.ports import free_port, wait_for_port
from vaka.devstack.process import ChildProcess
from vaka.errors import ConfigError

log = logging.getLogger(__name__)

#: The dev stack's accounts are throw-away (tests, the demo): their passwords are hashed at
#: argon2's lowest cost instead of ~0.1 s and 64 MiB each. A bench that measures a log-in or
#: central's memory passes ``PasswordHashing()``, the product's own cost.
THROWAWAY_PASSWORDS = PasswordHashing(time_cost=1, memory_kib=64, parallelism=1)


def central_config(
    broker: Broker,
    directory: Path,
    identity: str = "central-1",
    *,
    http_port: int = 0,
    keepalive_s: int = 5,
    database: Path | str | None = None,
    turn: TurnSection | None = None,
    passwords: PasswordHashing = THROWAWAY_PASSWORDS,
) -> CentralConfig:
    """Central's configuration for ``broker``: its identity's certificate, the stack's keys,
    the issuing CA (enrolment, revocation through the broker's CRL), its database,
    ``turn``, the relay central mints per-call credentials for (none: no relay), and the cost
    of its password hashes (:data:`THROWAWAY_PASSWORDS` unless told).

    The database is a SQLite file in ``directory`` (``<identity>.db``) unless ``database`` names
    another file (several instances may share one) or is a database URL (a PostgreSQL
    database, see :mod:`vaka.devstack.postgres`)."""
    pki = broker.pki
    files = pki.client(identity)
    health = pki.client(f"{identity}-health")  # health on a connection of its own
    if isinstance(database, str):
        url = database
    else:
        url = f"sqlite:///{database or directory / f'{identity}.db'}"
    return CentralConfig(
        mqtt=MqttSection(
            host=broker.host,
            port=broker.port,
            server_ca=files.server_ca,
            cert=files.cert,
            key=files.key,
            identity=identity,
            keepalive_s=keepalive_s,
            health_cert=health.cert,
            health_key=health.key,
        ),
        keys=KeysSection(ticket_key=pki.ticket_keys()[0], config_key=pki.config_keys()[0]),
        pki=PkiSection(
            issuing_cert=pki.issuing_ca_cert,
            issuing_key=pki.root / "client-ca.key",
            broker_crl=broker.crl_path,
            broker_pid_file=broker.pid_file,
        ),
        http=HttpSection(port=http_port),
        database=DatabaseSection(url=url),
        turn=turn,
        # The dev stack's directories (tests, demo, benches) record no consent: its central does
        # not require it, said here and nowhere else (tests/test_consent.py turns it on).
        privacy=PrivacySettings(require_consent=False),
        passwords=passwords,
    )


async def start_central(config: CentralConfig, timeout: float = 15.0) -> CentralService:
    """Start central in this process and wait until it holds its broker session."""
    service = CentralService(config)
    await service.start()
    try:
        async with asyncio.timeout(timeout):
            await service.link.connected.wait()
    except TimeoutError:
        await service.stop()
        raise ConfigError(f"central did not connect to the broker within {timeout} s") from None
    return service


@contextlib.asynccontextmanager
async def running_central(config: CentralConfig) -> AsyncIterator[CentralService]:
    """Central in this process, connected, for the block; stopped afterwards."""
    service = await start_central(config)
    try:
        yield service
    finally:
        await service.stop()


class CentralProcess(ChildProcess):
    """``vaka-central serve`` as a child process (for callers that kill or freeze central)."""

    def __init__(self, config: CentralConfig, directory: Path) -> None:
        if config.http.port == 0:
            config = config.model_copy(
                update={"http": config.http.model_copy(update={"port": free_port()})}
            )
        self.config = config
        identity = config.mqtt.identity
        self.config_path = directory / f"{identity}.toml"
        super().__init__(
            identity,
            [sys.executable, "-m", "vaka.central.cli", "serve", "--config", str(self.config_path)],
            directory / f"{identity}.log",
        )

    @property
    def url(self) -> str:
        """Where its API and console listen."""
        return f"http://{self.config.http.bind}:{self.config.http.port}"

    def start(self, timeout: float = 30.0) -> "CentralProcess":
        """Write the configuration, start the process and wait until its HTTP port answers."""
        self.config_path.parent.mkdir(parents=True, exist_ok=True)
        data = self.config.model_dump(mode="json", exclude_none=True)
        self.config_path.write_text(tomli_w.dumps(data))
        self.spawn()
        deadline = time.monotonic() + timeout
        while True:
            try:
                wait_for_port(self.config.http.bind, self.config.http.port, 0.5)
                return self
            except TimeoutError:
                if not self.running or time.monotonic() > deadline:
                    self.stop()
                    raise ConfigError(f"{self.name} did not start: {self.tail()}") from None


async def unit_status(central: CentralService, device_id: str) -> str | None:
    """The presence status central's registry holds for ``device_id``."""
    record = await asyncio.to_thread(central.store.unit, device_id)
    return None if record is None else record.presence.status


async def wait_units_online(central: CentralService, device_ids: list[str], timeout: float) -> bool:
    """Whether every one of ``device_ids`` is online in central within ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        units = await asyncio.to_thread(central.store.units)
        online = {u.device_id for u in units if u.presence.status == "online"}
        if set(device_ids) <= online:
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.1)


async def load_directory(central: CentralService, spec: DirectorySpec | Mapping[str, Any]) -> None:
    """Load staff, groups, citizens and permissions into central's directory."""
    if not isinstance(spec, DirectorySpec):
        spec = DirectorySpec.model_validate(spec)
    await asyncio.to_thread(central.directory.load, spec)


async def push_unit_config(
    central: CentralService, device_id: str, profile: str, version: int, **settings: Any
) -> None:
    """Sign a configuration bundle with central's key and push it to the unit (retained)."""
    if central.config_key is None:
        raise ConfigError("central has no config key to sign bundles with")
    bundle = build_bundle(device_id, version, profile, central.ticket_public_pem, **settings)
    await push_config(central, device_id, bundle, central.config_key)
