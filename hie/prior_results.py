"""``$prior-results``: the patient's candidate results from the index, judged by the engine.

This module is the bridge between the index (SQL, stored JSON) and the pure recognition
engine: it picks the candidates with one indexed lookup (the requested items, their panel
components and the panels that contain them, for this patient), turns stored JSON into
:class:`~hie.recognition.PriorResult`, calls :func:`~hie.recognition.evaluate` and records the
lookup in the savings ledger. The HTTP route, the CDS Hooks service and the SMART app all call
:meth:`PriorResults.assess`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import Connection, and_, bindparam, case, insert, select, union_all

from hie import naming
from hie.audit import Auditor
from hie.auth import Principal
from hie.decisions import LOOKUP, Decisions
from hie.fhirtime import BadDate, now_utc, parse_range
from hie.hospitals import HospitalsConfig
from hie.index.search import RenderedCache
from hie.index.store import RV, TOKEN, R, Store
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
from hie.recognition.candidates import (
    Facts,
    facts,
    from_facts,
    prior_result,
    specimen_reference,
    specimen_type,
)
from hie.recognition.catalogue import Catalogue
from hie.recognition.model import Code

JSON = dict[str, Any]
RESULT_TYPES = ("Observation", "DiagnosticReport")
LOOKBACK = timedelta(days=3 * 365)  # older results are not even "reference-only" candidates
# Results dated after the instant asked are ignored; the index is read a day further: a result
# known only by the end of its period is dated in the index at the end of that day.
LATER = timedelta(days=1)
Reach = timedelta | None  # how long a code's results may stay within a window (None: no window)


class Answer(NamedTuple):
    patient_id: str  # the exchange patient the answer is about
    assessment: Assessment
    bodies: dict[str, bytes]  # stored JSON of every result the assessment mentions, by ref


@dataclass(frozen=True)
class Request:
    patient_id: str
    codes: tuple[Code, ...]
    requester: str
    at: datetime
    department: str | None = None
    # Results whose window has ended are history, answered only when asked for (up to
    # LOOKBACK); without them the index is read back only as far as the longest window.
    include_expired: bool = False


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


def related(catalogue: Catalogue, codes: Iterable[Code]) -> tuple[dict[str, Reach], bool]:
    """What the index is asked for the requested codes: every code whose results relate (the
    items', their panels' and components' codes and LOINC aliases), each with how long its
    results may stay within a window (None: a code not on the list, whose results have no
    window); and whether imaging was asked."""
    wanted: dict[str, Reach] = {}
    imaging = False

    def add(code: str, reach: Reach) -> None:
        known = wanted.get(code, timedelta(0))
        wanted[code] = None if known is None or reach is None else max(known, reach)

    for code in codes:
        item = catalogue.resolve(code)
        if item is None:
            add(code[1], None)
            continue
        imaging = imaging or item.kind == "imaging"
        add(code[1], item.window.longest())
        rels = [item, *catalogue.panels_with(item.code)]
        rels += [catalogue.items[c] for c in item.all_components if c in catalogue.items]
        for rel in rels:
            reach = rel.window.longest()
            for alias in (rel.code, *rel.loinc):
                add(alias, reach)
    return wanted, imaging


def since(req: Request, wanted: dict[str, Reach]) -> list[tuple[datetime, list[str]]]:
    """How far back the index is read for each code, as (since, codes) groups: each item's
    longest window, or LOOKBACK when expired results are asked for or for a code not on the
    list. In UTC, as the index's dates are stored (SQLite's binding would write another
    offset's wall-clock time as UTC)."""
    groups: dict[datetime, list[str]] = {}
    for code, reach in sorted(wanted.items()):
        back = LOOKBACK if req.include_expired or reach is None else min(reach, LOOKBACK)
        groups.setdefault((req.at - back).astimezone(UTC), []).append(code)
    return sorted(groups.items())


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
        self._relations: dict[tuple[Code, ...], tuple[dict[str, Reach], bool]] = {}
        self.profiles = {
            h.id: HospitalProfile(h.id, h.level, h.name_zh, h.name_en) for h in hospitals.hospitals
        }
        self.credentials = tuple(
            LabCredential(h.id, c.scope, c.scheme, c.valid_from, c.valid_to)
            for h in hospitals.hospitals
            for c in h.credentials
        )

    def candidates(self, conn: Connection, req: Request) -> list[PriorResult]:
        return self.gather(conn, req)[0]

    def gather(self, conn: Connection, req: Request) -> tuple[list[PriorResult], dict[str, bytes]]:
        """The patient's candidate results, and the stored JSON of each current one by ref.

        A fixed number of statements whatever the patient's history: the requested codes'
        results since :func:`since` (token index, bodies joined in), their specimens, the
        older versions of every corrected result, and imaging studies if imaging was asked.
        Candidates are built from the facts stored beside each result; a body is parsed only
        for a row from before migration 0009, which has none. The members of a panel that
        are not among them are read only if the engine asks (:meth:`members`): it needs them
        only for a panel that passes its own checks, and most panels in a patient's history
        are out of their window.
        """
        wanted, imaging = self._related(req.codes)
        rows: dict[tuple[str, str], Any] = {}
        found: dict[tuple[str, str], Facts] = {}
        groups = since(req, wanted)
        shape = tuple(len(codes) for _, codes in groups)
        bounds = [v for start, codes in groups for v in (start, *codes)]
        until = (req.at + LATER).astimezone(UTC)
        self._add(rows, found, _read(conn, _hits, req.patient_id, until, *bounds, shape=shape))
        if imaging:
            self._add(rows, found, _read(conn, _studies, req.patient_id))
        out = self._results(conn, rows, found)
        return out, {f"{t}/{i}": r.body for (t, i), r in rows.items()}

    def _related(self, codes: tuple[Code, ...]) -> tuple[dict[str, Reach], bool]:
        """:func:`related` for these codes, remembered: it follows only the catalogue, which
        is fixed for the process, and was ~3% of a request's CPU (issue 8)."""
        found = self._relations.get(codes)
        if found is None:
            if len(self._relations) >= 4096:  # clinicians ask a few hundred combinations
                self._relations.clear()
            found = self._relations[codes] = related(self.rules.catalogue, codes)
        return found

    def members(self, conn: Connection, refs: Iterable[str]) -> list[PriorResult]:
        """The current version of each ``Observation/id`` in ``refs``, as candidates."""
        ids = sorted({ref.split("/", 1)[1] for ref in refs if ref.startswith("Observation/")})
        if not ids:
            return []
        rows: dict[tuple[str, str], Any] = {}
        found: dict[tuple[str, str], Facts] = {}
        self._add(rows, found, _read(conn, _member_rows, listed=ids))
        return self._results(conn, rows, found, history=False)

    def _results(
        self,
        conn: Connection,
        rows: dict[tuple[str, str], Any],
        found: dict[tuple[str, str], Facts],
        *,
        history: bool = True,
    ) -> list[PriorResult]:
        """Candidates from stored rows: specimens resolved, earlier versions added."""
        specimens = self._specimens(conn, found.values())
        versions = (
            self._history(conn, [key for key, r in rows.items() if r.version_id > 1])
            if history
            else {}
        )
        out = []
        zone = self.zone
        for key, f in found.items():
            hospital_id = rows[key].hospital_id
            if not hospital_id:
                continue
            specimen = specimens.get(specimen_reference(f))
            pr = from_facts(f, hospital_id=hospital_id, specimen=specimen, zone=zone)
            if pr is not None:
                out.append(pr)
            # Earlier versions go in too: the engine marks them superseded by the correction.
            for old in versions.get(key, ()):
                if old.get("meta", {}).get("versionId") == (pr.version if pr else None):
                    continue
                prev = prior_result(old, hospital_id=hospital_id, zone=zone)
                if prev is not None:
                    out.append(prev)
        return out

    @staticmethod
    def _add(
        rows: dict[tuple[str, str], Any],
        found: dict[tuple[str, str], Facts],
        read: list[Any],
    ) -> None:
        """Rows read not seen yet, and their facts (stored beside each result since
        migration 0009; a row written before has none, and its body is read instead)."""
        for r in read:
            key = (r.type, r.id)
            if key in rows:
                continue
            f = orjson.loads(r.facts) if r.facts else facts(orjson.loads(r.body))
            if f is not None:
                rows[key] = r
                found[key] = f

    def _specimens(self, conn: Connection, found: Iterable[Facts]) -> dict[str | None, str | None]:
        refs = {specimen_reference(f) for f in found} - {None}
        ids = sorted({r.split("/", 1)[1] for r in refs if r and r.startswith("Specimen/")})
        if not ids:
            return {}
        return {
            f"Specimen/{r.id}": specimen_type(orjson.loads(r.body))
            for r in _read(conn, _bodies, "Specimen", listed=ids)
        }

    def _history(
        self, conn: Connection, keys: list[tuple[str, str]]
    ) -> dict[tuple[str, str], list[JSON]]:
        """Every stored version of the corrected results, newest first, one query per type."""
        by_type: dict[str, list[str]] = {}
        for rtype, rid in keys:
            by_type.setdefault(rtype, []).append(rid)
        out: dict[tuple[str, str], list[JSON]] = {}
        for rtype, rids in by_type.items():
            for r in _read(conn, _versions, rtype, listed=sorted(rids)):
                out.setdefault((rtype, r.id), []).append(orjson.loads(r.body))
        return out

    def assess(
        self,
        principal: Principal,
        req: Request,
        *,
        auditor: Auditor | None = None,
        locate: Callable[[Connection], str] | None = None,
    ) -> Answer:
        """The engine's answer and the stored JSON of every result it mentions.

        ``locate`` finds the exchange patient (from a record id or an identifier) in the same
        read as the results, instead of ``req.patient_id``: one read a request, not two.
        The lookup goes to the savings ledger through ``auditor`` (queued with the audit
        rows when it writes in the background), or in a transaction of its own without one.
        """
        if req.requester not in self.profiles:
            raise Invalid(f"Unknown requesting hospital {req.requester!r}", expression="requester")
        with self.store.read() as conn:
            if locate is not None:
                req = replace(req, patient_id=locate(conn))
            results, stored = self.gather(conn, req)
            assessment = evaluate(
                results,
                req.codes,
                req.requester,
                req.at,
                self.rules.catalogue,
                self.profiles,
                self.credentials,
                self.rules.policy,
                members=lambda refs: self.members(conn, refs),
                trail=False,  # the answer carries the verdict, not every check behind it
                include_expired=req.include_expired,
            )
        refs = {a.result.ref for a in assessment.results} | {p.ref for p in assessment.pending}
        bodies = {ref: stored[ref] for ref in refs if ref in stored}
        row = self.decisions.lookup_row(
            lookup_from(assessment, req.department),
            patient_id=req.patient_id,
            client_id=principal.client_id,
            pending=len(assessment.pending),
        )
        if auditor is not None:
            auditor.append(LOOKUP, [row], None)
        else:
            with self.store.write() as conn:
                conn.execute(insert(LOOKUP), [row])
        return Answer(req.patient_id, assessment, bodies)


# The gather's reads. Each is built per number of listed values (codes, ids), rendered once
# per dialect and run on the DBAPI cursor (hie.index.search.Rendered): through SQLAlchemy, an
# expanding IN was re-rendered on every execution, ~0.1 ms of CPU for each of a request's
# three or four reads (issue 8). Values are bound, _v0, _v1... in the order the builder
# gives. _hits starts from ix_token_patient (patient, type, param, code, date).
_COLUMNS = (R.c.type, R.c.id, R.c.hospital_id, R.c.version_id, R.c.body, R.c.facts)


def _values(first: int, count: int) -> list[Any]:
    return [bindparam(f"_v{i}") for i in range(first, first + count)]


def _hits(shape: tuple[int, ...]) -> Any:
    """(patient, until, since, *codes, since, *codes...): the patient's results dated up to
    ``until`` with any of each group's codes since that group's instant; one index range per
    code either way."""
    branches = []
    first = 2
    for g, count in enumerate(shape):
        types: list[Any] = [bindparam(f"t{g}_{n}", t) for n, t in enumerate(sorted(RESULT_TYPES))]
        branches.append(
            select(TOKEN.c.type, TOKEN.c.res_id).where(
                TOKEN.c.patient_id == bindparam("_v0"),
                TOKEN.c.type.in_(types),
                TOKEN.c.param == "code",
                TOKEN.c.code.in_(_values(first + 1, count)),
                TOKEN.c.date >= bindparam(f"_v{first}"),
                TOKEN.c.date <= bindparam("_v1"),
            )
        )
        first += 1 + count
    found = branches[0] if len(branches) == 1 else union_all(*branches)
    tokens = select(found.subquery()).distinct().subquery()
    return select(*_COLUMNS).join(
        tokens, and_(R.c.type == tokens.c.type, R.c.id == tokens.c.res_id)
    )


def _member_rows(count: int) -> Any:
    """(*ids): those Observations, their bodies only if they have no facts (members are
    judged, never answered)."""
    body = case((R.c.facts.is_(None), R.c.body), else_=None).label("body")
    columns = (R.c.type, R.c.id, R.c.hospital_id, R.c.version_id, body, R.c.facts)
    return select(*columns).where(R.c.type == "Observation", R.c.id.in_(_values(0, count)))


def _bodies(count: int) -> Any:
    """(type, *ids): those resources."""
    return select(*_COLUMNS).where(R.c.type == bindparam("_v0"), R.c.id.in_(_values(1, count)))


def _studies(_count: int) -> Any:
    """(patient,): the patient's imaging studies."""
    return select(*_COLUMNS).where(R.c.patient_id == bindparam("_v0"), R.c.type == "ImagingStudy")


def _versions(count: int) -> Any:
    """(type, *ids): the superseded versions of those resources, newest first."""
    return (
        select(RV.c.id, RV.c.body)
        .where(RV.c.type == bindparam("_v0"), RV.c.id.in_(_values(1, count)))
        .order_by(RV.c.id, RV.c.version_id.desc())
    )


_READS = RenderedCache()


def _read(
    conn: Connection,
    build: Callable[[Any], Any],
    *values: Any,
    listed: Sequence[Any] = (),
    shape: Any = None,
) -> list[Any]:
    """Rows of ``build(shape)``: ``shape`` is the number of ``listed`` values unless given."""
    shape = len(listed) if shape is None else shape
    rendered = _READS.get(conn, (build, shape), lambda: build(shape))
    return rendered.rows(conn, [*values, *listed])
