"""Schema migrations (Alembic): a database made by an older release upgrades in place.

On PostgreSQL an upgrade also makes the time partitions due (``hie.index.partitions``): the
months ahead, and the months of any row waiting in a DEFAULT partition.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from hie.index import partitions

HERE = Path(__file__).resolve().parent / "migrations"


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
        partitions.ensure_in(conn)


def include_name(name: str | None, kind: str, _parent: object) -> bool:
    """Alembic's filter: monthly partitions are made at run time (``hie.index.partitions``),
    not by revisions, so autogenerate must neither compare them nor offer to drop them."""
    return not (kind == "table" and name is not None and partitions.is_partition(name))


def current(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()
