"""OBX → FHIR Observation: value by OBX-2, units, reference range, flags, status.

Rules come from HL7 v2.5.1 §7.4.2 (OBX) and the HL7 v2-to-FHIR mappings
(OBX → Observation, table 0085 → ObservationStatus, table 0078 → ObservationInterpretation):

* OBX-2 NM → valueQuantity (UCUM code when the unit is known; a leading ``<``/``>`` as sent
  by many LIS becomes the comparator); SN → valueQuantity with comparator, valueRange
  (``^10^-^20``) or valueRatio (``^1^:^128``); ST/TX/FT → valueString; CE/CWE/CNE →
  valueCodeableConcept; DT/TS/DTM → valueDateTime; TM → valueTime. Other types (ED, RP …)
  carry no value and say so in ``dataAbsentReason``.
* OBX-11 C (corrected) keeps the same identifier, so ingest stores a new version of the
  same result; X (cannot be obtained) → cancelled with ``dataAbsentReason`` not-performed.
* OBX-14 is the time of the observation; without it the specimen time (OBR-7) is used.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from adapters.hl7v2.coding import Context, concept
from adapters.hl7v2.message import (
    DATA_TYPE_ERROR,
    REQUIRED_FIELD_MISSING,
    TABLE_VALUE_NOT_FOUND,
    Coded,
    MessageError,
    Segment,
)
from adapters.hl7v2.timestamp import to_date, to_datetime
from adapters.hl7v2.units import quantity, repair
from hie import naming

JSON = dict[str, Any]

OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
ABSENT = "http://terminology.hl7.org/CodeSystem/data-absent-reason"

# HL7 table 0085 → FHIR ObservationStatus.
OBX_STATUS = {
    "C": "corrected",
    "D": "entered-in-error",
    "F": "final",
    "I": "registered",
    "N": "cancelled",
    "O": "registered",
    "P": "preliminary",
    "R": "preliminary",
    "S": "preliminary",
    "U": "final",
    "W": "entered-in-error",
    "X": "cancelled",
    "A": "amended",
    "B": "amended",
}

_FLAGS = {
    "<": "Off scale low",
    ">": "Off scale high",
    "A": "Abnormal",
    "AA": "Critical abnormal",
    "B": "Better",
    "D": "Significant change down",
    "DET": "Detected",
    "E": "Equivocal",
    "H": "High",
    "HH": "Critical high",
    "HU": "Significantly high",
    "I": "Intermediate",
    "IND": "Indeterminate",
    "L": "Low",
    "LL": "Critical low",
    "LU": "Significantly low",
    "N": "Normal",
    "NCL": "No CLSI defined breakpoint",
    "ND": "Not detected",
    "NEG": "Negative",
    "NR": "Non-reactive",
    "NS": "Non-susceptible",
    "POS": "Positive",
    "R": "Resistant",
    "RR": "Reactive",
    "S": "Susceptible",
    "SDD": "Susceptible-dose dependent",
    "U": "Significant change up",
    "W": "Worse",
    "WR": "Weakly reactive",
}
_FLAG_ALIASES = {
    "↑": "H",
    "↓": "L",
    "高": "H",
    "低": "L",
    "偏高": "H",
    "偏低": "L",
    "HIGH": "H",
    "LOW": "L",
    "异常": "A",
    "正常": "N",
    "阳性": "POS",
    "阴性": "NEG",
    "危急高": "HH",
    "危急低": "LL",
    "↑↑": "HH",
    "↓↓": "LL",
}

# Why a result has no value (data-absent-reason), read from its status: hie's profile wants
# every Observation to carry a value or say why not (hie-obs-1).
_ABSENT_BY_STATUS = {
    "cancelled": "not-performed",
    "registered": "temp-unknown",
    "preliminary": "temp-unknown",
    "entered-in-error": "error",
}

_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)$")
_COMPARATOR = re.compile(r"(<=|>=|<|>|≤|≥)\s*([+-]?(?:\d+\.?\d*|\.\d+))$")
_RANGE = re.compile(
    r"\(?\s*([+-]?(?:\d+\.?\d*|\.\d+))\s*(?:-|~|～|–|—|_|to|至)\s*([+-]?(?:\d+\.?\d*|\.\d+))\s*\)?$"
)
_COMPARATOR_FHIR = {"<": "<", ">": ">", "<=": "<=", ">=": ">=", "≤": "<=", "≥": ">="}


@dataclass(frozen=True)
class Order:
    """What an OBX inherits from its OBR group."""

    filler: str
    patient_ref: str
    effective: str | None
    issued: str | None
    specimen_ref: str | None
    default_status: str | None


def number(text: str) -> int | float | None:
    """A decimal as JSON number (int when it has no fraction), or None if not a number."""
    t = text.strip()
    if not _NUMBER.match(t):
        return None
    if "." in t:
        return float(t)
    return int(t)


def _absent(code: str) -> JSON:
    return {"coding": [{"system": ABSENT, "code": code}]}


def _value(obx: Segment, ctx: Context, out: JSON) -> None:
    kind = obx.get(2).upper()
    reps = obx.reps(5)
    if not reps:
        return
    where = obx.loc(5)
    unit = repair(obx.coded(6))
    if kind in ("", "ST", "TX", "FT"):
        texts = [" ".join(c for c in obx.components(5, r) if c) for r in range(1, len(reps) + 1)]
        text = "\n".join(t for t in texts if t)
        if text:
            out["valueString"] = text
    elif kind == "NM":
        raw = obx.get(5)
        n = number(raw)
        if n is not None:
            out["valueQuantity"] = quantity(n, unit)
            return
        m = _COMPARATOR.match(raw.strip())
        if m:
            n = number(m.group(2))
            assert n is not None
            q = quantity(n, unit)
            out["valueQuantity"] = {
                "value": q.pop("value"),
                "comparator": _COMPARATOR_FHIR[m[1]],
                **q,
            }
            return
        raise MessageError(
            f"OBX-2 is NM but OBX-5 {raw!r} is not a number",
            location=where,
            condition=DATA_TYPE_ERROR,
        )
    elif kind == "SN":
        _structured_numeric(obx, unit, where, out)
    elif kind in ("CE", "CWE", "CNE", "CF"):
        cc = concept(obx.coded(5), ctx, location=obx.loc(5))
        if cc:
            out["valueCodeableConcept"] = cc
    elif kind in ("DT", "TS", "DTM"):
        raw = obx.get(5)
        out["valueDateTime"] = (
            to_date(raw, where) if kind == "DT" else to_datetime(raw, where, ctx.tz)
        )
    elif kind == "TM":
        raw = re.sub(r"[+-]\d{4}$", "", obx.get(5))
        if not re.fullmatch(r"\d{2}(\d{2}(\d{2})?)?", raw) or int(raw[:2]) > 23:
            raise MessageError(f"OBX-5 {raw!r} is not an HL7 time", location=where)
        out["valueTime"] = f"{raw[:2]}:{raw[2:4] or '00'}:{raw[4:6] or '00'}"
    else:
        out["dataAbsentReason"] = _absent("unsupported")
        out.setdefault("note", []).append(
            {"text": f"OBX-2 value type {kind} is not mapped by hie; see the raw message"}
        )


def _structured_numeric(obx: Segment, unit: Coded, where: str, out: JSON) -> None:
    """SN: comparator ^ num1 ^ separator/suffix ^ num2 (HL7 v2.5.1 §2.A.73)."""
    comparator, num1, sep, num2 = (obx.get(5, i) for i in (1, 2, 3, 4))
    n1 = number(num1)
    if n1 is None:
        raise MessageError(
            f"OBX-2 is SN but the first number {num1!r} is not a number",
            location=where,
            condition=DATA_TYPE_ERROR,
        )
    if not sep and not num2:
        q = quantity(n1, unit)
        if comparator:
            if comparator not in _COMPARATOR_FHIR:
                raise MessageError(
                    f"SN comparator {comparator!r} is not <, >, <= or >=", location=where
                )
            q = {"value": q.pop("value"), "comparator": _COMPARATOR_FHIR[comparator], **q}
        out["valueQuantity"] = q
        return
    n2 = number(num2)
    if sep == "-" and n2 is not None:
        out["valueRange"] = {"low": quantity(n1, unit), "high": quantity(n2, unit)}
    elif sep in (":", "/") and n2 is not None:
        out["valueRatio"] = {"numerator": {"value": n1}, "denominator": {"value": n2}}
    else:  # "2^+" style categorical results
        out["valueString"] = "".join(p for p in (comparator, num1, sep, num2) if p)


def _reference_range(obx: Segment, unit: Coded) -> JSON | None:
    # OBX-7 does not repeat, so a second "repetition" is a raw "~" in "3.50~9.50", the way
    # Chinese LIS write ranges (HL7 wants "3.50\R\9.50"): put it back.
    count = len(obx.reps(7))
    text = obx.enc.repetition.join(obx.get(7, rep=r) for r in range(1, count + 1)).strip()
    if not text:
        return None
    compact = text.strip()
    m = _RANGE.match(compact)
    if m:
        lo, hi = number(m.group(1)), number(m.group(2))
        assert lo is not None and hi is not None
        return {"low": quantity(lo, unit), "high": quantity(hi, unit)}
    m = _COMPARATOR.match(compact)
    if m:
        n = number(m.group(2))
        assert n is not None
        side = "high" if m.group(1) in ("<", "<=", "≤") else "low"
        return {side: quantity(n, unit)}
    return {"text": text}


def interpretation(obx: Segment) -> tuple[list[JSON], list[str]]:
    """OBX-8 flags as v3 ObservationInterpretation codes, and the flags that are not codes.

    The FHIR binding is required, so a flag outside table 0078 (and the Chinese spellings
    mapped onto it) cannot be an interpretation; it is kept as a note instead.
    """
    out: list[JSON] = []
    unknown: list[str] = []
    for rep in range(1, len(obx.reps(8)) + 1):
        flag = obx.get(8, 1, rep=rep)
        if not flag:
            continue
        code = _FLAG_ALIASES.get(flag.upper(), flag.upper())
        if code in _FLAGS:
            cc: JSON = {
                "coding": [{"system": INTERPRETATION, "code": code, "display": _FLAGS[code]}]
            }
            if code != flag:
                cc["text"] = flag
            out.append(cc)
        else:
            unknown.append(flag)
    return out, unknown


def status(obx: Segment, order: Order) -> str:
    code = obx.get(11).upper()
    if not code:
        return order.default_status or "unknown"
    found = OBX_STATUS.get(code)
    if found is None:
        raise MessageError(
            f"result status {code!r} is not in HL7 table 0085",
            location=obx.loc(11),
            condition=TABLE_VALUE_NOT_FOUND,
        )
    return found


def identifier_value(obx: Segment, order: Order) -> str:
    code = obx.get(3, 1) or obx.get(3, 4)
    if not code:
        raise MessageError(
            f"OBX-3 has no observation identifier (text {obx.get(3, 2)!r})",
            location=obx.loc(3),
            condition=REQUIRED_FIELD_MISSING,
        )
    # OBX-4 is ST up to 2.5, OG (sub-id ^ group ^ sequence ^ identifier) in 2.5.1 LRI.
    sub = ".".join(c for c in obx.components(4) if c)
    return f"{order.filler}.{code}" + (f".{sub}" if sub else "")


def observation(obx: Segment, ctx: Context, order: Order, notes: list[str]) -> JSON:
    """One OBX as an Observation (``notes``: NTE comments that followed it)."""
    ident = identifier_value(obx, order)
    code = concept(obx.coded(3), ctx, map_local=True, location=obx.loc(3))
    assert code is not None  # identifier_value guarantees a code
    obs: JSON = {
        "resourceType": "Observation",
        "identifier": [{"system": naming.result_id(ctx.hospital_id), "value": ident}],
        "status": status(obx, order),
        "category": [
            {"coding": [{"system": OBS_CATEGORY, "code": "laboratory", "display": "Laboratory"}]}
        ],
        "code": code,
        "subject": {"reference": order.patient_ref},
    }
    when = obx.get(14, 1)
    effective = to_datetime(when, obx.loc(14), ctx.tz) if when else order.effective
    if effective:
        obs["effectiveDateTime"] = effective
    if order.issued:
        obs["issued"] = order.issued
    obs["performer"] = [{"reference": f"Organization/{ctx.hospital_id}"}]
    _value(obx, ctx, obs)
    if "dataAbsentReason" not in obs and not any(k.startswith("value") for k in obs):
        obs["dataAbsentReason"] = _absent(_ABSENT_BY_STATUS.get(obs["status"], "unknown"))
    flags, unknown = interpretation(obx)
    if flags:
        obs["interpretation"] = flags
    for flag in unknown:
        notes = [*notes, f"abnormal flag {flag!r} (OBX-8) is not in HL7 table 0078"]
    if notes:
        obs.setdefault("note", []).extend({"text": n} for n in notes)
    if order.specimen_ref:
        obs["specimen"] = {"reference": order.specimen_ref}
    rng = _reference_range(obx, repair(obx.coded(6)))
    if rng:
        obs["referenceRange"] = [rng]
    return obs
