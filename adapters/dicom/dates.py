"""DICOM DA/TM values and Timezone Offset From UTC to FHIR ``date``/``dateTime``.

DICOM dates and times are local to the acquiring site unless Timezone Offset From UTC
(0008,0201) says otherwise (PS3.3 §C.12.1.1.8). The exchange serves Shenzhen hospitals, so the
offset a source assumes when the attribute is absent is ``+08:00`` (Asia/Shanghai, no DST)
unless the hospital's config says otherwise. FHIR requires seconds and a zone whenever a
``dateTime`` carries a time (R4 §2.24.0.1 dateTime).
"""

from __future__ import annotations

import re
from datetime import date

SHANGHAI_OFFSET = "+08:00"

_DA = re.compile(r"^([0-9]{4})([0-9]{2})([0-9]{2})$")
# PS3.5 §6.2 TM: HH[MM[SS[.F{1,6}]]]; ACR-NEMA wrote HH:MM:SS, still seen in old archives.
_TM = re.compile(r"^([0-9]{2})(?:([0-9]{2})(?:([0-9]{2})(?:\.([0-9]{1,6}))?)?)?$")
_OFFSET = re.compile(r"^([+-])([0-9]{2}):?([0-9]{2})$")


def fhir_date(da: str | None) -> str | None:
    """``YYYYMMDD`` (or ``YYYY.MM.DD``) as ``YYYY-MM-DD``; None when absent or not a real date."""
    if not da:
        return None
    match = _DA.match(da.strip().replace(".", ""))
    if not match:
        return None
    year, month, day = (int(g) for g in match.groups())
    try:
        date(year, month, day)
    except ValueError:
        return None
    return f"{match[1]}-{match[2]}-{match[3]}"


def utc_offset(value: str | None) -> str | None:
    """``+0800`` as ``+08:00``; None when absent or malformed."""
    if not value:
        return None
    match = _OFFSET.match(value.strip())
    if not match or int(match[2]) > 14 or int(match[3]) > 59:
        return None
    return f"{match[1]}{match[2]}:{match[3]}"


def fhir_datetime(
    da: str | None, tm: str | None, offset: str | None, default_offset: str = SHANGHAI_OFFSET
) -> str | None:
    """Date and time as a FHIR ``dateTime``; only the date when the time is absent or broken."""
    day = fhir_date(da)
    if day is None:
        return None
    if not tm:
        return day
    match = _TM.match(tm.strip().replace(":", ""))
    if not match:
        return day
    hour, minute, second, fraction = match.groups()
    if int(hour) > 23 or int(minute or 0) > 59 or int(second or 0) > 60:
        return day
    clock = f"{hour}:{minute or '00'}:{second or '00'}"
    if fraction:
        clock += f".{fraction}"
    zone = utc_offset(offset) or default_offset
    return f"{day}T{clock}{zone}"
