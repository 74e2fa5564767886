"""Lab unit spellings → UCUM codes (FHIR R4 Quantity.system http://unitsofmeasure.org).

Chinese LIS units are typed by hand and vary: ``×10^9/L``, ``10E9/L``, ``G/L`` (giga per
litre), ``μmol/L`` with a Greek mu or a micro sign, ``U/L`` vs ``IU/L``, even ``秒``. FHIR wants
the original text in ``Quantity.unit`` and the UCUM code in ``Quantity.code`` (R4 §2.24.0.11:
"the unit SHOULD be represented as UCUM"), so the original is always kept and a code is
added only when the spelling is known. When OBX-6 itself says its coding system is UCUM
(HL7 table 0396 ``UCUM``) its code is trusted as is.
"""

from __future__ import annotations

import re

from adapters.hl7v2.message import Coded

# Keys: lower case, µ/μ → u, × → x, spaces removed. Values: UCUM case-sensitive codes.
_UCUM: dict[str, str] = {}


def _add(code: str, *spellings: str) -> None:
    _UCUM[_key(code)] = code
    for s in spellings:
        _UCUM[_key(s)] = code


def _key(text: str) -> str:
    return (
        text.strip()
        .replace("µ", "u")
        .replace("μ", "u")
        .replace("×", "x")
        .replace("＊", "*")
        .replace("／", "/")
        .replace(" ", "")
        .lower()
    )


_add("10*9/L", "10^9/L", "x10^9/L", "x10*9/L", "10E9/L", "x10E9/L", "giga.l-1", "10~9/L")
_add("10*12/L", "10^12/L", "x10^12/L", "x10*12/L", "10E12/L", "x10E12/L", "tera.l-1")
_add("10*3/uL", "10^3/uL", "x10^3/uL", "K/uL", "10E3/uL", "thou/uL")
_add("10*6/uL", "10^6/uL", "x10^6/uL", "M/uL", "10E6/uL", "mill/uL")
_add("g/L", "g/l", "克/升")
_add("g/dL", "g/dl", "gm/dl")
_add("mg/L", "mg/l")
_add("mg/dL", "mg/dl", "mg%")
_add("ug/L", "ug/l")
_add("ng/mL", "ng/ml")
_add("ug/dL", "ug/dl")
_add("pg/mL", "pg/ml")
_add("ug/mL", "ug/ml")
_add("mmol/L", "mmol/l", "mmoll", "毫摩尔/升")
_add("umol/L", "umol/l", "umoll", "微摩尔/升")
_add("nmol/L", "nmol/l", "nmoll")
_add("pmol/L", "pmol/l", "pmoll")
_add("mol/L", "mol/l")
_add("U/L", "u/l")
_add("[IU]/L", "IU/L", "iu/l")
_add("m[IU]/L", "mIU/L", "miu/l")
_add("m[IU]/mL", "mIU/mL", "miu/ml")
_add("u[IU]/mL", "uIU/mL", "uiu/ml")
_add("%", "percent", "百分比")
_add("L/L", "l/l")
_add("fL", "fl", "um3", "飞升")
_add("pg", "皮克")
_add("g", "克")
_add("s", "sec", "secs", "second", "seconds", "秒")
_add("min", "mins", "minute", "分钟")
_add("mm/h", "mm/hr", "mm/1h", "毫米/小时")
_add("mL/min", "ml/min", "mlmin")
_add("mL/min/{1.73_m2}", "ml/min/1.73m2", "mL/min/1.73m^2", "ml/min/1.73m*2", "mL/min/1.73 m2")
_add("/uL", "cells/uL", "/ul", "个/uL")
_add("/[HPF]", "/HPF", "/hp", "个/HP")
_add("/[LPF]", "/LPF", "/lp", "个/LP")
_add("mg/(24.h)", "mg/24h", "mg/24hr")
_add("g/(24.h)", "g/24h")
_add("mmol/(24.h)", "mmol/24h")
_add("kg/m2", "kg/m^2")
_add("mm[Hg]", "mmHg")
_add("{ratio}", "ratio")
_add("{INR}", "INR")
_add("1", "ratio(1)")
_add("ug/g")
_add("mg/g")
_add("mg/mmol")


# Spellings whose meaning depends on case: G/L is giga per litre, g/L grams per litre.
_EXACT = {"G/L": "10*9/L", "T/L": "10*12/L"}


def ucum(unit: Coded) -> str | None:
    """The UCUM code for an OBX-6 unit, or None when the spelling is unknown or empty."""
    if unit.system.upper() == "UCUM" and unit.code:
        return "".join(unit.code.split())  # UCUM codes hold no whitespace
    if unit.alt_system.upper() == "UCUM" and unit.alt_code:
        return "".join(unit.alt_code.split())
    for text in (unit.code, unit.text):
        if text:
            found = _EXACT.get(text.strip()) or _UCUM.get(_key(text))
            if found:
                return found
    return None


_SPLIT_POWER = re.compile(r"^[×xX*]?10$")
_POWER_REST = re.compile(r"^\d{1,2}/[A-Za-zμµ]+$")


def repair(unit: Coded) -> Coded:
    """Undo an unescaped ``^`` in OBX-6: ``10^9/L`` arrives as components ``10`` and ``9/L``.

    HL7 requires ``10\\S\\9/L``; many LIS write the caret raw, which splits the unit in two.
    """
    if (
        not unit.system
        and _SPLIT_POWER.match(unit.code)
        and _POWER_REST.match(unit.text)
        and not unit.alt_code
    ):
        return Coded(code=f"{unit.code}^{unit.text}")
    return unit


def quantity(value: float | int, unit: Coded) -> dict[str, object]:
    """A FHIR Quantity: value, the original unit text, and system+code when UCUM is known."""
    q: dict[str, object] = {"value": value}
    text = unit.code or unit.text
    if text:
        q["unit"] = text
    code = ucum(unit)
    if code:
        q["system"] = "http://unitsofmeasure.org"
        q["code"] = code
    return q
