"""The patient registry: hospital Patient records linked to exchange patients, in SQL.

A hospital's Patient resource is stored as sent (a *record*). Each record is linked to one
*exchange patient*, whose own Patient resource (the *master*) the registry writes: the union
of the records' identifiers and a ``link`` (type ``seealso``) to each record. Results keep
the subject their hospital gave them; the index's ``patient_id`` column says which exchange
patient they belong to, so link, unlink and merge move rows without rewriting any JSON.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any, NamedTuple

import orjson
from sqlalchemy import Connection, and_, bindparam, delete, insert, or_, select, update

from hie import naming
from hie.identity.linker import Link, Review
from hie.identity.traits import from_patient
from hie.index import tables as t
from hie.index.mpi import Mpi, merge_pointer
from hie.index.store import R, Store, _Fast, content_hash

JSON = dict[str, Any]
EP = t.ExchangePatient.__table__  # type: ignore[attr-defined]
PR = t.PatientRecord.__table__  # type: ignore[attr-defined]
PI = t.PatientIdentifier.__table__  # type: ignore[attr-defined]

# Built once: the linker runs these for every new hospital record of a bulk load, and
# building the expression per call cost more Python time than the query. The patient's merge
# pointer comes in the same row (a primary-key subquery), so only a merged patient costs a
# second statement (``follow``).
_BY_IDENTIFIER = (
    select(PI.c.patient_id, PI.c.record_id, merge_pointer(PI.c.patient_id))
    .where(PI.c.system == bindparam("_system"), PI.c.value == bindparam("_value"))
    .limit(1)
)


@lru_cache(maxsize=32)
def _by_identifiers(count: int) -> Any:
    """``count`` (system, value) pairs, bound ``_s0, _v0, ...``: an OR of the pairs, which
    both backends answer from the primary key (SQLite scanned the table for a row-value IN)."""
    return (
        select(PI.c.system, PI.c.value, PI.c.patient_id, merge_pointer(PI.c.patient_id))
        .where(
            or_(
                *(
                    and_(PI.c.system == bindparam(f"_s{n}"), PI.c.value == bindparam(f"_v{n}"))
                    for n in range(count)
                )
            )
        )
        .order_by(PI.c.system, PI.c.value, PI.c.record_id)
    )


_MERGED_INTO = select(EP.c.merged_into).where(EP.c.id == bindparam("_id"))
_PATIENT = select(EP.c.id, EP.c.merged_into).where(EP.c.id == bindparam("_id"))
_MERGED_INTO_MANY = select(EP.c.id, EP.c.merged_into).where(
    EP.c.id.in_(bindparam("_ids", expanding=True))
)
_RECORD_PATIENT = select(PR.c.patient_id).where(PR.c.record_id == bindparam("_id"))
_RECORD = select(PR).where(PR.c.record_id == bindparam("_record"))
_RECORDS = select(PR.c.record_id).where(PR.c.patient_id == bindparam("_patient"))
# A patient's records with their stored Patient (records not stored yet are left out):
# one statement where reading each record's Patient was one more round trip per record.
_RECORD_BODIES = (
    select(PR.c.record_id, R.c.last_updated, R.c.body)
    .select_from(PR.join(R, and_(R.c.type == "Patient", R.c.id == PR.c.record_id)))
    .where(PR.c.patient_id == bindparam("_patient"))
    .order_by(PR.c.record_id)
)
_INSERT_EP = _Fast(insert(EP))
_INSERT_PR = _Fast(insert(PR))
_INSERT_PI = _Fast(insert(PI))
_DELETE_PI = _Fast(delete(PI).where(PI.c.record_id == bindparam("_record")))

FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
MASTER_TAG = {"system": f"{naming.BASE}/cs/patient-kind", "code": "master"}


def identifiers(record: JSON) -> list[tuple[str, str]]:
    return [
        (str(i["system"]), str(i["value"]))
        for i in record.get("identifier") or []
        if isinstance(i, dict) and i.get("system") and i.get("value")
    ]


class StoredRecord(NamedTuple):
    record_id: str
    last_updated: datetime
    body: bytes


class PatientRegistry:
    def __init__(self, store: Store, mpi: Mpi | None = None) -> None:
        self.store = store
        self.mpi = mpi or Mpi()

    # -- lookups ------------------------------------------------------------------------
    def by_identifier(self, conn: Connection, system: str, value: str) -> str | None:
        row = conn.execute(_BY_IDENTIFIER, {"_system": system, "_value": value}).first()
        if row is None:
            return None
        return self.follow(conn, row.patient_id) if row.merged_into else row.patient_id

    def by_identifiers(
        self, conn: Connection, pairs: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], str]:
        """:meth:`by_identifier` for each ``(system, value)``, in one statement: the linker
        asks for a record's identifiers together (national ID, passports, MRNs: ~4 round
        trips a new record before). Pairs no one holds are left out."""
        wanted = list(dict.fromkeys(pairs))
        found: dict[tuple[str, str], str] = {}
        for at in range(0, len(wanted), 32):
            chunk = wanted[at : at + 32]
            params = {}
            for n, (system, value) in enumerate(chunk):
                params[f"_s{n}"], params[f"_v{n}"] = system, value
            for row in conn.execute(_by_identifiers(len(chunk)), params):
                pair = (row.system, row.value)
                if pair not in found:  # the first holder, as by_identifier's LIMIT 1
                    merged = row.merged_into
                    found[pair] = self.follow(conn, row.patient_id) if merged else row.patient_id
        return found

    def follow(self, conn: Connection, patient_id: str) -> str:
        """Follow merges to the surviving exchange patient."""
        seen = {patient_id}
        while True:
            row = conn.execute(_MERGED_INTO, {"_id": patient_id}).first()
            if row is None or not row.merged_into or row.merged_into in seen:
                return patient_id
            patient_id = row.merged_into
            seen.add(patient_id)

    def follow_many(self, conn: Connection, patient_ids: Iterable[str]) -> dict[str, str]:
        """:meth:`follow` for many patients, in one statement for those never merged (nearly
        all): a batch of MLLP messages from as many patients made one round trip each."""
        ids = sorted(set(patient_ids))
        out: dict[str, str] = {}
        for at in range(0, len(ids), 500):
            rows = conn.execute(_MERGED_INTO_MANY, {"_ids": ids[at : at + 500]})
            for row in rows:
                out[row.id] = self.follow(conn, row.id) if row.merged_into else row.id
        return out

    def resolve(self, conn: Connection, any_id: str) -> tuple[str, str | None] | None:
        """An exchange patient id or a hospital record id → (exchange patient, record or None).

        Searches name the exchange patient nearly always, so that is looked up first, with
        its merge pointer in the same row: one statement for an unmerged patient.
        """
        if not FHIR_ID.fullmatch(any_id):
            return None
        row = conn.execute(_PATIENT, {"_id": any_id}).first()
        if row is not None:
            return (self.follow(conn, any_id) if row.merged_into else any_id), None
        rec = conn.execute(_RECORD_PATIENT, {"_id": any_id}).first()
        return (self.follow(conn, rec.patient_id), any_id) if rec else None

    def record_of(self, conn: Connection, system: str, value: str) -> tuple[str, str] | None:
        """(exchange patient, record id) for a patient identifier, for identifier-only subjects."""
        row = conn.execute(_BY_IDENTIFIER, {"_system": system, "_value": value}).first()
        if row is None:
            return None
        patient_id = self.follow(conn, row.patient_id) if row.merged_into else row.patient_id
        return patient_id, row.record_id

    def records(self, conn: Connection, patient_id: str) -> list[str]:
        return [r.record_id for r in conn.execute(_RECORDS, {"_patient": patient_id})]

    def stored_records(self, conn: Connection, patient_id: str) -> list[StoredRecord]:
        """The patient's records whose Patient is stored, with it (by record id)."""
        return [
            StoredRecord(r.record_id, r.last_updated, r.body)
            for r in conn.execute(_RECORD_BODIES, {"_patient": patient_id})
        ]

    # -- writes -------------------------------------------------------------------------
    def new_patient(self, conn: Connection, now: datetime) -> str:
        pid = naming.new_id()
        _INSERT_EP(conn, {"id": pid, "created": now, "merged_into": None})
        return pid

    def link_record(
        self,
        conn: Connection,
        record_id: str,
        record: JSON,
        hospital_id: str | None,
        now: datetime,
        *,
        new: bool = False,
    ) -> str:
        """Link (or re-link) a hospital record; returns its exchange patient.

        Needs nothing of the record in ``resource`` (the caller may store it after, with the
        patient this returns). A record seen for the first time that starts a new exchange
        patient takes a shorter way: there is nothing of either to read back or delete.
        ``new``: the caller has just made ``record_id`` up, so no link of it can exist yet
        (one SELECT less for every new hospital record of a bulk load).
        """
        traits = from_patient(record)
        existing = None if new else conn.execute(_RECORD, {"_record": record_id}).first()
        fresh = False
        if existing is not None:
            patient_id = self.follow(conn, existing.patient_id)
        else:
            decision = self.mpi.decide(conn, self, traits)
            if isinstance(decision, Link):
                # a survivor already: the directory follows merges for what it returns
                patient_id = decision.patient_id
                rule, score = str(decision.rule), decision.score
            else:  # a new person, or a grey-zone pair for a human: never merged here
                patient_id = self.new_patient(conn, now)
                fresh = True
                rule = "review" if isinstance(decision, Review) else "new"
                score = decision.score if isinstance(decision, Review) else decision.best_score
            _INSERT_PR(
                conn,
                {
                    "record_id": record_id,
                    "patient_id": patient_id,
                    "hospital_id": hospital_id,
                    "rule": rule,
                    "score": score,
                },
            )
            self.mpi.record_decision(conn, decision, record_id, patient_id, now)
        if existing is not None:  # identifiers are written only with a record
            _DELETE_PI(conn, {"_record": record_id})
        rows = [
            {"system": s[:255], "value": v[:255], "record_id": record_id, "patient_id": patient_id}
            for s, v in dict.fromkeys(identifiers(record))
        ]
        if rows:
            _INSERT_PI(conn, rows)
        # an existing patient's other records, read once for its traits and its master
        stored = None if fresh else self.stored_records(conn, patient_id)
        self.mpi.refresh(
            conn,
            self,
            [patient_id],
            known={record_id: traits},
            fresh=fresh,
            stored=None if stored is None else {patient_id: stored},
        )
        self.write_master(
            conn, patient_id, now, known={record_id: record}, fresh=fresh, stored=stored
        )
        return patient_id

    def move_records(
        self, conn: Connection, record_ids: Sequence[str], to_patient: str, now: datetime
    ) -> None:
        """Re-link records (unlink, merge): the records, their identifiers and their results."""
        before = {
            self.follow(conn, r.patient_id)
            for r in conn.execute(select(PR.c.patient_id).where(PR.c.record_id.in_(record_ids)))
        }
        conn.execute(update(PR).where(PR.c.record_id.in_(record_ids)).values(patient_id=to_patient))
        conn.execute(update(PI).where(PI.c.record_id.in_(record_ids)).values(patient_id=to_patient))
        self.store.repoint_patient(conn, to_patient, record_ids=record_ids)
        for pid in before | {to_patient}:
            self.write_master(conn, pid, now)

    def write_master(
        self,
        conn: Connection,
        patient_id: str,
        now: datetime,
        known: dict[str, JSON] | None = None,
        *,
        fresh: bool = False,
        stored: list[StoredRecord] | None = None,
    ) -> None:
        """(Re)write the exchange patient's own Patient resource from its records.

        ``known`` holds records just written in this transaction (as JSON), which are then
        not read back. ``fresh``: the patient was made in this transaction and ``known``
        holds all its records, so it has no master, no other record and no merge yet.
        ``stored``: the patient's :meth:`stored_records`, if the caller has read them.
        """
        known = known or {}
        recs = [(now, rid, rec) for rid, rec in known.items()]
        if not fresh:
            for row in self.stored_records(conn, patient_id) if stored is None else stored:
                if row.record_id not in known:
                    recs.append((row.last_updated, row.record_id, orjson.loads(row.body)))
        recs.sort(key=lambda r: (r[0], r[1]))
        merged = None if fresh else conn.execute(_MERGED_INTO, {"_id": patient_id}).first()
        master: JSON = {"resourceType": "Patient", "meta": {"tag": [MASTER_TAG]}}
        idents: list[JSON] = [{"system": naming.EXCHANGE_PATIENT, "value": patient_id}]
        seen: set[tuple[Any, Any]] = {(naming.EXCHANGE_PATIENT, patient_id)}
        names: list[JSON] = []
        for _, _, rec in recs:
            for ident in rec.get("identifier") or []:
                same = (
                    (ident.get("system"), ident.get("value")) if isinstance(ident, dict) else None
                )
                if same and same not in seen:
                    seen.add(same)
                    idents.append(ident)
            for name in rec.get("name") or []:
                if name not in names:
                    names.append(name)
        master["identifier"] = idents
        if names:
            master["name"] = names
        if recs:
            newest = recs[-1][2]
            for key in ("gender", "birthDate", "telecom", "address"):
                if key in newest:
                    master[key] = newest[key]
        links = [
            {"other": {"reference": f"Patient/{rid}"}, "type": "seealso"} for _, rid, _ in recs
        ]
        if merged and merged.merged_into:
            links.append(
                {"other": {"reference": f"Patient/{merged.merged_into}"}, "type": "replaced-by"}
            )
        if links:
            master["link"] = links
        master["active"] = not (merged and merged.merged_into)
        prev = None if fresh else self.store.current(conn, "Patient", patient_id)
        digest = content_hash(master)
        if prev is not None and prev.content_hash == digest:
            return
        self.store.put(
            conn,
            master,
            rid=patient_id,
            prev=prev,
            now=now,
            hospital_id=None,
            source_id=f"exchange:{patient_id}",
            patient_id=patient_id,
            digest=digest,
        )
