"""Alembic environment: run by ``hie.migrate`` (the CLI and app factory), never at import time."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import hie.index.tables  # noqa: F401  (registers the tables on SQLModel.metadata)
from hie.migrate import include_name

config = context.config
target_metadata = SQLModel.metadata


def run_migrations_online() -> None:
    connection = config.attributes["connection"]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_name=include_name,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
