"""FHIR R4 REST routes at /fhir: thin HTTP around :class:`hie.exchange.Exchange` and the writer."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import Response

from hie.api.deps import (
    ExchangeDep,
    PrincipalDep,
    WriterDep,
    get_exchange,
    get_principal,
    run_read,
)
from hie.api.responses import (
    check_content_type,
    fhir,
    prefer,
    query_pairs,
    read_body,
    resource_headers,
)
from hie.bundle import history as history_bundle
from hie.capability import capability_statement
from hie.fhir import SUPPORTED_TYPES
from hie.outcome import Invalid, MethodNotAllowed, NotFound
from hie.writes import WriteResult

router = APIRouter(prefix="/fhir")


async def _type(rtype: str) -> str:  # async: no thread-pool hand-off (see hie.api.deps)
    if rtype not in SUPPORTED_TYPES:
        raise NotFound(
            f"Resource type {rtype!r} is not supported here (see /fhir/metadata)",
            expression="type",
        )
    return rtype


def _id(rid: str) -> str:
    # FHIR id: [A-Za-z0-9\-\.]{1,64} (R4 §2.24.0.1); str.isalnum alone lets "中" or "²" through
    if not (0 < len(rid) <= 64) or not all((c.isascii() and c.isalnum()) or c in "-." for c in rid):
        raise Invalid(f"{rid[:80]!r} is not a valid FHIR id", expression="id")
    return rid


TypeDep = Annotated[str, Depends(_type)]


@router.get("/metadata")
def metadata(exchange: ExchangeDep) -> Response:
    ops = getattr(exchange, "operations", [])
    return fhir(orjson.dumps(capability_statement(exchange.base, ops)))


@router.post("")
@router.post("/")
async def transaction(request: Request, principal: PrincipalDep, writer: WriterDep) -> Response:
    check_content_type(request)
    body = await read_body(request, writer.exchange.settings.max_body_bytes)
    status, bundle = writer.bundle(principal, body)
    return fhir(orjson.dumps(bundle), status)


def _strict(request: Request) -> bool:
    return prefer(request, "handling") == "strict"


@router.get("/{rtype}")
async def search(request: Request) -> Response:
    """The hot lookup (``Observation?patient=&code=&date=``), so: ``async`` (a plain ``def``
    is handed to the thread pool and back, about 0.5 ms of CPU per request) and its type,
    principal and exchange taken by the same functions the named dependencies use, in the
    same order, but called here: FastAPI's dependency solving cost about 0.15 ms a search.
    The work itself is a few indexed reads of about 0.1 ms; on SQLite it runs on the event
    loop, on PostgreSQL in a thread while the loop serves others (:func:`run_read`)."""
    rtype = await _type(request.path_params["rtype"])
    principal = await get_principal(request)
    exchange = await get_exchange(request)
    pairs, strict = query_pairs(request), _strict(request)
    body = await run_read(exchange, lambda: exchange.search(principal, rtype, pairs, strict=strict))
    return fhir(body)


@router.post("/{rtype}/_search")
async def search_post(
    rtype: TypeDep, request: Request, principal: PrincipalDep, exchange: ExchangeDep
) -> Response:
    raw = await request.body()
    if len(raw) > 100_000:
        raise Invalid("The search form is too large")
    pairs = query_pairs(request) + parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True)
    strict = _strict(request)
    return fhir(
        await run_read(exchange, lambda: exchange.search(principal, rtype, pairs, strict=strict))
    )


def _write_response(request: Request, result: WriteResult, exchange: ExchangeDep) -> Response:
    w = result.written
    headers = {
        "Location": f"{exchange.base}/{w.type}/{w.id}/_history/{w.version}",
        **(resource_headers(w.version, w.last_updated) if w.last_updated else {}),
    }
    status = 201 if result.created else 200
    if prefer(request, "return") == "minimal":
        return Response(status_code=status, headers=headers)
    if prefer(request, "return") == "OperationOutcome":
        from hie.outcome import information

        return fhir(orjson.dumps(information(f"{w.type}/{w.id} {w.status}")), status, headers)
    return fhir(w.body or b"", status, headers)


@router.post("/{rtype}")
async def create(
    rtype: TypeDep,
    request: Request,
    principal: PrincipalDep,
    writer: WriterDep,
    if_none_exist: Annotated[str | None, Header()] = None,
) -> Response:
    check_content_type(request)
    body = await read_body(request, writer.exchange.settings.max_body_bytes)
    result = writer.create(principal, rtype, body, if_none_exist=if_none_exist)
    return _write_response(request, result, writer.exchange)


@router.put("/{rtype}")
async def conditional_update(
    rtype: TypeDep, request: Request, principal: PrincipalDep, writer: WriterDep
) -> Response:
    check_content_type(request)
    body = await read_body(request, writer.exchange.settings.max_body_bytes)
    result = writer.conditional_update(principal, rtype, query_pairs(request), body)
    return _write_response(request, result, writer.exchange)


@router.get("/{rtype}/{rid}")
def read(rtype: TypeDep, rid: str, principal: PrincipalDep, exchange: ExchangeDep) -> Response:
    cur = exchange.read(principal, rtype, _id(rid))
    return fhir(cur.body, headers=resource_headers(cur.version_id, cur.last_updated))


@router.put("/{rtype}/{rid}")
async def update(
    rtype: TypeDep,
    rid: str,
    request: Request,
    principal: PrincipalDep,
    writer: WriterDep,
    if_match: Annotated[str | None, Header()] = None,
) -> Response:
    check_content_type(request)
    body = await read_body(request, writer.exchange.settings.max_body_bytes)
    result = writer.update(principal, rtype, _id(rid), body, if_match)
    return _write_response(request, result, writer.exchange)


@router.delete("/{rtype}/{rid}")
def delete(rtype: TypeDep, rid: str, principal: PrincipalDep) -> Response:
    raise MethodNotAllowed(
        "Results are never deleted from the exchange: send the resource again with status "
        "entered-in-error; it leaves search results and stays in history",
        expression=f"{rtype}.status",
    )


@router.get("/{rtype}/{rid}/_history")
def history(rtype: TypeDep, rid: str, principal: PrincipalDep, exchange: ExchangeDep) -> Response:
    versions = exchange.history(principal, rtype, _id(rid))
    return fhir(history_bundle(exchange.base, rtype, rid, versions))


@router.get("/{rtype}/{rid}/_history/{vid}")
def vread(
    rtype: TypeDep, rid: str, vid: str, principal: PrincipalDep, exchange: ExchangeDep
) -> Response:
    # ASCII digits that fit the version column (a 20-digit id overflowed it: 500)
    if not (vid.isascii() and vid.isdigit() and len(vid) <= 9):
        raise NotFound(f"{vid!r} is not a version id", expression="vid")
    body, updated = exchange.vread(principal, rtype, _id(rid), int(vid))
    return fhir(body, headers=resource_headers(int(vid), updated))
