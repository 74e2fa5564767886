"""``hie.api.deps.run_read``: a hot read runs on the event loop for SQLite (CPU in this
process) and in a worker thread for PostgreSQL (so the loop serves other requests while the
database answers). Written for issue 8 (PostgreSQL search under 32 connections)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from hie.api.deps import run_read
from hie.exchange import Exchange
from hie.outcome import NotFound


def test_a_read_runs_where_its_backend_wants_it(exchange: Exchange) -> None:
    async def main() -> tuple[int, int]:
        return threading.get_ident(), await run_read(exchange, threading.get_ident)

    loop_thread, read_thread = asyncio.run(main())
    if exchange.store.dialect == "postgresql":
        assert read_thread != loop_thread
    else:
        assert read_thread == loop_thread


def test_an_error_in_the_read_reaches_the_caller(exchange: Exchange) -> None:
    """A FhirError raised in the worker thread still becomes the route's OperationOutcome."""

    def missing() -> None:
        raise NotFound("Patient/x is not known", expression="Patient.id")

    with pytest.raises(NotFound, match="Patient/x"):
        asyncio.run(run_read(exchange, missing))
