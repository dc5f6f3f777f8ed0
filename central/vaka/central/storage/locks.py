"""Serialised writers: the one way for writers that must see each other's rows (the audit
chain's next sequence number, schema migrations) to take turns, on both databases —
PostgreSQL's advisory transaction locks, SQLite's database write lock (``BEGIN IMMEDIATE``)."""

import contextlib
import enum
from collections.abc import Iterator

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

#: how long a SQLite connection waits for the write lock in general, and for a migration
SQLITE_BUSY_MS = 5000
MIGRATION_WAIT_MS = 300_000


class WriteLock(enum.IntEnum):
    """The advisory locks central takes on PostgreSQL (one 64-bit key each; ``vaka`` in ASCII
    in the high bytes, so they do not collide with another application's keys by chance)."""

    MIGRATIONS = 0x7661_6B61_0000_0001
    AUDIT_CHAIN = 0x7661_6B61_0000_0002


@contextlib.contextmanager
def write_locked(engine: Engine, lock: WriteLock) -> Iterator[Connection]:
    """A transaction that holds ``lock`` from its first statement to its commit.

    PostgreSQL: ``pg_advisory_xact_lock`` — writers of the same lock wait in turn, other
    writers go on. SQLite: ``BEGIN IMMEDIATE`` takes the database's write lock at once (a
    deferred transaction that reads first and writes later could not be serialised: its
    upgrade to the write lock fails when another writer came between). The block's statements
    are committed when it ends without an exception, rolled back otherwise.
    """
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            # Instances starting together wait for the one that migrates, however long that
            # takes on a busy machine (the engine's usual 5 s made them fail with "locked").
            wait_ms = MIGRATION_WAIT_MS if lock is WriteLock.MIGRATIONS else None
            if wait_ms is not None:
                conn.exec_driver_sql(f"PRAGMA busy_timeout={wait_ms}")
            try:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            finally:
                if wait_ms is not None:
                    conn.exec_driver_sql(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
        else:
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": int(lock)})
        yield conn
        conn.commit()
