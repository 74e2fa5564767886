"""Schema migrations (Alembic): a database made by an older release upgrades in place.

On PostgreSQL an upgrade also makes the time partitions due (``hie.index.partitions``): the
months ahead, and the months of any row waiting in a DEFAULT partition.

``hie serve`` migrates at every start, and nearly always the schema is already current.
That case is answered from the ``alembic_version`` row and the revision files' names, without
importing Alembic (about 0.2 s of start-up); Alembic is loaded only when there is work to do.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, inspect, text

from hie.index import partitions

if TYPE_CHECKING:
    from alembic.config import Config

HERE = Path(__file__).resolve().parent / "migrations"
VERSIONS = HERE / "versions"


def alembic_config() -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    return cfg


def newest_revision() -> str:
    """The head revision, from the file names: each revision's id is its file's four-digit
    prefix (``0004_partitions.py`` is ``0004``; a test holds the files to that)."""
    return max(p.name[:4] for p in VERSIONS.glob("[0-9][0-9][0-9][0-9]_*.py"))


def is_current(conn: Connection) -> bool:
    """The database is at the newest revision (and so needs no Alembic)."""
    if not inspect(conn).has_table("alembic_version"):
        return False
    stamped = [r[0] for r in conn.execute(text("SELECT version_num FROM alembic_version"))]
    return stamped == [newest_revision()]


# pg_advisory_xact_lock's key for schema changes: any constant, the same in every process
MIGRATION_LOCK = 0x6869_6520_6D69_67  # "hie mig"


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate to ``revision``, one process at a time.

    API processes started together on a new database each migrate at start: without a lock
    all but one failed on PostgreSQL (``duplicate key value violates unique constraint
    "pg_type_typname_nsp_index"``, two creating the same table), and so could two making the
    same month's partition. PostgreSQL takes a transaction advisory lock; SQLite a write
    transaction from the start (BEGIN IMMEDIATE), which the others wait for. Whoever comes
    second finds the schema current.
    """
    with engine.connect() as conn:
        conn.info["write"] = True  # SQLite: BEGIN IMMEDIATE (hie.index.store.create_engine)
        try:
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    lock = text("SELECT pg_advisory_xact_lock(:key)")
                    conn.execute(lock, {"key": MIGRATION_LOCK})
                if revision == "head" and is_current(conn):
                    partitions.ensure_in(conn)
                    return
                from alembic import command

                cfg = alembic_config()
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, revision)
                partitions.ensure_in(conn)
        finally:
            conn.info.pop("write", None)


def include_name(name: str | None, kind: str, _parent: object) -> bool:
    """Alembic's filter: monthly partitions are made at run time (``hie.index.partitions``),
    not by revisions, so autogenerate must neither compare them nor offer to drop them."""
    return not (kind == "table" and name is not None and partitions.is_partition(name))


def current(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()
