"""The recognition engine's inputs and outputs, as plain frozen values.

Nothing here knows about HTTP, SQL or fhir.resources: the index turns its stored resources into
:class:`PriorResult` and :class:`PendingOrder`, the hospitals configuration into
:class:`HospitalProfile` and :class:`LabCredential`, and every edge (``$prior-results``, the CDS
Hooks service, the SMART app) reads the same :class:`Assessment`. Card-worthy facts (expiry, the
HR mark, both hospital names) live in :class:`Verdict` so no edge has to look them up again.

All times are aware datetimes (instants); a naive one is a programming error and is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Literal

from hie.recognition.scope import ScopeRules

Code = tuple[str, str]  # (system, code)

# FHIR R4 status codes that end a result's life cycle with a usable value. Observation and
# DiagnosticReport share final/amended/corrected (DiagnosticReport adds appended); an
# ImagingStudy is usable once "available".
FINAL_STATUSES = frozenset({"final", "amended", "corrected", "appended", "available"})
# Still on its way: a clinician should wait for it rather than order again.
PENDING_STATUSES = frozenset({"registered", "preliminary", "partial"})

VerdictKind = Literal["recognised", "reference-only"]
Basis = Literal["mutual-recognition", "own-result"]
CoverageState = Literal["covered", "partial", "pending", "none"]


# PriorResult, Check and Verdict are values (never changed once built) but not frozen: a
# frozen dataclass sets each field through object.__setattr__, and building the ~70
# candidates, ~350 checks and ~30 verdicts of one $prior-results request that way cost
# about 1 ms of its CPU (issue 8). They keep frozen's equality and hash (unsafe_hash).


def _require_aware(name: str, value: datetime | None) -> None:
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise ValueError(f"{name} must be an aware datetime (an instant), got {value!r}")


@dataclass(slots=True, unsafe_hash=True)  # a value, not frozen: see above
class PriorResult:
    """One candidate result from the index: an Observation, DiagnosticReport or ImagingStudy.

    ``codes`` are every coding the resource carries (LOINC, the hospital's local code...).
    A panel (a DiagnosticReport, or an Observation with ``hasMember``) lists its component
    results in ``members`` as ``Type/id`` references; those results are passed in too.
    Corrections are seen three ways, any of which marks the older result superseded: two
    versions of the same resource (the lower ``version`` loses), ``replaces`` naming the result
    a new one corrects, or ``superseded=True`` set by the index.
    Imaging studies are matched by ``modality`` (DICOM code), ``body_site`` (SNOMED CT) and
    ``contrast``; ``contrast=None`` means "not stated", which the catalogue takes as plain.
    ``specimen`` is a specimen type code: SNOMED CT, or the HL7 v2 table 0070/0487 code the v2
    adapters carry (SER, WB...).
    """

    resource_type: str
    id: str
    hospital_id: str
    codes: tuple[Code, ...]
    effective: datetime
    status: str
    version: str | None = None
    issued: datetime | None = None
    value: Decimal | str | None = None
    unit: str | None = None  # UCUM code
    reference_range: str | None = None
    specimen: str | None = None  # specimen type code (SNOMED CT or HL7 v2 0070/0487)
    superseded: bool = False
    replaces: str | None = None  # "Observation/abc": the result this one corrects
    based_on_order: str | None = None  # "ServiceRequest/x" or a filler/placer order number
    display: str | None = None
    members: tuple[str, ...] = ()
    modality: str | None = None
    body_site: str | None = None
    contrast: bool | None = None
    # Made once, asked many times per result by the engine (issue 8); a result is not changed
    # after it is made (dataclasses.replace makes a new one):
    # "Type/id";
    ref: str = field(init=False, repr=False, compare=False)
    # (ref, version), the key a version of the result is judged under;
    key: tuple[str, str | None] = field(init=False, repr=False, compare=False)
    # the order of versions: numeric versionIds numerically, others as text, none first.
    version_key: tuple[int, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _require_aware("PriorResult.effective", self.effective)
        _require_aware("PriorResult.issued", self.issued)
        self.ref = ref = f"{self.resource_type}/{self.id}"
        version = self.version
        self.key = (ref, version)
        if version is None:
            self.version_key = (-1, "")
        else:
            self.version_key = (int(version), "") if version.isdigit() else (0, version)


@dataclass(frozen=True)
class PendingOrder:
    """A test ordered somewhere (a ServiceRequest) whose result has not arrived."""

    ref: str  # "ServiceRequest/abc"
    hospital_id: str
    codes: tuple[Code, ...]
    authored: datetime
    status: str = "active"
    display: str | None = None

    def __post_init__(self) -> None:
        _require_aware("PendingOrder.authored", self.authored)


@dataclass(frozen=True)
class HospitalProfile:
    """A hospital as the engine needs it; ``level`` is its grade (3A, 3B, 2A, 2B, 1, CHC)."""

    id: str
    level: str
    name_zh: str
    name_en: str


@dataclass(frozen=True)
class LabCredential:
    """An EQA pass held by a hospital's lab, as written in the hospitals configuration.

    ``scope`` is ``discipline:chemistry`` or ``item:4548-4``; ``valid_from``/``valid_to`` are
    inclusive local dates. A result is judged by the credential held on the local date the test
    was done, not on the day someone asks.
    """

    hospital_id: str
    scope: str
    scheme: str
    valid_from: date
    valid_to: date
    # describe()'s text, made once: it goes into the checks and the extension of every
    # result the credential admits (a date formatting each time, issue 8)
    _text: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "_text", f"{self.scheme} {self.scope} {self.valid_from}..{self.valid_to}"
        )

    def valid_on(self, day: date) -> bool:
        return self.valid_from <= day <= self.valid_to

    def describe(self) -> str:
        return self._text


@dataclass(frozen=True)
class RecognitionPolicy:
    """What the region decides: the province prefix of the HR mark, scope rules, time zone."""

    province_prefix: str
    scope: ScopeRules
    timezone: str = "Asia/Shanghai"

    @property
    def mark(self) -> str:
        """The mutual recognition mark printed on reports, e.g. 粤HR (互认标识)."""
        return f"{self.province_prefix}HR"


@dataclass(slots=True, unsafe_hash=True)  # a value, not frozen: see above
class Check:
    """One rule the engine applied to a result, and how it came out."""

    rule: str
    passed: bool
    note: str = ""


@dataclass(slots=True, unsafe_hash=True)  # a value, not frozen: see above
class Verdict:
    """Why a result can or cannot stand in for a new test, with everything a card needs.

    ``rule`` is the rule that decided: for ``reference-only`` the first failing check in the
    engine's fixed order, for ``recognised`` the scope rule that admitted the result (or
    ``own-result``). ``checks`` lists every rule applied, in order; ``other_reasons`` every
    further reason the result would also have failed on.
    """

    kind: VerdictKind
    rule: str
    explanation_zh: str
    explanation_en: str
    basis: Basis | None = None
    reason: str | None = None
    other_reasons: tuple[str, ...] = ()
    checks: tuple[Check, ...] = ()
    item_code: str | None = None
    item_display_zh: str | None = None
    item_display_en: str | None = None
    expires_at: datetime | None = None
    mark_prefix: str | None = None
    mark: str | None = None
    covers: tuple[Code, ...] = ()
    relates_to: tuple[Code, ...] = ()
    missing: tuple[str, ...] = ()  # panel components (item codes) not present and recognised
    producer_id: str | None = None
    producer_name_zh: str | None = None
    producer_name_en: str | None = None
    credential: LabCredential | None = None

    @property
    def recognised(self) -> bool:
        return self.kind == "recognised"


@dataclass(frozen=True)
class AssessedResult:
    result: PriorResult
    verdict: Verdict


@dataclass(frozen=True)
class RequestedItem:
    """A requested code and the catalogue item it resolves to (None: not on the list)."""

    code: Code
    item_code: str | None
    display_zh: str | None = None
    display_en: str | None = None


@dataclass(frozen=True)
class Pending:
    """A result still to come from another hospital for a requested item: wait, don't re-order."""

    ref: str
    source: Literal["order", "result"]
    hospital_id: str
    hospital_name_zh: str | None
    hospital_name_en: str | None
    status: str
    since: datetime
    covers: tuple[Code, ...]
    explanation_zh: str
    explanation_en: str
    display: str | None = None


@dataclass(frozen=True)
class Coverage:
    """How one requested item stands: covered by recognised results, partly, pending, or not."""

    requested: Code
    state: CoverageState
    on_list: bool
    by: tuple[str, ...] = ()  # result refs
    missing: tuple[str, ...] = ()  # panel components still uncovered (item codes)
    pending: tuple[str, ...] = ()  # refs of pending orders/results


@dataclass(frozen=True)
class Assessment:
    """Everything the engine found for one request, most useful result first."""

    at: datetime
    requester: HospitalProfile
    requested: tuple[RequestedItem, ...]
    results: tuple[AssessedResult, ...]
    coverage: tuple[Coverage, ...]
    pending: tuple[Pending, ...] = field(default=())

    @property
    def recognised(self) -> tuple[AssessedResult, ...]:
        return tuple(r for r in self.results if r.verdict.recognised)
