"""Serialised writers: the one way for writers that must see each other's rows (the audit
chain's next sequence number, schema migrations) to take turns, on both databases —
PostgreSQL's advisory transaction locks, SQLite's database write lock (``BEGIN IMMEDIATE``)."""

import contextlib
import enum
from collections.abc import Iterator

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine


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
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": int(lock)})
        yield conn
        conn.commit()
