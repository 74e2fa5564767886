"""The master patient index in SQL: link decisions, review queue, unlink and merge, history.

The decision itself is :func:`hie.identity.linker.decide` (pure); this module gives it a
:class:`SqlDirectory` to look in, keeps each exchange patient's merged traits and blocking
keys up to date, writes a ``link_event`` for every change and a ``review_item`` for every
grey-zone or conflicting pair. Nothing here merges in the grey zone: a human accepts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import Connection, bindparam, delete, insert, select, update

from hie.identity.blocking import blocking_keys
from hie.identity.directory import Candidate
from hie.identity.linker import Link, LinkDecision, MatchSettings, NewPatient, Review, decide
from hie.identity.traits import Traits, from_patient
from hie.index import tables as t
from hie.index.store import _Fast
from hie.outcome import Invalid, Issue, NotFound

if TYPE_CHECKING:
    from hie.index.patients import PatientRegistry, StoredRecord

JSON = dict[str, Any]
TRAITS = t.PatientTraits.__table__  # type: ignore[attr-defined]
BLOCK = t.PatientBlock.__table__  # type: ignore[attr-defined]
EVENT = t.LinkEventRow.__table__  # type: ignore[attr-defined]
REVIEW = t.ReviewItemRow.__table__  # type: ignore[attr-defined]
PR = t.PatientRecord.__table__  # type: ignore[attr-defined]
EP = t.ExchangePatient.__table__  # type: ignore[attr-defined]
# Built once (see hie.index.patients): run for every new hospital record of a bulk load.
_INSERT_TRAITS = _Fast(insert(TRAITS))
_INSERT_BLOCK = _Fast(insert(BLOCK))
_INSERT_EVENT = _Fast(insert(EVENT))
_DELETE_TRAITS = _Fast(delete(TRAITS).where(TRAITS.c.patient_id == bindparam("_patient")))
_DELETE_BLOCKS = _Fast(delete(BLOCK).where(BLOCK.c.patient_id == bindparam("_patient")))


def merge_pointer(patient_id: Any) -> Any:
    """The ``merged_into`` of the exchange patient in column ``patient_id``, as a labelled
    scalar subquery: one primary-key probe per row, not a join. PostgreSQL planned the join
    as a hash of the whole exchange_patient table whenever its statistics were older than the
    table (a fresh index under its first load: 3 ms a decision instead of 0.4)."""
    return (
        select(EP.c.merged_into).where(EP.c.id == patient_id).scalar_subquery().label("merged_into")
    )


# A candidate block with each patient's merge pointer: one statement, and a ``follow`` only
# for the (rare) merged patient, instead of one per candidate.
_BLOCKED = (
    select(BLOCK.c.patient_id, merge_pointer(BLOCK.c.patient_id))
    .where(BLOCK.c.key.in_(bindparam("_keys", expanding=True)))
    .distinct()
)
_TRAITS_OF = select(TRAITS).where(TRAITS.c.patient_id.in_(bindparam("_ids", expanding=True)))
# The block with each unmerged patient's traits beside it: the candidates of a decision in one
# statement, not two (a round trip saved for each new hospital record of a load).
_BLOCK = _BLOCKED.subquery()
_BLOCKED_TRAITS = select(
    _BLOCK.c.patient_id,
    _BLOCK.c.merged_into,
    select(TRAITS.c.traits)
    .where(TRAITS.c.patient_id == _BLOCK.c.patient_id)
    .scalar_subquery()
    .label("traits"),
)


class SqlDirectory:
    """:class:`hie.identity.directory.PatientDirectory` over the index's tables."""

    def __init__(self, conn: Connection, registry: PatientRegistry) -> None:
        self.conn = conn
        self.registry = registry

    def by_identifiers(self, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        return self.registry.by_identifiers(self.conn, pairs)

    def candidates(self, keys: list[str]) -> list[Candidate]:
        if not keys:
            return []
        found: dict[str, str | None] = {}  # patient -> traits (None: read after a merge)
        for r in self.conn.execute(_BLOCKED_TRAITS, {"_keys": keys}):
            if r.merged_into:  # rare: the survivor's traits are read on their own
                found.setdefault(self.registry.follow(self.conn, r.patient_id), None)
            elif r.traits is not None:
                found[r.patient_id] = r.traits
        later = sorted(pid for pid, traits in found.items() if traits is None)
        if later:
            for r in self.conn.execute(_TRAITS_OF, {"_ids": later}):
                found[r.patient_id] = r.traits
        return [
            Candidate(pid, Traits.from_json(orjson.loads(traits)))
            for pid, traits in sorted(found.items())
            if traits is not None
        ]


@dataclass(frozen=True)
class ReviewView:
    id: int
    created: datetime
    record_id: str
    candidate_patient_id: str
    current_patient_id: str | None
    score: float | None
    reasons: list[str]
    status: str
    decided_by: str | None


def _review(row: Any) -> ReviewView:
    return ReviewView(
        row.id,
        row.created,
        row.record_id,
        row.candidate_patient_id,
        row.current_patient_id,
        row.score,
        orjson.loads(row.reasons or "[]"),
        row.status,
        row.decided_by,
    )


class Mpi:
    """Identity operations on the index; every change leaves a ``link_event``."""

    def __init__(self, settings: MatchSettings | None = None) -> None:
        self.settings = settings or MatchSettings()

    # -- linking a record ---------------------------------------------------------------
    def decide(self, conn: Connection, registry: PatientRegistry, traits: Traits) -> LinkDecision:
        return decide(traits, SqlDirectory(conn, registry), self.settings)

    def record_decision(
        self,
        conn: Connection,
        decision: LinkDecision,
        record_id: str,
        patient_id: str,
        at: datetime,
    ) -> None:
        rule = decision.rule if isinstance(decision, Link) else "new"
        score = decision.score if isinstance(decision, Link | Review) else decision.best_score
        self.event(conn, "link", record_id, None, patient_id, rule, score, "system", at)
        if isinstance(decision, Review):
            conn.execute(
                insert(REVIEW).values(
                    created=at,
                    record_id=record_id,
                    candidate_patient_id=decision.candidate_patient_id,
                    current_patient_id=patient_id,
                    score=decision.score,
                    reasons=orjson.dumps(list(decision.reasons)).decode(),
                    status="open",
                )
            )

    def event(
        self,
        conn: Connection,
        action: str,
        record_id: str,
        from_patient: str | None,
        to_patient: str | None,
        rule: str,
        score: float | None,
        actor: str,
        at: datetime,
    ) -> None:
        _INSERT_EVENT(
            conn,
            {
                "at": at,
                "action": action,
                "record_id": record_id,
                "from_patient": from_patient,
                "to_patient": to_patient,
                "rule": rule,
                "score": score,
                "actor": actor,
            },
        )

    def refresh(
        self,
        conn: Connection,
        registry: PatientRegistry,
        patient_ids: Iterable[str],
        known: dict[str, Traits] | None = None,
        *,
        fresh: bool = False,
        stored: dict[str, list[StoredRecord]] | None = None,
    ) -> None:
        """Recompute merged traits and blocking keys of patients from their records.

        ``known`` holds traits already computed for some records (the one being linked), so
        they are not read back and parsed again. ``fresh``: the patients were made in this
        transaction and ``known`` holds all their records (nothing to read or delete).
        ``stored``: :meth:`PatientRegistry.stored_records` of patients the caller has read.
        """
        known = known or {}
        ids = set(patient_ids)
        if known and len(ids) != 1:
            raise ValueError("known records are one patient's: refresh that patient alone")
        for pid in ids:
            records = list(known.items()) if fresh else []
            if not fresh:
                rows = (stored or {}).get(pid)
                if rows is None:
                    rows = registry.stored_records(conn, pid)
                mine = {r.record_id for r in rows}
                records += [(rid, t) for rid, t in known.items() if rid not in mine]
                for row in rows:
                    if row.record_id in known:
                        records.append((row.record_id, known[row.record_id]))
                        continue
                    try:
                        records.append((row.record_id, from_patient(orjson.loads(row.body))))
                    except Invalid:
                        continue
            merged: Traits | None = None
            for _, traits in sorted(records, key=lambda r: r[0]):
                merged = merged.merge(traits) if merged else traits
            if not fresh:
                _DELETE_TRAITS(conn, {"_patient": pid})
                _DELETE_BLOCKS(conn, {"_patient": pid})
            if merged is None:
                continue
            _INSERT_TRAITS(
                conn, {"patient_id": pid, "traits": orjson.dumps(merged.to_json()).decode()}
            )
            keys = sorted(set(blocking_keys(merged)))
            if keys:
                _INSERT_BLOCK(conn, [{"key": k[:128], "patient_id": pid} for k in keys])

    # -- what people do ---------------------------------------------------------------------
    def reviews(self, conn: Connection, status: str | None = "open") -> list[ReviewView]:
        stmt = select(REVIEW).order_by(REVIEW.c.created, REVIEW.c.id)
        if status:
            stmt = stmt.where(REVIEW.c.status == status)
        return [_review(r) for r in conn.execute(stmt)]

    def review(self, conn: Connection, review_id: int) -> ReviewView:
        row = conn.execute(select(REVIEW).where(REVIEW.c.id == review_id)).first()
        if row is None:
            raise NotFound(f"No review item {review_id}", expression="id")
        return _review(row)

    def accept(
        self, conn: Connection, registry: PatientRegistry, review_id: int, actor: str, at: datetime
    ) -> ReviewView:
        """The record joins the candidate patient; its results follow it."""
        item = self._open(conn, review_id)
        target = registry.follow(conn, item.candidate_patient_id)
        current = self._patient_of_record(conn, registry, item.record_id)
        self.move(conn, registry, [item.record_id], target, "review:accepted", actor, at)
        self._retire_if_empty(conn, registry, current, target, at)
        self._close(conn, review_id, "accepted", actor, at)
        return self.review(conn, review_id)

    def reject(self, conn: Connection, review_id: int, actor: str, at: datetime) -> ReviewView:
        self._open(conn, review_id)
        self._close(conn, review_id, "rejected", actor, at)
        return self.review(conn, review_id)

    def unlink(
        self, conn: Connection, registry: PatientRegistry, record_id: str, actor: str, at: datetime
    ) -> str:
        """Undo the record's last link: back to the patient it came from, or a new one."""
        current = self._patient_of_record(conn, registry, record_id)
        last = conn.execute(
            select(EVENT)
            .where(EVENT.c.record_id == record_id, EVENT.c.to_patient == current)
            .order_by(EVENT.c.at.desc(), EVENT.c.id.desc())
            .limit(1)
        ).first()
        # Back to the patient it came from, as it was: not followed through the merge that
        # retired it (following would land on the patient it is being unlinked from).
        target = last.from_patient if last is not None and last.from_patient else None
        if target == current:
            target = None
        if target is None:
            target = registry.new_patient(conn, at)
        else:  # the patient it came from may have been retired by the merge: revive it
            conn.execute(update(EP).where(EP.c.id == target).values(merged_into=None))
        self.move(conn, registry, [record_id], target, "manual:unlink", actor, at, action="unlink")
        return target

    def merge(
        self,
        conn: Connection,
        registry: PatientRegistry,
        source: str,
        target: str,
        actor: str,
        at: datetime,
    ) -> None:
        """Every record of ``source`` moves to ``target``; ``source`` is retired (replaced-by)."""
        source, target = registry.follow(conn, source), registry.follow(conn, target)
        if source == target:
            raise Invalid("Both ids name the same exchange patient", expression="target")
        records = registry.records(conn, source)
        self.move(conn, registry, records, target, "manual:merge", actor, at, action="merge")
        self._retire_if_empty(conn, registry, source, target, at)

    def history(self, conn: Connection, patient_id: str) -> list[dict[str, Any]]:
        rows = conn.execute(
            select(EVENT)
            .where((EVENT.c.to_patient == patient_id) | (EVENT.c.from_patient == patient_id))
            .order_by(EVENT.c.at, EVENT.c.id)
        )
        return [{k: v for k, v in r._mapping.items() if k != "id"} for r in rows]

    # -- mechanics ------------------------------------------------------------------------
    def move(
        self,
        conn: Connection,
        registry: PatientRegistry,
        record_ids: list[str],
        target: str,
        rule: str,
        actor: str,
        at: datetime,
        *,
        action: str = "merge",
    ) -> None:
        before = {r: self._patient_of_record(conn, registry, r) for r in record_ids}
        registry.move_records(conn, record_ids, target, at)
        for rid, old in before.items():
            self.event(conn, action, rid, old, target, rule, None, actor, at)
        self.refresh(conn, registry, [*before.values(), target])

    def _patient_of_record(
        self, conn: Connection, registry: PatientRegistry, record_id: str
    ) -> str:
        row = conn.execute(select(PR.c.patient_id).where(PR.c.record_id == record_id)).first()
        if row is None:
            raise NotFound(f"No patient record {record_id}", expression="record")
        return registry.follow(conn, row.patient_id)

    def _retire_if_empty(
        self, conn: Connection, registry: PatientRegistry, old: str, survivor: str, at: datetime
    ) -> None:
        if old != survivor and not registry.records(conn, old):
            conn.execute(update(EP).where(EP.c.id == old).values(merged_into=survivor))
            registry.write_master(conn, old, at)

    def _open(self, conn: Connection, review_id: int) -> ReviewView:
        item = self.review(conn, review_id)
        if item.status != "open":
            raise Invalid(f"Review item {review_id} is already {item.status}", expression="id")
        return item

    def _close(
        self, conn: Connection, review_id: int, status: str, actor: str, at: datetime
    ) -> None:
        conn.execute(
            update(REVIEW)
            .where(REVIEW.c.id == review_id)
            .values(status=status, decided_by=actor, decided_at=at)
        )


__all__ = ["Mpi", "NewPatient", "ReviewView", "SqlDirectory"]


def identity_issues(resource: JSON) -> list[Issue]:
    """Ingest check: a Patient whose national ID breaks GB 11643 (or contradicts the record's
    birth date or sex) is refused with the reason, never linked by that number."""
    if not isinstance(resource, dict) or resource.get("resourceType") != "Patient":
        return []
    try:
        from_patient(resource)
    except Invalid as exc:
        return list(exc.issues)
    return []
