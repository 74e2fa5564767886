"""Running a pull source into the ingest path: the loop both imaging adapters share.

The source reads its cursor from the sink, yields batches, and the sink commits each batch
with the cursor it carries, so a crash between batches resumes at the last committed one.
``SourceUnavailable`` ends the run early with ``error`` set; the cursor stays where the last
landed batch left it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, Protocol

from adapters.base import Batch, SourceUnavailable, SyncResult

log = logging.getLogger(__name__)


class CursoredSource(Protocol):
    """A ``PullSource`` that also names its cursor (so the sink can look it up)."""

    @property
    def hospital_id(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def cursor_name(self) -> str: ...

    def batches(self, cursor: str | None) -> Iterator[Batch]: ...


class CursorSink(Protocol):
    def ingest(self, batch: Batch) -> Any: ...

    def cursor(self, hospital_id: str, adapter: str, name: str) -> str | None: ...


def _count(outcome: Any, name: str) -> int:
    value = getattr(outcome, name, 0)
    return value if isinstance(value, int) else 0


def run(source: CursoredSource, sink: CursorSink) -> SyncResult:
    """Pull everything new from ``source`` into ``sink``; counts come from the sink's results.

    The sink's result is read duck-typed (``created``, ``updated``, ``unchanged``,
    ``rejected``, as ``hie.ingest.BatchResult`` has); its ``rejected`` already includes the
    batch's dead letters, and a sink without one counts the dead letters here.
    """
    before = sink.cursor(source.hospital_id, source.name, source.cursor_name)
    result = SyncResult(
        hospital_id=source.hospital_id,
        adapter=source.name,
        cursor_before=before,
        cursor_after=before,
    )
    try:
        for batch in source.batches(before):
            outcome = sink.ingest(batch)
            result.received += len(batch.units) + len(batch.dead_letters)
            result.indexed += _count(outcome, "created")
            result.new_versions += _count(outcome, "updated")
            result.unchanged += _count(outcome, "unchanged")
            if hasattr(outcome, "rejected"):
                result.rejected += _count(outcome, "rejected")
            else:
                result.rejected += len(batch.dead_letters)
            if batch.cursor is not None:
                result.cursor_after = batch.cursor.value
    except SourceUnavailable as exc:
        log.warning("%s/%s: source unavailable: %s", source.hospital_id, source.name, exc)
        result.error = str(exc)
    return result
