"""The app factory: ``create_app(settings)`` builds the exchange and its HTTP edge.

Every error leaves as an OperationOutcome: domain errors (``FhirError``) with their own
status, request-shape errors as 400, unknown routes as 404, a database that cannot be reached
as 503 with Retry-After, anything unexpected as a 500 whose traceback goes to the log only.
"""

from __future__ import annotations

import logging

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from hie.api import fhir as fhir_routes
from hie.api import patients, recognition
from hie.api.deps import lifespan
from hie.api.responses import error, fhir
from hie.exchange import Exchange
from hie.outcome import (
    FhirError,
    Invalid,
    Issue,
    MethodNotAllowed,
    NotFound,
    Unavailable,
    operation_outcome,
)
from hie.services import build_exchange
from hie.settings import Settings
from hie.writes import Writer

log = logging.getLogger("hie.api")


def create_app(settings: Settings, exchange: Exchange | None = None) -> FastAPI:
    exchange = exchange or build_exchange(settings)
    app = FastAPI(
        title="hie",
        version="0.1.0",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.exchange = exchange
    app.state.writer = Writer(exchange)

    @app.exception_handler(FhirError)
    async def _fhir_error(_: Request, exc: FhirError) -> Response:
        return error(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> Response:
        issues = [
            Issue(str(e.get("msg")), expression=".".join(str(p) for p in e.get("loc", ())))
            for e in exc.errors()
        ]
        return error(Invalid("The request is malformed", issues=issues))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return error(NotFound("No such endpoint"))
        if exc.status_code == 405:
            return error(MethodNotAllowed("Method not allowed on this endpoint"))
        return fhir(
            orjson.dumps(operation_outcome([Issue(str(exc.detail), "processing")])),
            exc.status_code,
        )

    @app.exception_handler(OperationalError)
    async def _database_unavailable(_: Request, exc: OperationalError) -> Response:
        # a lost or refused connection, a failover, SQLite busy past its timeout: nothing
        # was written (the transaction rolled back), so the client may simply retry
        log.warning("database unavailable: %s", exc.orig)
        return error(
            Unavailable(
                "The database is unavailable; nothing was changed. Retry shortly.",
                headers={"Retry-After": "5"},
            )
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> Response:
        log.exception("unexpected error", exc_info=exc)
        return fhir(
            orjson.dumps(
                operation_outcome([Issue("Internal error; it has been logged", "exception")])
            ),
            500,
        )

    app.include_router(patients.router)
    app.include_router(recognition.router)  # before /fhir/{type}/{id} claims $prior-results
    app.include_router(fhir_routes.router)
    return app
