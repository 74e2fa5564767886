"""Store.grew: PostgreSQL's planner statistics kept current while a fresh index fills up.

Written for issue 8: on a fresh index PostgreSQL kept planning for empty tables (a hash of all
of ``exchange_patient`` for each patient-matching decision) until autovacuum came by. The
store ANALYZEs the tables ingest reads each time this process has doubled the index, from
1,000 resources. Input is a tiny synthetic city (bench/city.py).
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import event, text

from adapters.base import Batch
from hie.exchange import Exchange
from hie.index.store import ANALYZE_FLOOR
from tests.hie.test_ingest_batch import _unit, lines  # noqa: F401  (the fixture)


def _estimate_and_count(exchange: Exchange) -> tuple[float, int]:
    with exchange.store.read() as conn:
        estimate = conn.execute(
            text("SELECT reltuples FROM pg_class WHERE oid = to_regclass('resource')")
        ).scalar_one()
        count = conn.execute(text("SELECT count(*) FROM resource")).scalar_one()
    return float(estimate), int(count)


def test_the_index_is_analyzed_each_time_this_process_doubles_it(
    exchange: Exchange,
    lines: tuple[str, list[bytes]],  # noqa: F811
) -> None:
    store = exchange.store
    if store.dialect == "sqlite":
        assert not store.grew(10 * ANALYZE_FLOOR)  # no statistics to go stale: nothing runs
        return
    with store.read() as conn:
        conn.execute(text("ANALYZE resource"))  # an empty index, as its estimate says
    hospital, raw = lines
    batch = Batch(hospital, "test", [_unit(x, f"u{n}", hospital) for n, x in enumerate(raw)])
    result = exchange.ingestor.ingest(batch)  # ingest tells the store what it created
    created = sum(w.status == "created" for i in result.items for w in i.written)
    assert 0 < created < ANALYZE_FLOOR
    estimate, count = _estimate_and_count(exchange)
    assert estimate == 0 and count > 0  # not analyzed yet: below the floor

    threads: list[threading.Thread] = []

    def watch(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("ANALYZE"):
            threads.append(threading.current_thread())

    event.listen(store.engine, "before_cursor_execute", watch)
    try:
        assert store.grew(ANALYZE_FLOOR - created)  # the floor reached
        store.analyzed()
    finally:
        event.remove(store.engine, "before_cursor_execute", watch)
    assert threads and threading.current_thread() not in threads  # the writer did not wait
    estimate, count = _estimate_and_count(exchange)
    assert estimate == count  # ANALYZE ran on resource

    assert not store.grew(ANALYZE_FLOOR - 1)  # the index is "1,000" now: doubling needs 1,000
    assert store.grew(1)
    assert not store.grew(2 * ANALYZE_FLOOR - 1)
    assert store.grew(1)
    store.analyzed()


def test_an_index_already_large_is_left_to_autovacuum(exchange: Exchange) -> None:
    store = exchange.store
    if store.dialect == "sqlite":
        pytest.skip("PostgreSQL only: SQLite's statistics are not kept by the store")
    with store.read() as conn:  # what pg_class says of an index of a million resources
        conn.execute(
            text("UPDATE pg_class SET reltuples = 1e6 WHERE oid = to_regclass('resource')")
        )
    try:
        assert not store.grew(500_000)
        assert store.grew(500_000)
        store.analyzed()
    finally:
        with store.read() as conn:
            conn.execute(text("ANALYZE resource"))
