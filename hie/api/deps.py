"""Named FastAPI dependencies, so routes read like sentences: ``read(exchange, principal, id)``.

They are ``async def`` on purpose: none of them waits on anything (the token check is a
cached HMAC), and FastAPI runs every plain ``def`` dependency through the thread pool, one
hand-off per dependency per request (three of the four a search took).
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, TypeVar

from fastapi import Depends, FastAPI, Request

from hie.auth import Principal, verify
from hie.exchange import Exchange
from hie.writes import Writer

T = TypeVar("T")


async def run_read(exchange: Exchange, read: Callable[[], T]) -> T:
    """A hot read (search, ``$prior-results``): on the event loop for SQLite, in a worker
    thread for PostgreSQL.

    On SQLite the read is CPU in this process, and a thread hand-off would only add its own
    cost (about 0.5 ms of CPU a request, measured for plain ``def`` routes). On PostgreSQL a
    search spent about a third of its time in psycopg waiting for the server, with the event
    loop blocked meanwhile; in a thread the loop serves other requests. Under 32 connections
    (the bench's search paths, city-small, one server core, two alternating pairs) that went
    745–795 → 1,076–1,093 requests/s. asyncio's default executor keeps the threads few
    (CPUs + 4), fewer than the connection pool.
    """
    if exchange.store.dialect == "postgresql":
        return await asyncio.get_running_loop().run_in_executor(None, read)
    return read()


async def get_exchange(request: Request) -> Exchange:
    exchange: Exchange = request.app.state.exchange
    return exchange


async def get_writer(request: Request) -> Writer:
    writer: Writer = request.app.state.writer
    return writer


async def get_principal(request: Request) -> Principal:
    """The one authentication step every protected route passes through."""
    exchange: Exchange = request.app.state.exchange
    return verify(exchange.settings.jwt_secret, request.headers.get("authorization"))


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """What runs beside the routes while the app serves: the audit trail's background writer
    (:meth:`hie.audit.Auditor.start`); at shutdown every queued audit row is written. Start-up
    ends by freezing the heap built so far out of the garbage collector's reach."""
    exchange: Exchange = app.state.exchange
    exchange.auditor.start()
    # Everything loaded so far (modules, models, the catalogue, the configuration) lives as
    # long as the process: freezing it keeps it out of every later collection. A full
    # collection of the unfrozen heap took ~67 ms, paid by whichever request triggered it:
    # that was $prior-results' p99 (issue 8).
    gc.freeze()
    try:
        yield
    finally:
        exchange.auditor.stop()


ExchangeDep = Annotated[Exchange, Depends(get_exchange)]
WriterDep = Annotated[Writer, Depends(get_writer)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
