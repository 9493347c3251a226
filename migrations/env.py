"""Alembic environment: runs migrations on a connection we are handed, or on the configured database."""

from alembic import context

from imagesearch_pg.config import Settings
from imagesearch_pg.store.database import Database


def run() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _migrate(connection)
        return
    # Invoked as the plain `alembic` command: use the same database the service would.
    database = Database.connect(Settings.from_env())
    try:
        with database.engine.begin() as connection:
            _migrate(connection)
    finally:
        database.close()


def _migrate(connection) -> None:
    context.configure(connection=connection, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported: they run dynamic SQL files")
run()
