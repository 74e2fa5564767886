"""FHIR write interactions (create, update, conditional update, transaction, batch) as units
for the one ingest path. No HTTP here: the edge passes parsed JSON and gets outcomes back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import unquote

import orjson
from sqlalchemy import or_, select

from adapters.base import Batch, Entry, Unit
from hie.auth import Principal
from hie.exchange import Exchange
from hie.fhir import SUPPORTED_TYPES, parse_json
from hie.fhirtime import instant
from hie.index.search import _no_nul, _token_cond
from hie.index.store import R
from hie.ingest import ItemOutcome, Written
from hie.outcome import (
    Conflict,
    FhirError,
    Forbidden,
    Invalid,
    NotSupported,
    PreconditionFailed,
    Unprocessable,
    operation_outcome,
)

JSON = dict[str, Any]


@dataclass
class WriteResult:
    written: Written
    created: bool


def _resource(data: Any, rtype: str | None = None) -> JSON:
    if not isinstance(data, dict):
        raise Invalid("The body must be a JSON object (a FHIR resource)")
    found = data.get("resourceType")
    if not isinstance(found, str):
        raise Invalid("resourceType is missing", expression="resourceType")
    if rtype and found != rtype:
        raise Invalid(
            f"The body is a {found} but the URL names {rtype}", expression=f"{found}.resourceType"
        )
    if found not in SUPPORTED_TYPES:
        raise NotSupported(f"{found} is not stored by this exchange", expression="resourceType")
    return data


def _main(outcome: ItemOutcome, rtype: str) -> Written:
    if not outcome.ok:
        _refuse(outcome)
    for w in outcome.written:
        if w.type == rtype:
            return w
    return outcome.written[0]


def _refuse(outcome: ItemOutcome) -> NoReturn:
    """A rejected unit as the error whose status fits it (409, 412, 422, else 400)."""
    if outcome.error is not None:
        raise outcome.error
    first = outcome.issues[0].diagnostics if outcome.issues else "rejected"
    codes = {i.code for i in outcome.issues}
    if codes == {"conflict"}:
        raise Conflict(first, issues=outcome.issues)
    if codes == {"processable"}:
        raise Unprocessable(first, issues=outcome.issues)
    raise Invalid(first, issues=outcome.issues)


class Writer:
    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange

    def _ingest(self, principal: Principal, units: list[Unit]) -> list[ItemOutcome]:
        batch = Batch(hospital_id=principal.hospital_id or "", adapter="http", units=units)
        result = self.exchange.ingestor.ingest(batch, keep_dead_letters=False)
        return result.items

    def _audit(self, principal: Principal, interaction: str, outcomes: list[ItemOutcome]) -> None:
        written = [w for o in outcomes for w in o.written]
        patients: set[str | None] = set()
        for w in written:
            cur = self.exchange.store.get(w.type, w.id)
            patients.add(cur.patient_id if cur else None)
        self.exchange.auditor.record(
            principal,
            interaction,
            resource_type=written[0].type if written else None,
            resource_ids=[f"{w.type}/{w.id}" for w in written],
            patient_ids=patients,
            outcome="0" if all(o.ok for o in outcomes) else "4",
        )

    def create(
        self, principal: Principal, rtype: str, body: bytes, *, if_none_exist: str | None = None
    ) -> WriteResult:
        principal.require(rtype, "c")
        res = _resource(parse_json(body, max_depth=self.exchange.settings.max_json_depth), rtype)
        res.pop("id", None)  # create: the server assigns the id (FHIR R4 §3.1.0.8)
        if if_none_exist:
            found = self._matches(rtype, _criteria(if_none_exist))
            if len(found) > 1:
                raise PreconditionFailed(f"If-None-Exist matched {len(found)} resources")
            if found:
                cur = self.exchange.store.get(rtype, found[0])
                assert cur is not None
                return WriteResult(
                    Written(rtype, cur.id, cur.version_id, "unchanged", cur.body, cur.last_updated),
                    False,
                )
        outcomes = self._ingest(principal, [Unit(key=rtype, entries=(Entry(res),), raw=body)])
        self._audit(principal, "create", outcomes)
        w = _main(outcomes[0], rtype)
        return WriteResult(w, w.status == "created")

    def update(
        self, principal: Principal, rtype: str, rid: str, body: bytes, if_match: str | None
    ) -> WriteResult:
        principal.require(rtype, "u")
        res = _resource(parse_json(body, max_depth=self.exchange.settings.max_json_depth), rtype)
        if res.get("id") != rid:
            raise Invalid(
                f"The body's id ({res.get('id')!r}) must equal the id in the URL ({rid!r})",
                expression=f"{rtype}.id",
            )
        if if_match:
            cur = self.exchange.store.get(rtype, rid)
            want = if_match.strip().removeprefix("W/").strip('"')
            if cur is None or str(cur.version_id) != want:
                raise PreconditionFailed(
                    f"If-Match {if_match} does not match the current version "
                    f"({cur.version_id if cur else 'none'})"
                )
        unit = Unit(
            key=f"{rtype}/{rid}",
            entries=(Entry(res, full_url=f"{rtype}/{rid}"),),
            raw=body,
            expected_version=if_match.strip().removeprefix("W/").strip('"') if if_match else None,
        )
        outcomes = self._ingest(principal, [unit])
        self._audit(principal, "update", outcomes)
        w = _main(outcomes[0], rtype)
        return WriteResult(w, w.status == "created")

    def conditional_update(
        self, principal: Principal, rtype: str, criteria: list[tuple[str, str]], body: bytes
    ) -> WriteResult:
        principal.require(rtype, "u")
        if not criteria:
            raise Invalid("A conditional update needs search criteria in the URL")
        found = self._matches(rtype, [(str(k), str(v)) for k, v in criteria])
        if len(found) > 1:
            raise PreconditionFailed(f"The criteria matched {len(found)} resources")
        res = _resource(parse_json(body, max_depth=self.exchange.settings.max_json_depth), rtype)
        if found:
            if res.get("id") not in (None, found[0]):
                raise Invalid(
                    "The body's id does not match the resource found", expression=f"{rtype}.id"
                )
            res["id"] = found[0]
            return self.update(principal, rtype, found[0], orjson.dumps(res), None)
        res.pop("id", None)
        return self.create(principal, rtype, orjson.dumps(res))

    def _matches(self, rtype: str, pairs: list[tuple[str, str]]) -> list[str]:
        """Resource ids matching simple ``identifier=system|value`` criteria."""
        with self.exchange.store.read() as conn:
            conds = []
            for pair in pairs:
                _no_nul(pair[0], pair[1])
                if pair[0] not in ("identifier", "_id"):
                    raise NotSupported(
                        "Conditional interactions support identifier= and _id= criteria",
                        expression=pair[0],
                    )
                if pair[0] == "_id":
                    conds.append(R.c.id == pair[1])
                else:
                    conds.append(_token_cond(rtype, "identifier", [pair[1]], []))
            # The exchange's own master Patients carry every hospital's identifiers; a
            # hospital's conditional write is about its own record, never the master.
            not_master = or_(R.c.source_id.is_(None), ~R.c.source_id.like("exchange:%"))
            rows = conn.execute(
                select(R.c.id).where(R.c.type == rtype, not_master, *conds).limit(2)
            ).all()
        return [r.id for r in rows]

    # -- Bundles -------------------------------------------------------------------------
    def bundle(self, principal: Principal, body: bytes) -> tuple[int, JSON]:
        data = parse_json(body, max_depth=self.exchange.settings.max_json_depth)
        if not isinstance(data, dict) or data.get("resourceType") != "Bundle":
            raise Invalid("POST to the base must carry a Bundle", expression="Bundle")
        kind = data.get("type")
        if kind not in ("transaction", "batch"):
            raise Invalid(
                "Only transaction and batch Bundles can be posted to the base",
                expression="Bundle.type",
            )
        raw_entries = data.get("entry") or []
        if not isinstance(raw_entries, list):
            raise Invalid("Bundle.entry must be an array", expression="Bundle.entry")
        entries: list[Entry] = []
        problems: list[FhirError | None] = []
        for n, e in enumerate(raw_entries):
            try:
                entries.append(self._entry(principal, e, n))
                problems.append(None)
            except FhirError as exc:
                entries.append(Entry({}, None))
                problems.append(exc)
        if kind == "transaction":
            bad = [p for p in problems if p]
            if bad:
                # the refusal keeps its own status: a scope the token lacks is a 403, not a 400
                worst = next((p for p in bad if isinstance(p, Forbidden)), bad[0])
                raise type(worst)(worst.diagnostics, issues=[i for p in bad for i in p.issues])
            unit = Unit(key="transaction", entries=tuple(entries), raw=body)
            outcomes = self._ingest(principal, [unit]) if entries else []
            if outcomes and not outcomes[0].ok:
                _refuse(outcomes[0])  # a conflict stays a 409, as for a single update
            self._audit(principal, "transaction", outcomes)
            written = outcomes[0].written if outcomes else []
            by_order = _order(entries, written)
            return 200, _response_bundle("transaction-response", by_order, self.exchange.base)
        units = [
            Unit(key=f"entry[{n}]", entries=(e,), raw=b"")
            for n, (e, p) in enumerate(zip(entries, problems, strict=True))
            if p is None
        ]
        done = self._ingest(principal, units) if units else []
        pending = iter(done)
        results: list[Written | FhirError] = []
        for p in problems:
            if p is not None:
                results.append(p)
                continue
            o = next(pending)
            results.append(o.written[0] if o.ok else Invalid("rejected", issues=o.issues))
        self._audit(principal, "batch", done)
        return 200, _response_bundle("batch-response", results, self.exchange.base)

    def _entry(self, principal: Principal, e: Any, n: int) -> Entry:
        where = f"Bundle.entry[{n}]"
        if not isinstance(e, dict):
            raise Invalid("An entry must be an object", expression=where)
        req = e.get("request")
        if not isinstance(req, dict) or req.get("method") not in ("POST", "PUT"):
            raise NotSupported(
                "Each entry needs request.method POST or PUT (reads in batches are not supported)",
                expression=f"{where}.request.method",
            )
        res = e.get("resource")
        try:
            res = _resource(res)
        except FhirError as exc:
            raise type(exc)(exc.diagnostics, expression=f"{where}.resource") from None
        principal.require(res["resourceType"], "c" if req["method"] == "POST" else "u")
        url = str(req.get("url") or "")
        full_url = e.get("fullUrl") if isinstance(e.get("fullUrl"), str) else None
        if req["method"] == "PUT":
            path, _, query = url.partition("?")
            parts = path.strip("/").split("/")
            if query:
                found = self._matches(res["resourceType"], _criteria(query))
                if len(found) > 1:
                    raise PreconditionFailed(f"{where}.request.url matched {len(found)} resources")
                if found:
                    res = {**res, "id": found[0]}
                    return (
                        Entry(res, full_url=f"{res['resourceType']}/{found[0]}")
                        if not (full_url and full_url.startswith("urn:"))
                        else _aliased(res, full_url)
                    )
                return Entry({k: v for k, v in res.items() if k != "id"}, full_url)
            if len(parts) != 2 or parts[0] != res["resourceType"]:
                raise Invalid("PUT needs request.url Type/id", expression=f"{where}.request.url")
            if res.get("id") != parts[1]:
                raise Invalid(
                    "resource.id must match request.url", expression=f"{where}.resource.id"
                )
            if full_url and full_url.startswith("urn:"):
                return _aliased(res, full_url)
            return Entry(res, full_url=f"{parts[0]}/{parts[1]}")
        return Entry({k: v for k, v in res.items() if k != "id"}, full_url)


def _criteria(query: str) -> list[tuple[str, str]]:
    """A query string (If-None-Exist, a Bundle entry's request.url) as decoded pairs.

    Both are URL query strings, so ``%7C`` is ``|``; a '+' stays a '+' (FHIR clients send
    values such as identifiers unencoded, and '+' is a common character in them).
    """
    pairs = []
    for part in query.lstrip("?").split("&"):
        if part:
            name, sep, value = part.partition("=")
            if not sep:
                raise Invalid(f"{name!r} in the criteria has no value", expression=unquote(name))
            pairs.append((unquote(name), unquote(value)))
    return pairs


def _aliased(res: JSON, full_url: str) -> Entry:
    return Entry(res, full_url=full_url)


def _order(entries: list[Entry], written: list[Written]) -> list[Written | FhirError]:
    """Outcomes in entry order (ingest writes patients first)."""
    remaining = list(written)
    out: list[Written | FhirError] = []
    for e in entries:
        rtype = e.resource.get("resourceType")
        pick = next((w for w in remaining if w.type == rtype), None)
        if pick is None:
            out.append(Invalid("not written"))
            continue
        remaining.remove(pick)
        out.append(pick)
    return out


def _response_bundle(kind: str, results: list[Written | FhirError], base: str) -> JSON:
    entries: list[JSON] = []
    for r in results:
        if isinstance(r, FhirError):
            entries.append(
                {"response": {"status": str(r.status), "outcome": operation_outcome(r.issues)}}
            )
            continue
        status = {"created": "201 Created", "updated": "200 OK", "unchanged": "200 OK"}[r.status]
        entry: JSON = {
            "fullUrl": f"{base}/{r.type}/{r.id}",
            "response": {
                "status": status,
                "location": f"{r.type}/{r.id}/_history/{r.version}",
                "etag": f'W/"{r.version}"',
            },
        }
        if r.last_updated is not None:
            entry["response"]["lastModified"] = instant(r.last_updated)
        entries.append(entry)
    return {"resourceType": "Bundle", "type": kind, "entry": entries}
