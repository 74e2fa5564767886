"""Helpers shared by the imaging adapter tests (imported by name; fixtures are in conftest).

A module of its own, not conftest.py: several conftest.py files live in the suite and
``import conftest`` would find whichever was loaded last.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from adapters.base import Batch, DeadLetter, Unit

TESTS = Path(__file__).resolve().parents[2]
if str(TESTS) not in sys.path:  # tests/orthanc_service.py, importable without tests/conftest.py
    sys.path.insert(0, str(TESTS))

import orthanc_service  # noqa: E402

__all__ = ["FIXTURES", "HOSPITALS", "ROOT", "RecordingSink", "orthanc_service"]

ROOT = TESTS.parent
FIXTURES = ROOT / "fixtures" / "dicom"
HOSPITALS = ("szph", "pkuszh", "nsdh")


@dataclass
class IngestCounts:
    """What ``hie.ingest.BatchResult`` reports, as ``adapters.runner.run_pull`` reads it."""

    received: int
    rejected: int
    created: int = 0
    updated: int = 0
    unchanged: int = 0


@dataclass
class RecordingSink:
    """Stands in for ``hie.ingest.Ingestor``: keeps batches, commits cursors, can fail on cue."""

    batches: list[Batch] = field(default_factory=list)
    cursors: dict[tuple[str, str, str], str] = field(default_factory=dict)
    fail_on_batch: int | None = None  # 1-based: raise instead of ingesting that batch

    def ingest(self, batch: Batch) -> IngestCounts:
        if self.fail_on_batch is not None and len(self.batches) + 1 == self.fail_on_batch:
            self.fail_on_batch = None
            raise RuntimeError("ingest crashed (simulated)")
        self.batches.append(batch)
        if batch.cursor is not None:
            key = (batch.hospital_id, batch.adapter, batch.cursor.name)
            self.cursors[key] = batch.cursor.value
        dead = len(batch.dead_letters)
        return IngestCounts(received=len(batch.units) + dead, rejected=dead)

    def cursor(self, hospital_id: str, adapter: str, name: str) -> str | None:
        return self.cursors.get((hospital_id, adapter, name))

    @property
    def units(self) -> list[Unit]:
        return [u for b in self.batches for u in b.units]

    @property
    def dead_letters(self) -> list[DeadLetter]:
        return [d for b in self.batches for d in b.dead_letters]
