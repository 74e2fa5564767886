"""Verdicts as FHIR: the ``recognition-verdict`` extension a ``$prior-results`` entry carries.

Profiled by ``fhir_profiles/StructureDefinition-recognition-verdict.json``. It goes on
``Bundle.entry`` (a BackboneElement, which may carry extensions, FHIR R4 §2.6.0), not on the
resource: the verdict is a statement about the entry in this answer, for this requester at this
time; the same Observation gets another verdict for another hospital or tomorrow. Putting it on
``entry.search`` would tie it to the search-mode element, which a client reading only
``entry.resource`` and ``entry.extension`` would miss.

The JSON built here is plain dicts, ready for the lead's Bundle assembly (which serialises
stored JSON without re-validating it).
"""

from __future__ import annotations

from typing import Any

from hie.recognition.catalogue import CATALOGUE_URL
from hie.recognition.explanation import VERDICT_URL
from hie.recognition.model import Code, Pending, Verdict

EXTENSION_URL = "https://hie.example.org/fhir/StructureDefinition/recognition-verdict"

DISPLAY: dict[str, str] = {
    "recognised": "Recognised",
    "mutual-recognition": "Recognised under mutual recognition",
    "own-result": "Own result",
    "reference-only": "Reference only",
    "pending": "Pending at another hospital",
    "entered-in-error": "Entered in error",
    "cancelled": "Cancelled",
    "superseded": "Superseded by a correction",
    "not-final": "Not final",
    "not-on-list": "Not on the recognition list",
    "specimen-mismatch": "Specimen mismatch",
    "unit-mismatch": "Unit mismatch",
    "outside-scope": "Outside the recognition scope",
    "no-credential-at-time": "Lab lacked the credential at the time",
    "expired": "Validity window ended",
}

JSON = dict[str, Any]


def verdict_extension(verdict: Verdict, *, catalogue_url: str = CATALOGUE_URL) -> JSON:
    """The complex extension for one assessed result's Bundle.entry.

    The parts that name a verdict code are the same few dicts each time, built once (they
    are only read: serialised with the answer); ~30 extensions go into each answer.
    """
    parts: list[JSON] = [_VERDICT_PARTS[("verdict", verdict.kind)]]
    if verdict.basis:
        parts.append(_VERDICT_PARTS[("basis", verdict.basis)])
    if verdict.reason:
        parts.append(_VERDICT_PARTS[("reason", verdict.reason)])
    parts += [_VERDICT_PARTS[("otherReason", r)] for r in verdict.other_reasons]
    parts.append({"url": "rule", "valueString": verdict.rule})
    if verdict.item_code:
        item: JSON = {"system": catalogue_url, "code": verdict.item_code}
        if verdict.item_display_en:
            item["display"] = verdict.item_display_en
        parts.append(_coding_part("item", item))
    if verdict.expires_at:
        parts.append({"url": "expires", "valueDateTime": verdict.expires_at.isoformat()})
    if verdict.mark_prefix:
        parts.append({"url": "markPrefix", "valueString": verdict.mark_prefix})
    if verdict.mark:
        parts.append({"url": "mark", "valueString": verdict.mark})
    parts += [_coding_part("covers", _code(c)) for c in verdict.covers]
    parts += [_coding_part("relatesTo", _code(c)) for c in verdict.relates_to]
    parts += [
        _coding_part("missing", {"system": catalogue_url, "code": m}) for m in verdict.missing
    ]
    if verdict.producer_id:
        ref: JSON = {"reference": f"Organization/{verdict.producer_id}"}
        if verdict.producer_name_zh:
            ref["display"] = verdict.producer_name_zh
        parts.append({"url": "producer", "valueReference": ref})
    if verdict.credential:
        parts.append({"url": "credential", "valueString": verdict.credential.describe()})
    parts.append({"url": "explanation", "valueString": verdict.explanation_zh})
    parts.append({"url": "explanationEn", "valueString": verdict.explanation_en})
    return {"url": EXTENSION_URL, "extension": parts}


def pending_extension(pending: Pending) -> JSON:
    """The extension for an entry that is a test still pending at another hospital."""
    name_zh = pending.hospital_name_zh or pending.hospital_id
    parts: list[JSON] = [
        _coding_part("verdict", _verdict_coding("pending")),
        {"url": "rule", "valueString": f"pending.{pending.source}"},
    ]
    parts += [_coding_part("covers", _code(c)) for c in pending.covers]
    parts.append(
        {
            "url": "producer",
            "valueReference": {
                "reference": f"Organization/{pending.hospital_id}",
                "display": name_zh,
            },
        }
    )
    parts.append({"url": "explanation", "valueString": pending.explanation_zh})
    parts.append({"url": "explanationEn", "valueString": pending.explanation_en})
    return {"url": EXTENSION_URL, "extension": parts}


def _verdict_coding(code: str) -> JSON:
    return {"system": VERDICT_URL, "code": code, "display": DISPLAY[code]}


def _code(code: Code) -> JSON:
    return {"system": code[0], "code": code[1]}


def _coding_part(name: str, coding: JSON) -> JSON:
    return {"url": name, "valueCoding": coding}


_VERDICT_PARTS: dict[tuple[str, str], JSON] = {
    (name, code): _coding_part(name, _verdict_coding(code))
    for name in ("verdict", "basis", "reason", "otherReason")
    for code in DISPLAY
}
