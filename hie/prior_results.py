"""``$prior-results``: the patient's candidate results from the index, judged by the engine.

This module is the bridge between the index (SQL, stored JSON) and the pure recognition
engine: it picks the candidates with one indexed lookup (the requested items, their panel
components and the panels that contain them, for this patient), turns stored JSON into
:class:`~hie.recognition.PriorResult`, calls :func:`~hie.recognition.evaluate` and records the
lookup in the savings ledger. The HTTP route, the CDS Hooks service and the SMART app all call
:meth:`PriorResults.assess`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
from sqlalchemy import Connection, select

from hie import naming
from hie.auth import Principal
from hie.decisions import Decisions
from hie.fhirtime import BadDate, now_utc, parse_range
from hie.hospitals import HospitalsConfig
from hie.index.store import TOKEN, R, Store
from hie.outcome import Invalid
from hie.recognition import (
    Assessment,
    HospitalProfile,
    LabCredential,
    PriorResult,
    RecognitionRules,
    evaluate,
    lookup_from,
)
from hie.recognition.model import Code

JSON = dict[str, Any]
RESULT_TYPES = ("Observation", "DiagnosticReport")
LOOKBACK = timedelta(days=3 * 365)  # older results are not even "reference-only" candidates


@dataclass(frozen=True)
class Request:
    patient_id: str
    codes: tuple[Code, ...]
    requester: str
    at: datetime
    department: str | None = None


def parse_code(token: str) -> Code:
    """A token ``system|code`` or a bare code (read as LOINC, the catalogue's lab system)."""
    token = token.strip()
    if not token:
        raise Invalid("An empty code was requested", expression="code")
    if "|" in token:
        system, code = token.split("|", 1)
        if not code:
            raise Invalid(f"{token!r} names no code", expression="code")
        return (system or naming.LOINC, code)
    return (naming.LOINC, token)


def parse_at(value: str | None, tz: str) -> datetime:
    if not value:
        return now_utc()
    try:
        return parse_range(value, tz)[0]
    except BadDate as exc:
        raise Invalid(f"at: {exc}", expression="at") from None


def _instant(value: Any, tz: str) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return parse_range(value, tz)[0]
    except BadDate:
        return None


def _codes(res: JSON) -> tuple[Code, ...]:
    return tuple(
        (str(c.get("system") or ""), str(c["code"]))
        for c in (res.get("code") or {}).get("coding") or []
        if isinstance(c, dict) and c.get("code")
    )


def to_prior_result(res: JSON, hospital_id: str | None, tz: str) -> PriorResult | None:
    """Stored JSON → the engine's value object; None for what cannot be a candidate."""
    rtype = res.get("resourceType")
    effective = None
    if rtype in RESULT_TYPES:
        effective = _instant(res.get("effectiveDateTime") or res.get("effectiveInstant"), tz)
        if effective is None and isinstance(res.get("effectivePeriod"), dict):
            effective = _instant(res["effectivePeriod"].get("start"), tz)
    elif rtype == "ImagingStudy":
        effective = _instant(res.get("started"), tz)
    if effective is None or not hospital_id:
        return None
    value: Decimal | str | None = None
    unit = None
    q = res.get("valueQuantity")
    if isinstance(q, dict) and q.get("value") is not None:
        try:
            value = Decimal(str(q["value"]))
        except InvalidOperation:
            value = None
        unit = q.get("code") or q.get("unit")
    elif isinstance(res.get("valueString"), str):
        value = res["valueString"]
    ranges = res.get("referenceRange") or []
    ref_range = None
    if ranges and isinstance(ranges[0], dict):
        r = ranges[0]
        low, high = (r.get("low") or {}).get("value"), (r.get("high") or {}).get("value")
        ref_range = r.get("text") or (
            f"{low}-{high}" if low is not None or high is not None else None
        )
    members = tuple(
        m["reference"]
        for key in ("result", "hasMember")
        for m in res.get(key) or []
        if isinstance(m, dict) and isinstance(m.get("reference"), str)
    )
    modality = body_site = None
    if rtype == "ImagingStudy":
        mods = [m.get("code") for m in res.get("modality") or [] if isinstance(m, dict)]
        series = [s for s in res.get("series") or [] if isinstance(s, dict)]
        mods += [(s.get("modality") or {}).get("code") for s in series]
        modality = next((m for m in mods if m), None)
        body_site = next(
            ((s.get("bodySite") or {}).get("code") for s in series if s.get("bodySite")), None
        )
    based_on = next(
        (b.get("reference") for b in res.get("basedOn") or [] if isinstance(b, dict)), None
    )
    meta = res.get("meta") or {}
    code = res.get("code") or {}
    display = code.get("text") or next(
        (c.get("display") for c in code.get("coding") or [] if c.get("display")), None
    )
    return PriorResult(
        resource_type=str(rtype),
        id=str(res.get("id")),
        hospital_id=hospital_id,
        codes=_codes(res),
        effective=effective,
        status=str(res.get("status") or "unknown"),
        version=str(meta.get("versionId")) if meta.get("versionId") else None,
        issued=_instant(res.get("issued"), tz),
        value=value,
        unit=unit,
        reference_range=ref_range,
        members=members,
        based_on_order=based_on,
        display=display or res.get("description"),
        modality=modality,
        body_site=body_site,
    )


class PriorResults:
    def __init__(
        self,
        store: Store,
        rules: RecognitionRules,
        hospitals: HospitalsConfig,
        decisions: Decisions,
        tz: str,
    ) -> None:
        self.store = store
        self.rules = rules
        self.hospitals = hospitals
        self.decisions = decisions
        self.tz = tz
        self.profiles = {
            h.id: HospitalProfile(h.id, h.level, h.name_zh, h.name_en) for h in hospitals.hospitals
        }
        self.credentials = tuple(
            LabCredential(h.id, c.scope, c.scheme, c.valid_from, c.valid_to)
            for h in hospitals.hospitals
            for c in h.credentials
        )

    def _wanted_loinc(self, codes: Iterable[Code]) -> tuple[set[str], bool]:
        """LOINC codes worth fetching for the requested codes; and whether imaging was asked."""
        cat = self.rules.catalogue
        wanted: set[str] = set()
        imaging = False
        for code in codes:
            wanted.add(code[1])
            item = cat.resolve(code)
            if item is None:
                continue
            imaging = imaging or item.kind == "imaging"
            related = [item, *cat.panels_with(item.code)]
            related += [cat.items[c] for c in item.all_components if c in cat.items]
            for rel in related:
                wanted.add(rel.code)
                wanted.update(rel.loinc)
        return wanted, imaging

    def candidates(self, conn: Connection, req: Request) -> list[PriorResult]:
        wanted, imaging = self._wanted_loinc(req.codes)
        since = req.at - LOOKBACK
        ids = conn.execute(
            select(TOKEN.c.type, TOKEN.c.res_id)
            .where(
                TOKEN.c.patient_id == req.patient_id,
                TOKEN.c.type.in_(RESULT_TYPES),
                TOKEN.c.param == "code",
                TOKEN.c.code.in_(sorted(wanted)),
                TOKEN.c.date >= since,
            )
            .distinct()
        ).all()
        keys = {(r.type, r.res_id) for r in ids}
        rows = self._bodies(conn, keys)
        # Panels need their members even when a member's own code was not asked for.
        members: set[tuple[str, str]] = set()
        for _, body in rows.values():
            for ref in orjson.loads(body).get("result") or []:
                target = ref.get("reference", "") if isinstance(ref, dict) else ""
                if target.startswith("Observation/"):
                    members.add(("Observation", target.split("/", 1)[1]))
        rows.update(self._bodies(conn, members - set(rows)))
        if imaging:
            found = conn.execute(
                select(R.c.type, R.c.id, R.c.hospital_id, R.c.body).where(
                    R.c.patient_id == req.patient_id, R.c.type == "ImagingStudy"
                )
            ).all()
            rows.update({(r.type, r.id): (r.hospital_id, r.body) for r in found})
        out = []
        for hospital_id, body in rows.values():
            pr = to_prior_result(orjson.loads(body), hospital_id, self.tz)
            if pr is not None:
                out.append(pr)
        return out

    def _bodies(
        self, conn: Connection, keys: set[tuple[str, str]]
    ) -> dict[tuple[str, str], tuple[str | None, bytes]]:
        out: dict[tuple[str, str], tuple[str | None, bytes]] = {}
        by_type: dict[str, list[str]] = {}
        for rtype, rid in keys:
            by_type.setdefault(rtype, []).append(rid)
        for rtype, rids in by_type.items():
            for r in conn.execute(
                select(R.c.id, R.c.hospital_id, R.c.body).where(R.c.type == rtype, R.c.id.in_(rids))
            ):
                out[(rtype, r.id)] = (r.hospital_id, r.body)
        return out

    def assess(self, principal: Principal, req: Request) -> tuple[Assessment, dict[str, bytes]]:
        """The engine's answer and the stored JSON of every result it mentions."""
        if req.requester not in self.profiles:
            raise Invalid(f"Unknown requesting hospital {req.requester!r}", expression="requester")
        with self.store.read() as conn:
            results = self.candidates(conn, req)
        assessment = evaluate(
            results,
            req.codes,
            req.requester,
            req.at,
            self.rules.catalogue,
            self.profiles,
            self.credentials,
            self.rules.policy,
        )
        refs = {a.result.ref for a in assessment.results} | {p.ref for p in assessment.pending}
        with self.store.write() as conn:
            bodies = {
                f"{t}/{i}": body
                for (t, i), (_, body) in self._bodies(
                    conn,
                    {tuple(r.split("/", 1)) for r in refs},  # type: ignore[misc]
                ).items()
            }
            self.decisions.record_lookup(
                conn,
                lookup_from(assessment, req.department),
                patient_id=req.patient_id,
                client_id=principal.client_id,
                pending=len(assessment.pending),
            )
        return assessment, bodies
