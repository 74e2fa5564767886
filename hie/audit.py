"""The audit trail: every access to a patient's data leaves a record.

One function, :meth:`Auditor.record`, is called by every read, search, write and operation.
Rows are append-only; ``hie audit`` (and a FHIR AuditEvent view) come later on this table.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, insert

from hie.auth import Principal
from hie.fhirtime import now_utc
from hie.index import tables as t
from hie.index.store import Store

AUDIT = t.AuditEvent.__table__  # type: ignore[attr-defined]
ACTIONS = {"read": "R", "vread": "R", "history": "R", "search": "E", "operation": "E"}


class Auditor:
    def __init__(self, store: Store) -> None:
        self.store = store

    def record(
        self,
        principal: Principal,
        interaction: str,
        *,
        resource_type: str | None,
        resource_ids: Iterable[str] = (),
        patient_ids: Iterable[str | None] = (),
        outcome: str = "0",
        query: str | None = None,
        conn: Connection | None = None,
    ) -> None:
        """One row per patient touched (or one row when none is), in ``conn``'s txn if given."""
        ids = ",".join(sorted(set(resource_ids)))[:4000]
        patients: list[str | None] = [*sorted({p for p in patient_ids if p})] or [None]
        action = ACTIONS.get(interaction, "C" if interaction == "create" else "U")
        rows = [
            {
                "recorded": now_utc(),
                "client_id": principal.client_id,
                "hospital_id": principal.hospital_id,
                "action": action,
                "interaction": interaction,
                "resource_type": resource_type,
                "resource_ids": ids,
                "patient_id": p,
                "purpose": principal.purpose,
                "outcome": outcome,
                "query": (query or "")[:2000] or None,
            }
            for p in patients
        ]
        if conn is not None:
            conn.execute(insert(AUDIT), rows)
            return
        with self.store.write() as own:
            own.execute(insert(AUDIT), rows)
