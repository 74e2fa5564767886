"""The lab panels a Shenzhen hospital orders most, with LOINC codes, UCUM units and values.

Codes are LOINC (units follow each code's LOINC property: 2345-7 glucose is mass per volume,
so mg/dL); reference ranges are the usual adult ones (WS/T 405-2012 for the blood count,
WS/T 404 for chemistry, converted where LOINC asks for mass units). Values are drawn around
a healthy mean, shifted for people with a chronic condition, and flagged H/L against the
range the way an LIS fills OBX-8.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from hie import naming

UA_ORDINAL = ("NEG", "NEG", "NEG", "NEG", "TRACE", "1+", "2+")


@dataclass(frozen=True)
class Test:
    loinc: str
    name: str  # LOINC short name, as an LIS sends it in OBX-3.2
    unit: str  # UCUM code (also the unit text)
    low: float | None
    high: float | None
    mean: float
    sd: float
    decimals: int = 1
    chronic_mean: float | None = None
    ordinal: bool = False  # urinalysis strip readings: NEG, TRACE, 1+ ... (OBX-2 ST)


@dataclass(frozen=True)
class Panel:
    key: str
    system: str  # LOINC, or the hospital's local order code system (coagulation)
    code: str
    name: str
    tests: tuple[Test, ...]
    share: float  # chance an episode orders it
    chronic_share: float | None = None


CBC = Panel(
    "cbc",
    naming.LOINC,
    "58410-2",
    "CBC panel - Blood by Automated count",
    (
        Test("6690-2", "WBC # Bld Auto", "10*9/L", 3.5, 9.5, 6.4, 1.8),
        Test("789-8", "RBC # Bld Auto", "10*12/L", 3.8, 5.8, 4.7, 0.5, 2),
        Test("718-7", "Hgb Bld-mCnc", "g/L", 115, 175, 138, 15, 0),
        Test("4544-3", "Hct VFr Bld Auto", "%", 35, 50, 42, 4),
        Test("777-3", "Platelet # Bld Auto", "10*9/L", 125, 350, 235, 60, 0),
        Test("787-2", "MCV RBC Auto", "fL", 82, 100, 90, 5),
    ),
    0.70,
)
BMP = Panel(
    "bmp",
    naming.LOINC,
    "51990-0",
    "Basic metabolic panel - Blood",
    (
        Test("2345-7", "Glucose SerPl-mCnc", "mg/dL", 70, 99, 92, 12, 0, chronic_mean=150),
        Test("3094-0", "BUN SerPl-mCnc", "mg/dL", 7, 20, 14, 4, 0),
        Test("2160-0", "Creat SerPl-mCnc", "mg/dL", 0.6, 1.2, 0.9, 0.2, 2, chronic_mean=1.2),
        Test("2951-2", "Sodium SerPl-sCnc", "mmol/L", 137, 147, 141, 2.5, 0),
        Test("2823-3", "Potassium SerPl-sCnc", "mmol/L", 3.5, 5.3, 4.2, 0.4),
        Test("2075-0", "Chloride SerPl-sCnc", "mmol/L", 99, 110, 104, 2.5, 0),
        Test("17861-6", "Calcium SerPl-mCnc", "mg/dL", 8.6, 10.3, 9.4, 0.4),
    ),
    0.40,
    0.80,
)
LIPIDS = Panel(
    "lipids",
    naming.LOINC,
    "57698-3",
    "Lipid panel with direct LDL - Serum or Plasma",
    (
        Test("2093-3", "Cholest SerPl-mCnc", "mg/dL", None, 200, 185, 35, 0, chronic_mean=220),
        Test("2571-8", "Trigl SerPl-mCnc", "mg/dL", None, 150, 120, 50, 0, chronic_mean=180),
        Test("2085-9", "HDLc SerPl-mCnc", "mg/dL", 40, None, 52, 12, 0),
        Test("13457-7", "LDLc SerPl Calc-mCnc", "mg/dL", None, 130, 110, 30, 0, chronic_mean=140),
    ),
    0.20,
    0.60,
)
LIVER = Panel(
    "liver",
    naming.LOINC,
    "24325-3",
    "Hepatic function panel - Serum or Plasma",
    (
        Test("1742-6", "ALT SerPl-cCnc", "U/L", 9, 50, 26, 12, 0),
        Test("1920-8", "AST SerPl-cCnc", "U/L", 15, 40, 24, 8, 0),
        Test("1975-2", "Bilirub SerPl-mCnc", "mg/dL", 0.3, 1.2, 0.7, 0.25),
        Test("1751-7", "Albumin SerPl-mCnc", "g/dL", 3.5, 5.2, 4.4, 0.35),
    ),
    0.25,
)
HBA1C = Panel(
    "hba1c",
    naming.LOINC,
    "4548-4",
    "Hemoglobin A1c/Hemoglobin.total in Blood",
    (Test("4548-4", "Hgb A1c MFr Bld", "%", 4.0, 6.0, 5.4, 0.4, chronic_mean=7.6),),
    0.06,
    0.85,
)
# No single LOINC order code is used for the PT/INR/APTT order in Chinese LIS ("凝血三项");
# the order keeps the hospital's local code, the results carry LOINC.
COAGULATION = Panel(
    "coag",
    "local",
    "COAG3",
    "凝血三项 Coagulation PT/INR/APTT",
    (
        Test("5902-2", "PT Time PPP", "s", 9.4, 12.5, 11.0, 0.8),
        Test("6301-6", "INR PPP", "{INR}", 0.8, 1.2, 1.0, 0.08, 2),
        Test("3173-2", "aPTT Time PPP", "s", 25, 35, 30, 3),
    ),
    0.10,
)
URINALYSIS = Panel(
    "ua",
    naming.LOINC,
    "24357-6",
    "Urinalysis macro (dipstick) panel - Urine",
    (
        Test("5803-2", "pH Ur Strip", "[pH]", 4.5, 8.0, 6.0, 0.7),
        Test("5811-5", "Sp Gr Ur Strip", "1", 1.005, 1.030, 1.018, 0.006, 3),
        Test("5804-0", "Prot Ur Strip-mCnc", "mg/dL", None, None, 0, 0, ordinal=True),
        Test("5792-7", "Glucose Ur Strip-mCnc", "mg/dL", None, None, 0, 0, ordinal=True),
    ),
    0.30,
)
PANELS = (CBC, BMP, LIPIDS, LIVER, HBA1C, COAGULATION, URINALYSIS)
BY_KEY = {p.key: p for p in PANELS}


@dataclass(frozen=True)
class Value:
    """One drawn result: a number (``text`` holds an ordinal reading instead) and its flag."""

    number: float | int | None
    text: str | None
    flag: str  # "", "H" or "L" (HL7 table 0078)


def draw(test: Test, rng: random.Random, chronic: bool) -> Value:
    if test.ordinal:
        reading = rng.choice(UA_ORDINAL)
        return Value(None, reading, "" if reading in ("NEG", "TRACE") else "H")
    mean = test.chronic_mean if chronic and test.chronic_mean is not None else test.mean
    x = max(rng.gauss(mean, test.sd), test.mean * 0.1)
    number: float | int = round(x, test.decimals) if test.decimals else round(x)
    flag = ""
    if test.high is not None and number > test.high:
        flag = "H"
    elif test.low is not None and number < test.low:
        flag = "L"
    return Value(number, None, flag)


def range_text(test: Test) -> str:
    """OBX-7 as an LIS writes it: ``3.5-9.5``, ``<200`` or ``>40``."""
    if test.low is not None and test.high is not None:
        return f"{_fmt(test.low)}-{_fmt(test.high)}"
    if test.high is not None:
        return f"<{_fmt(test.high)}"
    if test.low is not None:
        return f">{_fmt(test.low)}"
    return "NEG"


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)
