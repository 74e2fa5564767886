"""The adapter contract: what every hospital feed hands to the exchange's one ingest path.

An adapter turns one hospital's native format (HL7 v2, FHIR REST, DICOM, CSV) into
:class:`Batch` objects of plain FHIR R4 JSON. It never touches the database: ingest
validates each :class:`Unit`, links the patient, upserts, records dead letters and
commits the adapter's :class:`Cursor` in the same transaction as the data it covers,
so a crash at any point loses nothing and a replay is a no-op.

Exceptions an adapter may raise (they never reach HTTP)::

    AdapterError
     ├── SourceUnavailable   the hospital's system is down or slow: retry later, keep the cursor
     └── BadMessage          this payload cannot be mapped: dead-letter it, carry on with the rest
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

JSON = dict[str, Any]


class AdapterError(Exception):
    """Base of the adapters' own small error family."""


class SourceUnavailable(AdapterError):
    """The source could not be reached or answered with a server error; try again later."""


class BadMessage(AdapterError):
    """One payload cannot be mapped; it becomes a dead letter with this reason."""

    def __init__(self, reason: str, *, location: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.location = location  # e.g. "PID-3[1]" or "OBX[4]-5" or "row 17"


@dataclass(frozen=True)
class Entry:
    """One FHIR resource inside a unit; ``full_url`` lets siblings reference it (urn:uuid:...)."""

    resource: JSON
    full_url: str | None = None


@dataclass(frozen=True)
class Unit:
    """Resources that land together or not at all: one HL7 message, one CSV order, one study.

    ``key`` names the unit for outcomes and dead letters (message control id, file:row, study
    UID). ``raw`` is the payload as received, kept for dead letters and replay. ``trusted``
    marks resources the exchange built itself from a parsed message: ingest may skip the
    second pydantic validation for them but still applies hie's profiles.
    """

    key: str
    entries: tuple[Entry, ...]
    raw: bytes = b""
    content_type: str = "application/fhir+json"
    trusted: bool = False
    # HTTP If-Match: the version the client last saw, checked under the write lock.
    expected_version: str | None = None
    # What the ingestor's own validation found, when it ran ahead of the ingest (see
    # ``hie.ingest.Ingestor.checked``: the MLLP listener's mapping threads); None: not yet.
    issues: tuple[Any, ...] | None = None


@dataclass(frozen=True)
class DeadLetter:
    """A payload the adapter could not turn into a unit at all (unparseable, wrong type)."""

    key: str
    raw: bytes
    reason: str
    content_type: str = "application/octet-stream"
    location: str | None = None


@dataclass(frozen=True)
class Cursor:
    """A durable position in a source, committed with the data it covers."""

    name: str  # e.g. "fhir-rest:Observation" or "drop-folder"
    value: str


@dataclass
class Batch:
    """What an adapter hands to ingest in one transaction."""

    hospital_id: str
    adapter: str
    units: list[Unit] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    cursor: Cursor | None = None


@dataclass
class SyncResult:
    """The result of one pull run, shared by the CLI, the scheduler and the ops page."""

    hospital_id: str
    adapter: str
    received: int = 0
    indexed: int = 0  # resources created
    unchanged: int = 0
    new_versions: int = 0
    rejected: int = 0  # units rejected by ingest + dead letters from the adapter
    cursor_before: str | None = None
    cursor_after: str | None = None
    error: str | None = None


class Sink(Protocol):
    """The ingest path as adapters see it (implemented by ``hie.ingest.Ingestor``)."""

    def ingest(self, batch: Batch) -> Any: ...

    def cursor(self, hospital_id: str, adapter: str, name: str) -> str | None: ...


class PullSource(Protocol):
    """A pull adapter: yields batches from its cursor onward; each batch carries the new cursor."""

    hospital_id: str
    name: str

    def batches(self, cursor: str | None) -> Iterator[Batch]: ...
