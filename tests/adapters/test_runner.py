"""run_pull: counts, cursors, acknowledgement by resumption, and failures that keep the cursor."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from adapters.base import (
    BadMessage,
    Batch,
    Cursor,
    DeadLetter,
    Entry,
    SourceUnavailable,
    SyncResult,
    Unit,
)
from adapters.runner import cursor_name, run_pull


@dataclass
class Counts:
    received: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0


@dataclass
class MemorySink:
    """Keeps units by key; a changed payload under a known key is a new version."""

    cursors: dict[tuple[str, str, str], str] = field(default_factory=dict)
    stored: dict[str, bytes] = field(default_factory=dict)
    dead: list[DeadLetter] = field(default_factory=list)
    fail_on: int | None = None  # raise on the n-th ingest (1-based), before committing
    calls: int = 0

    def cursor(self, hospital_id: str, adapter: str, name: str) -> str | None:
        return self.cursors.get((hospital_id, adapter, name))

    def ingest(self, batch: Batch) -> Counts:
        self.calls += 1
        if self.fail_on == self.calls:
            raise RuntimeError("database is locked")
        counts = Counts(received=len(batch.units) + len(batch.dead_letters))
        for unit in batch.units:
            if unit.key not in self.stored:
                counts.created += 1
            elif self.stored[unit.key] != unit.raw:
                counts.updated += 1
            else:
                counts.unchanged += 1
            self.stored[unit.key] = unit.raw
        self.dead.extend(batch.dead_letters)
        counts.rejected = len(batch.dead_letters)
        if batch.cursor is not None:
            self.cursors[(batch.hospital_id, batch.adapter, batch.cursor.name)] = batch.cursor.value
        return counts


def unit(key: str, raw: bytes = b"v1") -> Unit:
    return Unit(key, (Entry({"resourceType": "Basic"}),), raw=raw)


@dataclass
class ListSource:
    """Yields prepared pages after the cursor; records which batches were acknowledged."""

    pages: list[list[Unit]]
    hospital_id: str = "nsdh"
    name: str = "lis"
    fail_after: int | None = None  # raise SourceUnavailable after yielding this many pages
    error: Exception | None = None
    acked: list[int] = field(default_factory=list)
    seen_cursor: str | None = "unset"

    def batches(self, cursor: str | None) -> Iterator[Batch]:
        self.seen_cursor = cursor
        start = int(cursor) if cursor else 0
        for n in range(start, len(self.pages)):
            if self.fail_after is not None and n - start == self.fail_after:
                raise self.error or SourceUnavailable("HTTP 503 after 5 attempts")
            dead = [DeadLetter(f"bad-{n}", b"?", "row 2, column value: empty")] if n == 1 else []
            yield Batch(self.hospital_id, self.name, self.pages[n], dead, Cursor("lis", str(n + 1)))
            self.acked.append(n)  # resumed: the sink committed page n


def test_counts_and_cursor_over_a_whole_run() -> None:
    sink = MemorySink()
    source = ListSource([[unit("a"), unit("b")], [unit("c")], [unit("d")]])
    seen: list[int] = []
    result = run_pull(source, sink, "nsdh", "lis", progress=lambda r: seen.append(r.received))
    assert result == SyncResult(
        "nsdh", "lis", received=5, indexed=4, rejected=1, cursor_before=None, cursor_after="3"
    )
    assert source.acked == [0, 1, 2]  # every batch acknowledged after its commit
    assert seen == [2, 4, 5]
    assert sink.cursors == {("nsdh", "lis", "lis"): "3"}
    assert [d.key for d in sink.dead] == ["bad-1"]


def test_second_run_starts_at_the_stored_cursor_and_replay_is_unchanged() -> None:
    sink = MemorySink()
    pages = [[unit("a")], [unit("b")]]
    run_pull(ListSource(pages), sink, "nsdh", "lis")
    again = ListSource(pages)
    result = run_pull(again, sink, "nsdh", "lis")
    assert again.seen_cursor == "2"
    assert (result.received, result.cursor_before, result.cursor_after) == (0, "2", "2")
    sink.cursors.clear()  # a replay from scratch changes nothing but the counts
    replay = run_pull(ListSource([[unit("a")], [unit("b", b"v2")]]), sink, "nsdh", "lis")
    assert (replay.indexed, replay.unchanged, replay.new_versions) == (0, 1, 1)


def test_source_unavailable_mid_run_keeps_the_last_committed_cursor() -> None:
    sink = MemorySink()
    source = ListSource([[unit("a")], [unit("b")], [unit("c")]], fail_after=2)
    result = run_pull(source, sink, "nsdh", "lis")
    assert result.error == "source unavailable: HTTP 503 after 5 attempts"
    assert (result.cursor_before, result.cursor_after) == (None, "2")
    assert sink.cursors[("nsdh", "lis", "lis")] == "2"
    assert set(sink.stored) == {"a", "b"}


def test_source_unavailable_at_once_leaves_cursor_unchanged() -> None:
    sink = MemorySink(cursors={("nsdh", "lis", "lis"): "1"})
    source = ListSource([[unit("a")], [unit("b")]], fail_after=0)
    result = run_pull(source, sink, "nsdh", "lis")
    assert result.error is not None and result.cursor_after == result.cursor_before == "1"
    assert result.received == 0 and sink.stored == {}


def test_other_adapter_errors_are_reported_not_raised() -> None:
    source = ListSource([[unit("a")]], fail_after=0, error=BadMessage("not a Bundle"))
    result = run_pull(source, MemorySink(), "nsdh", "lis")
    assert result.error == "BadMessage: not a Bundle"


def test_sink_failure_propagates_and_the_batch_is_not_acknowledged() -> None:
    sink = MemorySink(fail_on=2)
    source = ListSource([[unit("a")], [unit("b")], [unit("c")]])
    with pytest.raises(RuntimeError, match="database is locked"):
        run_pull(source, sink, "nsdh", "lis")
    assert source.acked == [0]  # page 1 was never committed, so never acknowledged
    assert sink.cursors[("nsdh", "lis", "lis")] == "1"


def test_batch_for_another_adapter_is_refused() -> None:
    source = ListSource([[unit("a")]], hospital_id="szph")
    result = run_pull(source, MemorySink(), "nsdh", "lis")
    assert result.error is not None and "szph/lis" in result.error
    assert source.acked == []


def test_cursor_name_prefers_the_sources_own() -> None:
    source = ListSource([])
    assert cursor_name(source) == "lis"
    named = ListSource([])
    named.cursor_name = "fhir-rest"  # type: ignore[attr-defined]
    assert cursor_name(named) == "fhir-rest"
    sink = MemorySink(cursors={("nsdh", "lis", "fhir-rest"): "7"})
    run_pull(named, sink, "nsdh", "lis")
    assert named.seen_cursor == "7"
