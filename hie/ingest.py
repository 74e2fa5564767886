"""The one ingest path: validate → link the patient → upsert → dead letters and cursor, one txn.

Every adapter and every HTTP write comes through :meth:`Ingestor.ingest`. Validation (the
FHIR model set, then hie's profiles) runs before the transaction opens, so the write lock is
held only for the writes. Each unit gets its own savepoint: a unit that fails rolls back
alone, and the batch's cursor commits with whatever landed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
from sqlalchemy import (
    Connection,
    NestedTransaction,
    String,
    bindparam,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DataError, IntegrityError

from adapters.base import Batch, Cursor, DeadLetter, Unit
from hie import naming
from hie.fhir import check_model
from hie.fhirtime import BadDate, now_utc, parse_range
from hie.index import tables as t
from hie.index.patients import PatientRegistry
from hie.index.store import (
    CURRENT_ROW,
    Current,
    HeldSavepoint,
    R,
    Store,
    WriteBuffer,
    content_hash,
    savepoint,
)
from hie.outcome import Conflict, FhirError, Forbidden, Invalid, Issue, PreconditionFailed

JSON = dict[str, Any]
Validator = Callable[[JSON], list[Issue]]
CURSOR = t.Cursor.__table__  # type: ignore[attr-defined]
DEAD = t.DeadLetter.__table__  # type: ignore[attr-defined]
_PATIENT_MEMO = 4096  # Patients whose check results are remembered (about 1 MB)
_IN_CHUNK = 500  # source ids per SELECT ... IN (well under SQLite's bound-parameter limit)
# stored resources of a type by source identifier, for some hospitals (or for none)
_HOSPITALS = CURRENT_ROW.where(
    R.c.type == bindparam("type"),
    R.c.hospital_id.in_(bindparam("hospitals", expanding=True)),
    R.c.source_id.in_(bindparam("sources", expanding=True)),
)
# PostgreSQL: the same, joined to the (hospital, source) pairs themselves. Its B-tree probes the
# IN lists' cross product (hospitals × sources, twenty times the pairs in a group commit), and
# the statement's text changes with each list's length, so it is planned every time; this one
# is one text, prepared once, one probe per pair. SQLite keeps the IN lists: it has no arrays,
# and its row-value IN (VALUES …) is not answered from the index.
_PAIRS = (
    func.unnest(
        bindparam("hospitals", type_=ARRAY(String)), bindparam("sources", type_=ARRAY(String))
    )
    .table_valued("h", "s")
    .render_derived(name="asked")
)
_HOSPITALS_PG = CURRENT_ROW.join_from(
    R, _PAIRS, (R.c.hospital_id == _PAIRS.c.h) & (R.c.source_id == _PAIRS.c.s)
).where(R.c.type == bindparam("type"))
_NOBODYS = CURRENT_ROW.where(
    R.c.type == bindparam("type"),
    R.c.hospital_id.is_(None),
    R.c.source_id.in_(bindparam("sources", expanding=True)),
)


def _source_rows(
    conn: Connection, rtype: str, nobody: bool, asked: dict[str | None, set[str]]
) -> Iterator[Any]:
    """The stored rows of type ``rtype`` for the (hospital, source) pairs in ``asked``, and on
    SQLite some more (every source asked of every hospital asked): the caller keeps its pairs."""
    if nobody or conn.dialect.name != "postgresql":
        sources = sorted(set().union(*asked.values()))
        for at in range(0, len(sources), _IN_CHUNK):
            params: dict[str, Any] = {"type": rtype, "sources": sources[at : at + _IN_CHUNK]}
            if not nobody:
                params["hospitals"] = sorted(h for h in asked if h is not None)
            yield from conn.execute(_NOBODYS if nobody else _HOSPITALS, params)
        return
    pairs = [(h, s) for h, sources in asked.items() for s in sources]
    yield from conn.execute(
        _HOSPITALS_PG,
        {"type": rtype, "hospitals": [h for h, _ in pairs], "sources": [s for _, s in pairs]},
    )


SUBJECT_REQUIRED = frozenset({"Observation", "DiagnosticReport", "ImagingStudy"})


@dataclass
class Written:
    """One resource's fate inside a unit."""

    type: str
    id: str
    version: int
    status: str  # created | updated | unchanged
    body: bytes | None = None
    last_updated: Any = None


@dataclass
class ItemOutcome:
    key: str
    status: str  # created | updated | unchanged | rejected
    written: list[Written] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    error: FhirError | None = None  # the refusal, for an edge that answers one unit

    @property
    def ok(self) -> bool:
        return self.status != "rejected"


@dataclass
class BatchResult:
    items: list[ItemOutcome] = field(default_factory=list)
    dead_letters: int = 0

    def _count(self, status: str) -> int:
        return sum(1 for i in self.items for w in i.written if w.status == status)

    @property
    def received(self) -> int:
        return len(self.items) + self.dead_letters

    @property
    def created(self) -> int:
        return self._count("created")

    @property
    def updated(self) -> int:
        return self._count("updated")

    @property
    def unchanged(self) -> int:
        return self._count("unchanged")

    @property
    def rejected(self) -> int:
        return sum(1 for i in self.items if not i.ok) + self.dead_letters


# The longest "system|value" an idempotency key may be: resource.source_id's length.
SOURCE_ID_MAX: int = t.Resource.__table__.c.source_id.type.length  # type: ignore[attr-defined]


def source_identifier(resource: JSON, hospital_id: str | None) -> str | None:
    """The (hospital-scoped) identifier that makes re-sending a resource idempotent."""
    idents = [
        i
        for i in resource.get("identifier") or []
        if isinstance(i, dict) and i.get("system") and i.get("value")
    ]
    rtype = resource.get("resourceType")
    if rtype == "Patient" and hospital_id:
        for i in idents:
            if i["system"] == naming.mrn(hospital_id):
                return f"{i['system']}|{i['value']}"
    if rtype == "ImagingStudy":
        for i in idents:
            if i["system"] == naming.DICOM_UID:
                return f"{i['system']}|{str(i['value']).removeprefix('urn:oid:')}"
    return f"{idents[0]['system']}|{idents[0]['value']}" if idents else None


_UNION = ("identifier", "name", "telecom", "address")


def _issued_order(incoming: JSON, prev: Current) -> int | None:
    """-1, 0 or 1 as ``incoming`` was issued before, with or after the stored version; None
    when either does not say when."""
    new_issued = incoming.get("issued")
    if not isinstance(new_issued, str) or b'"issued"' not in prev.body:
        return None
    old_issued = orjson.loads(prev.body).get("issued")
    try:
        new, old = parse_range(new_issued)[0], parse_range(str(old_issued))[0]
    except BadDate:
        return None
    return (new > old) - (new < old)


def _same_content(digest: str, prev: Current | None) -> bool:
    """Would storing content of hash ``digest`` over ``prev`` make no new version?"""
    return prev is not None and not prev.deleted and prev.content_hash == digest


def _in_entry(issue: Issue, n: int, rtype: str) -> Issue:
    """An issue found inside a Bundle, pointed at its entry (FHIRPath from the Bundle)."""
    expr = issue.expression or rtype
    path = f"Bundle.entry[{n}].resource" + expr.removeprefix(rtype)
    return Issue(issue.diagnostics, issue.code, issue.severity, path)


def _same(value: Any) -> Any:
    """What makes two list items the same: an identifier is its system and value."""
    if isinstance(value, dict) and "system" in value and "value" in value:
        return (value["system"], value["value"])
    return value


def merge_patient(stored: JSON, incoming: JSON) -> JSON:
    """``incoming`` over ``stored``: list elements are unioned, anything else is replaced."""
    merged = {k: v for k, v in stored.items() if k not in ("id", "meta")}
    for key, value in incoming.items():
        if key in _UNION and isinstance(value, list) and isinstance(merged.get(key), list):
            have = [_same(v) for v in merged[key]]
            merged[key] = merged[key] + [v for v in value if _same(v) not in have]
        elif key not in ("id", "meta"):
            merged[key] = value
    return merged


def _digest(res: Any) -> bytes:
    """A resource's content digest, for the memos of checks already passed."""
    return hashlib.blake2b(orjson.dumps(res, option=orjson.OPT_SORT_KEYS), digest_size=16).digest()


def _rewired(node: Any, local: dict[str, str]) -> Any:
    """``node`` with every ``reference`` found in ``local`` replaced, copying only the dicts
    and lists on the way to a change: the unit's own JSON is never changed, so the same unit
    can be planned again (a retry, or the one-unit-at-a-time fallback of a batch)."""
    if type(node) is dict:
        out: dict[str, Any] | None = None
        for key, value in node.items():
            kind = type(value)
            if key == "reference" and kind is str and value in local:
                new = local[value]
            elif kind is dict or kind is list:
                new = _rewired(value, local)
                if new is value:
                    continue
            else:
                continue
            if out is None:
                out = dict(node)
            out[key] = new
        return node if out is None else out
    if type(node) is list:
        items: list[Any] | None = None
        for n, value in enumerate(node):
            if type(value) is dict or type(value) is list:
                new = _rewired(value, local)
                if new is not value:
                    if items is None:
                        items = list(node)
                    items[n] = new
        return node if items is None else items
    return node


Known = dict[tuple[str, str | None], Current]  # stored resources by (type, source id)


@dataclass
class _Shared:
    """What the units of one batch share: merges already followed, and the new rows of the
    units that landed, waiting to be sent together. (Stored resources by source identifier
    are shared per hospital: each unit's scope holds its hospital's.)"""

    follows: dict[str, str] = field(default_factory=dict)
    buffer: WriteBuffer = field(default_factory=WriteBuffer)
    pending: set[tuple[str, str]] = field(default_factory=set)  # (type, id) in the buffer

    def flush(self, conn: Connection) -> None:
        self.buffer.flush(conn)
        self.pending.clear()


class _UnitScope:
    """One unit's writes: its own buffer, what it stored, and (inside a batch) a savepoint
    opened at its first write that goes straight to the database."""

    def __init__(
        self, conn: Connection, shared: _Shared | None, known: Known | None = None
    ) -> None:
        self.conn = conn
        self.shared = shared
        # the hospital's stored resources by source id, looked up once for the batch and kept
        # current as its units land (alone, a unit looks up its own)
        self.known: Known = known if known is not None else {}
        self.buffer = WriteBuffer()
        self.seen: dict[tuple[str, str | None], Current] = {}
        self.inserted: list[tuple[str, str]] = []
        self.tx: NestedTransaction | HeldSavepoint | None = None

    def write_now(self) -> None:
        """Called before a write that is not buffered; alone, the unit is in a savepoint."""
        if self.shared is not None and self.tx is None:
            self.tx = savepoint(self.conn)

    def follow(self, registry: PatientRegistry, patient_id: str) -> str:
        if self.shared is None:
            return registry.follow(self.conn, patient_id)
        found = self.shared.follows.get(patient_id)
        if found is None:  # ingest never merges, so a batch can remember
            found = self.shared.follows[patient_id] = registry.follow(self.conn, patient_id)
        return found

    def linked(self, patient_id: str) -> None:
        """``patient_id`` is what linking a record just gave: a survivor of every merge, and
        it stays one for the batch (ingest never merges). A later unit of the batch for the
        same record follows it from here, not from the database."""
        if self.shared is not None:
            self.shared.follows.setdefault(patient_id, patient_id)

    def repoint(self, rtype: str, source: str | None, patient_id: str) -> None:
        """Remember that a stored resource now belongs to ``patient_id``."""
        cur = self.seen.get((rtype, source)) or self.known.get((rtype, source))
        if source and cur is not None:
            self.seen[(rtype, source)] = replace(cur, patient_id=patient_id)

    def commit(self) -> None:
        if self.tx is not None:
            self.tx.commit()
        if self.shared is not None:
            self.shared.buffer.extend(self.buffer)
            self.known.update(self.seen)
            self.shared.pending.update(self.inserted)

    def rollback(self) -> None:
        if self.tx is not None and self.tx.is_active:
            self.tx.rollback()


class Ingestor:
    def __init__(
        self,
        store: Store,
        registry: PatientRegistry,
        profile_check: Validator | None = None,
        extra_checks: list[Validator] | None = None,
        *,
        http_profile_check: Validator | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.profile_check = profile_check
        self.http_profile_check = http_profile_check or profile_check
        self.extra_checks = extra_checks or []
        self._patient_checks: dict[tuple[bool, bytes], list[Issue]] = {}
        self._valid_patients: set[bytes] = set()  # digests of Patients the FHIR model passed

    # -- the Sink protocol --------------------------------------------------------------
    def cursor(self, hospital_id: str, adapter: str, name: str) -> str | None:
        with self.store.read() as conn:
            row = conn.execute(
                select(CURSOR.c.value).where(
                    CURSOR.c.hospital_id == hospital_id,
                    CURSOR.c.adapter == adapter,
                    CURSOR.c.name == name,
                )
            ).first()
        return row.value if row else None

    def ingest(self, batch: Batch, *, keep_dead_letters: bool = True) -> BatchResult:
        return self.ingest_many([batch], keep_dead_letters=keep_dead_letters)[0]

    def ingest_many(
        self, batches: Sequence[Batch], *, keep_dead_letters: bool = True
    ) -> list[BatchResult]:
        """Several batches, of one hospital or several, in one transaction.

        The MLLP listener's group commit holds one message from each waiting sender, and
        those come from as many hospitals: one transaction each cost twice the CPU per
        result of one for them all, where several units of a hospital also share their
        lookups and inserts. Each unit is still judged alone, under its own hospital.
        """
        checked = [
            (unit, self._issues(unit, lenient=batch.adapter == "http"), batch.hospital_id or None)
            for batch in batches
            for unit in batch.units
        ]
        results = [BatchResult(dead_letters=len(batch.dead_letters)) for batch in batches]
        now = now_utc()
        with self.store.write() as conn:
            outcomes = iter(self._apply_all(conn, checked, now))
            for batch, result in zip(batches, results, strict=True):
                for unit in batch.units:
                    outcome = next(outcomes)
                    if not outcome.ok and keep_dead_letters:
                        reason = "; ".join(
                            f"{i.expression}: {i.diagnostics}" if i.expression else i.diagnostics
                            for i in outcome.issues
                        )
                        self._dead_letter(
                            conn,
                            batch,
                            DeadLetter(unit.key, unit.raw, reason[:4000], unit.content_type),
                            now,
                        )
                    result.items.append(outcome)
                for dead in batch.dead_letters:
                    self._dead_letter(conn, batch, dead, now)
                if batch.cursor is not None:
                    self._save_cursor(conn, batch.hospital_id, batch.adapter, batch.cursor, now)
        self.store.grew(
            sum(w.status == "created" for r in results for i in r.items for w in i.written)
        )
        return results

    def _apply_all(
        self,
        conn: Connection,
        checked: list[tuple[Unit, list[Issue], str | None]],
        now: Any,
    ) -> list[ItemOutcome]:
        """Every valid unit written; units that failed validation answered with their issues.

        Several units go through :meth:`_apply_together` (one lookup and one insert per table
        for the whole batch). If the database refuses one of its multi-unit writes, which
        unit it was is not known, so the batch is rolled back to its savepoint and written
        again one unit at a time, each in its own savepoint, as a lone unit always is.
        """
        outcomes: list[ItemOutcome | None] = [
            ItemOutcome(unit.key, "rejected", issues=issues) if issues else None
            for unit, issues, _ in checked
        ]
        todo = [(n, u, hospital) for n, (u, issues, hospital) in enumerate(checked) if not issues]
        together: dict[int, ItemOutcome] | None = None
        if len(todo) > 1 and all(unit.expected_version is None for _, unit, _ in todo):
            try:
                with conn.begin_nested():
                    together = self._apply_together(conn, todo, now)
            except (IntegrityError, DataError):
                together = None
        for n, unit, hospital in todo:
            outcomes[n] = (
                together[n]
                if together is not None
                else self._apply_with_retry(conn, unit, hospital, now)
            )
        return [o for o in outcomes if o is not None]

    def _apply_together(
        self, conn: Connection, todo: list[tuple[int, Unit, str | None]], now: Any
    ) -> dict[int, ItemOutcome]:
        """Units planned one by one against what the batch has written so far, their new
        rows sent together at the end.

        A unit whose rows all wait in the shared buffer needs no savepoint: if it fails,
        nothing of it reached the database. A unit that writes at once (a new or changed
        patient, an update) opens its own savepoint at its first such write.
        Database errors are not caught here: the caller falls back to one unit at a time.
        """
        known = self._by_sources(
            conn,
            [
                (hospital, e.resource["resourceType"], source_identifier(e.resource, hospital))
                for _, unit, hospital in todo
                for e in unit.entries
            ],
        )
        shared = _Shared()
        # the exchange patients of the batch's known hospital records, merges followed in
        # one statement (each unit's Patient would otherwise ask for its own)
        shared.follows.update(
            self.registry.follow_many(
                conn,
                (
                    cur.patient_id
                    for by_source in known.values()
                    for (rtype, _), cur in by_source.items()
                    if rtype == "Patient" and cur.patient_id
                ),
            )
        )
        out: dict[int, ItemOutcome] = {}
        for n, unit, hospital in todo:
            scope = _UnitScope(conn, shared, known.setdefault(hospital, {}))
            try:
                out[n] = self._apply(conn, unit, hospital, now, scope)
            except FhirError as exc:
                scope.rollback()
                out[n] = ItemOutcome(unit.key, "rejected", issues=exc.issues, error=exc)
                continue
            except BaseException:
                scope.rollback()
                raise
            scope.commit()
        shared.flush(conn)
        return out

    # -- validation ---------------------------------------------------------------------
    def checked(self, unit: Unit) -> Unit:
        """``unit`` with the issues :meth:`validate` finds in it (an adapter's checks, not
        HTTP's), for a caller that can check ahead of the ingest, off its critical path: the
        MLLP listener does it in the thread that mapped the message, while the commit thread
        writes the previous group. Safe from any thread."""
        return replace(unit, issues=tuple(self.validate(unit)))

    def _issues(self, unit: Unit, *, lenient: bool) -> list[Issue]:
        if unit.issues is not None and not lenient:
            return list(unit.issues)
        return self.validate(unit, lenient=lenient)

    def validate(self, unit: Unit, *, lenient: bool = False) -> list[Issue]:
        """Model and profile checks for every entry; expressions are prefixed in a Bundle."""
        issues: list[Issue] = []
        many = len(unit.entries) > 1
        for n, entry in enumerate(unit.entries):
            res = entry.resource
            rtype = res.get("resourceType") if isinstance(res, dict) else None
            path = f"Bundle.entry[{n}].resource" if many else str(rtype or "")
            digest = _digest(res) if rtype == "Patient" else None
            if (not unit.trusted or not isinstance(res, dict)) and (
                digest is None or digest not in self._valid_patients
            ):
                found = check_model(res, path=path if many else "")
                issues.extend(found)
                if found:
                    continue
                if digest is not None:
                    if len(self._valid_patients) >= _PATIENT_MEMO:
                        self._valid_patients.clear()
                    self._valid_patients.add(digest)
            for issue in self._checks(res, rtype, lenient, digest):
                if many and issue.expression and rtype:
                    expr = path + issue.expression.removeprefix(rtype)
                    issue = Issue(issue.diagnostics, issue.code, issue.severity, expr)
                issues.append(issue)
        return [i for i in issues if i.severity in ("error", "fatal")]

    def _checks(self, res: JSON, rtype: Any, lenient: bool, digest: bytes | None) -> list[Issue]:
        """hie's profile and extra checks of one resource.

        A hospital's feed repeats the same Patient with each of its results, and the checks
        are pure functions of the JSON (the national ID rules are the dear part), so a
        Patient seen before is answered from a small memo keyed by a digest of its content
        (``digest``; the FHIR model check of a Patient is remembered the same way).
        """
        profile = self.http_profile_check if lenient else self.profile_check
        checks = [*([profile] if profile else []), *self.extra_checks]
        if digest is None:
            return [issue for check in checks for issue in check(res)]
        key = (lenient, digest)
        found = self._patient_checks.get(key)
        if found is None:
            found = [issue for check in checks for issue in check(res)]
            if len(self._patient_checks) >= _PATIENT_MEMO:
                self._patient_checks.clear()
            self._patient_checks[key] = found
        return found

    # -- writing ------------------------------------------------------------------------
    def _apply_with_retry(
        self, conn: Connection, unit: Unit, hospital_id: str | None, now: Any
    ) -> ItemOutcome:
        """One unit in its own savepoint, its buffered rows sent before the savepoint ends."""
        for attempt in (1, 2):
            try:
                with conn.begin_nested():
                    scope = _UnitScope(conn, None)
                    outcome = self._apply(conn, unit, hospital_id, now, scope)
                    scope.buffer.flush(conn)
                    return outcome
            except FhirError as exc:
                return ItemOutcome(unit.key, "rejected", issues=exc.issues, error=exc)
            except DataError as exc:  # e.g. a NUL in text PostgreSQL cannot store
                return ItemOutcome(
                    unit.key,
                    "rejected",
                    issues=[Issue(f"The database refused a value: {exc.orig}", "invalid")],
                )
            except IntegrityError:
                if attempt == 2:  # a concurrent writer took the same source id twice
                    return ItemOutcome(
                        unit.key,
                        "rejected",
                        issues=[Issue("Concurrent update of the same resource; retry", "conflict")],
                    )
        raise AssertionError("unreachable")

    def _apply(
        self, conn: Connection, unit: Unit, hospital_id: str | None, now: Any, scope: _UnitScope
    ) -> ItemOutcome:
        entries = [(e.full_url, dict(e.resource)) for e in unit.entries]
        if unit.expected_version is not None:
            self._check_version(conn, entries[0], unit.expected_version)
        # 1. Give every entry its id: the stored one for a known source identifier.
        plan: list[tuple[JSON, str, Current | None, str | None, int]] = []
        local: dict[str, str] = {}
        minted: set[tuple[str, str]] = set()
        sources = [source_identifier(res, hospital_id) for _, res in entries]
        shared = scope.shared
        if shared is None:
            wanted = [
                (hospital_id, res["resourceType"], source)
                for (_, res), source in zip(entries, sources, strict=True)
            ]
            known = self._by_sources(conn, wanted).get(hospital_id, {})
        else:
            known = scope.known
            if shared.pending and self._touches(entries, sources, known, shared.pending):
                shared.flush(conn)  # this unit reads or changes a row still in the buffer
        for n, (full_url, res) in enumerate(entries):
            try:
                plan.append(
                    self._plan(conn, n, full_url, res, sources[n], known, hospital_id, minted)
                )
            except FhirError as exc:
                if len(entries) > 1:
                    exc.issues = [_in_entry(i, n, res["resourceType"]) for i in exc.issues]
                raise
            rtype, rid = res["resourceType"], plan[-1][1]
            if full_url:
                local[full_url] = f"{rtype}/{rid}"
        # 2. Point references between entries at the ids just given (transaction semantics).
        if local:
            plan = [(_rewired(res, local), *rest) for res, *rest in plan]
        return self._write(conn, unit, plan, hospital_id, now, len(entries), scope, minted)

    def _touches(
        self,
        entries: list[tuple[str | None, JSON]],
        sources: list[str | None],
        known: Known,
        pending: set[tuple[str, str]],
    ) -> bool:
        """Does a unit name a resource whose insert still waits in the batch's buffer?"""
        for (full_url, res), source in zip(entries, sources, strict=True):
            rtype = res["resourceType"]
            prev = known.get((rtype, source)) if source else None
            rid = prev.id if prev is not None else self._target_id(None, full_url, res, None)
            if rid and (rtype, rid) in pending:
                return True
        return False

    def _plan(
        self,
        conn: Connection,
        n: int,
        full_url: str | None,
        res: JSON,
        source: str | None,
        known: Known,
        hospital_id: str | None,
        minted: set[tuple[str, str]],
    ) -> tuple[JSON, str, Current | None, str | None, int]:
        """The id, stored version and source id of one entry; an id made here for a new
        resource goes into ``minted`` (nothing can be stored under it yet)."""
        rtype = res["resourceType"]
        if source is not None and len(source) > SOURCE_ID_MAX:
            # Refused by PostgreSQL's column and stored by SQLite's before: both refuse it now,
            # naming what to shorten.
            raise Invalid(
                f"{rtype}'s identifier {source[:60]}... is {len(source)} characters with its "
                f"system; the exchange keeps at most {SOURCE_ID_MAX}",
                expression=f"{rtype}.identifier",
            )
        prev = known.get((rtype, source)) if source else None
        explicit = self._target_id(conn, full_url, res, None)
        if prev is not None and explicit and explicit != prev.id:
            raise Conflict(
                f"{rtype} identifier {source} already belongs to {rtype}/{prev.id}",
                expression=f"{rtype}.identifier",
            )
        rid = self._target_id(conn, full_url, res, prev)
        if prev is None and rid:
            prev = self.store.current(conn, rtype, rid)
            if prev is not None and prev.hospital_id != hospital_id and hospital_id:
                raise Forbidden(
                    f"{rtype}/{rid} belongs to another hospital; a hospital writes only "
                    "its own results",
                    expression=f"{rtype}.id",
                )
        if not rid:
            rid = naming.new_id()
            minted.add((rtype, rid))
        if rtype == "Patient" and prev is not None and not explicit:
            # A hospital's LIS, PACS and HTTP clients each know part of the patient:
            # an upsert by MRN adds what is new instead of dropping what others sent.
            res = merge_patient(orjson.loads(prev.body), res)
        return (res, rid, prev, source, n)

    def _write(
        self,
        conn: Connection,
        unit: Unit,
        plan: list[tuple[JSON, str, Current | None, str | None, int]],
        hospital_id: str | None,
        now: Any,
        count: int,
        scope: _UnitScope,
        minted: set[tuple[str, str]],
    ) -> ItemOutcome:
        """Patients first, then everything that refers to them."""
        outcome = ItemOutcome(unit.key, "unchanged")
        patients: dict[str, str] = {}
        for res, rid, prev, source, n in sorted(
            plan, key=lambda p: p[0]["resourceType"] != "Patient"
        ):
            rtype = res["resourceType"]
            patient_id: str | None
            record_id: str | None
            digest: str | None = None
            if rtype == "Patient":
                # hashed once here and again never: a feed repeats its Patient in every unit
                digest = content_hash(res)
                linked = prev.patient_id if prev is not None else None
                if linked and _same_content(digest, prev):
                    # Same record as before: its link, identifiers and traits stand.
                    patient_id = scope.follow(self.registry, linked)
                else:
                    # Linked before it is stored, so its row is written with its patient.
                    scope.write_now()
                    patient_id = self.registry.link_record(
                        conn, rid, res, hospital_id, now, new=(rtype, rid) in minted
                    )
                    scope.linked(patient_id)
                patients[f"Patient/{rid}"] = patient_id
                record_id = rid
            else:
                try:
                    patient_id, record_id = self._patient_of(conn, res, patients)
                except FhirError as exc:
                    if count > 1:
                        exc.issues = [_in_entry(i, n, rtype) for i in exc.issues]
                    raise
            written = self._upsert(
                conn,
                res,
                rid,
                prev,
                source,
                hospital_id,
                patient_id,
                record_id,
                now,
                scope,
                # patient records are read back by the linker at once; results are not
                rtype != "Patient",
                digest,
            )
            outcome.written.append(written)
        statuses = {w.status for w in outcome.written}
        outcome.status = next((s for s in ("created", "updated") if s in statuses), "unchanged")
        return outcome

    def _check_version(
        self, conn: Connection, entry: tuple[str | None, JSON], expected: str
    ) -> None:
        """If-Match under the write lock (row lock on PostgreSQL; SQLite's write txn is
        already exclusive), so two clients holding the same version cannot both win."""
        rtype = entry[1]["resourceType"]
        rid = (entry[0] or "").rsplit("/", 1)[-1]
        row = conn.execute(
            select(R.c.version_id).where(R.c.type == rtype, R.c.id == rid).with_for_update()
        ).first()
        if row is None or str(row.version_id) != expected:
            raise PreconditionFailed(
                f'If-Match W/"{expected}" does not match the current version '
                f"({row.version_id if row else 'none'})"
            )

    def _by_sources(
        self, conn: Connection, wanted: list[tuple[str | None, str, str | None]]
    ) -> dict[str | None, Known]:
        """The stored resources of some (hospital, type, source identifier), by hospital.

        One query per type for every hospital of the batch: a group commit holds about one
        message per hospital, and a query per hospital and type was a third of its CPU. On
        PostgreSQL the query joins the pairs asked for (one index probe each); on SQLite it
        asks for every source of every hospital in it and keeps the pairs asked for.
        """
        by_type: dict[tuple[str, bool], dict[str | None, set[str]]] = {}
        for hospital, rtype, source in wanted:
            if source:
                by_type.setdefault((rtype, hospital is None), {}).setdefault(hospital, set()).add(
                    source
                )
        found: dict[str | None, Known] = {}
        for (rtype, nobody), asked in by_type.items():
            for row in _source_rows(conn, rtype, nobody, asked):
                if row.source_id in asked.get(row.hospital_id, ()):
                    found.setdefault(row.hospital_id, {})[(rtype, row.source_id)] = Current(
                        **row._mapping
                    )
        return found

    def _target_id(
        self, conn: Connection | None, full_url: str | None, res: JSON, prev: Current | None
    ) -> str | None:
        if prev is not None:
            return prev.id
        if full_url and not full_url.startswith(("urn:uuid:", "urn:oid:")):
            # "Observation/123" or an absolute URL ending so: an update to a known id
            tail = full_url.rstrip("/").split("/")
            if len(tail) >= 2 and tail[-2] == res["resourceType"]:
                return tail[-1]
        return None

    def _patient_of(
        self, conn: Connection, res: JSON, in_unit: dict[str, str]
    ) -> tuple[str | None, str | None]:
        rtype = res["resourceType"]
        subject = res.get("subject")
        if not isinstance(subject, dict):
            if rtype in SUBJECT_REQUIRED:
                raise Invalid(f"{rtype}.subject is required", expression=f"{rtype}.subject")
            return None, None
        ref = subject.get("reference")
        if isinstance(ref, str):
            if ref in in_unit:
                return in_unit[ref], ref.split("/", 1)[1]
            if ref.startswith("Patient/"):
                found = self.registry.resolve(conn, ref.split("/", 1)[1])
                if found:
                    return found
            raise Invalid(
                f"{rtype}.subject refers to {ref!r}, which is not a patient this exchange knows; "
                "send the Patient in the same Bundle or refer to it by identifier",
                expression=f"{rtype}.subject",
            )
        ident = subject.get("identifier")
        if isinstance(ident, dict) and ident.get("system") and ident.get("value"):
            found_rec = self.registry.record_of(conn, str(ident["system"]), str(ident["value"]))
            if found_rec:
                return found_rec
            raise Invalid(
                f"No patient with identifier {ident['system']}|{ident['value']} is known",
                expression=f"{rtype}.subject.identifier",
            )
        raise Invalid(
            f"{rtype}.subject must be a reference or an identifier", expression=f"{rtype}.subject"
        )

    def _upsert(
        self,
        conn: Connection,
        res: JSON,
        rid: str,
        prev: Current | None,
        source: str | None,
        hospital_id: str | None,
        patient_id: str | None,
        record_id: str | None,
        now: Any,
        scope: _UnitScope,
        buffered: bool = True,
        digest: str | None = None,
    ) -> Written:
        digest = digest or content_hash(res)
        rtype = res["resourceType"]
        order = None if prev is None else _issued_order(res, prev)
        if prev is not None and order == -1:
            # A late copy of an earlier issue (e.g. the original after its correction) must
            # not roll the result back; history already holds it.
            return Written(rtype, rid, prev.version_id, "unchanged", prev.body, prev.last_updated)
        if prev is not None and order == 0 and prev.content_hash != digest and not prev.deleted:
            # Issued at the same time as the stored version: a cancellation or correction
            # that kept its original's ``issued``. Content the result already had is the feed
            # replayed (the original again after its cancellation), not news: applying it
            # flipped the result back, and the replayed cancellation flipped it again.
            scope.write_now()  # an earlier version may still be queued in this batch
            if self.store.had_content(conn, rtype, rid, digest):
                return Written(
                    rtype, rid, prev.version_id, "unchanged", prev.body, prev.last_updated
                )
        if prev is not None and prev.content_hash == digest and not prev.deleted:
            if prev.patient_id != patient_id and patient_id:
                scope.write_now()
                self._set_patient(conn, rtype, rid, patient_id)
                scope.repoint(rtype, source, patient_id)
            return Written(rtype, rid, prev.version_id, "unchanged", prev.body, prev.last_updated)
        if prev is not None or not buffered:
            scope.write_now()
        stored_hospital = hospital_id if prev is None else prev.hospital_id or hospital_id
        stored_patient = patient_id
        version, body = self.store.put(
            conn,
            res,
            rid=rid,
            prev=prev,
            now=now,
            hospital_id=stored_hospital,
            source_id=source,
            patient_id=stored_patient,
            record_id=record_id,
            digest=digest,
            buffer=scope.buffer if buffered else None,
        )
        if buffered and prev is None:
            scope.inserted.append((rtype, rid))
        if source:
            scope.seen[(rtype, source)] = Current(
                rtype,
                rid,
                version,
                now,
                stored_hospital,
                source,
                stored_patient,
                record_id,
                False,
                digest,
                body,
            )
        return Written(rtype, rid, version, "updated" if prev else "created", body, now)

    def _set_patient(self, conn: Connection, rtype: str, rid: str, patient_id: str) -> None:
        self.store.set_patient(conn, rtype, rid, patient_id)

    def _dead_letter(self, conn: Connection, batch: Batch, dead: DeadLetter, now: Any) -> None:
        same = conn.execute(
            select(DEAD.c.raw).where(
                DEAD.c.hospital_id == batch.hospital_id,
                DEAD.c.adapter == batch.adapter,
                DEAD.c.key == dead.key[:512],
                DEAD.c.status == "new",
            )
        ).all()
        if any(row.raw == dead.raw for row in same):
            return  # a replayed file or a sender's retry: the letter is already waiting
        conn.execute(
            insert(DEAD).values(
                hospital_id=batch.hospital_id,
                adapter=batch.adapter,
                key=dead.key[:512],
                received=now,
                reason=dead.reason,
                location=dead.location,
                content_type=dead.content_type,
                status="new",
                attempts=0,
                raw=dead.raw,
            )
        )

    def _save_cursor(
        self, conn: Connection, hospital_id: str, adapter: str, cursor: Cursor, now: Any
    ) -> None:
        done = conn.execute(
            update(CURSOR)
            .where(
                CURSOR.c.hospital_id == hospital_id,
                CURSOR.c.adapter == adapter,
                CURSOR.c.name == cursor.name,
            )
            .values(value=cursor.value, updated=now)
        )
        if done.rowcount == 0:
            conn.execute(
                insert(CURSOR).values(
                    hospital_id=hospital_id,
                    adapter=adapter,
                    name=cursor.name,
                    value=cursor.value,
                    updated=now,
                )
            )
