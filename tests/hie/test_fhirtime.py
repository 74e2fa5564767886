"""FHIR date/dateTime/instant values as UTC ranges (FHIR R4 §2.24.0.3 and search §3.1.1.4.2).

A value is a range at its own precision; values without an offset are read in the exchange's
zone (Asia/Shanghai, UTC+8, no DST since 1991).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hie.fhirtime import BadDate, instant, parse_instant, parse_range


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("value", "start", "end"),
    [
        ("2026", utc(2025, 12, 31, 16), utc(2026, 12, 31, 16)),
        ("2026-02", utc(2026, 1, 31, 16), utc(2026, 2, 28, 16)),
        ("2024-02", utc(2024, 1, 31, 16), utc(2024, 2, 29, 16)),  # leap year
        ("2026-12", utc(2026, 11, 30, 16), utc(2026, 12, 31, 16)),  # month rolls the year
        ("2026-11-20", utc(2026, 11, 19, 16), utc(2026, 11, 20, 16)),
        ("2026-11-20T08:00", utc(2026, 11, 20, 0, 0), utc(2026, 11, 20, 0, 1)),
        ("2026-11-20T08:00:00+08:00", utc(2026, 11, 20), utc(2026, 11, 20, 0, 0, 1)),
        ("2026-11-20T00:00:00Z", utc(2026, 11, 20), utc(2026, 11, 20, 0, 0, 1)),
        ("2026-11-20T00:00:00-05:30", utc(2026, 11, 20, 5, 30), utc(2026, 11, 20, 5, 30, 1)),
        (
            "2026-11-20T00:00:00.458Z",
            utc(2026, 11, 20, 0, 0, 0, 458000),
            utc(2026, 11, 20, 0, 0, 0, 459000),
        ),
        (
            "2026-11-20T00:00:00.5Z",
            utc(2026, 11, 20, 0, 0, 0, 500000),
            utc(2026, 11, 20, 0, 0, 0, 600000),
        ),
        # more than microseconds: truncated to what the index keeps
        (
            "2026-11-20T00:00:00.1234567Z",
            utc(2026, 11, 20, 0, 0, 0, 123456),
            utc(2026, 11, 20, 0, 0, 0, 123457),
        ),
        (" 2026 ", utc(2025, 12, 31, 16), utc(2026, 12, 31, 16)),
    ],
)
def test_ranges_follow_the_precision_of_the_value(
    value: str, start: datetime, end: datetime
) -> None:
    assert parse_range(value) == (start, end)


def test_zone_without_offset_is_the_exchange_zone() -> None:
    assert parse_range("2026-07-01", "UTC") == (utc(2026, 7, 1), utc(2026, 7, 2))
    # New York in July is UTC-4 (DST), in January UTC-5
    assert parse_range("2026-07-01", "America/New_York")[0] == utc(2026, 7, 1, 4)
    assert parse_range("2026-01-01", "America/New_York")[0] == utc(2026, 1, 1, 5)


@pytest.mark.parametrize(
    "value",
    [
        "notadate",
        "",
        "26-11-20",
        "2026-13",
        "2026-02-30",
        "2026-11-20T25:00",
        "2026-11-20T10:61",
        "2026-11-20T10:00:00+0800",  # offset needs a colon in FHIR
        "2026-11-20 10:00",
        "2026-11-20T10",
        "0000",
        # the edges of the calendar: the range or the move to UTC leaves years 1..9999
        "9999",
        "9999-12-31",
        "9999-12-31T23:59:59Z",
        "0001-01-01T00:00:00+01:00",
        "' OR 1=1 --",
    ],
)
def test_bad_values_raise_bad_date(value: str) -> None:
    with pytest.raises(BadDate):
        parse_range(value)


def test_non_strings_are_bad_dates() -> None:
    with pytest.raises(BadDate):
        parse_range(20261120)  # type: ignore[arg-type]


def test_instant_round_trip_at_millisecond_precision() -> None:
    dt = utc(2026, 11, 25, 16, 24, 31, 458912)
    text = instant(dt)
    assert text == "2026-11-25T16:24:31.458Z"
    assert parse_instant(text) == dt.replace(microsecond=458000)
    low, high = parse_range(text)
    assert low <= dt < high  # meta.lastUpdated, searched back, finds the stored instant
    aware_elsewhere = dt.astimezone(ZoneInfo("Asia/Shanghai"))
    assert instant(aware_elsewhere) == text


@settings(max_examples=100, deadline=None)
@given(
    st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1)),
    st.sampled_from(["year", "month", "day", "minute", "second", "milli"]),
    st.sampled_from(["", "Z", "+08:00", "-03:30", "+14:00"]),
)
def test_every_value_lies_in_its_own_range(dt: datetime, precision: str, zone: str) -> None:
    """Property: the instant a string was cut from lies inside the string's range."""
    fmt = {
        "year": "%Y",
        "month": "%Y-%m",
        "day": "%Y-%m-%d",
        "minute": "%Y-%m-%dT%H:%M",
        "second": "%Y-%m-%dT%H:%M:%S",
        "milli": "%Y-%m-%dT%H:%M:%S.%f",
    }[precision]
    text = dt.strftime(fmt)
    if precision == "milli":
        text = text[:-3]
    if precision in ("minute", "second", "milli"):
        text += zone
        offset = zone
    else:
        offset = ""
    low, high = parse_range(text)
    assert low < high
    if offset in ("", None):
        point = dt.replace(tzinfo=ZoneInfo("Asia/Shanghai"))
    elif offset == "Z":
        point = dt.replace(tzinfo=UTC)
    else:
        sign = 1 if offset[0] == "+" else -1
        delta = timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6]))
        point = (dt - sign * delta).replace(tzinfo=UTC)
    assert low <= point < high, (text, low, point, high)


@pytest.mark.parametrize("value", [["2024-01-01"], {"date": "2024"}, 20240101, None])
def test_non_string_dates_are_bad_dates_not_crashes(value: object) -> None:
    """parse_range is memoised; input a cache cannot hash must still be a BadDate (→ 400)."""
    with pytest.raises(BadDate):
        parse_range(value)  # type: ignore[arg-type]


def test_a_repeated_date_gives_the_same_answer() -> None:
    first = parse_range("2024-07-15T12:03:00+08:00")
    assert parse_range("2024-07-15T12:03:00+08:00") == first
    assert parse_range("2024-07-15T12:03:00+08:00", "UTC") == first  # the offset decides
    assert parse_range("2024-07-15", "UTC") != parse_range("2024-07-15")  # the zone decides
