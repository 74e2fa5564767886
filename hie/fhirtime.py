"""FHIR date, dateTime and instant values as UTC ranges.

A FHIR date/time is a range at its own precision: ``2026-11`` is the whole month. Search
needs both ends (FHIR R4 search §3.1.1.4.2). Values without an offset are read in the
exchange's time zone (Asia/Shanghai by default), the spec's "server local time".
The index stores UTC instants (timestamptz on PostgreSQL) so both backends compare alike.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

_DT = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?P<f>\.\d+)?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


class BadDate(ValueError):
    pass


def parse_range(value: str, tz: str = "Asia/Shanghai") -> tuple[datetime, datetime]:
    """``value`` → (start inclusive, end exclusive), both aware UTC.

    Memoised: a panel's results share their effective and issued times, and ingest parses
    each several times (index columns, search tokens), so most calls repeat a recent one.
    """
    if not isinstance(value, str) or not isinstance(tz, str):  # also: unhashable input
        raise BadDate(f"{value!r} is not a FHIR date or dateTime")
    return _parse_range(value, tz)


@lru_cache(maxsize=8192)
def _parse_range(value: str, tz: str) -> tuple[datetime, datetime]:
    m = _DT.match(value.strip())
    if not m:
        raise BadDate(f"{value!r} is not a FHIR date or dateTime")
    g = m.groupdict()
    try:
        year = int(g["y"])
        if g["m"] is None:
            start, step = datetime(year, 1, 1), "year"
        elif g["d"] is None:
            start, step = datetime(year, int(g["m"]), 1), "month"
        elif g["H"] is None:
            start, step = datetime(year, int(g["m"]), int(g["d"])), "day"
        else:
            sec = int(g["S"] or 0)
            digits = g["f"][1:7] if g["f"] else ""  # the index keeps microseconds
            micro = int(digits.ljust(6, "0")) if digits else 0
            start = datetime(year, int(g["m"]), int(g["d"]), int(g["H"]), int(g["M"]), sec, micro)
            step = "second" if g["S"] is not None else "minute"
            if digits:  # "…:31.458" is the millisecond [.458, .459), not one microsecond
                step = f"fraction{len(digits)}"
    except ValueError as exc:
        raise BadDate(f"{value!r} is not a valid date: {exc}") from None
    try:  # the range's end or the shift to UTC can leave years 1..9999 (e.g. "9999")
        end = _advance(start, step)
        zone = g["tz"]
        if zone is None:
            local = ZoneInfo(tz)
            start_u = start.replace(tzinfo=local).astimezone(UTC)
            end_u = end.replace(tzinfo=local).astimezone(UTC)
        else:
            offset = _offset(zone)
            start_u = (start - offset).replace(tzinfo=UTC)
            end_u = (end - offset).replace(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise BadDate(f"{value!r} is outside the dates this server can compare") from None
    return start_u, end_u


def parse_instant(value: str, tz: str = "Asia/Shanghai") -> datetime:
    """The start of ``value``'s range, aware UTC."""
    return parse_range(value, tz)[0]


def _offset(zone: str) -> timedelta:
    if zone == "Z":
        return timedelta(0)
    sign = 1 if zone[0] == "+" else -1
    hours, minutes = int(zone[1:3]), int(zone[4:6])
    return sign * timedelta(hours=hours, minutes=minutes)


def _advance(start: datetime, step: str) -> datetime:
    if step == "year":
        return start.replace(year=start.year + 1)
    if step == "month":
        return (
            start.replace(year=start.year + 1, month=1)
            if start.month == 12
            else start.replace(month=start.month + 1)
        )
    if step == "day":
        return start + timedelta(days=1)
    if step == "minute":
        return start + timedelta(minutes=1)
    if step.startswith("fraction"):
        return start + timedelta(microseconds=10 ** (6 - int(step.removeprefix("fraction"))))
    return start + timedelta(seconds=1)


EPOCH = datetime(1, 1, 1, tzinfo=UTC)  # sorts before any real date (paging over NULLs)


def now_utc() -> datetime:
    """Aware UTC now, the index's clock."""
    return datetime.now(UTC)


@lru_cache(maxsize=64)
def instant(dt: datetime) -> str:
    """A UTC datetime as a FHIR instant (meta.lastUpdated, Last-Modified source).

    Memoised: a batch stamps every resource it writes with one time (3% of the writer's CPU
    went to formatting it again for each)."""
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
