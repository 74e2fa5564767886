"""A clinician's accept or decline of a recognisable result, and the coded decline reasons.

Decisions are what the savings ledger counts and what the CDS Hooks feedback endpoint will
record, so one shape serves both. The decline reasons are data
(``fhir_profiles/CodeSystem-decline-reasons.json``), built on the situations in which the 2022
national measures allow a new test; the ``requires-text`` property says which reason needs a
free-text explanation (clinician judgement), and :func:`check_decision` enforces it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from hie.outcome import Invalid
from hie.recognition.catalogue import Catalogue

DECLINE_REASON_URL = "https://hie.example.org/cs/decline-reason"

Action = Literal["accept", "decline"]


@dataclass(frozen=True)
class DeclineReason:
    code: str
    display_en: str
    display_zh: str
    requires_text: bool


class DeclineReasons:
    """The decline-reason CodeSystem, read once."""

    def __init__(self, reasons: Mapping[str, DeclineReason], url: str = DECLINE_REASON_URL):
        self.reasons = dict(reasons)
        self.url = url

    @classmethod
    def load(cls, path: Path) -> DeclineReasons:
        return cls.from_json(json.loads(path.read_text(encoding="utf-8")))

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> DeclineReasons:
        reasons: dict[str, DeclineReason] = {}
        for c in doc.get("concept", []):
            props = {p["code"]: p.get("valueBoolean") for p in c.get("property", [])}
            zh = next(
                (d["value"] for d in c.get("designation", []) if d.get("language", "")[:2] == "zh"),
                c.get("display", c["code"]),
            )
            reasons[c["code"]] = DeclineReason(
                c["code"], c.get("display", c["code"]), zh, bool(props.get("requires-text"))
            )
        return cls(reasons, str(doc.get("url", DECLINE_REASON_URL)))

    def __contains__(self, code: object) -> bool:
        return code in self.reasons

    def __getitem__(self, code: str) -> DeclineReason:
        return self.reasons[code]


@dataclass(frozen=True)
class Decision:
    """One accept or decline, by a clinician of a hospital's department, of one offered result.

    ``order_ref`` is the order the accepted result replaced (it is then cancelled in the EHR) or,
    for a decline, the order that goes ahead. ``encounter`` lets the ledger count the patient's
    time saved once per visit. ``price_rmb`` and ``minutes_saved`` are the catalogue's figures
    when the decision was taken (the store keeps them so a later price change does not rewrite
    history); None means "use the catalogue's current figures". A withdrawn decision stays on
    record (audit) but no longer counts.
    """

    id: str
    action: Action
    item_code: str
    hospital_id: str
    department: str | None
    clinician: str
    at: datetime
    result_ref: str
    result_version: str | None = None
    patient_id: str | None = None
    producer_id: str | None = None
    order_ref: str | None = None
    reason: str | None = None
    reason_text: str | None = None
    encounter: str | None = None
    price_rmb: Decimal | None = None
    minutes_saved: int | None = None
    withdrawn_at: datetime | None = None

    def __post_init__(self) -> None:
        for name in ("at", "withdrawn_at"):
            value = getattr(self, name)
            if value is not None and (value.tzinfo is None or value.utcoffset() is None):
                raise ValueError(f"Decision.{name} must be an aware datetime")

    @property
    def counts(self) -> bool:
        return self.withdrawn_at is None


def check_decision(decision: Decision, reasons: DeclineReasons, catalogue: Catalogue) -> None:
    """Refuse a decision the ledger could not count honestly; ``Invalid`` names the field."""
    if decision.item_code not in catalogue.items:
        raise Invalid(
            f"Item {decision.item_code!r} is not in the recognition catalogue", expression="item"
        )
    if decision.action == "accept":
        if decision.reason is not None:
            raise Invalid("An acceptance carries no decline reason", expression="reason")
        return
    if decision.reason is None:
        raise Invalid("A decline needs a coded reason", expression="reason")
    if decision.reason not in reasons:
        raise Invalid(
            f"Unknown decline reason {decision.reason!r}; use a code of {reasons.url}",
            expression="reason",
        )
    if reasons[decision.reason].requires_text and not (decision.reason_text or "").strip():
        raise Invalid(
            f"Decline reason {decision.reason!r} needs a free-text explanation",
            expression="reasonText",
        )
