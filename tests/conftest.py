"""Shared fixtures: the local stack (:mod:`vaka.devstack`) for one test — a real Mosquitto with
TLS, ACLs, the CRL and the enrolment listener on free ports, central, simulated agent processes —
the databases (SQLite, and one throw-away PostgreSQL cluster for the run) and test helpers (MQTT
collecting, staff log-in).

A test that takes ``db_url`` runs twice, ``[sqlite]`` and ``[postgresql]``, each time on a fresh
database with central's schema; a test that also takes ``stack`` (or ``central``) gets a stack
whose centrals use that database. ``postgres_url`` is PostgreSQL alone (several instances on
one database)."""

import asyncio
import contextlib
import os
import re
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aiomqtt
import pytest

from vaka.central.service import CentralService
from vaka.devstack.broker import Broker
from vaka.devstack.central import running_central
from vaka.devstack.postgres import PostgresCluster
from vaka.devstack.postgres import available as postgres_available
from vaka.devstack.stack import LocalStack
from vaka.devstack.units import AgentProcess
from vaka.provisioning.localpki import LocalPki


@pytest.fixture(scope="session", autouse=True)
def _own_state_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """CLIs the tests start keep their state (vaka-provision's session file) in the run's own
    directory, never in the home directory of whoever runs the suite."""
    before = os.environ.get("XDG_STATE_HOME")
    os.environ["XDG_STATE_HOME"] = str(tmp_path_factory.mktemp("state"))
    yield
    if before is None:
        os.environ.pop("XDG_STATE_HOME", None)
    else:
        os.environ["XDG_STATE_HOME"] = before


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> LocalPki:
    """One local PKI for the whole test session."""
    return LocalPki(tmp_path_factory.mktemp("pki")).ensure()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """One throw-away PostgreSQL cluster for the whole run (Debian's server; as root, it runs
    as the unprivileged ``postgres`` user), removed at the end."""
    if not postgres_available():
        pytest.fail(
            "PostgreSQL's server is missing: run scripts/setup.sh (it installs Debian's "
            "`postgresql`); the database tests run on SQLite and PostgreSQL"
        )
    cluster = PostgresCluster.start_new()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def postgres_url(postgres: PostgresCluster) -> Iterator[str]:
    """A fresh PostgreSQL database with central's schema, dropped after the test."""
    url = postgres.fresh_database()
    try:
        yield url
    finally:
        postgres.drop_database(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The test's database, once on each backend: a SQLite file in ``tmp_path``, or a fresh
    PostgreSQL database (:func:`postgres_url`)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'central.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def stack(pki: LocalPki, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[LocalStack]:
    """The local stack in ``tmp_path`` with its broker running; every part stopped afterwards.
    Its centrals share the test's ``db_url`` or ``postgres_url`` when the test takes one."""
    database_url = None
    for name in ("db_url", "postgres_url"):
        if name in request.fixturenames:
            database_url = str(request.getfixturevalue(name))
    with LocalStack(tmp_path, pki=pki, database_url=database_url) as local:
        local.start_broker()
        yield local


@pytest.fixture
def broker(stack: LocalStack) -> Broker:
    """A real Mosquitto (TLS, client certificates, ACL, CRL, enrolment listener) on a free port."""
    return stack.broker


@pytest.fixture
async def central(stack: LocalStack) -> AsyncIterator[CentralService]:
    """A running central service subscribed to ``broker``."""
    async with running_central(stack.central_config()) as service:
        yield service


#: what ``start_agent`` is: ``start_agent(device_id, profile, interval_s, keepalive_s)``
AgentFactory = Callable[..., AgentProcess]


@pytest.fixture
def start_agent(stack: LocalStack) -> AgentFactory:
    """Start simulated agent processes; all are stopped after the test."""
    return stack.spawn_unit


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


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say how many database tests ran on each backend (a PostgreSQL run that was skipped or
    never collected would otherwise pass unnoticed)."""
    counts: dict[str, Counter[str]] = {"sqlite": Counter(), "postgresql": Counter()}
    for outcome in ("passed", "failed", "error", "skipped"):
        for report in terminalreporter.stats.get(outcome, []):
            when = getattr(report, "when", None)
            found = _BACKEND_ID.search(getattr(report, "nodeid", ""))
            if found and (when == "call" or (when == "setup" and outcome != "passed")):
                counts[found.group(1)][outcome] += 1
    if any(counts.values()):
        line = "; ".join(
            f"{backend}: " + ", ".join(f"{n} {outcome}" for outcome, n in sorted(c.items()))
            for backend, c in counts.items()
            if c
        )
        terminalreporter.write_line(f"database tests by backend: {line}")


#: a test id's parameter naming the database backend (``test_x[postgresql]``, ``[1-sqlite]``)
_BACKEND_ID = re.compile(r"\[(?:[^\]]*-)?(sqlite|postgresql)(?:-[^\]]*)?\]$")
