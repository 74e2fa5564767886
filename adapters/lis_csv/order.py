"""Rows of one LIS order (申请单) → one unit: Patient + DiagnosticReport + Observations.

The order number is the DiagnosticReport's source identifier (``hie.naming.filler_order``)
and ``{order}.{local code}`` each Observation's (``hie.naming.result_id``), so re-importing a
file updates the same resources instead of adding copies. Local test codes are mapped to LOINC
by the terminology mapper passed in; the hospital's own code is always kept beside it, and an
unmapped code is kept alone under ``hie.naming.local_codes(hospital)`` (never dropped).

A row that cannot be mapped raises :class:`~adapters.base.BadMessage` naming the row and the
column (by the hospital's own header text), and becomes a dead letter; the order's other rows
still land.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from typing import Any

from adapters.base import BadMessage, Entry, Unit
from adapters.hl7v2.message import Coded
from adapters.hl7v2.units import quantity
from adapters.lis_csv.export import Row
from hie import naming
from hie.identity.errors import InvalidIdentifier
from hie.identity.names import COMPOUND_SURNAMES
from hie.identity.national_id import validate as validate_national_id

JSON = dict[str, Any]
# hie.terminology.Terminology.map fits: (hospital_id, local_code) -> (system, code, display)
CodeMapper = Callable[[str, str], "tuple[str, str, str | None] | None"]

V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"  # identifier types
V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"  # diagnostic service sections
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
ABSENT = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
_NAMESPACE = uuid.UUID("5b0c7d1e-8f0a-4c55-9a57-4c1d2b7e0c31")  # full_urls stable over replays

# GB/T 2261.1-2003 sex codes (0 unknown, 1 male, 2 female, 9 unspecified) and common spellings.
SEX = {
    "男": "male", "m": "male", "male": "male", "1": "male",
    "女": "female", "f": "female", "female": "female", "2": "female",
    "未知": "unknown", "u": "unknown", "unknown": "unknown", "0": "unknown", "9": "unknown",
}  # fmt: skip
# Result status → FHIR Observation.status (R4 §observation-status); HL7 OBX-11 letters too.
STATUS = {
    "f": "final", "final": "final", "已审核": "final", "已报告": "final", "审核": "final",
    "p": "preliminary", "preliminary": "preliminary", "初步": "preliminary",
    "未审核": "preliminary", "待审核": "preliminary",
    "c": "corrected", "corrected": "corrected", "修正": "corrected", "更正": "corrected",
    "已修改": "corrected",
    "x": "cancelled", "cancelled": "cancelled", "作废": "cancelled", "取消": "cancelled",
    "已撤销": "cancelled",
}  # fmt: skip
# Abnormal flags → v3 ObservationInterpretation (the codes HL7 v2 table 0078 shares).
FLAGS = {
    "": None, "n": None, "正常": None, "-": None,
    "h": "H", "↑": "H", "高": "H", "偏高": "H",
    "l": "L", "↓": "L", "低": "L", "偏低": "L",
    "hh": "HH", "↑↑": "HH", "危急高": "HH",
    "ll": "LL", "↓↓": "LL", "危急低": "LL",
    "a": "A", "异常": "A", "*": "A",
}  # fmt: skip
FLAG_DISPLAY = {
    "H": "High", "L": "Low", "HH": "Critical high", "LL": "Critical low", "A": "Abnormal",
}  # fmt: skip
LAB_REPORT = ("http://loinc.org", "11502-2", "Laboratory report")

_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)"
_VALUE = re.compile(rf"^(?P<cmp><=|>=|<|>)?\s*(?P<num>{_NUMBER})$")
_RANGE = re.compile(rf"^(?P<low>{_NUMBER})\s*(?:-|~|--|－|～|—|至)\s*(?P<high>{_NUMBER})$")
_BOUND = re.compile(rf"^(?P<op><=|>=|<|>)\s*(?P<num>{_NUMBER})$")


@dataclass(frozen=True)
class OrderContext:
    hospital_id: str
    columns: Mapping[str, str]  # logical field → header text, for error messages
    tz: tzinfo
    datetime_formats: tuple[str, ...]
    map_code: CodeMapper


@dataclass(frozen=True)
class MappedRow:
    row: Row
    patient: JSON
    observation: JSON
    local_code: str
    collected: str
    reported: str | None


def normal(text: str) -> str:
    """NFKC: full-width digits, letters and ``＜`` from Chinese input methods → ASCII."""
    return unicodedata.normalize("NFKC", text).strip()


def map_row(row: Row, ctx: OrderContext) -> MappedRow:
    """One row → its patient (as the row describes them) and its Observation."""
    v = row.values
    bad = _Bad(row, ctx)
    order = v["order_number"] or bad("order_number", "empty order number")
    code = normal(v["test_code"]) or bad("test_code", "empty test code")
    patient = _patient(v, ctx, bad)
    collected = _when(v["collected_at"], ctx, bad, "collected_at")
    reported = _when(v["reported_at"], ctx, bad, "reported_at") if v.get("reported_at") else None
    status = _status(v.get("status", ""), bad)
    obs: JSON = {
        "resourceType": "Observation",
        "identifier": [{"system": naming.result_id(ctx.hospital_id), "value": f"{order}.{code}"}],
        "status": status,
        "category": [{"coding": [{"system": OBS_CATEGORY, "code": "laboratory"}]}],
        "code": _code(code, v["test_name"], ctx),
        "effectiveDateTime": collected,
    }
    if reported:
        obs["issued"] = reported
    unit_text = normal(v.get("unit", ""))
    value = normal(v["value"])
    if value:
        obs.update(_value(value, unit_text))
    elif status == "cancelled":
        obs["dataAbsentReason"] = {"coding": [{"system": ABSENT, "code": "not-performed"}]}
    else:
        bad("value", "empty result value")
    flag = _flag(v.get("flag", ""), bad)
    if flag:
        obs["interpretation"] = [
            {"coding": [{"system": INTERPRETATION, "code": flag, "display": FLAG_DISPLAY[flag]}]}
        ]
    ref = normal(v.get("reference_range", ""))
    if ref:
        obs["referenceRange"] = [_range(ref, unit_text)]
    if v.get("specimen"):
        obs["specimen"] = {"display": v["specimen"]}
    return MappedRow(row, patient, obs, code, collected, reported)


def build_unit(order: str, rows: list[MappedRow], ctx: OrderContext, *, key: str,
               header_raw: bytes, encoding: str) -> Unit:  # fmt: skip
    """The unit for one order from its good rows (the first row's patient details)."""
    h = ctx.hospital_id
    patient = rows[0].patient
    p_url = _urn(h, "Patient", order)
    entries = [Entry(patient, p_url)]
    results: list[JSON] = []
    for r in rows:
        url = _urn(h, "Observation", f"{order}.{r.local_code}")
        obs = dict(r.observation, subject={"reference": p_url})
        entries.append(Entry(obs, url))
        results.append({"reference": url})
    first = rows[0].row.values
    panel = first.get("panel_code", "")
    code = (
        _code(normal(panel), first.get("panel_name", ""), ctx)
        if panel
        else {"coding": [dict(zip(("system", "code", "display"), LAB_REPORT, strict=True))]}
    )
    report: JSON = {
        "resourceType": "DiagnosticReport",
        "identifier": [{"system": naming.filler_order(h), "value": order}],
        "status": _report_status([r.observation["status"] for r in rows]),
        "category": [{"coding": [{"system": V2_0074, "code": "LAB", "display": "Laboratory"}]}],
        "code": code,
        "subject": {"reference": p_url},
        "effectiveDateTime": min(r.collected for r in rows),
        "result": results,
    }
    reported = [r.reported for r in rows if r.reported]
    if reported:
        report["issued"] = max(reported)
    entries.insert(1, Entry(report, _urn(h, "DiagnosticReport", order)))
    raw = header_raw + b"".join(r.row.raw for r in rows)
    return Unit(
        key=key,
        entries=tuple(entries),
        raw=raw,
        content_type=f"text/csv; charset={encoding}",
        trusted=True,
    )


def same_patient(a: JSON, b: JSON) -> bool:
    return all(a.get(k) == b.get(k) for k in ("identifier", "name", "gender", "birthDate"))


class _Bad:
    """Raises BadMessage for a column, named by the hospital's own header text."""

    def __init__(self, row: Row, ctx: OrderContext) -> None:
        self.row, self.ctx = row, ctx

    def __call__(self, field: str, why: str) -> Any:
        title = self.ctx.columns.get(field, field)
        where = f"row {self.row.line}, column {title}"
        raise BadMessage(f"{where}: {why}", location=where)


def _urn(hospital_id: str, rtype: str, key: str) -> str:
    return f"urn:uuid:{uuid.uuid5(_NAMESPACE, f'{hospital_id}/{rtype}/{key}')}"


def _patient(v: Mapping[str, str], ctx: OrderContext, bad: _Bad) -> JSON:
    h = ctx.hospital_id
    gender = SEX.get(normal(v["sex"]).lower()) or bad("sex", f"unknown sex {v['sex']!r}")
    born = _birth_date(v["birth_date"], bad)
    idents: list[JSON] = []
    mrn = normal(v.get("mrn", ""))
    if mrn:
        idents.append(_ident(naming.mrn(h), mrn, "MR", "Medical record number"))
    nid = v.get("national_id", "")
    if nid:
        try:
            checked = validate_national_id(nid, birth_date=born, gender=gender)
        except InvalidIdentifier as exc:
            bad("national_id", exc.reason)
        idents.append(
            _ident(naming.NATIONAL_ID, checked.value, "NI", "National unique individual identifier")
        )
    if not idents:
        bad("mrn" if "mrn" in ctx.columns else "national_id", "no patient identifier")
    name = v["name"].strip() or bad("name", "empty patient name")
    patient: JSON = {
        "resourceType": "Patient",
        "identifier": idents,
        "name": [_human_name(name)],
        "gender": gender,
        "birthDate": born.isoformat(),
    }
    return patient


def _ident(system: str, value: str, type_code: str, display: str) -> JSON:
    return {
        "type": {"coding": [{"system": V2_0203, "code": type_code, "display": display}]},
        "system": system,
        "value": value,
    }


def _human_name(text: str) -> JSON:
    """Characters are split at the surname (compound ones such as 欧阳 included)."""
    name: JSON = {"use": "official", "text": text}
    if re.fullmatch(r"[\u4e00-\u9fff·]{2,}", text):
        cut = 2 if text[:2] in COMPOUND_SURNAMES and len(text) > 2 else 1
        name["family"], name["given"] = text[:cut], [text[cut:]]
    return name


def _birth_date(text: str, bad: _Bad) -> date:
    t = normal(text)
    for fmt in ("%Y-%m-%d", "%Y/%m/%d", "%Y%m%d", "%Y.%m.%d"):
        try:
            return datetime.strptime(t, fmt).date()
        except ValueError:
            continue
    bad("birth_date", f"{text!r} is not a date (YYYY-MM-DD)")
    raise AssertionError("unreachable")


def _when(text: str, ctx: OrderContext, bad: _Bad, field: str) -> str:
    """A local date-time → FHIR dateTime with the exchange's offset (R4 §2.24.0.1)."""
    t = normal(text)
    for fmt in ctx.datetime_formats:
        try:
            parsed = datetime.strptime(t, fmt)
        except ValueError:
            continue
        return parsed.replace(tzinfo=ctx.tz).isoformat()
    bad(field, f"{text!r} is not a date and time ({ctx.datetime_formats[0]})")
    raise AssertionError("unreachable")


def _status(text: str, bad: _Bad) -> str:
    t = normal(text).lower()
    if not t:
        return "final"
    return STATUS.get(t) or bad("status", f"unknown result status {text!r}")


def _flag(text: str, bad: _Bad) -> str | None:
    t = normal(text).lower()
    if t not in FLAGS:
        bad("flag", f"unknown abnormal flag {text!r}")
    return FLAGS[t]


def _code(local: str, display: str, ctx: OrderContext) -> JSON:
    codings: list[JSON] = []
    mapped = ctx.map_code(ctx.hospital_id, local)
    if mapped is not None:
        system, code, loinc_display = mapped
        coding: JSON = {"system": system, "code": code}
        if loinc_display:
            coding["display"] = loinc_display
        codings.append(coding)
    own: JSON = {"system": naming.local_codes(ctx.hospital_id), "code": local}
    if display:
        own["display"] = display
    codings.append(own)
    out: JSON = {"coding": codings}
    if display:
        out["text"] = display
    return out


def _number(text: str) -> int | float:
    return int(text) if re.fullmatch(r"[+-]?\d+", text) else float(text)


def _quantity(num: str, unit_text: str) -> JSON:
    return quantity(_number(num), Coded(code=unit_text))


def _value(text: str, unit_text: str) -> JSON:
    match = _VALUE.match(text.replace("≤", "<=").replace("≥", ">="))
    if match is None:
        return {"valueString": text}
    q = _quantity(match["num"], unit_text)
    if match["cmp"]:
        q = {"comparator": match["cmp"], **q}
    return {"valueQuantity": q}


def _range(text: str, unit_text: str) -> JSON:
    t = text.replace("≤", "<=").replace("≥", ">=")
    both = _RANGE.match(t)
    if both:
        return {
            "low": _quantity(both["low"], unit_text),
            "high": _quantity(both["high"], unit_text),
            "text": text,
        }
    bound = _BOUND.match(t)
    if bound:
        side = "high" if bound["op"].startswith("<") else "low"
        return {side: _quantity(bound["num"], unit_text), "text": text}
    return {"text": text}


def _report_status(statuses: list[str]) -> str:
    """DiagnosticReport.status from its results (R4 diagnostic-report-status)."""
    if all(s == "cancelled" for s in statuses):
        return "cancelled"
    live = [s for s in statuses if s != "cancelled"]
    if "corrected" in live:
        return "corrected"
    if "preliminary" in live:
        return "partial" if "final" in live else "preliminary"
    return "final"
