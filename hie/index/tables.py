"""The index's tables (SQLModel). Only ``hie.index`` code touches them.

Every per-patient row carries ``patient_id`` (the exchange patient) so the data can be
partitioned and, past one PostgreSQL, sharded by patient. Times are stored as naive UTC.

- ``resource`` holds the current version of every resource as the JSON bytes served to
  clients (id and meta included), so reads and searches need no re-serialisation.
- ``resource_version`` holds the superseded versions (``_history`` adds the current one from
  ``resource``): each version is stored once (migration 0006).
- ``*_index`` tables hold the single-valued search columns of each result type;
  ``search_token`` the multi-valued token parameters (code, category, identifier, modality,
  body site...), denormalised with patient and date so the main lookups are one index range.
  The type tables are reached by id only (joined to ``resource``, updated and deleted by id):
  they carry no other index (migration 0005 dropped the ones no query used).

On PostgreSQL ``resource_version`` (by ``last_updated``) and ``audit_event`` (by ``recorded``)
are partitioned by month (migration 0004, ``hie.index.partitions``); there their primary key
also holds the partition key, as PostgreSQL requires. The classes below keep the logical key,
which is what the code relies on (inserts, lookups by it); nothing upserts into them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Index, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel


class Hospital(SQLModel, table=True):
    __tablename__ = "hospital"
    id: str = Field(primary_key=True, max_length=64)
    name_zh: str
    name_en: str
    level: str = Field(default="", max_length=8)


class ExchangePatient(SQLModel, table=True):
    """One person as the exchange knows them; ``merged_into`` points at the survivor."""

    __tablename__ = "exchange_patient"
    id: str = Field(primary_key=True, max_length=64)
    created: datetime
    merged_into: str | None = Field(default=None, max_length=64)


class PatientRecord(SQLModel, table=True):
    """A hospital's Patient resource and the exchange patient it is linked to."""

    __tablename__ = "patient_record"
    record_id: str = Field(primary_key=True, max_length=64)
    patient_id: str = Field(index=True, max_length=64)
    hospital_id: str | None = Field(default=None, max_length=64)
    rule: str = Field(default="", max_length=64)  # what linked it: deterministic:mrn, ...
    score: float | None = None


class PatientIdentifier(SQLModel, table=True):
    """Every identifier any hospital knows a person by, pointing at the exchange patient."""

    __tablename__ = "patient_identifier"
    __table_args__ = (Index("ix_patient_identifier_patient", "patient_id"),)
    system: str = Field(primary_key=True, max_length=255)
    value: str = Field(primary_key=True, max_length=255)
    record_id: str = Field(primary_key=True, max_length=64)
    patient_id: str = Field(max_length=64)


class Resource(SQLModel, table=True):
    __tablename__ = "resource"
    __table_args__ = (
        UniqueConstraint("type", "hospital_id", "source_id", name="uq_resource_source"),
        Index("ix_resource_patient", "patient_id", "type"),
        Index("ix_resource_updated", "type", "last_updated", "id"),
        Index("ix_resource_record", "record_id"),
    )
    type: str = Field(primary_key=True, max_length=32)
    id: str = Field(primary_key=True, max_length=64)
    version_id: int
    last_updated: datetime
    hospital_id: str | None = Field(default=None, max_length=64)
    source_id: str | None = Field(default=None, max_length=512)
    patient_id: str | None = Field(default=None, max_length=64)
    # the hospital Patient record the resource is about; unlink/merge move rows by it
    record_id: str | None = Field(default=None, max_length=64)
    deleted: bool = False
    content_hash: str = Field(max_length=64)
    body: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    # what the recognition engine reads of a result (hie.recognition.candidates.facts), so
    # $prior-results need not parse the body; None for other types and rows from before 0009
    facts: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))


class ResourceVersion(SQLModel, table=True):
    __tablename__ = "resource_version"
    type: str = Field(primary_key=True, max_length=32)
    id: str = Field(primary_key=True, max_length=64)
    version_id: int = Field(primary_key=True)
    last_updated: datetime
    deleted: bool = False
    body: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    patient_id: str | None = Field(default=None, max_length=64)


class ObservationIndex(SQLModel, table=True):
    __tablename__ = "observation_index"
    id: str = Field(primary_key=True, max_length=64)
    patient_id: str | None = Field(default=None, max_length=64)
    hospital_id: str | None = Field(default=None, max_length=64)
    status: str = Field(max_length=32)
    code_system: str | None = Field(default=None, max_length=255)
    code: str | None = Field(default=None, max_length=64)
    category: str | None = Field(default=None, max_length=64)
    effective: datetime | None = None
    effective_end: datetime | None = None
    issued: datetime | None = None
    last_updated: datetime


class DiagnosticReportIndex(SQLModel, table=True):
    __tablename__ = "diagnostic_report_index"
    id: str = Field(primary_key=True, max_length=64)
    patient_id: str | None = Field(default=None, max_length=64)
    hospital_id: str | None = Field(default=None, max_length=64)
    status: str = Field(max_length=32)
    code_system: str | None = Field(default=None, max_length=255)
    code: str | None = Field(default=None, max_length=64)
    category: str | None = Field(default=None, max_length=64)
    effective: datetime | None = None
    effective_end: datetime | None = None
    issued: datetime | None = None
    last_updated: datetime


class ImagingStudyIndex(SQLModel, table=True):
    __tablename__ = "imaging_study_index"
    id: str = Field(primary_key=True, max_length=64)
    patient_id: str | None = Field(default=None, max_length=64)
    hospital_id: str | None = Field(default=None, max_length=64)
    status: str = Field(max_length=32)
    started: datetime | None = None
    study_uid: str | None = Field(default=None, max_length=128)
    modality: str | None = Field(default=None, max_length=16)
    body_site: str | None = Field(default=None, max_length=64)
    last_updated: datetime


class PatientIndex(SQLModel, table=True):
    __tablename__ = "patient_index"
    id: str = Field(primary_key=True, max_length=64)
    patient_id: str | None = Field(default=None, max_length=64)
    hospital_id: str | None = Field(default=None, max_length=64)
    gender: str | None = Field(default=None, max_length=16)
    birthdate: datetime | None = None
    last_updated: datetime


class SearchToken(SQLModel, table=True):
    """One row per (resource, token parameter, coding): code, category, identifier, ..."""

    __tablename__ = "search_token"
    __table_args__ = (
        Index("ix_token_patient", "patient_id", "type", "param", "code", "date"),
        Index("ix_token_code", "type", "param", "code", "system"),
        Index("ix_token_resource", "type", "res_id"),
    )
    pk: int | None = Field(default=None, primary_key=True)
    type: str = Field(max_length=32)
    res_id: str = Field(max_length=64)
    param: str = Field(max_length=32)
    system: str = Field(default="", max_length=255)
    code: str = Field(max_length=255)
    patient_id: str | None = Field(default=None, max_length=64)
    date: datetime | None = None


class SearchString(SQLModel, table=True):
    """Normalised string parameters (Patient name: characters, pinyin, Latin) for prefix search."""

    __tablename__ = "search_string"
    __table_args__ = (
        Index("ix_string_value", "type", "param", "value"),
        Index("ix_string_resource", "type", "res_id"),
    )
    pk: int | None = Field(default=None, primary_key=True)
    type: str = Field(max_length=32)
    res_id: str = Field(max_length=64)
    param: str = Field(max_length=32)
    value: str = Field(max_length=255)


class Cursor(SQLModel, table=True):
    """An adapter's durable position, written in the same transaction as the data it covers."""

    __tablename__ = "sync_cursor"
    hospital_id: str = Field(primary_key=True, max_length=64)
    adapter: str = Field(primary_key=True, max_length=64)
    name: str = Field(primary_key=True, max_length=128)
    value: str
    updated: datetime


class DeadLetter(SQLModel, table=True):
    __tablename__ = "dead_letter"
    __table_args__ = (Index("ix_dead_letter_status", "status", "received"),)
    id: int | None = Field(default=None, primary_key=True)
    hospital_id: str = Field(max_length=64)
    adapter: str = Field(max_length=64)
    key: str = Field(max_length=512)
    received: datetime
    reason: str
    location: str | None = None
    content_type: str = Field(default="application/octet-stream", max_length=128)
    status: str = Field(default="new", max_length=16)  # new | retried | resolved
    attempts: int = 0
    raw: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class SyncRun(SQLModel, table=True):
    __tablename__ = "sync_run"
    id: int | None = Field(default=None, primary_key=True)
    hospital_id: str = Field(max_length=64, index=True)
    adapter: str = Field(max_length=64)
    started: datetime
    finished: datetime | None = None
    received: int = 0
    indexed: int = 0
    unchanged: int = 0
    new_versions: int = 0
    rejected: int = 0
    cursor_before: str | None = None
    cursor_after: str | None = None
    error: str | None = None


class AuditEvent(SQLModel, table=True):
    """Who touched which patient's data, when, how and why (append-only)."""

    __tablename__ = "audit_event"
    __table_args__ = (Index("ix_audit_patient", "patient_id", "recorded"),)
    id: int | None = Field(default=None, primary_key=True)
    recorded: datetime
    client_id: str = Field(max_length=128)
    hospital_id: str | None = Field(default=None, max_length=64)
    action: str = Field(max_length=16)  # C R U D E (FHIR AuditEvent.action)
    interaction: str = Field(max_length=32)  # read, search, create, transaction, $prior-results
    resource_type: str | None = Field(default=None, max_length=32)
    resource_ids: str = ""
    patient_id: str | None = Field(default=None, max_length=64)
    purpose: str | None = Field(default=None, max_length=64)
    outcome: str = Field(default="0", max_length=4)  # 0 success, 4 minor, 8 serious failure
    query: str | None = None


class RecognitionLookup(SQLModel, table=True):
    """One ``$prior-results`` question: the ledger's "lookups" and "offered" columns."""

    __tablename__ = "recognition_lookup"
    __table_args__ = (Index("ix_lookup_hospital_time", "hospital_id", "asked"),)
    id: int | None = Field(default=None, primary_key=True)
    asked: datetime
    patient_id: str = Field(max_length=64)
    hospital_id: str = Field(max_length=64)
    department: str | None = Field(default=None, max_length=64)
    client_id: str = Field(max_length=128)
    requested_items: str  # space-separated catalogue item codes
    offered_items: str = ""  # items for which a recognised result was offered
    pending: int = 0


class RecognitionDecision(SQLModel, table=True):
    """A clinician accepted or declined a prior result instead of (or before) re-testing."""

    __tablename__ = "recognition_decision"
    __table_args__ = (
        Index("ix_decision_hospital_time", "hospital_id", "decided"),
        Index("ix_decision_patient", "patient_id"),
    )
    id: str = Field(primary_key=True, max_length=64)
    decided: datetime
    patient_id: str = Field(max_length=64)
    hospital_id: str = Field(max_length=64)
    department: str | None = Field(default=None, max_length=64)
    clinician: str = Field(max_length=128)
    client_id: str = Field(max_length=128)
    result_ref: str = Field(max_length=160)  # Observation/abc
    result_version: str | None = Field(default=None, max_length=16)
    item_code: str = Field(max_length=64)  # recognition catalogue item
    order_ref: str | None = Field(default=None, max_length=160)  # the order it replaced
    encounter: str | None = Field(default=None, max_length=160)
    producer_id: str | None = Field(default=None, max_length=64)  # the hospital that did the test
    action: str = Field(max_length=16)  # accept | decline
    reason_code: str | None = Field(default=None, max_length=64)
    reason_text: str | None = None
    price_rmb: float = 0.0  # saved when accepted, from the catalogue at decision time
    minutes_saved: float = 0.0
    withdrawn: datetime | None = None
    withdrawn_by: str | None = Field(default=None, max_length=128)
    withdraw_reason: str | None = None


class PatientTraits(SQLModel, table=True):
    """An exchange patient's merged, normalised traits (hie.identity.Traits as JSON)."""

    __tablename__ = "patient_traits"
    patient_id: str = Field(primary_key=True, max_length=64)
    traits: str


class PatientBlock(SQLModel, table=True):
    """Blocking keys: which patients a new record is compared with (hie.identity.blocking)."""

    __tablename__ = "patient_block"
    __table_args__ = (Index("ix_patient_block_patient", "patient_id"),)
    key: str = Field(primary_key=True, max_length=128)
    patient_id: str = Field(primary_key=True, max_length=64)


class LinkEventRow(SQLModel, table=True):
    """Every change of patient identity: link, unlink, merge, with who and why."""

    __tablename__ = "link_event"
    __table_args__ = (Index("ix_link_event_record", "record_id", "at"),)
    id: int | None = Field(default=None, primary_key=True)
    at: datetime
    action: str = Field(max_length=16)  # link | unlink | merge
    record_id: str = Field(max_length=64)
    from_patient: str | None = Field(default=None, max_length=64)
    to_patient: str | None = Field(default=None, max_length=64)
    rule: str = Field(max_length=64)
    score: float | None = None
    actor: str = Field(max_length=128)


class ReviewItemRow(SQLModel, table=True):
    """A candidate link waiting for a human: never merged automatically."""

    __tablename__ = "review_item"
    __table_args__ = (Index("ix_review_status", "status", "created"),)
    id: int | None = Field(default=None, primary_key=True)
    created: datetime
    record_id: str = Field(max_length=64)
    candidate_patient_id: str = Field(max_length=64)
    current_patient_id: str | None = Field(default=None, max_length=64)
    score: float | None = None
    reasons: str = ""  # JSON list
    status: str = Field(default="open", max_length=16)  # open | accepted | rejected
    decided_by: str | None = Field(default=None, max_length=128)
    decided_at: datetime | None = None
