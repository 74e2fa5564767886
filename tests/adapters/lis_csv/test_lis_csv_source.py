"""The LIS CSV folder as a pull source: cursor, done/, crashes at every step, exactly once."""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from adapters.base import Batch, DeadLetter
from adapters.lis_csv.source import LisCsvSource
from adapters.runner import run_pull
from hie.hospitals import load_hospitals

ROOT = Path(__file__).resolve().parents[3]
FIXTURE = ROOT / "fixtures" / "csv" / "nsdh" / "nsdh-lis-20261124.csv"
SHA = hashlib.sha256(FIXTURE.read_bytes()).hexdigest()


@dataclass
class Counts:
    received: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0


@dataclass
class MemorySink:
    """Stores units by key (one per order) and dead letters; counts what a replay changes."""

    cursors: dict[tuple[str, str, str], str] = field(default_factory=dict)
    units: dict[str, bytes] = field(default_factory=dict)
    writes: list[str] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    fail_on: int | None = None
    calls: int = 0

    def cursor(self, hospital_id: str, adapter: str, name: str) -> str | None:
        return self.cursors.get((hospital_id, adapter, name))

    def ingest(self, batch: Batch) -> Counts:
        self.calls += 1
        if self.calls == self.fail_on:
            raise RuntimeError("disk full")
        counts = Counts(received=len(batch.units) + len(batch.dead_letters))
        for unit in batch.units:
            self.writes.append(unit.key)
            known = self.units.get(unit.key)
            if known is None:
                counts.created += len(unit.entries)
            elif known == unit.raw:
                counts.unchanged += len(unit.entries)
            else:
                counts.updated += len(unit.entries)
            self.units[unit.key] = unit.raw
        self.dead.extend(batch.dead_letters)
        counts.rejected = len(batch.dead_letters)
        if batch.cursor:
            self.cursors[(batch.hospital_id, batch.adapter, batch.cursor.name)] = batch.cursor.value
        return counts

    @property
    def cursor_value(self) -> str | None:
        return self.cursors.get(("nsdh", "lis-csv", "lis-csv"))


@pytest.fixture
def drop(tmp_path: Path) -> Path:
    folder = tmp_path / "nsdh"
    folder.mkdir()
    shutil.copy(FIXTURE, folder / FIXTURE.name)
    return folder


def source_for(folder: Path, orders_per_batch: int = 200) -> LisCsvSource:
    config = load_hospitals(ROOT / "fixtures" / "hospitals.toml", {})
    adapter = config.hospital("nsdh").adapter("lis-csv")
    assert adapter.kind == "lis-csv"
    source = LisCsvSource.from_config("nsdh", adapter, config.exchange, lambda h, c: None)
    source.folder = folder
    source.orders_per_batch = orders_per_batch
    return source


def test_a_run_lands_the_file_and_moves_it_to_done(drop: Path) -> None:
    sink = MemorySink()
    result = run_pull(source_for(drop), sink, "nsdh", "lis-csv")
    assert result.error is None
    assert (result.received, result.rejected) == (5, 1)  # 4 orders + the bad row
    assert result.indexed == 6 + 3 + 5 + 3  # Patient + report + results, per order
    assert (result.cursor_before, result.cursor_after) == (None, f"sha256:{SHA}")
    assert not (drop / FIXTURE.name).exists()
    assert (drop / "done" / FIXTURE.name).read_bytes() == FIXTURE.read_bytes()
    assert [d.location for d in sink.dead] == ["row 10, column 采集时间"]
    again = run_pull(source_for(drop), sink, "nsdh", "lis-csv")
    assert (again.received, again.cursor_after) == (0, f"sha256:{SHA}")


def test_crash_after_commit_before_the_move_does_not_reingest(drop: Path) -> None:
    sink = MemorySink()
    batches = source_for(drop).batches(None)
    sink.ingest(next(batches))  # committed ...
    batches.close()  # ... and the process dies before resuming the source
    assert (drop / FIXTURE.name).exists() and sink.cursor_value == f"sha256:{SHA}"
    result = run_pull(source_for(drop), sink, "nsdh", "lis-csv")
    assert result.received == 0 and sink.calls == 1
    assert (drop / "done" / FIXTURE.name).exists() and not (drop / FIXTURE.name).exists()


def test_crash_mid_file_resumes_after_the_last_committed_order(drop: Path) -> None:
    sink = MemorySink()
    batches = source_for(drop, orders_per_batch=1).batches(None)
    sink.ingest(next(batches))
    sink.ingest(next(batches))
    batches.close()
    assert sink.cursor_value == f"sha256:{SHA}@2"
    result = run_pull(source_for(drop, orders_per_batch=1), sink, "nsdh", "lis-csv")
    assert result.cursor_before == f"sha256:{SHA}@2" and result.cursor_after == f"sha256:{SHA}"
    assert len(sink.writes) == len(set(sink.writes)) == 4  # each order exactly once
    assert len(sink.dead) == 1  # the dead letter came with the first batch only


def test_crash_before_commit_reads_the_file_again_and_changes_nothing(drop: Path) -> None:
    sink = MemorySink(fail_on=2)
    with pytest.raises(RuntimeError, match="disk full"):
        run_pull(source_for(drop, orders_per_batch=2), sink, "nsdh", "lis-csv")
    assert (drop / FIXTURE.name).exists()  # not acknowledged, so not moved
    assert sink.cursor_value == f"sha256:{SHA}@2"
    sink.fail_on = None
    sink.cursors.clear()  # even a lost cursor only costs a replay, which is a no-op
    result = run_pull(source_for(drop, orders_per_batch=2), sink, "nsdh", "lis-csv")
    assert (result.indexed, result.new_versions) == (5 + 3, 0)  # the 2 orders not yet there
    assert result.unchanged == 6 + 3  # the two orders that had landed
    assert sorted(sink.units) == sorted(set(sink.writes))


def test_files_in_name_order_and_a_reexport_with_the_same_name_is_kept(drop: Path) -> None:
    sink = MemorySink()
    older = drop / "nsdh-lis-20261123.csv"
    older.write_bytes(FIXTURE.read_bytes().replace(b"NS2611240032", b"NS2611230099"))
    result = run_pull(source_for(drop), sink, "nsdh", "lis-csv")
    assert result.cursor_after == f"sha256:{SHA}"  # the later name went last
    assert sink.writes[0].startswith("nsdh-lis-20261123.csv:")
    corrected = older.parent.joinpath("done", older.name).read_bytes().replace(b"4.12,", b"4.21,")
    # the LIS re-exports the day with one value corrected, under the same file name
    older.write_bytes(corrected)
    result = run_pull(source_for(drop), sink, "nsdh", "lis-csv")
    assert result.new_versions == 6 and result.unchanged == 3 + 5 + 3
    done = {p.name for p in (drop / "done").iterdir()}
    sha = hashlib.sha256(corrected).hexdigest()
    assert done == {older.name, f"nsdh-lis-20261123.{sha[:12]}.csv", FIXTURE.name}


def test_header_only_or_empty_file_still_moves(drop: Path) -> None:
    (drop / FIXTURE.name).unlink()
    (drop / "empty.csv").write_bytes(b"")
    sink = MemorySink()
    result = run_pull(source_for(drop), sink, "nsdh", "lis-csv")
    assert result.received == 0 and result.cursor_after is not None
    assert (drop / "done" / "empty.csv").exists()
