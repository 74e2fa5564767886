"""PID → FHIR Patient: identifiers, name, birth date, sex.

Identifier rule for PID-3 (repeating CX; HL7 v2.5.1 §3.4.2.3, identifier types table 0203):

* **National ID** (居民身份证号, GB 11643-1999): CX.5 type ``NNCHN`` (the 0203
  ``NNxxx`` pattern with ISO 3166 ``CHN``), ``NI``, ``CZ``, ``ID card`` or the local ``SFZ`` /
  ``身份证``; or, when CX.5 is empty, CX.4 assigning authority ``CHN``/``MPS``/text
  containing 身份证 or 公安 (an explicit CX.5 such as ``MR`` always wins).
  The value must be 18 characters with a valid GB 11643 check digit; a hinted value that
  fails the check rejects the message (a mistyped ID would link the wrong person); it is
  never silently kept.
* **MRN**: CX.5 ``MR``, ``MRN``, ``PI``, ``PT``, ``PN`` or empty → ``naming.mrn(hospital_id)``.
  The sending hospital is known from the adapter, so CX.4 is not needed.
* **Passport**: CX.5 ``PPN``; country from CX.4 namespace, else CX.9/CX.10 (ISO 3166 alpha-3;
  common alpha-2 codes are converted) → ``naming.passport(country)``. Without a country the
  number cannot be namespaced and is left out.
* Other types (SS, DL, AN, VN …) are not used for linking and are left out.

A PID with no usable identifier is rejected: ingest could not link the results to anyone.
"""

from __future__ import annotations

import re
from typing import Any

from adapters.hl7v2.coding import Context
from adapters.hl7v2.message import (
    DATA_TYPE_ERROR,
    REQUIRED_FIELD_MISSING,
    MessageError,
    Segment,
)
from adapters.hl7v2.timestamp import to_date
from hie import naming

JSON = dict[str, Any]

V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
_NATIONAL_TYPES = {"NNCHN", "NI", "CZ", "SFZ", "IDCARD", "身份证", "居民身份证"}
_NATIONAL_AUTHORITIES = {"CHN", "MPS", "NNCHN"}
_MRN_TYPES = {"MR", "MRN", "PI", "PT", "PN", ""}
_ALPHA2 = {
    "CN": "CHN",
    "US": "USA",
    "GB": "GBR",
    "UK": "GBR",
    "HK": "HKG",
    "MO": "MAC",
    "TW": "TWN",
    "JP": "JPN",
    "KR": "KOR",
    "SG": "SGP",
    "MY": "MYS",
    "AU": "AUS",
    "CA": "CAN",
    "DE": "DEU",
    "FR": "FRA",
    "IN": "IND",
    "RU": "RUS",
    "TH": "THA",
    "VN": "VNM",
    "PH": "PHL",
    "ID": "IDN",
}
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"
_NATIONAL_FORMAT = re.compile(r"\d{17}[\dX]$")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
# 复姓: two-character surnames, so 欧阳娜娜 splits as 欧阳 + 娜娜 (GB/T 2261 has no list;
# these are the common ones).
_COMPOUND_SURNAMES = {
    "欧阳",
    "司马",
    "上官",
    "诸葛",
    "东方",
    "皇甫",
    "尉迟",
    "公孙",
    "慕容",
    "长孙",
    "宇文",
    "司徒",
    "夏侯",
    "轩辕",
    "令狐",
    "端木",
    "南宫",
    "西门",
    "独孤",
    "呼延",
    "澹台",
    "公冶",
}
_NAME_USE = {
    "L": "official",
    "D": "usual",
    "A": "usual",
    "M": "maiden",
    "N": "nickname",
    "S": "anonymous",
    "B": "old",
    "P": "official",
}
_GENDER = {
    "M": "male",
    "F": "female",
    "O": "other",
    "A": "other",
    "U": "unknown",
    "N": "unknown",
    # GB/T 2261.1 sex codes and plain Chinese, as Chinese LIS send them
    "1": "male",
    "2": "female",
    "0": "unknown",
    "9": "unknown",
    "男": "male",
    "女": "female",
}


def gb11643_check_digit(first17: str) -> str:
    """The check character of a resident ID (GB 11643-1999 §5: ISO 7064 MOD 11-2)."""
    total = sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True))
    return _CHECK[total % 11]


def is_valid_national_id(value: str) -> bool:
    v = value.upper()
    return bool(_NATIONAL_FORMAT.match(v)) and gb11643_check_digit(v[:17]) == v[17]


def _country(pid: Segment, rep: int) -> str | None:
    for comp, sub in ((4, 1), (9, 1), (10, 1)):
        raw = pid.get(3, comp, sub, rep).upper()
        if len(raw) == 2 and raw in _ALPHA2:
            return _ALPHA2[raw]
        if len(raw) == 3 and raw.isalpha():
            return raw
    return None


def identifiers(pid: Segment, ctx: Context) -> list[JSON]:
    out: list[JSON] = []
    seen: set[tuple[str, str]] = set()
    for rep in range(1, len(pid.reps(3)) + 1):
        value = pid.get(3, 1, rep=rep)
        if not value:
            continue
        kind = pid.get(3, 5, rep=rep).upper().replace(" ", "")
        authority = pid.get(3, 4, 1, rep=rep)
        where = pid.loc(3, rep)
        hinted = authority.upper() in _NATIONAL_AUTHORITIES or any(
            hint in authority for hint in ("身份证", "公安")
        )
        if kind in _NATIONAL_TYPES or (not kind and hinted):
            if not is_valid_national_id(value):
                raise MessageError(
                    f"national ID {value!r} is not a valid GB 11643 resident ID number "
                    "(18 characters, last one the ISO 7064 MOD 11-2 check digit)",
                    location=where,
                    condition=DATA_TYPE_ERROR,
                )
            ident = _ident(naming.NATIONAL_ID, value.upper(), "NI")
        elif kind == "PPN":
            country = _country(pid, rep)
            if country is None:
                continue
            ident = _ident(naming.passport(country), value, "PPN")
        elif kind in _MRN_TYPES:
            ident = _ident(naming.mrn(ctx.hospital_id), value, "MR")
        else:
            continue
        key = (ident["system"], ident["value"])
        if key not in seen:
            seen.add(key)
            out.append(ident)
    if not out:
        raise MessageError(
            "PID-3 holds no identifier hie can use (national ID, MRN or passport with country)",
            location="PID-3",
            condition=REQUIRED_FIELD_MISSING,
        )
    return out


def _ident(system: str, value: str, type_code: str) -> JSON:
    return {
        "type": {"coding": [{"system": V2_0203, "code": type_code}]},
        "system": system,
        "value": value,
    }


def _split_chinese(full: str) -> tuple[str, str]:
    if len(full) > 2 and full[:2] in _COMPOUND_SURNAMES:
        return full[:2], full[2:]
    return full[:1], full[1:]


def names(pid: Segment) -> list[JSON]:
    out: list[JSON] = []
    for rep in range(1, len(pid.reps(5)) + 1):
        family = pid.get(5, 1, 1, rep)
        given = [g for g in (pid.get(5, 2, rep=rep), pid.get(5, 3, rep=rep)) if g]
        if not family and not given:
            continue
        name: JSON = {}
        use = _NAME_USE.get(pid.get(5, 7, rep=rep).upper())
        if use:
            name["use"] = use
        chinese = bool(_CJK.search(family + "".join(given)))
        if chinese:
            text = family + "".join(given)
            if not given and len(family) >= 2:
                family, first = _split_chinese(family)
                given = [first]
        else:
            text = " ".join([*given, family]).strip()
        name["text"] = text
        if family:
            name["family"] = family
        if given:
            name["given"] = given
        prefix, suffix = pid.get(5, 5, rep=rep), pid.get(5, 4, rep=rep)
        if prefix:
            name["prefix"] = [prefix]
        if suffix:
            name["suffix"] = [suffix]
        out.append(name)
    return out


def patient(pid: Segment, ctx: Context) -> JSON:
    resource: JSON = {"resourceType": "Patient", "identifier": identifiers(pid, ctx)}
    name = names(pid)
    if name:
        resource["name"] = name
    sex = pid.get(8).upper()
    if sex:
        gender = _GENDER.get(sex)
        if gender is None:
            raise MessageError(
                f"administrative sex {sex!r} is not in HL7 table 0001 (M, F, O, U, A, N)",
                location="PID-8",
                condition="103",
            )
        resource["gender"] = gender
    birth = pid.get(7, 1)
    if birth:
        resource["birthDate"] = to_date(birth, "PID-7")
    return resource
