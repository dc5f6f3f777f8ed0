"""Alembic's entry into central's migrations: it migrates the connection that
:func:`vaka.central.storage.migrate.upgrade` hands it (already in a transaction that holds the
migration lock), or, from Alembic's own command line, ``VAKA_DATABASE_URL``.

Models and migrations are compared against :data:`vaka.central.storage.tables.metadata`
(``scripts/check_migrations.py`` in ``make lint``; a new revision: see that script).
"""

import os

from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection

from vaka.central.storage.tables import metadata


def _migrate(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite alters a table by copying it; the same migration then serves both databases.
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run() -> None:
    """Migrate the handed connection, or a database named in the environment."""
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _migrate(connection)
        return
    url = os.environ.get("VAKA_DATABASE_URL")
    if not url:
        raise SystemExit("set VAKA_DATABASE_URL to the database to migrate")
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            _migrate(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("central's migrations run against a database (no offline SQL scripts)")
run()
