"""Search columns pulled out of a resource's JSON: pure, no SQL.

What is indexed per type follows the search parameters the CapabilityStatement declares;
keep the two in step (``hie.capability``).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from hie.fhirtime import BadDate, parse_range

JSON = dict[str, Any]


@dataclass
class Extracted:
    """Index values for one resource; ``row`` goes to the type's ``*_index`` table.

    ``status`` is searched on ``row`` alone: a token row per result for a single code
    without a system cost about 0.47 KB a result (a quarter of ``search_token``'s rows).
    """

    row: dict[str, Any] = field(default_factory=dict)
    tokens: list[tuple[str, str, str]] = field(default_factory=list)  # (param, system, code)
    strings: list[tuple[str, str]] = field(default_factory=list)  # (param, normalised value)
    date: datetime | None = None  # the resource's main date, copied to token rows


def _codings(cc: Any) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if isinstance(cc, dict):
        for c in cc.get("coding") or []:
            if isinstance(c, dict) and c.get("code"):
                out.append((str(c.get("system") or ""), str(c["code"])))
    return out


def _range(value: Any, tz: str) -> tuple[datetime | None, datetime | None]:
    if not isinstance(value, str):
        return None, None
    try:
        return parse_range(value, tz)
    except BadDate:
        return None, None


def _effective(res: JSON, tz: str) -> tuple[datetime | None, datetime | None]:
    if "effectiveDateTime" in res:
        return _range(res["effectiveDateTime"], tz)
    if "effectiveInstant" in res:
        return _range(res["effectiveInstant"], tz)
    period = res.get("effectivePeriod")
    if isinstance(period, dict):
        start = _range(period.get("start"), tz)[0]
        end = _range(period.get("end"), tz)[1]
        return start or end, end
    return None, None


def _clip(value: str | None, width: int) -> str | None:
    """A type-table column's value cut to the column's width: PostgreSQL refuses a longer
    one (SQLite would keep it), and a hospital's local code may be any length. Searches
    match on ``search_token`` (255 characters); these columns only sort and summarise."""
    return value[:width] if value is not None else None


def _identifiers(res: JSON) -> list[tuple[str, str, str]]:
    return [
        ("identifier", str(i.get("system") or ""), str(i["value"]))
        for i in res.get("identifier") or []
        if isinstance(i, dict) and i.get("value")
    ]


def _result(res: JSON, tz: str) -> Extracted:
    ex = Extracted()
    start, end = _effective(res, tz)
    code = _codings(res.get("code"))
    cats = [c for cc in res.get("category") or [] for c in _codings(cc)]
    ex.row = {
        "status": res.get("status") or "unknown",
        "code_system": _clip(code[0][0], 255) if code else None,
        "code": _clip(code[0][1], 64) if code else None,
        "category": _clip(cats[0][1], 64) if cats else None,
        "effective": start,
        "effective_end": end,
        "issued": _range(res.get("issued"), tz)[0],
    }
    ex.date = start
    ex.tokens = [("code", s, c) for s, c in code] + [("category", s, c) for s, c in cats]
    ex.tokens += _identifiers(res)
    return ex


def _imaging(res: JSON, tz: str) -> Extracted:
    ex = Extracted()
    started = _range(res.get("started"), tz)[0]
    uid = None
    for ident in res.get("identifier") or []:
        if isinstance(ident, dict) and ident.get("system") == "urn:dicom:uid":
            uid = str(ident.get("value", "")).removeprefix("urn:oid:")
    modalities = [
        c for m in res.get("modality") or [] for c in [(m.get("system", ""), m.get("code"))]
    ]
    series = [s for s in res.get("series") or [] if isinstance(s, dict)]
    for s in series:
        m = s.get("modality") or {}
        if m.get("code"):
            modalities.append((str(m.get("system") or ""), str(m["code"])))
    sites = [
        (str(s["bodySite"].get("system") or ""), str(s["bodySite"]["code"]))
        for s in series
        if isinstance(s.get("bodySite"), dict) and s["bodySite"].get("code")
    ]
    mods = list(dict.fromkeys((s, c) for s, c in modalities if c))
    ex.row = {
        "status": res.get("status") or "unknown",
        "started": started,
        "study_uid": _clip(uid, 128),
        "modality": _clip(mods[0][1], 16) if mods else None,
        "body_site": _clip(sites[0][1], 64) if sites else None,
    }
    ex.date = started
    ex.tokens = [("modality", s, c) for s, c in mods] + [("bodysite", s, c) for s, c in sites]
    ex.tokens += _identifiers(res)
    if uid:  # let a bare UID (without urn:oid:) find the study too
        ex.tokens.append(("identifier", "urn:dicom:uid", uid))
    return ex


def normalise_name(text: str) -> str:
    """Lower-case, accents stripped, spaces removed: how name search compares strings."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return "".join(plain.lower().split())


def _patient(res: JSON, tz: str) -> Extracted:
    ex = Extracted()
    birth = _range(res.get("birthDate"), tz)[0]
    ex.row = {"gender": res.get("gender"), "birthdate": birth}
    ex.tokens = _identifiers(res)
    if res.get("gender"):
        ex.tokens.append(("gender", "", str(res["gender"])))
    names: set[str] = set()
    for name in res.get("name") or []:
        if not isinstance(name, dict):
            continue
        parts = [name.get("family") or "", *(name.get("given") or [])]
        for p in [*parts, name.get("text") or ""]:
            if isinstance(p, str) and p.strip():
                names.add(normalise_name(p))
        full = "".join(p for p in parts if isinstance(p, str))
        if full:
            names.add(normalise_name(full))
    ex.strings = [("name", n) for n in sorted(names) if n]
    return ex


def _generic(res: JSON, tz: str) -> Extracted:
    ex = Extracted()
    ex.tokens = _identifiers(res)
    if res.get("name") and isinstance(res["name"], str):
        ex.strings = [("name", normalise_name(res["name"]))]
    for alias in res.get("alias") or []:
        if isinstance(alias, str):
            ex.strings.append(("name", normalise_name(alias)))
    return ex


def extract(res: JSON, tz: str = "Asia/Shanghai") -> Extracted:
    rtype = res.get("resourceType")
    if rtype in ("Observation", "DiagnosticReport"):
        return _result(res, tz)
    if rtype == "ImagingStudy":
        return _imaging(res, tz)
    if rtype == "Patient":
        return _patient(res, tz)
    return _generic(res, tz)
