"""Store.read and Store.write: what each backend's connection is in while the block runs.

A read runs in autocommit on both backends (on PostgreSQL no BEGIN or COMMIT round trips:
READ COMMITTED gives each statement its own snapshot anyway); it must not leak that mode into
the next write on the same pooled connection.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import Connection, text

from hie.index.store import Store, create_engine


@contextmanager
def probe_store(database_url: str, table: str, columns: str) -> Iterator[Store]:
    """A Store on one pooled connection (reads and writes share it) with a scratch table
    ``table (columns)``, dropped afterwards: the PostgreSQL test database is shared with the
    schema tests."""
    engine = create_engine(database_url, pool_size=1)
    with engine.begin() as conn:
        conn.execute(text(f"DROP TABLE IF EXISTS {table}"))
        conn.execute(text(f"CREATE TABLE {table} ({columns})"))
    try:
        yield Store(engine)
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"DROP TABLE {table}"))
        engine.dispose()


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    with probe_store(database_url, "tx_probe", "x INTEGER") as found:
        yield found


def _count(store: Store) -> int:
    with store.read() as conn:
        return int(conn.execute(text("SELECT count(*) FROM tx_probe")).scalar_one())


def test_a_failed_write_after_a_read_is_rolled_back(store: Store) -> None:
    for _ in range(2):
        assert _count(store) == 0
        with pytest.raises(RuntimeError), store.write() as conn:
            conn.execute(text("INSERT INTO tx_probe VALUES (1)"))
            raise RuntimeError("refused")
    with store.write() as conn:
        conn.execute(text("INSERT INTO tx_probe VALUES (2)"))
    assert _count(store) == 1


def test_a_read_opens_no_transaction(database_url: str, store: Store) -> None:
    with store.read() as conn:
        conn.execute(text("SELECT count(*) FROM tx_probe")).all()
        assert not _in_transaction(conn)
    with store.write() as conn:
        conn.execute(text("INSERT INTO tx_probe VALUES (1)"))
        assert _in_transaction(conn)
    with store.read() as conn:  # the pooled connection did not keep the write's mode
        conn.execute(text("SELECT count(*) FROM tx_probe")).all()
        assert not _in_transaction(conn)


def test_each_statement_of_a_read_sees_what_was_committed_before_it(
    database_url: str, store: Store
) -> None:
    """READ COMMITTED on both backends: a read is not one snapshot."""
    other = Store(create_engine(database_url))
    with store.read() as conn:
        before = conn.execute(text("SELECT count(*) FROM tx_probe")).scalar_one()
        with other.write() as w:
            w.execute(text("INSERT INTO tx_probe VALUES (1)"))
        after = conn.execute(text("SELECT count(*) FROM tx_probe")).scalar_one()
    assert (before, after) == (0, 1)
    other.engine.dispose()


def _in_transaction(conn: Connection) -> bool:
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None
    if conn.dialect.name == "sqlite":
        return bool(dbapi.in_transaction)  # type: ignore[attr-defined]
    from psycopg.pq import TransactionStatus

    status = dbapi.info.transaction_status  # type: ignore[attr-defined]
    return bool(status != TransactionStatus.IDLE)
