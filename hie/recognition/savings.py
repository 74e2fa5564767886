"""What recognition saved: the ledger by hospital, department, item and month.

Pure aggregation of two record streams the lead's store keeps: :class:`Lookup` (one per
``$prior-results`` call or CDS card request: what was asked, what was offered as recognised) and
:class:`~hie.recognition.decision.Decision` (accept or decline). The figures are the ones
Shenzhen and Chongqing publish for their programmes: queries, recognised results offered,
accepted, declined by reason, tests avoided, yuan and patient minutes saved; the decline rate
per item shows where a rule or a lab needs attention.

Counting rules (documented in docs/recognition.md):

* one accepted decision avoids one test of its item (a panel counts once, at the panel price);
* RMB saved is the catalogue price of the avoided tests;
* patient minutes are saved per visit, not per test: accepted decisions sharing an
  ``encounter`` count the largest ``minutes-saved`` among their items once, attributed to that
  item (lowest code on a tie) so per-item rows still add up to the totals; a decision with no
  encounter counts as its own visit;
* withdrawn decisions do not count; months are local (Asia/Shanghai) calendar months.
"""

from __future__ import annotations

import csv
import io
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from decimal import Decimal
from typing import Any, Literal
from zoneinfo import ZoneInfo

from hie.recognition.catalogue import Catalogue
from hie.recognition.decision import Decision
from hie.recognition.model import Assessment

Dimension = Literal["hospital", "department", "item", "month"]
ALL = "*"  # a dimension summed over in a rollup row
NO_DEPARTMENT = "-"  # lookups and decisions that name no department
_DIMENSIONS: tuple[Dimension, ...] = ("hospital", "department", "item", "month")


@dataclass(frozen=True)
class Lookup:
    """One question asked: which items, and which of them had a recognised result to offer."""

    hospital_id: str
    department: str | None
    at: datetime
    requested_items: tuple[str, ...]
    offered_items: tuple[str, ...] = ()


def lookup_from(assessment: Assessment, department: str | None) -> Lookup:
    """The ledger record of one engine answer (requested codes not on the list are not counted)."""
    requested = tuple(dict.fromkeys(q.item_code for q in assessment.requested if q.item_code))
    offered = tuple(
        dict.fromkeys(
            a.verdict.item_code
            for a in assessment.results
            if a.verdict.recognised and a.verdict.item_code and a.verdict.covers
        )
    )
    return Lookup(assessment.requester.id, department, assessment.at, requested, offered)


@dataclass(frozen=True)
class LedgerRow:
    hospital: str
    department: str
    item: str
    month: str  # YYYY-MM, local
    lookups: int = 0
    offered: int = 0
    accepted: int = 0
    declined: int = 0
    declined_by_reason: tuple[tuple[str, int], ...] = ()
    tests_avoided: int = 0
    rmb_saved: Decimal = Decimal(0)
    minutes_saved: int = 0

    @property
    def decline_rate(self) -> float | None:
        """Declines among decisions; None when nobody decided anything."""
        decided = self.accepted + self.declined
        return None if decided == 0 else self.declined / decided

    def as_json(self) -> dict[str, Any]:
        return {
            "hospital": self.hospital,
            "department": self.department,
            "item": self.item,
            "month": self.month,
            "lookups": self.lookups,
            "offered": self.offered,
            "accepted": self.accepted,
            "declined": self.declined,
            "declinedByReason": dict(self.declined_by_reason),
            "testsAvoided": self.tests_avoided,
            "rmbSaved": str(self.rmb_saved),
            "minutesSaved": self.minutes_saved,
            "declineRate": None if self.decline_rate is None else round(self.decline_rate, 4),
        }


@dataclass
class _Tally:
    lookups: int = 0
    offered: int = 0
    accepted: int = 0
    declined: Counter[str] = field(default_factory=Counter)
    rmb: Decimal = Decimal(0)
    minutes: int = 0


Key = tuple[str, str, str, str]


def ledger(
    lookups: Iterable[Lookup],
    decisions: Iterable[Decision],
    catalogue: Catalogue,
    zone: tzinfo | None = None,
) -> tuple[LedgerRow, ...]:
    """Rows per (hospital, department, item, month), sorted by those keys."""
    zone = zone or ZoneInfo("Asia/Shanghai")
    tallies: dict[Key, _Tally] = defaultdict(_Tally)

    def month(at: datetime) -> str:
        return at.astimezone(zone).strftime("%Y-%m")

    for lk in lookups:
        dept = lk.department or NO_DEPARTMENT
        for code in lk.requested_items:
            tallies[(lk.hospital_id, dept, code, month(lk.at))].lookups += 1
        for code in lk.offered_items:
            tallies[(lk.hospital_id, dept, code, month(lk.at))].offered += 1

    visits: dict[tuple[str, str], list[Decision]] = defaultdict(list)
    for d in decisions:
        if not d.counts:
            continue
        key = (d.hospital_id, d.department or NO_DEPARTMENT, d.item_code, month(d.at))
        if d.action == "decline":
            tallies[key].declined[d.reason or "unspecified"] += 1
            continue
        tally = tallies[key]
        tally.accepted += 1
        tally.rmb += _price(d, catalogue)
        visit = (d.hospital_id, d.encounter) if d.encounter else (d.hospital_id, f"#{d.id}")
        visits[visit].append(d)

    for group in visits.values():
        best = min(group, key=lambda d: (-_minutes(d, catalogue), d.item_code, d.id))
        key = (best.hospital_id, best.department or NO_DEPARTMENT, best.item_code, month(best.at))
        tallies[key].minutes += _minutes(best, catalogue)

    return tuple(_row(k, t) for k, t in sorted(tallies.items()))


def _price(d: Decision, catalogue: Catalogue) -> Decimal:
    if d.price_rmb is not None:
        return d.price_rmb
    item = catalogue.items.get(d.item_code)
    return item.price_rmb if item else Decimal(0)


def _minutes(d: Decision, catalogue: Catalogue) -> int:
    if d.minutes_saved is not None:
        return d.minutes_saved
    item = catalogue.items.get(d.item_code)
    return item.minutes_saved if item else 0


def _row(key: Key, t: _Tally) -> LedgerRow:
    return LedgerRow(
        hospital=key[0],
        department=key[1],
        item=key[2],
        month=key[3],
        lookups=t.lookups,
        offered=t.offered,
        accepted=t.accepted,
        declined=sum(t.declined.values()),
        declined_by_reason=tuple(sorted(t.declined.items())),
        tests_avoided=t.accepted,
        rmb_saved=t.rmb,
        minutes_saved=t.minutes,
    )


def rollup(rows: Iterable[LedgerRow], by: Sequence[Dimension]) -> tuple[LedgerRow, ...]:
    """Sum rows over every dimension not in ``by`` (those show as ``*``)."""
    unknown = [d for d in by if d not in _DIMENSIONS]
    if unknown:
        raise ValueError(f"unknown ledger dimension(s) {unknown}; use {_DIMENSIONS}")
    tallies: dict[Key, _Tally] = defaultdict(_Tally)
    for r in rows:
        values = {
            "hospital": r.hospital,
            "department": r.department,
            "item": r.item,
            "month": r.month,
        }
        key: Key = tuple(values[d] if d in by else ALL for d in _DIMENSIONS)  # type: ignore[assignment]
        t = tallies[key]
        t.lookups += r.lookups
        t.offered += r.offered
        t.accepted += r.accepted
        t.declined.update(dict(r.declined_by_reason))
        t.rmb += r.rmb_saved
        t.minutes += r.minutes_saved
    return tuple(_row(k, t) for k, t in sorted(tallies.items()))


CSV_COLUMNS = (
    "hospital",
    "department",
    "item",
    "month",
    "lookups",
    "offered",
    "accepted",
    "declined",
    "tests_avoided",
    "rmb_saved",
    "minutes_saved",
    "decline_rate",
    "declined_by_reason",
)


def csv_text(rows: Iterable[LedgerRow]) -> str:
    """The ledger as CSV (UTF-8 text; reasons as ``code=n;code=n``)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        rate = r.decline_rate
        writer.writerow(
            [
                r.hospital,
                r.department,
                r.item,
                r.month,
                r.lookups,
                r.offered,
                r.accepted,
                r.declined,
                r.tests_avoided,
                r.rmb_saved,
                r.minutes_saved,
                "" if rate is None else f"{rate:.4f}",
                ";".join(f"{k}={n}" for k, n in r.declined_by_reason),
            ]
        )
    return out.getvalue()
