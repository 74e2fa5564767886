"""HL7 v2 DTM/TS values → FHIR R4 date, dateTime and instant.

HL7 v2.5.1 §2.A.22 (DTM): ``YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]``; v2.3 TS may add
a second component, the degree of precision, which is ignored. FHIR R4 §2.24.0.1 requires a
dateTime that has a time to carry seconds and a zone, and an instant to be complete. So
missing minutes/seconds become ``00``, and a time without a zone is read in the hospital's
zone (``Asia/Shanghai`` unless configured otherwise; zoneinfo knows China's 1986-1991 DST).
A value that is not a real date raises :class:`MessageError` naming the field.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

from adapters.hl7v2.message import DATA_TYPE_ERROR, MessageError

SHANGHAI = ZoneInfo("Asia/Shanghai")

_DTM = re.compile(
    r"(?P<y>\d{4})(?P<mo>\d{2})?(?P<d>\d{2})?(?P<h>\d{2})?(?P<mi>\d{2})?(?P<s>\d{2})?"
    r"(?:\.(?P<f>\d{1,4}))?(?P<z>[+-]\d{4})?$"
)


def _bad(value: str, location: str, why: str) -> MessageError:
    return MessageError(
        f"{value!r} is not an HL7 date/time ({why})", location=location, condition=DATA_TYPE_ERROR
    )


def _match(value: str, location: str) -> re.Match[str]:
    m = _DTM.match(value.strip())
    if not m:
        raise _bad(value, location, "expected YYYY[MM[DD[HH[MM[SS[.SSSS]]]]]][+/-ZZZZ]")
    return m


def to_date(value: str, location: str) -> str:
    """A FHIR ``date`` (YYYY, YYYY-MM or YYYY-MM-DD); any time part is dropped."""
    m = _match(value, location)
    y, mo, d = int(m["y"]), m["mo"], m["d"]
    try:
        date(y, int(mo or 1), int(d or 1))
    except ValueError as exc:
        raise _bad(value, location, str(exc)) from None
    if y < 1800:
        raise _bad(value, location, "year before 1800")
    return m["y"] + (f"-{mo}" if mo else "") + (f"-{d}" if mo and d else "")


def _offset(m: re.Match[str], local: datetime, tz: tzinfo, value: str, location: str) -> str:
    z = m["z"]
    if z:
        hh, mm = int(z[1:3]), int(z[3:5])
        if hh > 14 or mm > 59:
            raise _bad(value, location, f"zone {z} out of range")
        return f"{z[0]}{z[1:3]}:{z[3:5]}"
    delta = local.replace(tzinfo=tz).utcoffset() or timedelta(0)
    minutes = int(delta.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    minutes = abs(minutes)
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


_KNOWN: dict[tuple[str, tzinfo], str] = {}  # to_datetime's answers; a message repeats its times
_KNOWN_MAX = 4096


def to_datetime(value: str, location: str, tz: tzinfo = SHANGHAI) -> str:
    """A FHIR ``dateTime``: the HL7 precision kept for dates, a full time with zone otherwise.

    Every OBX of a panel carries the same observation time: an answer is remembered for the
    value and zone (``location`` only names the field in the error a bad value raises, and
    a bad value is never remembered)."""
    found = _KNOWN.get((value, tz))
    if found is None:
        found = _to_datetime(value, location, tz)
        if len(_KNOWN) >= _KNOWN_MAX:
            _KNOWN.clear()
        _KNOWN[(value, tz)] = found
    return found


def _to_datetime(value: str, location: str, tz: tzinfo) -> str:
    m = _match(value, location)
    if m["h"] is None:
        return to_date(value, location)
    try:
        local = datetime(
            int(m["y"]),
            int(m["mo"]),
            int(m["d"]),
            int(m["h"]),
            int(m["mi"] or 0),
            int(m["s"] or 0),
        )
    except (TypeError, ValueError) as exc:
        raise _bad(value, location, str(exc)) from None
    if local.year < 1800:
        raise _bad(value, location, "year before 1800")
    frac = f".{m['f']}" if m["f"] else ""
    return local.strftime("%Y-%m-%dT%H:%M:%S") + frac + _offset(m, local, tz, value, location)


def to_instant(value: str, location: str, tz: tzinfo = SHANGHAI) -> str | None:
    """A FHIR ``instant`` (needs a time); None for a date-only value."""
    m = _match(value, location)
    if m["h"] is None:
        return None
    return to_datetime(value, location, tz)


def utc_offset(tz: tzinfo, when: datetime) -> timezone:
    """The fixed offset of ``tz`` at ``when`` (for ACK timestamps)."""
    return timezone(when.replace(tzinfo=tz).utcoffset() or timedelta(0))
