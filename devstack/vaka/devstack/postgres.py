"""A throw-away PostgreSQL cluster for the local stack: Debian's server binaries, ``initdb`` into
a temporary directory, ``pg_ctl`` to start and stop it, reached over a Unix socket only.

Tests make one cluster per run and a fresh database per test, copied from a template that
already holds central's schema (``CREATE DATABASE … TEMPLATE`` copies files: tens of
milliseconds here, however many revisions the schema gathers)::

    with PostgresCluster.start_new() as cluster:
        url = cluster.fresh_database()      # postgresql+psycopg://vaka@/t1?host=/tmp/vaka-pg-…
        ...
        cluster.drop_database(url)

PostgreSQL refuses to run as root. When the suite runs as root (a CI container, a developer's
machine under ``sudo``), the server runs as the unprivileged ``postgres`` user that Debian's
package creates (``runuser -u postgres``), in a directory of its own under the system's
temporary directory; a run as an ordinary user runs it as that user.

The cluster trades durability for speed (``fsync=off``): it holds nothing but test data.
"""

import itertools
import logging
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from vaka.central.storage.engine import open_engine
from vaka.errors import ConfigError

log = logging.getLogger(__name__)

#: the superuser the cluster is made with (trusted on its socket, which only its owner and root
#: can reach: the socket's directory is private)
SUPERUSER = "vaka"
#: the database every fresh database is copied from
TEMPLATE = "vaka_template"
#: the user the server runs as when this process is root
SERVER_USER = "postgres"
#: throw-away clusters' directories under the system's temporary directory
PREFIX = "vaka-pg-"
#: the file in a cluster's directory naming the process that made it
OWNER = "owner.pid"


def server_bindir() -> Path:
    """Where ``initdb``, ``pg_ctl`` and ``postgres`` are: ``VAKA_PG_BINDIR``, else the newest
    of Debian's ``/usr/lib/postgresql/<version>/bin``, else the ``PATH``."""
    configured = os.environ.get("VAKA_PG_BINDIR")
    if configured:
        return Path(configured)
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if versions:
        return versions[-1].parent
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise ConfigError(
        "PostgreSQL's server is not installed (no initdb): install Debian's `postgresql` "
        "package (scripts/setup.sh does), or set VAKA_PG_BINDIR"
    )


def available() -> bool:
    """Whether a throw-away cluster can be made here."""
    try:
        bindir = server_bindir()
    except ConfigError:
        return False
    return (bindir / "initdb").exists() and (os.geteuid() != 0 or _server_user() is not None)


def remove_orphans(prefix: str = PREFIX) -> None:
    """Stop and remove the throw-away clusters whose owning process no longer runs."""
    for directory in Path(tempfile.gettempdir()).glob(f"{prefix}*"):
        try:
            owner = int((directory / OWNER).read_text())
        except (OSError, ValueError):
            continue
        if Path(f"/proc/{owner}").exists():
            continue
        log.warning("removing the PostgreSQL cluster %s left by process %d", directory, owner)
        cluster = PostgresCluster(directory)
        cluster._started = (cluster.data / "postmaster.pid").exists()
        cluster.stop(remove=True)


def _server_user() -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        return None


class PostgresCluster:
    """One ``initdb``-made cluster in ``directory`` (made and removed by :meth:`start_new`)."""

    def __init__(self, directory: Path, bindir: Path | None = None) -> None:
        self.directory = directory
        self.bindir = bindir or server_bindir()
        self.data = directory / "data"
        self.socket_dir = directory / "socket"
        self.log_path = directory / "postgres.log"
        self._numbers = itertools.count(1)
        self._started = False
        self._as: list[str] = []
        self._admin_engine: Engine | None = None
        if os.geteuid() == 0:
            if _server_user() is None:
                raise ConfigError(
                    f"PostgreSQL does not run as root and there is no {SERVER_USER!r} user to "
                    "run it as: install Debian's `postgresql` package"
                )
            self._as = ["runuser", "-u", SERVER_USER, "--"]

    @classmethod
    def start_new(cls, prefix: str = PREFIX) -> "PostgresCluster":
        """A new cluster in a fresh temporary directory, started, with the template database.

        Clusters whose maker is gone (a test run killed before its teardown) are stopped and
        removed first, so they do not pile up as stray servers."""
        remove_orphans(prefix)
        directory = Path(tempfile.mkdtemp(prefix=prefix))
        (directory / OWNER).write_text(f"{os.getpid()}\n")
        cluster = cls(directory)
        try:
            cluster.init()
            cluster.start()
            cluster.make_template()
        except BaseException:
            cluster.stop(remove=True)
            raise
        return cluster

    # -- the server

    def _run(self, argv: Sequence[str], what: str) -> None:
        done = subprocess.run(
            [*self._as, *argv], capture_output=True, text=True, check=False, timeout=120
        )
        if done.returncode != 0:
            raise ConfigError(f"{what} failed: {(done.stderr or done.stdout).strip()[-2000:]}")

    def init(self) -> None:
        """``initdb``: a new cluster owned by the server's user, trusting only its own socket."""
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        if self._as:
            user = _server_user()
            assert user is not None
            for path in (self.directory, self.socket_dir):
                os.chown(path, user.pw_uid, user.pw_gid)
        os.chmod(self.directory, 0o700)
        os.chmod(self.socket_dir, 0o700)
        self._run(
            [
                str(self.bindir / "initdb"),
                "--pgdata",
                str(self.data),
                "--username",
                SUPERUSER,
                "--auth",
                "trust",
                "--encoding",
                "UTF8",
                "--locale",
                "C",
                "--no-sync",
            ],
            "initdb",
        )

    def start(self, timeout: float = 30.0) -> None:
        """``pg_ctl start`` on the Unix socket only (no TCP port to collide on), waiting for it."""
        options = " ".join(
            [
                f"-k {self.socket_dir}",
                "-c listen_addresses=''",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c max_connections=300",
                "-c shared_buffers=64MB",
            ]
        )
        self._run(
            [
                str(self.bindir / "pg_ctl"),
                "--pgdata",
                str(self.data),
                "--log",
                str(self.log_path),
                "--options",
                options,
                "--wait",
                "--timeout",
                str(int(timeout)),
                "start",
            ],
            "starting PostgreSQL",
        )
        self._started = True
        log.info("PostgreSQL started in %s", self.directory)

    def stop(self, *, remove: bool = True) -> None:
        """Stop the server (fast shutdown) and remove its directory; safe to call twice."""
        if self._admin_engine is not None:
            self._admin_engine.dispose()
            self._admin_engine = None
        if self._started:
            self._started = False
            try:
                self._run(
                    [str(self.bindir / "pg_ctl"), "--pgdata", str(self.data), "--mode", "fast",
                     "--wait", "stop"],
                    "stopping PostgreSQL",
                )  # fmt: skip
            except (ConfigError, subprocess.TimeoutExpired):
                log.exception("PostgreSQL in %s did not stop", self.directory)
        if remove:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> "PostgresCluster":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- databases

    def url(self, database: str) -> str:
        """The SQLAlchemy URL of ``database`` in this cluster."""
        return f"postgresql+psycopg://{SUPERUSER}@/{database}?host={self.socket_dir}"

    def _admin(self, statement: str) -> None:
        if self._admin_engine is None:
            self._admin_engine = create_engine(self.url("postgres"), isolation_level="AUTOCOMMIT")
        with self._admin_engine.connect() as conn:
            conn.execute(text(statement))

    def make_template(self) -> None:
        """The template database: central's schema at the newest revision."""
        self._admin(f"CREATE DATABASE {TEMPLATE}")
        open_engine(self.url(TEMPLATE)).dispose()

    def fresh_database(self, name: str | None = None) -> str:
        """A new database holding central's schema (a copy of the template); its URL."""
        name = name or f"t{os.getpid()}_{next(self._numbers)}"
        # Copying needs the template to have no session: none is ever opened after
        # make_template, but a server still ending one is given a moment.
        deadline = time.monotonic() + 5
        while True:
            try:
                self._admin(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE} STRATEGY FILE_COPY")
                return self.url(name)
            except OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def empty_database(self, name: str | None = None) -> str:
        """A new database without any table (to migrate, or to fill as an older release did)."""
        name = name or f"e{os.getpid()}_{next(self._numbers)}"
        self._admin(f"CREATE DATABASE {name}")
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drop the database of ``url``, ending whatever sessions still hold it."""
        name = make_url(url).database
        try:
            self._admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        except SQLAlchemyError:
            log.exception("dropping database %s failed (the cluster goes at the end anyway)", name)
