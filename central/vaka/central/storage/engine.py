"""Central's database: one SQLAlchemy ``MetaData`` for every table, and engine creation.

SQLite is the embedded default; PostgreSQL serves the same statements when one machine is not
enough. Each concept keeps its tables in its own module (registry, directory, audit) on this
``metadata``; :func:`open_engine` creates them.
"""

from typing import Any

from sqlalchemy import MetaData, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from vaka.errors import RegistryError

metadata = MetaData()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def open_engine(url: str) -> Engine:
    """An engine for ``url`` with every table created."""
    # Import the modules that define tables so that create_all sees all of them.
    import vaka.central.audit
    import vaka.central.directory
    import vaka.central.sessions
    import vaka.central.store  # noqa: F401

    try:
        engine = create_engine(url)
    except (SQLAlchemyError, ImportError, ValueError) as err:
        raise RegistryError(f"cannot open database {url!r}: {err}") from err
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    elif engine.dialect.name != "postgresql":
        raise RegistryError(
            f"unsupported database {engine.dialect.name!r}: use sqlite or postgresql"
        )
    try:
        metadata.create_all(engine)
    except SQLAlchemyError as err:
        raise RegistryError(f"cannot create tables in {url!r}: {err}") from err
    return engine


def upsert(engine: Engine, table: Any) -> Any:
    """The dialect's ``INSERT`` that supports ``on_conflict_do_update``."""
    module = sqlite if engine.dialect.name == "sqlite" else postgresql
    return module.insert(table)
