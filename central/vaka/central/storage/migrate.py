"""The schema's migrations (Alembic, in ``migrations/``): which revision a database is at, and
bringing it to the newest one — at every start and with ``vaka-central db upgrade``.

Several instances may start at once against one database: each checks the revision first, and
only one at a time upgrades, holding :data:`WriteLock.MIGRATIONS` (PostgreSQL: an advisory
lock; SQLite: the database's write lock) in the same transaction as the migration itself. The
others wait for it, look again and find nothing to do. On PostgreSQL the whole upgrade is one
transaction: it happens completely or not at all.

A database made by a release from before migrations has every table but no revision: the
first revision creates only what such a database lacks, so it is adopted as it is.
"""

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from vaka.central.storage.locks import WriteLock, write_locked
from vaka.errors import RegistryError

log = logging.getLogger(__name__)
# Alembic says "Context impl …" on every revision check; upgrade() logs what it changes itself.
logging.getLogger("alembic").setLevel(logging.WARNING)

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration for central's migrations (no ``alembic.ini``: it is all here);
    ``connection`` is the one ``migrations/env.py`` migrates."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # module names must be identifiers (mypy, imports): r0002_<slug>.py
    config.set_main_option("file_template", "r%%(rev)s_%%(slug)s")
    config.attributes["connection"] = connection
    return config


@functools.cache
def head() -> str:
    """The newest revision this release knows."""
    revision = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert revision is not None
    return revision


def _revision_of(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def current(engine: Engine) -> str | None:
    """The database's revision (``None``: no revision, an empty or pre-migration database)."""
    try:
        with engine.connect() as conn:
            return _revision_of(conn)
    except SQLAlchemyError as err:
        raise RegistryError(f"cannot read the schema revision: {err}") from err


@dataclass(frozen=True)
class Upgrade:
    """What :func:`upgrade` did: the revision before and after (equal: nothing to do)."""

    before: str | None
    after: str


def upgrade(engine: Engine, revision: str = "head") -> Upgrade:
    """Bring the schema to ``revision`` (the newest by default), one instance at a time."""
    target = head() if revision == "head" else revision
    try:
        before = current(engine)
    except RegistryError:
        # SQLite busy beyond its short timeout while another instance migrates: the read under
        # the migrations lock below waits for it, and says what is wrong if something is.
        before = None
    if before == target:
        return Upgrade(before, target)
    try:
        with write_locked(engine, WriteLock.MIGRATIONS) as conn:
            before = _revision_of(conn)  # another instance may have done it while we waited
            if before != target:
                log.info("upgrading the database schema from %s to %s", before or "none", target)
                command.upgrade(alembic_config(conn), revision)
                log.info("database schema upgraded to %s", target)
    except (SQLAlchemyError, CommandError) as err:
        raise RegistryError(f"cannot upgrade the database schema to {target}: {err}") from err
    return Upgrade(before, target)


def require_current(engine: Engine) -> None:
    """Raise :class:`RegistryError` unless the database is at the newest revision (for tools
    that only read, and for a central that is told not to upgrade at start)."""
    found = current(engine)
    if found == head():
        return
    if found is None:
        raise RegistryError(
            "the database has no Vaka schema revision: check the database URL (a wrong SQLite "
            "path opens a new, empty file), or run `vaka-central db upgrade`"
        )
    raise RegistryError(
        f"the database schema is at revision {found}, this release needs {head()}: "
        "run `vaka-central db upgrade`"
    )
