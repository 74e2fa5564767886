"""The decision store and lookups ledger (SQL) behind ``hie.recognition``'s pure rules.

One store for every edge: ``$prior-results`` clients, the CDS Hooks feedback endpoint and the
SMART app all record here, so the savings report counts each decision once. Rules (coded
decline reasons, free text for clinician judgement, items on the list) are checked by
:func:`hie.recognition.check_decision`; decisions are never deleted, a withdrawal is stamped.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, insert, select, update

from hie.fhirtime import now_utc
from hie.index import tables as t
from hie.outcome import Invalid, NotFound
from hie.recognition import Catalogue, Decision, DeclineReasons, Lookup, check_decision

DECISION = t.RecognitionDecision.__table__  # type: ignore[attr-defined]
LOOKUP = t.RecognitionLookup.__table__  # type: ignore[attr-defined]


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def decision_from_row(row: Any) -> Decision:
    return Decision(
        id=row.id,
        action=row.action,
        item_code=row.item_code,
        hospital_id=row.hospital_id,
        department=row.department,
        clinician=row.clinician,
        at=_aware(row.decided) or now_utc(),
        result_ref=row.result_ref,
        result_version=row.result_version,
        patient_id=row.patient_id,
        producer_id=row.producer_id,
        order_ref=row.order_ref,
        reason=row.reason_code,
        reason_text=row.reason_text,
        encounter=row.encounter,
        price_rmb=Decimal(str(row.price_rmb)),
        minutes_saved=int(row.minutes_saved),
        withdrawn_at=_aware(row.withdrawn),
    )


def decision_json(d: Decision, *, withdrawn_by: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": d.id,
        "action": d.action,
        "item": d.item_code,
        "result": d.result_ref,
        "resultVersion": d.result_version,
        "patient": d.patient_id,
        "hospital": d.hospital_id,
        "department": d.department,
        "clinician": d.clinician,
        "order": d.order_ref,
        "encounter": d.encounter,
        "decided": d.at.isoformat(),
        "priceRmb": str(d.price_rmb) if d.price_rmb is not None else None,
        "minutesSaved": d.minutes_saved,
    }
    if d.reason:
        out["reason"] = {"code": d.reason, "text": d.reason_text}
    if d.withdrawn_at:
        out["withdrawn"] = d.withdrawn_at.isoformat()
        out["withdrawnBy"] = withdrawn_by
    return out


class Decisions:
    def __init__(self, catalogue: Catalogue, reasons: DeclineReasons) -> None:
        self.catalogue = catalogue
        self.reasons = reasons

    def record(self, conn: Connection, decision: Decision, client_id: str) -> Decision:
        check_decision(decision, self.reasons, self.catalogue)
        item = self.catalogue.items[decision.item_code]
        accepted = decision.action == "accept"
        price = decision.price_rmb if decision.price_rmb is not None else item.price_rmb
        minutes = (
            decision.minutes_saved if decision.minutes_saved is not None else item.minutes_saved
        )
        conn.execute(
            insert(DECISION).values(
                id=decision.id or uuid.uuid4().hex,
                decided=decision.at,
                patient_id=decision.patient_id or "",
                hospital_id=decision.hospital_id,
                department=decision.department,
                clinician=decision.clinician,
                client_id=client_id,
                result_ref=decision.result_ref,
                result_version=decision.result_version,
                item_code=decision.item_code,
                order_ref=decision.order_ref,
                encounter=decision.encounter,
                producer_id=decision.producer_id,
                action=decision.action,
                reason_code=decision.reason,
                reason_text=decision.reason_text,
                price_rmb=float(price) if accepted else 0.0,
                minutes_saved=float(minutes) if accepted else 0.0,
            )
        )
        return self.get(conn, decision.id)

    def get(self, conn: Connection, decision_id: str) -> Decision:
        row = conn.execute(select(DECISION).where(DECISION.c.id == decision_id)).first()
        if row is None:
            raise NotFound(f"No decision {decision_id}", expression="id")
        return decision_from_row(row)

    def withdraw(
        self, conn: Connection, decision_id: str, hospital_id: str | None, by: str, reason: str
    ) -> Decision:
        current = self.get(conn, decision_id)
        if current.hospital_id != hospital_id:
            raise NotFound(f"No decision {decision_id}", expression="id")
        if current.withdrawn_at is not None:
            raise Invalid("The decision was already withdrawn", expression="id")
        conn.execute(
            update(DECISION)
            .where(DECISION.c.id == decision_id)
            .values(withdrawn=now_utc(), withdrawn_by=by, withdraw_reason=reason)
        )
        return self.get(conn, decision_id)

    def for_patient(self, conn: Connection, patient_id: str) -> list[Decision]:
        rows = conn.execute(
            select(DECISION)
            .where(DECISION.c.patient_id == patient_id)
            .order_by(DECISION.c.decided.desc())
        )
        return [decision_from_row(r) for r in rows]

    def lookup_row(
        self, lookup: Lookup, *, patient_id: str, client_id: str, pending: int
    ) -> dict[str, Any]:
        """The ledger row of one ``$prior-results`` question (written by the caller)."""
        return {
            "asked": lookup.at,
            "patient_id": patient_id,
            "hospital_id": lookup.hospital_id,
            "department": lookup.department,
            "client_id": client_id,
            "requested_items": " ".join(lookup.requested_items)[:4000],
            "offered_items": " ".join(lookup.offered_items)[:4000],
            "pending": pending,
        }

    def record_lookup(
        self, conn: Connection, lookup: Lookup, *, patient_id: str, client_id: str, pending: int
    ) -> None:
        row = self.lookup_row(lookup, patient_id=patient_id, client_id=client_id, pending=pending)
        conn.execute(insert(LOOKUP), [row])

    def window(
        self, conn: Connection, since: datetime | None, until: datetime | None
    ) -> tuple[list[Lookup], list[Decision]]:
        """Lookups and decisions in ``[since, until)``, for the savings ledger."""
        d = select(DECISION)
        lk = select(LOOKUP)
        if since:
            d, lk = d.where(DECISION.c.decided >= since), lk.where(LOOKUP.c.asked >= since)
        if until:
            d, lk = d.where(DECISION.c.decided < until), lk.where(LOOKUP.c.asked < until)
        lookups = [
            Lookup(
                hospital_id=r.hospital_id,
                department=r.department,
                at=_aware(r.asked) or now_utc(),
                requested_items=tuple(r.requested_items.split()),
                offered_items=tuple(r.offered_items.split()),
            )
            for r in conn.execute(lk)
        ]
        return lookups, [decision_from_row(r) for r in conn.execute(d)]
