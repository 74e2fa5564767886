"""Dead letters: payloads an adapter could not map or ingest rejected, kept raw for replay.

Ops list them, read them, and retry them once the cause is fixed (a ConceptMap entry added,
a profile relaxed, the hospital's sender corrected). A retry runs the raw payload through the
same adapter mapping and the same ingest path as the first time; nothing is side-loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select, update

from adapters.base import Batch
from hie.exchange import Exchange
from hie.index import tables as t
from hie.outcome import NotFound

DEAD = t.DeadLetter.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Letter:
    id: int
    hospital_id: str
    adapter: str
    key: str
    received: datetime
    reason: str
    location: str | None
    content_type: str
    status: str
    attempts: int
    raw: bytes


class DeadLetters:
    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange

    def list(
        self, *, hospital: str | None = None, status: str | None = "open", limit: int = 200
    ) -> list[Letter]:
        stmt = select(DEAD).order_by(DEAD.c.received.desc(), DEAD.c.id.desc()).limit(limit)
        if hospital:
            stmt = stmt.where(DEAD.c.hospital_id == hospital)
        if status == "open":  # waiting for someone: never retried, or retried and still failing
            stmt = stmt.where(DEAD.c.status.in_(("new", "retried")))
        elif status:
            stmt = stmt.where(DEAD.c.status == status)
        with self.exchange.store.read() as conn:
            return [Letter(**r._mapping) for r in conn.execute(stmt)]

    def get(self, letter_id: int) -> Letter:
        with self.exchange.store.read() as conn:
            row = conn.execute(select(DEAD).where(DEAD.c.id == letter_id)).first()
        if row is None:
            raise NotFound(f"No dead letter {letter_id}")
        return Letter(**row._mapping)

    def retry(self, letter_id: int) -> str:
        """Map and ingest the raw payload again; returns a one-line outcome."""
        letter = self.get(letter_id)
        batch = self._remap(letter)
        if batch is None:
            return (
                f"not retryable: {letter.content_type} payloads are re-sent from the source "
                "(fix the cause there and send again)"
            )
        if batch.dead_letters:
            reason = batch.dead_letters[0].reason
            self._mark(letter_id, "retried", reason)
            return f"still failing: {reason}"
        result = self.exchange.ingestor.ingest(batch, keep_dead_letters=False)
        bad = [i for item in result.items for i in item.issues]
        if result.rejected:
            reason = "; ".join(f"{i.expression}: {i.diagnostics}" for i in bad)[:4000]
            self._mark(letter_id, "retried", reason)
            return f"still failing: {reason}"
        self._mark(letter_id, "resolved", letter.reason)
        return f"landed: {result.created} created, {result.updated} new versions"

    def _remap(self, letter: Letter) -> Batch | None:
        if letter.content_type == "application/vnd.hie.dicom-study+json":
            from adapters.base import AdapterError, DeadLetter
            from adapters.dicom.study import unit_from_payload

            try:
                unit = unit_from_payload(letter.raw, letter.hospital_id)
            except AdapterError as exc:
                failed = DeadLetter(letter.key, letter.raw, str(exc))
                return Batch(letter.hospital_id, letter.adapter, dead_letters=[failed])
            return Batch(letter.hospital_id, letter.adapter, units=[unit])
        if "hl7" not in letter.content_type:
            return None
        from adapters.hl7v2.coding import Context
        from adapters.hl7v2.drop_folder import read_payload
        from hie.terminology import Terminology

        config = self.exchange.hospitals
        tz = ZoneInfo(config.exchange.timezone if config else self.exchange.settings.timezone)
        terminology = Terminology.load(self.exchange.settings.profiles_dir)
        units, dead = read_payload(
            letter.raw, letter.key, Context(letter.hospital_id, terminology, tz)
        )
        return Batch(letter.hospital_id, letter.adapter, units=units, dead_letters=dead)

    def resolve(self, letter_id: int) -> None:
        letter = self.get(letter_id)
        self._mark(letter_id, "resolved", letter.reason, attempt=False)

    def _mark(self, letter_id: int, status: str, reason: str, *, attempt: bool = True) -> None:
        with self.exchange.store.write() as conn:
            conn.execute(
                update(DEAD)
                .where(DEAD.c.id == letter_id)
                .values(
                    status=status,
                    reason=reason,
                    attempts=DEAD.c.attempts + (1 if attempt else 0),
                )
            )
