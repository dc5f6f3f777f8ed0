"""Check that the tables (``vaka.central.storage.tables``) and the migrations agree: upgrade a
fresh database to the newest revision and let Alembic's autogenerate compare it with the
tables; any difference fails, with what it is. Runs on SQLite, and on a throw-away PostgreSQL
cluster where the server is installed (``make lint``).

A change to the tables needs a revision; make its first draft with::

    .venv/bin/python scripts/check_migrations.py --new "what changed"

and read it before committing (autogenerate misses renames and data moves).
"""

import argparse
import sys
import tempfile
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from vaka.central.storage import migrate
from vaka.central.storage.engine import open_engine
from vaka.central.storage.tables import metadata
from vaka.devstack import postgres


def differences(url: str) -> list[object]:
    """What autogenerate would change in a database freshly upgraded to the newest revision."""
    engine = open_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


def new_revision(message: str) -> None:
    """Draft a revision for what the tables have and the migrations lack (on SQLite)."""
    with tempfile.TemporaryDirectory() as work:
        engine = open_engine(f"sqlite:///{Path(work) / 'draft.db'}")
        try:
            with engine.begin() as conn:
                command.revision(migrate.alembic_config(conn), message=message, autogenerate=True)
        finally:
            engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--new", metavar="MESSAGE", help="draft a new revision instead")
    args = parser.parse_args()
    if args.new:
        new_revision(args.new)
        return 0
    failed = False
    with tempfile.TemporaryDirectory() as work:
        found = {"sqlite": differences(f"sqlite:///{Path(work) / 'check.db'}")}
    if postgres.available():
        with postgres.PostgresCluster.start_new() as cluster:
            found["postgresql"] = differences(cluster.empty_database())
    else:
        print("check_migrations: PostgreSQL's server is not installed: checked SQLite only")
    for backend, diff in found.items():
        if diff:
            failed = True
            print(f"check_migrations: the tables and the migrations differ on {backend}:")
            for item in diff:
                print(f"  {item}")
    if failed:
        print('make a revision: .venv/bin/python scripts/check_migrations.py --new "what changed"')
        return 1
    print(f"check_migrations: tables and migrations agree at {migrate.head()} ({', '.join(found)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
