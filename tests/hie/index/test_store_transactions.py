"""Store.read and Store.write: what each backend's connection is in while the block runs.

A read on PostgreSQL runs in autocommit (no BEGIN or COMMIT round trips: READ COMMITTED gives
each statement its own snapshot anyway); it must not leak that mode into the next write on the
same pooled connection. A read on SQLite keeps one snapshot for all its statements.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import text

from hie.index.store import Store, create_engine


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    engine = create_engine(database_url, pool_size=1)  # one connection: reads and writes share it
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS tx_probe"))
        conn.execute(text("CREATE TABLE tx_probe (x INTEGER)"))
    yield Store(engine)
    with engine.begin() as conn:  # the PostgreSQL test database is shared with schema tests
        conn.execute(text("DROP TABLE tx_probe"))
    engine.dispose()


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


@pytest.mark.postgres
def test_a_read_on_postgresql_opens_no_transaction(database_url: str, store: Store) -> None:
    if store.dialect != "postgresql":
        pytest.skip("PostgreSQL only")
    from psycopg.pq import TransactionStatus

    with store.read() as conn:
        conn.execute(text("SELECT 1")).all()
        dbapi = conn.connection.dbapi_connection
        assert dbapi is not None
        assert dbapi.info.transaction_status == TransactionStatus.IDLE  # type: ignore[attr-defined]
    with store.write() as conn:
        conn.execute(text("INSERT INTO tx_probe VALUES (1)"))
        dbapi = conn.connection.dbapi_connection
        assert dbapi is not None
        assert dbapi.info.transaction_status == TransactionStatus.INTRANS  # type: ignore[attr-defined]


def test_a_read_on_sqlite_sees_one_snapshot(database_url: str, store: Store) -> None:
    if store.dialect != "sqlite":
        pytest.skip("SQLite only")
    other = Store(create_engine(database_url))
    with store.read() as conn:
        before = conn.execute(text("SELECT count(*) FROM tx_probe")).scalar_one()
        with other.write() as w:
            w.execute(text("INSERT INTO tx_probe VALUES (1)"))
        after = conn.execute(text("SELECT count(*) FROM tx_probe")).scalar_one()
    assert (before, after) == (0, 0)
    assert _count(store) == 1
    other.engine.dispose()
