"""Patient identity over HTTP: ``$match`` (PDQm), ``$ihe-pix`` (PIXm) and the ops API for the
review queue, unlink and merge. Every change is a ``link_event`` and an audit record."""

from __future__ import annotations

import math
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from hie.api.deps import ExchangeDep, PrincipalDep
from hie.api.responses import fhir, read_body
from hie.auth import Principal
from hie.fhir import check_model, parse_json
from hie.fhirtime import now_utc
from hie.identity.blocking import query_keys
from hie.identity.scoring import compare
from hie.identity.traits import from_patient
from hie.index.mpi import SqlDirectory
from hie.outcome import Forbidden, Invalid, NotFound

router = APIRouter()
MATCH_GRADE = "http://hl7.org/fhir/StructureDefinition/match-grade"


def _grade(score: float, certain: float, probable: float) -> tuple[str, float]:
    """A Fellegi–Sunter score (bits) as PDQm's match grade and a 0..1 search score."""
    if score >= certain:
        grade = "certain"
    elif score >= probable:
        grade = "probable"
    elif score >= 0:
        grade = "possible"
    else:
        grade = "certainly-not"
    return grade, round(1 / (1 + math.pow(2, -(score - probable) / 4)), 3)


@router.post("/fhir/Patient/$match")
async def match(request: Request, exchange: ExchangeDep, principal: PrincipalDep) -> Response:
    principal.require("Patient", "s")
    doc = parse_json(await read_body(request, 1_000_000))
    if not isinstance(doc, dict) or doc.get("resourceType") != "Parameters":
        raise Invalid(
            "POST a Parameters resource with a 'resource' Patient", expression="Parameters"
        )
    params = {p.get("name"): p for p in doc.get("parameter") or [] if isinstance(p, dict)}
    patient = (params.get("resource") or {}).get("resource")
    if not isinstance(patient, dict) or patient.get("resourceType") != "Patient":
        raise Invalid("parameter 'resource' must hold a Patient", expression="Parameters.parameter")
    problems = check_model(patient)
    if problems:
        raise Invalid(problems[0].diagnostics, issues=problems)
    count = int((params.get("count") or {}).get("valueInteger") or 10)
    only_certain = bool((params.get("onlyCertainMatches") or {}).get("valueBoolean"))
    traits = from_patient(patient)
    settings = exchange.registry.mpi.settings
    scored: list[tuple[float, str]] = []
    with exchange.store.read() as conn:
        directory = SqlDirectory(conn, exchange.registry)
        certain_ids = set(directory.by_identifiers(sorted(traits.identifiers)).values())
        for cand in directory.candidates(query_keys(traits)):
            c = compare(traits, cand.traits, settings.weights)
            if c.hard_nonmatch:
                continue
            bonus = settings.auto_link if cand.patient_id in certain_ids else 0.0
            scored.append((c.score + bonus, cand.patient_id))
        for pid in certain_ids - {p for _, p in scored}:
            scored.append((settings.auto_link, pid))
        scored.sort(key=lambda s: (-s[0], s[1]))
        entries = []
        for score, pid in scored:
            grade, value = _grade(score, settings.auto_link, settings.review_floor)
            if (only_certain and grade != "certain") or grade == "certainly-not":
                continue
            cur = exchange.store.current(conn, "Patient", pid)
            if cur is None:
                continue
            entries.append((pid, cur.body, grade, value))
            if len(entries) >= count:
                break
    parts = [
        b'{"fullUrl":"'
        + f"{exchange.base}/Patient/{pid}".encode()
        + b'","resource":'
        + body
        + b',"search":'
        + orjson.dumps(
            {
                "mode": "match",
                "score": value,
                "extension": [{"url": MATCH_GRADE, "valueCode": grade}],
            }
        )
        + b"}"
        for pid, body, grade, value in entries
    ]
    head = orjson.dumps({"resourceType": "Bundle", "type": "searchset", "total": len(entries)})
    exchange.auditor.record(
        principal,
        "operation",
        resource_type="Patient",
        resource_ids=[f"Patient/{e[0]}" for e in entries],
        patient_ids=[e[0] for e in entries],
        query="$match",
    )
    return fhir(head[:-1] + b',"entry":[' + b",".join(parts) + b"]}")


@router.get("/fhir/Patient/$ihe-pix")
def pix(request: Request, exchange: ExchangeDep, principal: PrincipalDep) -> Response:
    """PIXm: one identifier in, every other identifier of the same person out."""
    principal.require("Patient", "r")
    source = request.query_params.get("sourceIdentifier") or ""
    if "|" not in source:
        raise Invalid("sourceIdentifier=system|value is required", expression="sourceIdentifier")
    targets = request.query_params.getlist("targetSystem")
    system, value = source.split("|", 1)
    with exchange.store.read() as conn:
        pid = exchange.registry.by_identifier(conn, system, value)
        cur = exchange.store.current(conn, "Patient", pid) if pid else None
    if pid is None or cur is None:
        raise NotFound(f"No patient with identifier {source}", expression="sourceIdentifier")
    master = orjson.loads(cur.body)
    params: list[dict[str, Any]] = []
    for ident in master.get("identifier") or []:
        if (ident.get("system"), ident.get("value")) == (system, value):
            continue
        if targets and ident.get("system") not in targets:
            continue
        params.append({"name": "targetIdentifier", "valueIdentifier": ident})
    params.append({"name": "targetId", "valueReference": {"reference": f"Patient/{pid}"}})
    exchange.auditor.record(
        principal,
        "operation",
        resource_type="Patient",
        resource_ids=[f"Patient/{pid}"],
        patient_ids=[pid],
        query=f"$ihe-pix {system}",
    )
    return fhir(orjson.dumps({"resourceType": "Parameters", "parameter": params}))


# -- ops API: review queue, unlink, merge -------------------------------------------------
def _ops(principal: Principal) -> None:
    if "ops" not in principal.roles:
        raise Forbidden("This needs the ops role (hie token --role ops)")


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status, media_type="application/json")


@router.get("/api/patients/review")
def review_list(request: Request, exchange: ExchangeDep, principal: PrincipalDep) -> Response:
    _ops(principal)
    status = request.query_params.get("status", "open")
    with exchange.store.read() as conn:
        items = exchange.registry.mpi.reviews(conn, None if status == "all" else status)
    return _json([vars(i) for i in items])


@router.post("/api/patients/review/{review_id}/{decision}")
def review_decide(
    review_id: int, decision: str, exchange: ExchangeDep, principal: PrincipalDep
) -> Response:
    _ops(principal)
    if decision not in ("accept", "reject"):
        raise NotFound("Use /accept or /reject", expression="decision")
    now = now_utc()
    mpi = exchange.registry.mpi
    with exchange.store.write() as conn:
        if decision == "accept":
            item = mpi.accept(conn, exchange.registry, review_id, principal.client_id, now)
        else:
            item = mpi.reject(conn, review_id, principal.client_id, now)
        exchange.auditor.record(
            principal,
            f"review-{decision}",
            resource_type="Patient",
            resource_ids=[f"Patient/{item.record_id}"],
            patient_ids=[item.candidate_patient_id, item.current_patient_id],
            conn=conn,
        )
    return _json(vars(item))


async def _body(request: Request) -> dict[str, Any]:
    doc = parse_json(await read_body(request, 10_000))
    if not isinstance(doc, dict):
        raise Invalid("Send a JSON object")
    return doc


@router.post("/api/patients/unlink")
async def unlink(request: Request, exchange: ExchangeDep, principal: PrincipalDep) -> Response:
    _ops(principal)
    record = (await _body(request)).get("record")
    if not isinstance(record, str):
        raise Invalid("record (a hospital Patient record id) is required", expression="record")
    with exchange.store.write() as conn:
        before = exchange.registry.resolve(conn, record)
        target = exchange.registry.mpi.unlink(
            conn, exchange.registry, record, principal.client_id, now_utc()
        )
        exchange.auditor.record(
            principal,
            "unlink",
            resource_type="Patient",
            resource_ids=[f"Patient/{record}"],
            patient_ids=[target, before[0] if before else None],
            conn=conn,
        )
    return _json({"record": record, "patient": target})


@router.post("/api/patients/merge")
async def merge(request: Request, exchange: ExchangeDep, principal: PrincipalDep) -> Response:
    _ops(principal)
    doc = await _body(request)
    source, target = doc.get("source"), doc.get("target")
    if not isinstance(source, str) or not isinstance(target, str):
        raise Invalid("source and target exchange patient ids are required", expression="source")
    with exchange.store.write() as conn:
        for pid in (source, target):
            if exchange.registry.resolve(conn, pid) is None:
                raise NotFound(f"Patient/{pid} is not known", expression="source")
        exchange.registry.mpi.merge(
            conn, exchange.registry, source, target, principal.client_id, now_utc()
        )
        exchange.auditor.record(
            principal,
            "merge",
            resource_type="Patient",
            resource_ids=[f"Patient/{source}", f"Patient/{target}"],
            patient_ids=[source, target],
            conn=conn,
        )
    return _json({"merged": source, "into": target})


@router.get("/api/patients/{patient_id}/links")
def links(patient_id: str, exchange: ExchangeDep, principal: PrincipalDep) -> Response:
    _ops(principal)
    with exchange.store.read() as conn:
        events = exchange.registry.mpi.history(conn, patient_id)
    return _json([{**e, "at": e["at"].isoformat()} for e in events])


@router.get("/api/ops/unmapped-codes")
def unmapped(request: Request, exchange: ExchangeDep, principal: PrincipalDep) -> Response:
    """Local codes without a LOINC mapping, most frequent first (ops role)."""
    from hie.unmapped import unmapped_codes

    _ops(principal)
    hospital = request.query_params.get("hospital")
    return _json([vars(u) for u in unmapped_codes(exchange.store, hospital)])
