"""The audit trail: every access to a patient's data leaves a record.

One function, :meth:`Auditor.record`, is called by every read, search, write and operation.
Rows are append-only; ``hie audit`` (and a FHIR AuditEvent view) come later on this table.

Reads do not wait for their audit row. A lookup used to open its own write transaction for
it (SQLite: ``BEGIN IMMEDIATE`` and a commit per read, which also serialised concurrent
readers on the write lock). Once :meth:`Auditor.start` has run (the HTTP app does it in its
lifespan), rows without a caller's connection go to an in-process queue that a background
thread writes in one transaction every ``interval_s`` (0.1 s) or as soon as ``max_rows`` are
waiting; :meth:`Auditor.stop` writes what is left at shutdown. Durability: a crash of the
process (kill -9, power loss) can lose the rows of at most the last interval; a clean stop
loses none. Rows written inside a caller's transaction (``conn=``: writes, decisions) are
never queued: they commit with what they record. Without :meth:`start` (CLI, tests) every
row is written synchronously as before. :meth:`append` queues other append-only rows the
same way (the savings ledger's lookup rows).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, Table, insert

from hie.auth import Principal
from hie.fhirtime import now_utc
from hie.index import tables as t
from hie.index.store import Store

AUDIT = t.AuditEvent.__table__  # type: ignore[attr-defined]
ACTIONS = {"read": "R", "vread": "R", "history": "R", "search": "E", "operation": "E"}
log = logging.getLogger("hie.audit")


class Auditor:
    def __init__(
        self,
        store: Store,
        *,
        interval_s: float = 0.1,
        max_rows: int = 500,
        max_pending: int = 100_000,
    ) -> None:
        self.store = store
        self.interval_s = interval_s
        self.max_rows = max_rows
        # Past this many unwritten rows (the database refusing writes for a while), callers
        # write their own rows again: the request fails rather than the trail growing unbounded.
        self.max_pending = max_pending
        self._pending: list[tuple[Table, dict[str, Any]]] = []
        self._lock = threading.Lock()  # guards _pending
        self._flushing = threading.Lock()  # one writer at a time, rows in order
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._stop = False

    # -- background writing ---------------------------------------------------------------
    @property
    def queued(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        """Queue rows from now on and write them from a background thread."""
        if self._thread is not None:
            return
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="hie-audit", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Write every queued row and go back to synchronous writing."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop = True
        self._wake.set()
        thread.join()
        self.flush()

    def flush(self) -> int:
        """Write the queued rows now, in one transaction; returns how many were written."""
        with self._flushing:
            with self._lock:
                rows, self._pending = self._pending, []
            if not rows:
                return 0
            try:
                self._write(rows)
            except Exception:
                with self._lock:  # keep them, in order, for the next attempt
                    self._pending[:0] = rows
                raise
            return len(rows)

    def _run(self) -> None:
        while not self._stop:
            self._wake.wait(self.interval_s)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # the database is away: keep the rows, retry next interval
                log.exception("audit rows could not be written; retrying")

    def _write(self, rows: list[tuple[Table, dict[str, Any]]]) -> None:
        by_table: dict[Table, list[dict[str, Any]]] = {}
        for table, row in rows:
            by_table.setdefault(table, []).append(row)
        with self.store.write() as conn:
            for table, batch in by_table.items():
                conn.execute(insert(table), batch)

    # -- recording --------------------------------------------------------------------------
    def append(self, table: Table, rows: list[dict[str, Any]], conn: Connection | None) -> None:
        """Append-only ``rows`` of ``table``: in ``conn``'s transaction, queued, or written now."""
        if conn is not None:
            conn.execute(insert(table), rows)
            return
        if self._thread is not None:
            with self._lock:
                if len(self._pending) < self.max_pending:
                    self._pending.extend((table, row) for row in rows)
                    if len(self._pending) >= self.max_rows:
                        self._wake.set()
                    return
        with self.store.write() as own:
            own.execute(insert(table), rows)

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
        recorded = now_utc()
        rows = [
            {
                "recorded": recorded,
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
        self.append(AUDIT, rows, conn)
