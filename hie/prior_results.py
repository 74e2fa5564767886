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
from typing import Any
from zoneinfo import ZoneInfo

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
from hie.recognition.candidates import prior_result, specimen_type
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


def _specimen_ref(doc: JSON) -> str | None:
    spec = doc.get("specimen")
    ref = spec.get("reference") if isinstance(spec, dict) else None
    return ref if isinstance(ref, str) else None


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
        self.zone = ZoneInfo(tz)
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
        docs = {key: (hospital, orjson.loads(body)) for key, (hospital, body) in rows.items()}
        specimens = self._specimens(conn, [doc for _, doc in docs.values()])
        out = []
        for (rtype, rid), (hospital_id, doc) in docs.items():
            if not hospital_id:
                continue
            specimen = specimens.get(_specimen_ref(doc))
            pr = prior_result(doc, hospital_id=hospital_id, specimen=specimen, zone=self.zone)
            if pr is not None:
                out.append(pr)
            if int((doc.get("meta") or {}).get("versionId") or 1) > 1:
                # Earlier versions go in too: the engine marks them superseded by the correction.
                for _, _, body in self.store.history_in(conn, rtype, rid):
                    old = orjson.loads(body)
                    if old.get("meta", {}).get("versionId") == doc["meta"]["versionId"]:
                        continue
                    prev = prior_result(old, hospital_id=hospital_id, zone=self.zone)
                    if prev is not None:
                        out.append(prev)
        return out

    def _specimens(self, conn: Connection, docs: list[JSON]) -> dict[str | None, str | None]:
        refs = {_specimen_ref(d) for d in docs} - {None}
        ids = {r.split("/", 1)[1] for r in refs if r and r.startswith("Specimen/")}
        found = self._bodies(conn, {("Specimen", i) for i in ids})
        return {
            f"Specimen/{rid}": specimen_type(orjson.loads(body))
            for (_, rid), (_, body) in found.items()
        }

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
