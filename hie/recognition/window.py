"""Validity windows: how long a recognised result stays recognised.

The catalogue writes each window as an ISO 8601 duration (``P7D``, ``P6M``, ``PT48H``). Calendar
windows (days, weeks, months, years) follow the PRC Civil Code's rules for counting periods, the
same rules a hospital's legal office would apply to "7 天内":

* Art. 201: the day on which the period starts is not counted; counting begins the next day.
  A 7-day window for a test done on 1 November runs 2-8 November.
* Art. 202: a period in months or years ends on the corresponding day of the final month; if
  that month has no such day, on its last day (1 month from 31 January ends 28/29 February).
* Art. 203: the last day ends at 24:00. hie does not apply Art. 203's holiday extension: a
  result does not become more clinically valid because the last day was a public holiday.

Days are local calendar days in the exchange's time zone (Asia/Shanghai), so a test done at
01:30 Beijing time (17:30 UTC the day before) starts on the Beijing date. Hour windows
(``PT48H``) are exact durations from the instant of the test (Art. 201 second paragraph).
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Literal

Unit = Literal["D", "W", "M", "Y", "H"]

_DURATION = re.compile(r"^P(?:(?P<n>\d+)(?P<unit>[DWMY])|T(?P<h>\d+)H)$")


@dataclass(frozen=True)
class ValidityWindow:
    """One catalogue window: ``amount`` of ``unit`` (D, W, M, Y calendar; H exact hours)."""

    amount: int
    unit: Unit

    @classmethod
    def parse(cls, text: str) -> ValidityWindow:
        """``P7D``, ``P2W``, ``P6M``, ``P1Y`` or ``PT48H``; combined forms are refused on purpose
        (``P1M15D`` has no single Civil Code reading)."""
        match = _DURATION.match(text.strip())
        if not match:
            raise ValueError(f"{text!r} is not a supported window: use PnD, PnW, PnM, PnY or PTnH")
        if match["h"] is not None:
            window = cls(int(match["h"]), "H")
        else:
            window = cls(int(match["n"]), match["unit"])  # type: ignore[arg-type]
        if window.amount <= 0:
            raise ValueError(f"{text!r}: a window must be longer than zero")
        return window

    @property
    def text(self) -> str:
        return f"PT{self.amount}H" if self.unit == "H" else f"P{self.amount}{self.unit}"

    @property
    def is_calendar(self) -> bool:
        return self.unit != "H"

    def last_day(self, effective: datetime, zone: tzinfo) -> date:
        """The last local calendar day on which the result is still recognised."""
        if not self.is_calendar:
            raise ValueError("an hour window has no last day; use expires_at")
        start = effective.astimezone(zone).date()
        if self.unit == "D":
            return start + timedelta(days=self.amount)
        if self.unit == "W":
            return start + timedelta(days=7 * self.amount)
        months = self.amount * (12 if self.unit == "Y" else 1)
        return _add_months(start, months)

    def expires_at(self, effective: datetime, zone: tzinfo) -> datetime:
        """The first instant at which the result is no longer recognised (exclusive end).

        Calendar windows: 00:00 local of the day after :meth:`last_day` (Art. 203's "24:00 of
        the last day"). Hour windows: ``effective`` plus the exact duration.
        """
        if effective.tzinfo is None or effective.utcoffset() is None:
            raise ValueError("effective must be an aware datetime (an instant)")
        if not self.is_calendar:
            return (effective + timedelta(hours=self.amount)).astimezone(zone)
        day_after = self.last_day(effective, zone) + timedelta(days=1)
        return datetime.combine(day_after, time(0), tzinfo=zone)

    def longest(self) -> timedelta:
        """A bound on how long after its instant a result stays within this window: a lookup
        for results that may still be recognised reads no further back than this.

        A calendar window ends at the local midnight after its last day, at most one day
        plus the window's longest span (31-day months, 366-day years) after the instant; one
        day more covers a zone's offset change.
        """
        if not self.is_calendar:
            return timedelta(hours=self.amount)
        per = {"D": 1, "W": 7, "M": 31, "Y": 366}[self.unit]
        return timedelta(days=per * self.amount + 2)

    def describe(self, lang: str) -> str:
        """A short human form: ``7 天`` / ``7 days``."""
        zh = {"D": "天", "W": "周", "M": "个月", "Y": "年", "H": "小时"}
        en = {"D": "day", "W": "week", "M": "month", "Y": "year", "H": "hour"}
        if lang == "zh":
            return f"{self.amount} {zh[self.unit]}"
        return f"{self.amount} {en[self.unit]}{'' if self.amount == 1 else 's'}"


def _add_months(day: date, months: int) -> date:
    """Civil Code Art. 202: the corresponding day, or the month's last day if it has none."""
    index = day.year * 12 + (day.month - 1) + months
    year, month = divmod(index, 12)
    month += 1
    last = calendar.monthrange(year, month)[1]
    return date(year, month, min(day.day, last))
