"""Stored FHIR JSON → the engine's inputs: :class:`PriorResult` and :class:`PendingOrder`.

Pure reading of the resources the index keeps (Observation, DiagnosticReport, ImagingStudy,
ServiceRequest), so every edge builds candidates the same way. The caller supplies what is not
in the resource itself: the producing hospital (the index's source hospital), and the specimen
type (the index resolves ``Observation.specimen`` to its Specimen; :func:`specimen_type` reads
the code). References are kept as written: after ingest they are ``Type/id``, which is what
``PriorResult.members`` and ``PendingOrder.ref`` need.

Times without an offset are read in the exchange's zone (FHIR R4 §2.24.0.3 dateTime: "if hours
and minutes are specified, a time zone SHALL be populated", but dates alone are allowed), as
the start of the day or month they name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime, tzinfo
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from hie.naming import UCUM
from hie.recognition.model import Code, PendingOrder, PriorResult

JSON = Mapping[str, Any]
Facts = list[Any]  # see facts(): 17 fields, JSON-ready
RESULT_TYPES = frozenset({"Observation", "DiagnosticReport", "ImagingStudy"})
_PARTIAL = re.compile(r"^(\d{4})(?:-(\d{2}))?(?:-(\d{2}))?$")
_SHANGHAI = ZoneInfo("Asia/Shanghai")


def prior_result(
    resource: JSON,
    *,
    hospital_id: str,
    specimen: str | None = None,
    superseded: bool = False,
    zone: tzinfo | None = None,
) -> PriorResult | None:
    """The candidate a stored result stands for; None for other types or a result with no time."""
    found = facts(resource)
    if found is None:
        return None
    return from_facts(
        found, hospital_id=hospital_id, specimen=specimen, superseded=superseded, zone=zone
    )


def facts(resource: JSON) -> Facts | None:
    """What the engine reads of a result, as a short JSON-ready list; None for other types.

    The index keeps it beside each stored result (``resource.facts``), so ``$prior-results``
    builds a candidate from ~200 bytes instead of parsing the whole body (issue 8: parsing
    and walking the body was a fifth of the request). Times stay text; ``from_facts`` reads
    them in the exchange's zone. The specimen is its reference: the index resolves it.
    """
    kind = resource.get("resourceType")
    if kind not in RESULT_TYPES:
        return None
    version = _version(resource)
    based_on = _first_reference(resource.get("basedOn"))
    if kind == "ImagingStudy":
        modality, site = None, None
        for series in resource.get("series", []):
            modality = modality or (series.get("modality") or {}).get("code")
            site = site or (series.get("bodySite") or {}).get("code")
        if modality is None:
            modality = next((m.get("code") for m in resource.get("modality", [])), None)
        codes: list[list[str]] = []
        for concept in resource.get("procedureCode", []):
            codes.extend(list(c) for c in _codes(concept))
        return [
            kind,
            str(resource.get("id", "")),
            codes,
            _text(resource.get("started")),
            str(resource.get("status", "unknown")),
            version,
            None,
            None,
            None,
            None,
            None,
            None,
            based_on,
            resource.get("description"),
            [],
            modality,
            site,
        ]
    number, text, unit = _value(resource)
    members = resource.get("result" if kind == "DiagnosticReport" else "hasMember", [])
    spec = resource.get("specimen")
    specimen_ref = spec.get("reference") if isinstance(spec, Mapping) else None
    return [
        kind,
        str(resource.get("id", "")),
        [list(c) for c in _codes(resource.get("code"))],
        _effective_text(resource),
        str(resource.get("status", "unknown")),
        version,
        _text(resource.get("issued")),
        number,
        text,
        unit,
        _range(resource),
        specimen_ref if isinstance(specimen_ref, str) else None,
        based_on,
        _display(resource.get("code")),
        [str(m["reference"]) for m in members if m.get("reference")],
        None,
        None,
    ]


def specimen_reference(found: Facts) -> str | None:
    """The ``Specimen/id`` a result's facts name, for the index to resolve to a type."""
    ref = found[11]
    return ref if isinstance(ref, str) else None


def from_facts(
    found: Sequence[Any],
    *,
    hospital_id: str,
    specimen: str | None = None,
    superseded: bool = False,
    zone: tzinfo | None = None,
) -> PriorResult | None:
    """The candidate for a result's :func:`facts`; None for a result with no time."""
    (
        kind,
        rid,
        codes,
        effective_text,
        status,
        version,
        issued_text,
        number,
        text,
        unit,
        reference_range,
        _specimen_ref,
        based_on,
        display,
        members,
        modality,
        body_site,
    ) = found
    zone = zone or _SHANGHAI
    effective = _instant(effective_text, zone)
    if effective is None:
        return None
    value: Decimal | str | None = text
    if number is not None:
        try:
            value = Decimal(number)
        except InvalidOperation:
            value = None
    return PriorResult(
        resource_type=kind,
        id=rid,
        hospital_id=hospital_id,
        codes=tuple((c[0], c[1]) for c in codes),
        effective=effective,
        status=status,
        version=version,
        issued=_instant(issued_text, zone),
        value=value,
        unit=unit,
        reference_range=reference_range,
        specimen=specimen,
        superseded=superseded,
        based_on_order=based_on,
        display=display,
        members=tuple(members),
        modality=modality,
        body_site=body_site,
    )


def pending_order(
    resource: JSON, *, hospital_id: str, zone: tzinfo | None = None
) -> PendingOrder | None:
    """A ServiceRequest as a pending order; None if it has no authoredOn or is not one."""
    if resource.get("resourceType") != "ServiceRequest":
        return None
    authored = _instant(resource.get("authoredOn"), zone or ZoneInfo("Asia/Shanghai"))
    if authored is None:
        return None
    return PendingOrder(
        ref=f"ServiceRequest/{resource.get('id', '')}",
        hospital_id=hospital_id,
        codes=_codes(resource.get("code")),
        authored=authored,
        status=str(resource.get("status", "unknown")),
        display=_display(resource.get("code")),
    )


def specimen_type(specimen: JSON | None) -> str | None:
    """The first coded type of a Specimen resource (SNOMED CT or HL7 v2 0487)."""
    if not specimen:
        return None
    for coding in (specimen.get("type") or {}).get("coding", []):
        if coding.get("code"):
            return str(coding["code"])
    return None


def _codes(concept: JSON | None) -> tuple[Code, ...]:
    return tuple(
        (str(c["system"]), str(c["code"]))
        for c in (concept or {}).get("coding", [])
        if c.get("system") and c.get("code")
    )


def _display(concept: JSON | None) -> str | None:
    if not concept:
        return None
    if concept.get("text"):
        return str(concept["text"])
    return next((str(c["display"]) for c in concept.get("coding", []) if c.get("display")), None)


def _version(resource: JSON) -> str | None:
    version = (resource.get("meta") or {}).get("versionId")
    return None if version is None else str(version)


def _effective_text(resource: JSON) -> str | None:
    for key in ("effectiveDateTime", "effectiveInstant"):
        if resource.get(key):
            return _text(resource[key])
    period = resource.get("effectivePeriod") or {}
    return _text(period.get("start") or period.get("end"))


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _instant(text: Any, zone: tzinfo) -> datetime | None:
    """A FHIR date/dateTime/instant as an aware datetime (the start of a partial date)."""
    if not isinstance(text, str) or not text:
        return None
    return _parse_instant(text, zone)


# A panel's results share their times (effective, issued): a request's ~70 candidates carry a
# handful of distinct strings. Memoised (bounded), like fhirtime.parse_range: 3 µs a parse.
@lru_cache(maxsize=8192)
def _parse_instant(text: str, zone: tzinfo) -> datetime | None:
    partial = _PARTIAL.match(text)
    if partial:
        year, month, day = partial.groups()
        return datetime(int(year), int(month or 1), int(day or 1), tzinfo=zone)
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=zone)


def _value(resource: JSON) -> tuple[str | None, str | None, str | None]:
    """(number as text, or else the value as text, unit): ``from_facts`` makes the Decimal."""
    quantity = resource.get("valueQuantity")
    if quantity:
        unit = quantity.get("code") if quantity.get("system") == UCUM else None
        unit = unit or quantity.get("unit")
        number = quantity.get("value")
        if number is None or isinstance(number, bool):
            return None, None, unit
        try:
            exact = str(Decimal(str(number)))
        except InvalidOperation:
            return None, None, unit
        if quantity.get("comparator"):
            return None, f"{quantity['comparator']}{exact}", unit
        return exact, None, unit
    if "valueString" in resource:
        return None, str(resource["valueString"]), None
    concept = resource.get("valueCodeableConcept")
    if concept:
        return (
            None,
            _display(concept) or next((c["code"] for c in concept.get("coding", [])), None),
            None,
        )
    return None, None, None


def _range(resource: JSON) -> str | None:
    for r in resource.get("referenceRange", []):
        if r.get("text"):
            return str(r["text"])
        low, high = (r.get("low") or {}).get("value"), (r.get("high") or {}).get("value")
        if low is not None or high is not None:
            return f"{'' if low is None else low}-{'' if high is None else high}"
    return None


def _first_reference(refs: Any) -> str | None:
    for ref in refs or []:
        if isinstance(ref, Mapping) and ref.get("reference"):
            return str(ref["reference"])
    return None
