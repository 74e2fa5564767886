"""``$prior-results`` and the decisions / savings API.

FHIR side: ``GET|POST /fhir/Patient/{id}/$prior-results`` and the type-level
``/fhir/Patient/$prior-results?patient.identifier=`` for hospitals that only know their own
MRN or the national ID. The answer is a searchset Bundle: one entry per candidate result, most
useful first, each carrying the verdict extension on ``Bundle.entry``; results still pending
elsewhere follow; an OperationOutcome entry says how each requested item stands.

JSON side (``/api/recognition``): record and withdraw decisions, and the savings ledger as
JSON or CSV.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import Connection

from hie.api.deps import ExchangeDep, PrincipalDep, run_read
from hie.api.responses import fhir, query_pairs, read_body
from hie.bundle import searchset
from hie.fhir import parse_json
from hie.outcome import Invalid, Issue, NotFound, operation_outcome
from hie.prior_results import Request as PriorRequest
from hie.prior_results import parse_at, parse_code
from hie.recognition import Decision, pending_extension, verdict_extension
from hie.recognition.savings import csv_text, ledger, rollup

router = APIRouter()
OPERATION_FILE = "OperationDefinition-prior-results.json"


def _service(exchange: ExchangeDep) -> Any:
    service = getattr(exchange, "prior_results", None)
    if service is None:
        raise Invalid(
            "$prior-results needs the hospitals configuration (hie serve --config FILE)",
            expression="requester",
        )
    return service


async def _params(request: Request) -> list[tuple[str, str]]:
    """Query parameters, plus a POSTed Parameters resource flattened to the same pairs."""
    pairs = [(k, str(v)) for k, v in query_pairs(request)]
    if request.method != "POST":
        return pairs
    body = await read_body(request, 1_000_000)
    doc = parse_json(body)
    if not isinstance(doc, dict) or doc.get("resourceType") != "Parameters":
        raise Invalid("POST a Parameters resource", expression="Parameters")
    for n, p in enumerate(doc.get("parameter") or []):
        name = p.get("name") if isinstance(p, dict) else None
        if not isinstance(name, str):
            raise Invalid("parameter.name is required", expression=f"Parameters.parameter[{n}]")
        if "valueCoding" in p:
            c = p["valueCoding"]
            pairs.append((name, f"{c.get('system', '')}|{c.get('code', '')}"))
        elif "valueCodeableConcept" in p:
            for c in p["valueCodeableConcept"].get("coding") or []:
                pairs.append((name, f"{c.get('system', '')}|{c.get('code', '')}"))
        elif "valueIdentifier" in p:
            i = p["valueIdentifier"]
            pairs.append((name, f"{i.get('system', '')}|{i.get('value', '')}"))
        else:
            value = next((v for k, v in p.items() if k.startswith("value")), None)
            if isinstance(value, bool):  # valueBoolean, as a query parameter spells it
                value = "true" if value else "false"
            if not isinstance(value, str):
                raise Invalid(
                    f"parameter {name!r} needs a value", expression=f"Parameters.parameter[{n}]"
                )
            pairs.append((name, value))
    return pairs


def _request(
    exchange: ExchangeDep, principal: PrincipalDep, patient_id: str, pairs: list[tuple[str, str]]
) -> PriorRequest:
    known = {
        "code",
        "requester",
        "at",
        "department",
        "includeExpired",
        "patient.identifier",
        "_format",
    }
    for name, _ in pairs:
        if name not in known:
            raise Invalid(f"Unknown parameter {name!r} for $prior-results", expression=name)
    codes = tuple(parse_code(v) for k, raw in pairs if k == "code" for v in raw.split(","))
    if not codes:
        raise Invalid("Name at least one test with code=system|code", expression="code")
    requester = next((v for k, v in pairs if k == "requester"), None)
    requester = (requester or principal.hospital_id or "").removeprefix("Organization/")
    if not requester:
        raise Invalid(
            "requester is required for a client that acts for no hospital", expression="requester"
        )
    if principal.hospital_id and requester != principal.hospital_id:
        raise Invalid("A hospital's client asks for its own hospital only", expression="requester")
    return PriorRequest(
        patient_id=patient_id,
        codes=codes,
        requester=requester,
        at=parse_at(next((v for k, v in pairs if k == "at"), None), exchange.settings.timezone),
        department=next((v for k, v in pairs if k == "department"), None),
        include_expired=_flag(pairs, "includeExpired"),
    )


def _flag(pairs: list[tuple[str, str]], name: str) -> bool:
    """A boolean parameter: ``true`` or ``false`` (FHIR's spelling), absent = false."""
    values = [v for k, v in pairs if k == name]
    if len(values) > 1:
        raise Invalid(f"{name} is given more than once", expression=name)
    if not values:
        return False
    if values[0] not in ("true", "false"):
        raise Invalid(f"{name} is true or false, not {values[0]!r}", expression=name)
    return values[0] == "true"


def _answer(
    exchange: ExchangeDep,
    principal: PrincipalDep,
    locate: Callable[[Connection], str],
    pairs: list[tuple[str, str]],
) -> Response:
    """The answer for the patient ``locate`` finds (in the read that gathers the results)."""
    principal.require("Observation", "s")
    service = _service(exchange)
    req = _request(exchange, principal, "", pairs)
    patient_id, assessment, bodies = service.assess(
        principal, req, auditor=exchange.auditor, locate=locate
    )
    extras: dict[str, bytes] = {}
    matches: list[tuple[str, str, bytes]] = []
    for a in assessment.results:
        ref = a.result.ref
        if ref in bodies and ref not in extras:
            extras[ref] = b'"extension":[' + orjson.dumps(verdict_extension(a.verdict)) + b"]"
            matches.append((a.result.resource_type, a.result.id, bodies[ref]))
    for p in assessment.pending:
        if p.ref in bodies and p.ref not in extras:
            extras[p.ref] = b'"extension":[' + orjson.dumps(pending_extension(p)) + b"]"
            rtype, rid = p.ref.split("/", 1)
            matches.append((rtype, rid, bodies[p.ref]))
    issues = []
    for c in assessment.coverage:
        state = c.state if c.on_list else "not on the recognition list"
        detail = f"{c.requested[0]}|{c.requested[1]}: {state}"
        if c.by:
            detail += f" by {', '.join(c.by)}"
        if c.missing:
            detail += f"; missing {', '.join(c.missing)}"
        if c.pending:
            detail += f"; pending {', '.join(c.pending)}"
        issues.append(Issue(detail, "informational", "information", "code"))
    body = searchset(
        exchange.base,
        matches,
        self_url=f"{exchange.base}/Patient/{patient_id}/$prior-results",
        total=len(matches),
        outcome=operation_outcome(issues) if issues else None,
        entry_extras=extras,
    )
    exchange.auditor.record(
        principal,
        "operation",
        resource_type="Patient",
        resource_ids=[f"Patient/{patient_id}", *(f"{m[0]}/{m[1]}" for m in matches)],
        patient_ids=[patient_id],
        query="$prior-results " + " ".join(f"{c[0]}|{c[1]}" for c in req.codes),
    )
    return fhir(body)


def _by_id(exchange: ExchangeDep, any_id: str) -> Callable[[Connection], str]:
    """Finds the exchange patient for an exchange patient or hospital record id."""

    def locate(conn: Connection) -> str:
        found = exchange.searcher.patient(conn, any_id)  # one rendered read, as search does
        if found is None:
            raise NotFound(f"Patient/{any_id} is not known", expression="Patient.id")
        return found

    return locate


def _by_identifier(exchange: ExchangeDep, identifier: str) -> Callable[[Connection], str]:
    """Finds the exchange patient for one ``system|value`` identifier."""
    system, value = identifier.split("|", 1)

    def locate(conn: Connection) -> str:
        patient_id = exchange.registry.by_identifier(conn, system, value)
        if patient_id is None:
            raise NotFound(
                f"No patient with identifier {identifier} is known",
                expression="patient.identifier",
            )
        return patient_id

    return locate


@router.api_route("/fhir/Patient/$prior-results", methods=["GET", "POST"])
async def prior_results_type(
    request: Request, exchange: ExchangeDep, principal: PrincipalDep
) -> Response:
    pairs = await _params(request)
    idents = [v for k, v in pairs if k == "patient.identifier"]
    if len(idents) != 1 or "|" not in idents[0]:
        raise Invalid(
            "Give exactly one patient.identifier=system|value", expression="patient.identifier"
        )
    rest = [(k, v) for k, v in pairs if k != "patient.identifier"]
    locate = _by_identifier(exchange, idents[0])
    return await run_read(exchange, lambda: _answer(exchange, principal, locate, rest))


@router.api_route("/fhir/Patient/{patient_id}/$prior-results", methods=["GET", "POST"])
async def prior_results(
    patient_id: str, request: Request, exchange: ExchangeDep, principal: PrincipalDep
) -> Response:
    pairs = await _params(request)
    locate = _by_id(exchange, patient_id)
    return await run_read(exchange, lambda: _answer(exchange, principal, locate, pairs))


@router.get("/fhir/OperationDefinition/prior-results")
def operation_definition(exchange: ExchangeDep) -> Response:
    path = Path(exchange.settings.profiles_dir) / OPERATION_FILE
    return fhir(path.read_bytes())


# -- decisions and savings (JSON) ----------------------------------------------------------
def _str(doc: dict[str, Any], key: str, *, required: bool = False) -> str | None:
    value = doc.get(key)
    if value is None and required:
        raise Invalid(f"{key} is required", expression=key)
    if value is not None and not isinstance(value, str):
        raise Invalid(f"{key} must be a string", expression=key)
    return value


@router.post("/api/recognition/decisions")
async def record_decision(
    request: Request, exchange: ExchangeDep, principal: PrincipalDep
) -> Response:
    principal.require("Observation", "r")
    service = _service(exchange)
    doc = parse_json(await read_body(request, 100_000))
    if not isinstance(doc, dict):
        raise Invalid("Send a JSON object")
    reason = doc.get("reason") or {}
    if not isinstance(reason, dict):
        raise Invalid("reason must be {code, text}", expression="reason")
    if not principal.hospital_id:
        raise Invalid("Only a hospital's client records decisions", expression="hospital")
    with exchange.store.read() as conn:
        patient_id = _by_id(exchange, _str(doc, "patient", required=True) or "")(conn)
    result_ref = _str(doc, "result", required=True) or ""
    rtype, _, rid = result_ref.partition("/")
    current = exchange.store.get(rtype, rid) if rid else None
    if current is None or current.patient_id != patient_id:
        raise Invalid(f"{result_ref} is not a result of this patient", expression="result")
    decision = Decision(
        id=uuid.uuid4().hex,
        action=_str(doc, "action", required=True),  # type: ignore[arg-type]
        item_code=_str(doc, "item", required=True) or "",
        hospital_id=principal.hospital_id,
        department=_str(doc, "department"),
        clinician=_str(doc, "clinician", required=True) or "",
        at=datetime.now().astimezone(),
        result_ref=result_ref,
        result_version=str(current.version_id),
        patient_id=patient_id,
        producer_id=current.hospital_id,
        order_ref=_str(doc, "order"),
        reason=reason.get("code"),
        reason_text=reason.get("text"),
        encounter=_str(doc, "encounter"),
    )
    with exchange.store.write() as conn:
        saved = service.decisions.record(conn, decision, principal.client_id)
        exchange.auditor.record(
            principal,
            "decision",
            resource_type=rtype,
            resource_ids=[result_ref],
            patient_ids=[patient_id],
            conn=conn,
        )
    from hie.decisions import decision_json

    return Response(orjson.dumps(decision_json(saved)), 201, media_type="application/json")


@router.post("/api/recognition/decisions/{decision_id}/withdraw")
async def withdraw_decision(
    decision_id: str, request: Request, exchange: ExchangeDep, principal: PrincipalDep
) -> Response:
    service = _service(exchange)
    doc = parse_json(await read_body(request, 10_000))
    reason = _str(doc if isinstance(doc, dict) else {}, "reason", required=True) or ""
    with exchange.store.write() as conn:
        saved = service.decisions.withdraw(
            conn, decision_id, principal.hospital_id, principal.client_id, reason
        )
        exchange.auditor.record(
            principal,
            "withdraw",
            resource_type=saved.result_ref.split("/")[0],
            resource_ids=[saved.result_ref],
            patient_ids=[saved.patient_id],
            conn=conn,
        )
    from hie.decisions import decision_json

    return Response(
        orjson.dumps(decision_json(saved, withdrawn_by=principal.client_id)),
        media_type="application/json",
    )


@router.get("/api/recognition/savings")
def savings(request: Request, exchange: ExchangeDep, principal: PrincipalDep) -> Response:
    """The ledger by any of hospital, department, item, month; JSON or ``format=csv``."""
    principal.require("Observation", "s")
    service = _service(exchange)
    q = dict(request.query_params)
    by = [d for d in (q.get("by") or "hospital,item,month").split(",") if d]
    tz = exchange.settings.timezone
    since = parse_at(q["from"], tz) if q.get("from") else None
    until = parse_at(q["to"], tz) if q.get("to") else None
    exchange.auditor.flush()  # lookups still queued for the ledger count in this report
    with exchange.store.read() as conn:
        lookups, decisions = service.decisions.window(conn, since, until)
    from zoneinfo import ZoneInfo

    try:
        rows = rollup(
            ledger(lookups, decisions, service.rules.catalogue, ZoneInfo(tz)),
            by,  # type: ignore[arg-type]  # checked by rollup: a bad name is a ValueError
        )
    except ValueError as exc:
        raise Invalid(str(exc), expression="by") from None
    if principal.hospital_id and "hospital" in by:
        rows = tuple(r for r in rows if r.hospital == principal.hospital_id)
    if q.get("format") == "csv":
        return Response(
            csv_text(rows).encode("utf-8-sig"),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="hie-savings.csv"'},
        )
    payload = [
        {
            "hospital": r.hospital,
            "department": r.department,
            "item": r.item,
            "month": r.month,
            "lookups": r.lookups,
            "offered": r.offered,
            "accepted": r.accepted,
            "declined": r.declined,
            "declinedByReason": dict(r.declined_by_reason),
            "testsAvoided": r.tests_avoided,
            "rmbSaved": str(r.rmb_saved),
            "minutesSaved": r.minutes_saved,
            "declineRate": r.decline_rate,
        }
        for r in rows
    ]
    return Response(orjson.dumps({"by": by, "rows": payload}), media_type="application/json")
