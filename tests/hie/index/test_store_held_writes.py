"""Writes held back inside a PostgreSQL write transaction (hie.index.store, ``_HELD``).

On PostgreSQL the store's own writes wait and go together in one pipeline just before the
next statement of another kind, a COPY or the commit; on SQLite they run at once. Either way
what a transaction reads, commits and rolls back must be the same: these tests run on both.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, insert, text
from sqlalchemy.exc import IntegrityError

from hie.index.store import _HELD, Store, _Fast, savepoint
from tests.hie.index.test_store_transactions import probe_store

PROBE = Table("held_probe", MetaData(), Column("x", Integer, primary_key=True))
_PUT = _Fast(insert(PROBE))


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    with probe_store(database_url, "held_probe", "x INTEGER PRIMARY KEY") as found:
        yield found


def _rows(store: Store) -> list[int]:
    with store.read() as conn:
        return [r.x for r in conn.execute(text("SELECT x FROM held_probe ORDER BY x"))]


def test_a_transaction_reads_its_own_writes_and_commits_them(store: Store) -> None:
    with store.write() as conn:
        _PUT(conn, {"x": 1})
        _PUT(conn, [{"x": 2}, {"x": 3}])
        assert conn.execute(text("SELECT count(*) FROM held_probe")).scalar_one() == 3
        _PUT(conn, {"x": 4})  # held until the commit on PostgreSQL
    assert _rows(store) == [1, 2, 3, 4]


def test_a_write_is_held_until_the_next_statement_on_postgres(store: Store) -> None:
    with store.write() as conn:
        _PUT(conn, {"x": 1})
        _PUT(conn, {"x": 2})
        held = conn.info.get(_HELD)
        if conn.dialect.name == "sqlite":
            assert held is None  # nothing to save: each write runs at once
        else:
            assert held is not None and len(held) == 2
        assert conn.execute(text("SELECT count(*) FROM held_probe")).scalar_one() == 2
        assert not conn.info.get(_HELD)
    with store.read() as conn:  # the pooled connection holds nothing once the write is over
        assert conn.info.get(_HELD) is None


def test_a_refused_write_fails_in_its_savepoint_and_the_rest_commits(store: Store) -> None:
    with store.write() as conn:
        _PUT(conn, {"x": 1})
        with pytest.raises(IntegrityError), conn.begin_nested():
            _PUT(conn, {"x": 2})
            _PUT(conn, {"x": 1})  # a duplicate: refused here on SQLite, at the next statement
            conn.execute(text("SELECT 1")).all()  # on PostgreSQL
        _PUT(conn, {"x": 3})
    assert _rows(store) == [1, 3]


def test_a_savepoint_rolled_back_drops_what_it_held(store: Store) -> None:
    """A held write that would fail must not be sent by the rollback itself."""
    with store.write() as conn:
        _PUT(conn, {"x": 1})
        conn.execute(text("SELECT 1")).all()
        savepoint = conn.begin_nested()
        try:
            _PUT(conn, {"x": 5})
            _PUT(conn, {"x": 1})  # a duplicate, never sent on PostgreSQL
        except IntegrityError:
            assert conn.dialect.name == "sqlite"
        savepoint.rollback()
        _PUT(conn, {"x": 2})
    assert _rows(store) == [1, 2]


def test_a_transaction_rolled_back_leaves_nothing_for_the_next(store: Store) -> None:
    with pytest.raises(RuntimeError), store.write() as conn:
        _PUT(conn, {"x": 9})
        raise RuntimeError("refused")
    with store.write() as conn:  # the same pooled connection
        _PUT(conn, {"x": 1})
    assert _rows(store) == [1]


def _count(conn: Any) -> int:
    return int(conn.execute(text("SELECT count(*) FROM held_probe")).scalar_one())


def test_a_unit_savepoint_rolls_back_its_writes_whether_or_not_it_was_sent(store: Store) -> None:
    """store.savepoint: held with the writes on PostgreSQL, SQLAlchemy's own on SQLite."""
    with store.write() as conn:
        _PUT(conn, {"x": 1})
        quiet = savepoint(conn)  # nothing read inside: on PostgreSQL never sent at all
        _PUT(conn, {"x": 2})
        quiet.rollback()
        sent = savepoint(conn)
        _PUT(conn, {"x": 3})
        assert _count(conn) == 2  # the read sends the savepoint and the write
        _PUT(conn, {"x": 4})
        sent.rollback()
        kept = savepoint(conn)
        _PUT(conn, {"x": 5})
        assert _count(conn) == 2
        kept.commit()
        assert not quiet.is_active and not sent.is_active and not kept.is_active
    assert _rows(store) == [1, 5]


def test_a_refused_write_inside_a_unit_savepoint_goes_to_the_enclosing_one(store: Store) -> None:
    """As ingest does: a batch savepoint around unit savepoints; the refusal surfaces at the
    next statement, the unit's rollback queues nothing on the failed transaction, and the
    batch savepoint's rollback leaves the transaction usable."""
    with store.write() as conn:
        _PUT(conn, {"x": 1})
        with pytest.raises(IntegrityError), conn.begin_nested():
            unit = savepoint(conn)
            try:
                _PUT(conn, {"x": 2})
                _PUT(conn, {"x": 1})  # refused: at once on SQLite, at the read on PostgreSQL
                conn.execute(text("SELECT 1")).all()
            except IntegrityError:
                unit.rollback()
                raise
        assert _count(conn) == 1
        _PUT(conn, {"x": 3})
    assert _rows(store) == [1, 3]
