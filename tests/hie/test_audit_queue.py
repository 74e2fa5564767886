"""The audit trail written in the background: every queued row reaches the table.

Reads hand their audit rows to :class:`hie.audit.Auditor`'s queue once the app runs; these
tests pin what that may and may not change: rows appear after a flush and at shutdown (the
app's lifespan), rows inside a caller's transaction are never queued, and without ``start``
every row is written at once. Written for issue 8 (lookups).
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from hie.api.app import create_app
from hie.audit import AUDIT, Auditor
from hie.auth import Principal, verify
from hie.exchange import Exchange
from hie.outcome import Unauthorized
from hie.settings import Settings
from tests.conftest import SECRET, auth, token

READER = Principal("client-szph", "szph", frozenset({"system/*.rs"}))


def _count(exchange: Exchange) -> int:
    with exchange.store.read() as conn:
        return int(conn.execute(select(func.count()).select_from(AUDIT)).scalar_one())


def _read(auditor: Auditor, n: int) -> None:
    for i in range(n):
        auditor.record(READER, "read", resource_type="Observation", resource_ids=[f"o{i}"])


def test_without_start_every_row_is_written_at_once(exchange: Exchange) -> None:
    _read(exchange.auditor, 2)
    assert _count(exchange) == 2


def test_queued_rows_appear_after_a_flush_and_at_stop(exchange: Exchange) -> None:
    auditor = Auditor(exchange.store, interval_s=3600, max_rows=10_000)
    auditor.start()
    try:
        _read(auditor, 3)
        assert _count(exchange) == 0  # queued, not yet written
        assert auditor.flush() == 3
        assert _count(exchange) == 3
        _read(auditor, 2)
    finally:
        auditor.stop()
    assert _count(exchange) == 5
    _read(auditor, 1)  # stopped: synchronous again
    assert _count(exchange) == 6


def test_the_background_thread_writes_within_its_interval(exchange: Exchange) -> None:
    auditor = Auditor(exchange.store, interval_s=0.05)
    auditor.start()
    try:
        _read(auditor, 4)
        deadline = time.monotonic() + 10
        while _count(exchange) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _count(exchange) == 4
    finally:
        auditor.stop()


def test_rows_in_a_callers_transaction_are_not_queued(exchange: Exchange) -> None:
    auditor = Auditor(exchange.store, interval_s=3600)
    auditor.start()
    try:
        with exchange.store.write() as conn:
            auditor.record(READER, "create", resource_type="Observation", conn=conn)
        assert _count(exchange) == 1
    finally:
        auditor.stop()


def _serve(app: FastAPI, paths: list[str], headers: dict[str, str]) -> list[int]:
    """GET each path through the app with its lifespan running (as uvicorn runs it)."""

    async def run() -> list[int]:
        async with app.router.lifespan_context(app):
            assert app.state.exchange.auditor.queued
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                return [(await c.get(p, headers=headers)).status_code for p in paths]

    return asyncio.run(run())


@pytest.fixture(autouse=True)
def _unfreeze() -> Iterator[None]:
    """The lifespan freezes the heap (see the next test); the test process gets it back."""
    yield
    gc.unfreeze()


def test_start_up_freezes_the_heap_it_built(settings: Settings, exchange: Exchange) -> None:
    """Objects alive once the app has started are out of every later collection's reach."""
    app = create_app(settings, exchange)
    gc.unfreeze()
    frozen: list[int] = []

    async def run() -> None:
        async with app.router.lifespan_context(app):
            frozen.append(gc.get_freeze_count())
            assert gc.is_tracked(app.state.exchange.searcher)
            assert not any(o is app.state.exchange.searcher for o in gc.get_objects())

    asyncio.run(run())
    assert frozen and frozen[0] > 0


def test_the_app_writes_queued_reads_at_shutdown(settings: Settings, exchange: Exchange) -> None:
    exchange.auditor.interval_s = 3600  # only the shutdown flush can write them
    app = create_app(settings, exchange)
    statuses = _serve(app, ["/fhir/Observation?code=2345-7"] * 3, auth())
    assert statuses == [200, 200, 200]
    assert not exchange.auditor.queued
    assert _count(exchange) == 3


def test_a_cached_token_still_expires_and_a_bad_one_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    good = token()
    first = verify(SECRET, f"Bearer {good}")
    assert verify(SECRET, f"Bearer {good}") is first  # verified once, then from the cache
    with pytest.raises(Unauthorized):
        verify("another-secret-" + "y" * 32, f"Bearer {good}")
    from hie.auth import mint

    issued = time.time()
    short = mint(SECRET, "c", lifetime_s=60, now=issued)
    assert verify(SECRET, f"Bearer {short}").client_id == "c"  # now cached
    monkeypatch.setattr(time, "time", lambda: int(issued) + 60)  # the second it expires
    with pytest.raises(Unauthorized, match="expired"):
        verify(SECRET, f"Bearer {short}")


def test_scopes_are_enforced_with_a_cached_token(settings: Settings, exchange: Exchange) -> None:
    app = create_app(settings, exchange)
    headers = auth(scopes=("system/Patient.rs",))
    assert _serve(app, ["/fhir/Observation?code=2345-7"] * 2, headers) == [403, 403]
