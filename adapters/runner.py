"""One pull run: a :class:`~adapters.base.PullSource` drained into a :class:`~adapters.base.Sink`.

The scheduler, ``hie sync`` and the ops page's "run now" all call :func:`run_pull`, so a run
means the same thing everywhere (ROADMAP §2: every pull adapter runnable as one call with a
result object). The runner owns no state: the cursor lives in the sink and is committed there
together with the data of each batch, so stopping at any point loses nothing.

Resuming a source's generator acknowledges the batch it yielded last: sources that clean up
after a commit (a drop folder moving a file to ``done/``) do it only then. The runner therefore
asks for the next batch only after the sink has committed the previous one, and closes the
generator without resuming it when anything fails.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from adapters.base import AdapterError, PullSource, Sink, SourceUnavailable, SyncResult


class IngestCounts(Protocol):
    """What the sink's ``ingest`` returns, as the runner reads it (``hie.ingest.BatchResult``).

    ``received`` and ``rejected`` already include the batch's own dead letters; ``created``,
    ``updated`` and ``unchanged`` count resources written.
    """

    @property
    def received(self) -> int: ...

    @property
    def created(self) -> int: ...

    @property
    def updated(self) -> int: ...

    @property
    def unchanged(self) -> int: ...

    @property
    def rejected(self) -> int: ...


Progress = Callable[[SyncResult], None]


def cursor_name(source: PullSource) -> str:
    """The name the source's cursor is stored under.

    A source may say (``cursor_name`` attribute, e.g. ``"fhir-rest"``); otherwise its adapter
    name is used. It must equal ``Batch.cursor.name`` of the batches the source yields.
    """
    named = getattr(source, "cursor_name", None)
    return named if isinstance(named, str) and named else source.name


def run_pull(
    source: PullSource,
    sink: Sink,
    hospital_id: str,
    adapter: str,
    *,
    progress: Progress | None = None,
) -> SyncResult:
    """Pull everything after the stored cursor; one sink transaction per batch.

    ``SourceUnavailable`` (or any other adapter error) ends the run with ``error`` set and
    ``cursor_after`` at the last batch committed: the next run starts there. Errors from the
    sink itself (a database failure) propagate: the batch was not committed and the caller's
    retry policy decides. ``progress`` is called after every committed batch.
    """
    name = cursor_name(source)
    before = sink.cursor(hospital_id, adapter, name)
    result = SyncResult(hospital_id, adapter, cursor_before=before, cursor_after=before)
    batches = source.batches(before)
    try:
        for batch in batches:
            if batch.hospital_id != hospital_id or batch.adapter != adapter:
                raise AdapterError(
                    f"source yielded a batch for {batch.hospital_id}/{batch.adapter}, "
                    f"expected {hospital_id}/{adapter}"
                )
            counts: IngestCounts = sink.ingest(batch)
            result.received += counts.received
            result.indexed += counts.created
            result.new_versions += counts.updated
            result.unchanged += counts.unchanged
            result.rejected += counts.rejected
            if batch.cursor is not None:
                result.cursor_after = batch.cursor.value
            if progress is not None:
                progress(result)
    except SourceUnavailable as exc:
        result.error = f"source unavailable: {exc}"
    except AdapterError as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        close = getattr(batches, "close", None)
        if callable(close):
            close()
    return result
