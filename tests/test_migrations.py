"""The schema's migrations: a database made by the previous release, with its data, upgrades to
the newest revision intact, on SQLite and on PostgreSQL; instances starting together upgrade
once; read-only tools refuse an outdated schema with what to do."""

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Table, func, inspect, select, text
from sqlalchemy.engine import Engine

from tests.test_audit import cli
from vaka.central.audit.trail import AuditLog
from vaka.central.directory.directory import Directory
from vaka.central.service import CentralService
from vaka.central.storage import migrate
from vaka.central.storage.engine import open_engine
from vaka.central.storage.tables import audit, metadata, staff, units
from vaka.devstack.postgres import PostgresCluster
from vaka.devstack.stack import LocalStack
from vaka.errors import RegistryError

#: what release 0.1.0 stored (the last release without migrations), as portable INSERTs
PREVIOUS_RELEASE_ROWS = Path(__file__).parent / "data" / "central-0.1.0.sql"
#: the revision that is release 0.1.0's schema
FIRST_REVISION = "0001"


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database without any table, on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    url = cluster.empty_database()
    yield url
    cluster.drop_database(url)


def previous_release(url: str) -> Engine:
    """A database as release 0.1.0 left it: its schema (the first revision), no revision
    table (that release made its tables with ``create_all``), and its rows."""
    engine = open_engine(url, upgrade=False)
    migrate.upgrade(engine, FIRST_REVISION)
    statements = [
        line for line in PREVIOUS_RELEASE_ROWS.read_text().splitlines() if line.startswith("INSERT")
    ]
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE alembic_version"))
        for statement in statements:
            conn.exec_driver_sql(statement)
    assert migrate.current(engine) is None
    return engine


def counts(engine: Engine, names: set[str] | None = None) -> dict[str, int]:
    """Rows per table of ``names`` (default: every table the database has now)."""
    names = set(inspect(engine).get_table_names()) if names is None else names
    with engine.connect() as conn:
        return {
            t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in metadata.sorted_tables
            if t.name in names
        }


def kept(table: Table, old_columns: dict[str, list[str]]) -> list[Column[Any]]:
    """``table``'s columns that the previous release had."""
    return [table.c[name] for name in old_columns[table.name]]


def test_a_database_of_the_previous_release_upgrades_with_its_data_intact(empty_url: str) -> None:
    engine = previous_release(empty_url)
    before = counts(engine)
    assert before["audit"] == 5 and before["staff"] == 2 and before["alerts"] == 1
    # The columns that release had (a later revision may add columns to its tables).
    old_columns = {name: [c["name"] for c in inspect(engine).get_columns(name)] for name in before}
    with engine.connect() as conn:
        rows_before = {
            t.name: sorted(map(tuple, conn.execute(select(*kept(t, old_columns)))))
            for t in metadata.sorted_tables
            if t.name in before
        }

    done = migrate.upgrade(engine)
    assert (done.before, done.after) == (None, migrate.head())
    assert migrate.current(engine) == migrate.head()
    after = counts(engine)
    assert {name: after[name] for name in before} == before
    # Tables of later releases are there, empty.
    assert set(after) == {t.name for t in metadata.sorted_tables}
    assert all(after[name] == 0 for name in set(after) - set(before))
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            if table.name in rows_before:
                rows = sorted(map(tuple, conn.execute(select(*kept(table, old_columns)))))
                assert rows == rows_before[table.name]
    # The data still works: the chain verifies and goes on, the directory and registry read it.
    trail = AuditLog(engine)
    assert trail.verify().ok and trail.verify().entries == 5
    assert trail.append("test", actor="s-support").seq == 6
    assert trail.verify().ok
    assert Directory(engine).language_of("n-asa") is None
    with engine.connect() as conn:
        assert (
            conn.execute(select(staff.c.display_name).where(staff.c.staff_id == "n-asa")).scalar()
            == "Åsa Öberg"
        )
        assert (
            conn.execute(select(units.c.bdseq).where(units.c.device_id == "u-nc-1")).scalar() == 7
        )
    # A second start finds nothing to do.
    again = migrate.upgrade(engine)
    assert (again.before, again.after) == (migrate.head(), migrate.head())
    engine.dispose()


def test_an_older_sessions_table_is_replaced_and_everything_else_kept(empty_url: str) -> None:
    """Before migrations, the sessions table once lacked the idle time-out's columns: the first
    revision recreates it (everyone logs in again) and creates the tables that were missing."""
    engine = previous_release(empty_url)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE staff_sessions"))
        conn.execute(text("DROP TABLE citizen_privacy"))
        conn.execute(
            text(
                "CREATE TABLE staff_sessions (token_hash VARCHAR(64) PRIMARY KEY,"
                " staff_id VARCHAR(64) NOT NULL, expires_at FLOAT NOT NULL)"
            )
        )
        conn.execute(text("INSERT INTO staff_sessions VALUES ('h', 'n-asa', 1.0)"))
    migrate.upgrade(engine)
    names = set(inspect(engine).get_table_names())
    assert {t.name for t in metadata.sorted_tables} <= names
    session_columns = {c["name"] for c in inspect(engine).get_columns("staff_sessions")}
    assert {"idle_timeout_s", "csrf_hash", "ended"} <= session_columns
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(audit)).scalar_one() == 5
    engine.dispose()


def test_instances_starting_together_upgrade_once(empty_url: str) -> None:
    """Four instances open an empty database at once: one migrates while the others wait on
    the lock, then find the newest revision; nobody fails."""
    engines: list[Engine] = []
    errors: list[BaseException] = []
    results: list[migrate.Upgrade] = []
    start = threading.Barrier(4)

    def instance() -> None:
        try:
            engine = open_engine(empty_url, upgrade=False)
            engines.append(engine)
            start.wait()
            results.append(migrate.upgrade(engine))
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=instance) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sum(r.before is None for r in results) == 1, results
    assert all(r.after == migrate.head() for r in results)
    assert counts(engines[0])["audit"] == 0
    for engine in engines:
        engine.dispose()


def test_db_upgrade_and_the_read_only_tools(empty_url: str) -> None:
    previous_release(empty_url).dispose()
    refused = cli("audit", "verify", "--database", empty_url)
    assert refused.returncode == 2
    assert (
        "no Vaka schema revision" in refused.stderr and "vaka-central db upgrade" in refused.stderr
    )
    current = cli("db", "current", "--database", empty_url)
    assert current.returncode == 0
    assert (
        current.stdout.strip()
        == f"database at revision none; this release's newest is {migrate.head()}"
    )
    upgraded = cli("db", "upgrade", "--database", empty_url)
    assert upgraded.returncode == 0, upgraded.stderr
    assert (
        upgraded.stdout.strip()
        == f"database schema upgraded from revision none to {migrate.head()}"
    )
    again = cli("db", "upgrade", "--database", empty_url)
    assert again.stdout.strip() == f"database schema already at revision {migrate.head()}"
    verified = cli("audit", "verify", "--database", empty_url)
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.strip() == "audit trail intact: 5 entries"


def test_central_told_not_to_upgrade_refuses_an_older_schema(
    stack: LocalStack, empty_url: str
) -> None:
    previous_release(empty_url).dispose()
    config = stack.central_config(database=empty_url)
    kept = config.model_copy(
        update={"database": config.database.model_copy(update={"upgrade_at_start": False})}
    )
    with pytest.raises(RegistryError, match=r"no Vaka schema revision.*vaka-central db upgrade"):
        CentralService(kept)
    assert migrate.current(open_engine(empty_url, upgrade=False)) is None  # left alone
    central = CentralService(config)  # the default: upgraded at start
    assert migrate.current(central.engine) == migrate.head()
    central.engine.dispose()
