"""Coded values: HL7 v2 coding systems → FHIR URIs, CE/CWE → CodeableConcept, local → LOINC.

HL7 table 0396 names coding systems (``LN`` LOINC, ``SCT`` SNOMED CT, ``UCUM``, ``HL7nnnn`` for
HL7 tables, ``L``/``99zzz`` for local ones). Anything that is not a known public system is the
sending hospital's own code, so it goes under ``naming.local_codes(hospital_id)``; a local test
code is then looked up in that hospital's ConceptMap, and when mapped the CodeableConcept
carries LOINC first and the local coding second (never dropped: hie/terminology.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any, Protocol

from adapters.hl7v2.message import TABLE_VALUE_NOT_FOUND, Coded, MessageError
from adapters.hl7v2.timestamp import SHANGHAI
from hie import naming

JSON = dict[str, Any]

_HL7_TABLE = re.compile(r"HL7(\d{4})$")
_PUBLIC = {
    "LN": naming.LOINC,
    "LOINC": naming.LOINC,
    "SCT": naming.SNOMED,
    "SNOMED": naming.SNOMED,
    "SNOMEDCT": naming.SNOMED,
    "UCUM": naming.UCUM,
    "I10": "http://hl7.org/fhir/sid/icd-10",
    "I10C": "http://hl7.org/fhir/sid/icd-10-cm",
    "I9C": "http://hl7.org/fhir/sid/icd-9-cm",
}


class CodeMapper(Protocol):
    """What the mapper needs from hie.terminology.Terminology."""

    def map(
        self, hospital_id: str, local_code: str, display: str | None = None
    ) -> tuple[str, str, str | None] | None: ...


class NoMapping:
    """A CodeMapper with no ConceptMaps (every local code stays local)."""

    def map(
        self, hospital_id: str, local_code: str, display: str | None = None
    ) -> tuple[str, str, str | None] | None:
        return None


@dataclass(frozen=True)
class Context:
    """Per-hospital mapping settings: who sent it, how to read local codes and local times."""

    hospital_id: str
    terminology: CodeMapper = field(default_factory=NoMapping)
    tz: tzinfo = SHANGHAI


def system_uri(v2_system: str, hospital_id: str) -> str:
    """The FHIR system for an HL7 table 0396 name; unknown or local names → the hospital's."""
    key = v2_system.strip().upper().replace("-", "").replace(" ", "")
    if key in _PUBLIC:
        return _PUBLIC[key]
    m = _HL7_TABLE.match(key)
    if m:
        return f"http://terminology.hl7.org/CodeSystem/v2-{m.group(1)}"
    return naming.local_codes(hospital_id)


_LOINC = re.compile(r"(L[AP])?(\d{1,7})-(\d)$")


def is_loinc(code: str) -> bool:
    """A LOINC code's shape and check digit (LOINC Users' Guide: mod 10, the Luhn algorithm).

    Answer (``LA``) and part (``LP``) codes are checked for shape only.
    """
    m = _LOINC.match(code)
    if not m:
        return False
    if m.group(1):
        return True
    total = 0
    for i, ch in enumerate(reversed(m.group(2))):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d // 10 + d % 10
    return (10 - total % 10) % 10 == int(m.group(3))


def fhir_code(text: str) -> str:
    """FHIR ``code`` allows no leading, trailing or repeated whitespace (R4 §2.24.0.1)."""
    return " ".join(text.split())


def _coding(system: str, code: str, display: str) -> JSON:
    c: JSON = {"system": system, "code": fhir_code(code)}
    if display:
        c["display"] = display
    return c


def concept(
    value: Coded, ctx: Context, *, map_local: bool = False, location: str | None = None
) -> JSON | None:
    """A CodeableConcept from a CE/CWE; with ``map_local`` a local code gains its LOINC coding.

    A code the sender labels LOINC (``LN``) that is not one raises MessageError at ``location``:
    indexing it as LOINC would file the result under the wrong test.
    """
    loinc: list[JSON] = []
    others: list[JSON] = []
    local: JSON | None = None
    pairs = (
        (value.code, value.text, value.system),
        (value.alt_code, value.alt_text, value.alt_system),
    )
    for code, text, system in pairs:
        if not code:
            continue
        uri = system_uri(system, ctx.hospital_id)
        coding = _coding(uri, code, text)
        if coding in loinc or coding in others:
            continue
        if uri == naming.LOINC:
            if not is_loinc(code):
                raise MessageError(
                    f"{code!r} is labelled LOINC but is not a LOINC code (nnnnn-n, check digit)",
                    location=location,
                    condition=TABLE_VALUE_NOT_FOUND,
                )
            loinc.append(coding)
        else:
            others.append(coding)
            if local is None and uri == naming.local_codes(ctx.hospital_id):
                local = coding
    if map_local and not loinc and local is not None:
        found = ctx.terminology.map(ctx.hospital_id, local["code"], local.get("display"))
        if found:
            loinc.append(_coding(found[0], found[1], found[2] or ""))
    codings = loinc + others
    text = value.text or value.alt_text
    if not codings and not text:
        return None
    out: JSON = {}
    if codings:
        out["coding"] = codings
    if text:
        out["text"] = text
    return out
