"""Central's database engine: SQLite is the embedded default; PostgreSQL serves the same
statements when one machine or one instance is not enough.

:func:`open_engine` brings the schema to the newest migration
(:func:`vaka.central.storage.migrate.upgrade`) unless told not to.
"""

from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from vaka.central.storage.locks import SQLITE_BUSY_MS
from vaka.central.storage.migrate import upgrade as upgrade_schema
from vaka.errors import RegistryError


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    # The wait first: switching a new database to WAL takes its lock, and instances opening it
    # together would otherwise fail at once with "database is locked".
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def open_engine(url: str, *, upgrade: bool = True) -> Engine:
    """An engine for ``url``; with ``upgrade`` its schema is brought to the newest revision
    first (several instances starting at once take turns, see :mod:`.migrate`)."""
    try:
        # Rooms learn from ``rowcount`` whether their conditional insert or update took effect
        # (the first instance to store an event audits it); psycopg's cursor forgets it once
        # closed, SQLite's keeps it: keep it on both.
        engine = create_engine(url, execution_options={"preserve_rowcount": True})
    except (SQLAlchemyError, ImportError, ValueError) as err:
        raise RegistryError(f"cannot open database {url!r}: {err}") from err
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    elif engine.dialect.name != "postgresql":
        raise RegistryError(
            f"unsupported database {engine.dialect.name!r}: use sqlite or postgresql"
        )
    if upgrade:
        upgrade_schema(engine)
    return engine


def upsert(engine: Engine, table: Any) -> Any:
    """The dialect's ``INSERT`` that supports ``on_conflict_do_update``."""
    module = sqlite if engine.dialect.name == "sqlite" else postgresql
    return module.insert(table)
