"""City lab orders → HL7 v2.5.1 ORU^R01 messages, as a Chinese LIS sends them (UTF-8).

One message per order release (the original, and again for a correction or cancellation),
with the same identifiers the FHIR Bundles carry: PID-3 holds the MRN (type MR) and the
national ID (type NNCHN, HL7 table 0203), OBR-3 the filler order number, OBX-3 the LOINC code,
so ``{OBR-3}.{OBX-3}`` is the Observation identifier both paths agree on. Status codes:
OBR-25 / OBX-11 ``F`` final, ``C`` corrected, ``X`` cancelled (HL7 tables 0123 and 0085).
Imaging studies are not sent as ORU (they come from DICOM sources).
"""

from __future__ import annotations

from datetime import datetime

from bench.events import Order
from bench.panels import range_text

_STATUS = {"final": "F", "corrected": "C", "cancelled": "X"}
_SPECIAL = frozenset("\\|^&~")
_ESCAPES = (("\\", "\\E\\"), ("|", "\\F\\"), ("^", "\\S\\"), ("&", "\\T\\"), ("~", "\\R\\"))


def _esc(text: str) -> str:
    if not _SPECIAL.intersection(text):
        return text
    for raw, escaped in _ESCAPES:
        text = text.replace(raw, escaped)
    return text


def _ts(when: datetime) -> str:
    """HL7 DTM with the UTC offset (HL7 v2.5.1 §2.A.22): 20240301081500+0800."""
    return when.strftime("%Y%m%d%H%M%S%z")


def oru(order: Order) -> bytes:
    """One ORU^R01 message, segments ending in CR (HL7 v2.5.1 §2.7)."""
    h = order.hospital.id
    who = order.person
    status = _STATUS[order.status]
    control = f"{order.filler}{status}"
    ids = [f"{order.mrn}^^^{h}^MR"]
    if who.national_id and order.with_national_id:
        ids.append(f"{who.national_id}^^^CHN^NNCHN")
    if who.passport:
        ids.append(f"{who.passport[1]}^^^^PPN^^^^{who.passport[0]}")  # CX.9 jurisdiction
    name = f"{_esc(who.family)}^{_esc(who.given)}"
    panel = order.panel
    system = "L" if panel.system == "local" else "LN"
    collected, issued = _ts(order.collected), _ts(order.issued)
    sex = "M" if who.gender == "male" else "F"
    segments = [
        f"MSH|^~\\&|LIS|{h}|HIE|SZHIE|{issued}||ORU^R01^ORU_R01|{control}|P|2.5.1"
        "|||AL|NE|CHN|UNICODE UTF-8",
        f"PID|1||{'~'.join(ids)}||{name}||{who.birth_date:%Y%m%d}|{sex}",
        f"OBR|1||{order.filler}|{panel.code}^{_esc(panel.name)}^{system}|||{collected}"
        f"|||||||||||||||{issued}|||{status}",
    ]
    for n, result in enumerate(order.results, start=1):
        test, value = result.test, result.value
        if value.number is not None:
            kind, text = "NM", str(value.number)
        elif value.text is not None:
            kind, text = "ST", value.text
        else:
            kind, text = "NM", ""
        rng = range_text(test)
        unit = f"{test.unit}^{test.unit}^UCUM" if kind == "NM" else ""
        segments.append(
            f"OBX|{n}|{kind}|{test.loinc}^{_esc(test.name)}^LN||{_esc(text)}|{unit}|{rng}"
            f"|{value.flag}|||{_STATUS[result.status]}|||{collected}"
        )
    return ("\r".join(segments) + "\r").encode("utf-8")
