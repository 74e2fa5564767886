"""Validity windows: PRC Civil Code Art. 201-203 day counting in Asia/Shanghai, exact hours."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from hie.recognition.explanation import local_until
from hie.recognition.window import ValidityWindow

SH = ZoneInfo("Asia/Shanghai")


def sh(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=SH)


@pytest.mark.parametrize(
    ("window", "effective", "expires"),
    [
        # The day of the test is not counted (Art. 201); the 7th day after ends at 24:00.
        ("P7D", sh(2026, 11, 1, 10, 0), sh(2026, 11, 9)),
        ("P7D", sh(2026, 11, 1, 0, 0), sh(2026, 11, 9)),
        ("P7D", sh(2026, 11, 1, 23, 59, 59), sh(2026, 11, 9)),
        # 17:30 UTC on 31 Oct is 01:30 on 1 Nov in Shanghai: the local day counts.
        ("P7D", datetime(2026, 10, 31, 17, 30, tzinfo=UTC), sh(2026, 11, 9)),
        # 15:59 UTC on 31 Oct is still 31 Oct 23:59 in Shanghai.
        ("P7D", datetime(2026, 10, 31, 15, 59, tzinfo=UTC), sh(2026, 11, 8)),
        ("P30D", sh(2026, 11, 1, 10), sh(2026, 12, 2)),
        ("P60D", sh(2026, 11, 1, 10), sh(2027, 1, 1)),  # last day 31 Dec
        ("P2W", sh(2026, 11, 1, 10), sh(2026, 11, 16)),
        # Months end on the corresponding day, or the month's last day (Art. 202).
        ("P1M", sh(2026, 1, 15, 9), sh(2026, 2, 16)),
        ("P1M", sh(2026, 1, 31, 9), sh(2026, 3, 1)),  # last day 28 Feb 2026
        ("P1M", sh(2028, 1, 31, 9), sh(2028, 3, 1)),  # last day 29 Feb 2028 (leap year)
        ("P6M", sh(2026, 8, 31, 9), sh(2027, 3, 1)),  # last day 28 Feb 2027
        ("P3M", sh(2026, 11, 30, 9), sh(2027, 3, 1)),  # last day 28 Feb 2027
        ("P1Y", sh(2028, 2, 29, 9), sh(2029, 3, 1)),  # last day 28 Feb 2029
        # Hours are exact durations from the instant.
        ("PT48H", sh(2026, 11, 1, 10, 30), sh(2026, 11, 3, 10, 30)),
        ("PT1H", datetime(2026, 10, 31, 17, 30, tzinfo=UTC), sh(2026, 11, 1, 2, 30)),
    ],
)
def test_expiry_instant(window: str, effective: datetime, expires: datetime) -> None:
    assert ValidityWindow.parse(window).expires_at(effective, SH) == expires


def test_one_second_either_side_of_the_end() -> None:
    end = ValidityWindow.parse("P7D").expires_at(sh(2026, 11, 1, 10), SH)
    last_valid = sh(2026, 11, 8, 23, 59, 59)
    assert last_valid < end
    assert last_valid + timedelta(seconds=1) == end  # recognised means at < expires_at
    assert local_until(end, SH) == "2026-11-08 24:00"


def test_expiry_is_in_the_exchange_zone_whatever_the_input_offset() -> None:
    end = ValidityWindow.parse("P7D").expires_at(datetime(2026, 11, 1, 2, tzinfo=UTC), SH)
    assert end.utcoffset() == timedelta(hours=8)
    assert end.astimezone(UTC) == datetime(2026, 11, 8, 16, 0, tzinfo=UTC)


@pytest.mark.parametrize("text", ["7D", "P0D", "P1M15D", "PT30M", "P1.5D", "", "P-1D", "PT0H"])
def test_unsupported_windows_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        ValidityWindow.parse(text)


def test_naive_effective_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        ValidityWindow.parse("P7D").expires_at(datetime(2026, 11, 1, 10), SH)


@pytest.mark.parametrize(
    ("text", "zh", "en"),
    [("P7D", "7 天", "7 days"), ("P1M", "1 个月", "1 month"), ("PT48H", "48 小时", "48 hours")],
)
def test_describe(text: str, zh: str, en: str) -> None:
    window = ValidityWindow.parse(text)
    assert (window.describe("zh"), window.describe("en"), window.text) == (zh, en, text)


@pytest.mark.parametrize("text", ["P3D", "P7D", "P60D", "P2W", "P1M", "P3M", "P6M", "P1Y", "PT48H"])
@pytest.mark.parametrize(
    "zone", [SH, ZoneInfo("Europe/Berlin"), ZoneInfo("America/Santiago")], ids=str
)
def test_no_result_stays_within_its_window_longer_than_longest(text: str, zone: ZoneInfo) -> None:
    """``$prior-results`` reads the index back only ``longest()``: a result any longer ago
    must have expired, at any time of any day of a leap year, across offset changes."""
    window = ValidityWindow.parse(text)
    bound = window.longest()
    spans = []
    start = datetime(2027, 12, 25, tzinfo=zone)
    for hours in range(0, 24 * 400, 7):  # every 7 hours: each hour of the day comes round
        effective = start + timedelta(hours=hours, minutes=59, seconds=59)
        span = window.expires_at(effective, zone) - effective
        assert span <= bound, (effective, span, bound)
        spans.append(span)
    assert bound - max(spans) <= timedelta(days=1) + bound * 0.03  # and not much longer
