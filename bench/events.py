"""What happens to one resident over the simulated years: episodes of care, orders, studies.

A *visit* is an episode at one hospital on one day: some lab panels and sometimes an imaging
study. Realism that matters for the exchange:

* repeat testing across hospitals: a quarter of episodes are followed 2-30 days later by a
  referral to another (usually higher-level) hospital that orders many of the same panels
  again — exactly the re-tests the recognition engine is meant to avoid;
* people with a chronic condition come back every few months for HbA1c, lipids and BMP;
* about 1% of orders are corrected after release (same filler number, a new value, status
  corrected) and 0.5% cancelled (status cancelled, no values), re-sent later by the LIS;
* some hospital records lack the national ID (only the MRN), as at small clinics.

Everything is a pure function of (seed, person index); a person's events come out sorted by
time, so a writer can stream them.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from bench.panels import PANELS, Panel, Test, Value, draw
from bench.people import Person, mrn, person, rng_for

CST = timezone(timedelta(hours=8), "CST")
LEVELS = ("3A", "3B", "2A", "CHC")
LEVEL_SHARE = (0.08, 0.12, 0.30, 0.50)
LEVEL_WEIGHT = {"3A": 12.0, "3B": 6.0, "2A": 2.5, "CHC": 1.0}
LEVEL_NAME = {
    "3A": "三级甲等医院",
    "3B": "三级乙等医院",
    "2A": "二级甲等医院",
    "CHC": "社区健康服务中心",
}
DISTRICTS = ("罗湖", "福田", "南山", "宝安", "龙岗", "盐田", "龙华", "坪山", "光明", "大鹏")


@dataclass(frozen=True)
class Hospital:
    id: str  # h001 ...
    number: int
    level: str
    name_zh: str
    name_en: str

    @property
    def weight(self) -> float:
        return LEVEL_WEIGHT[self.level]


def hospitals(count: int, seed: int) -> list[Hospital]:
    """``count`` hospitals: the first ones are the big tertiary hospitals, then the clinics."""
    out = []
    bounds = [round(sum(LEVEL_SHARE[: i + 1]) * count) for i in range(len(LEVELS))]
    for n in range(1, count + 1):
        level = next(
            (lv for lv, b in zip(LEVELS, bounds, strict=True) if n <= max(b, 1)), LEVELS[-1]
        )
        district = DISTRICTS[(n * 7 + seed) % len(DISTRICTS)]
        zh = f"深圳市{district}区第{n}{LEVEL_NAME[level]}"
        en = f"Shenzhen {level} hospital {n:03d}"
        out.append(Hospital(f"h{n:03d}", n, level, zh, en))
    return out


@dataclass(frozen=True)
class Result:
    test: Test
    value: Value
    status: str  # final | corrected | cancelled


@dataclass(frozen=True)
class Order:
    """One lab order (filler order number) as released — or re-sent corrected/cancelled."""

    person: Person
    hospital: Hospital
    mrn: str
    with_national_id: bool
    filler: str
    panel: Panel
    collected: datetime
    issued: datetime
    status: str  # final | corrected | cancelled
    results: tuple[Result, ...]


@dataclass(frozen=True)
class Study:
    person: Person
    hospital: Hospital
    mrn: str
    with_national_id: bool
    uid: str
    accession: str
    started: datetime
    modality: str
    body_part: str  # DICOM Body Part Examined
    body_site: tuple[str, str]  # SNOMED CT code, display
    description: str
    series: int
    instances: int


Event = Order | Study

IMAGING = (
    ("CT", "CHEST", ("51185008", "Chest"), "CT chest without contrast", 0.30),
    ("CT", "HEAD", ("69536005", "Head"), "CT head without contrast", 0.12),
    ("MR", "BRAIN", ("12738006", "Brain"), "MR brain without contrast", 0.08),
    ("MR", "LSPINE", ("122496007", "Lumbar spine"), "MR lumbar spine without contrast", 0.06),
    ("DX", "CHEST", ("51185008", "Chest"), "Radiograph chest", 0.26),
    ("US", "ABDOMEN", ("818981001", "Abdomen"), "Ultrasound abdomen", 0.18),
)
UID_ROOT = "1.2.826.0.1.3680043.8.498"  # pydicom's UID root, used for synthetic studies


@dataclass
class CityPlan:
    """The knobs of the simulation (defaults give about 36 results per resident)."""

    seed: int = 20240601
    hospitals: int = 40
    start: datetime = datetime(2023, 1, 1, tzinfo=CST)
    days: int = 730
    episodes_healthy: float = 1.2
    episodes_chronic: float = 5.0
    referral_share: float = 0.25
    imaging_share: float = 0.12
    correction_share: float = 0.01
    cancel_share: float = 0.005
    missing_national_id_share: float = 0.03
    hospital_list: list[Hospital] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.hospital_list:
            self.hospital_list = hospitals(self.hospitals, self.seed)


def _poisson(rng: random.Random, lam: float) -> int:
    n, p, limit = 0, 1.0, pow(2.718281828459045, -lam)
    while True:
        p *= rng.random()
        if p <= limit:
            return n
        n += 1


def _panels(rng: random.Random, chronic: bool) -> list[Panel]:
    chosen = [
        p
        for p in PANELS
        if rng.random() < (p.chronic_share if chronic and p.chronic_share else p.share)
    ]
    return chosen or [PANELS[0]]


def _pick(rng: random.Random, choices: list[Hospital], *, above: str | None = None) -> Hospital:
    if above is not None:
        rank = LEVELS.index(above)
        higher = [h for h in choices if LEVELS.index(h.level) <= rank]
        choices = higher or choices
    return rng.choices(choices, weights=[h.weight for h in choices])[0]


def person_events(plan: CityPlan, index: int) -> Iterator[Event]:
    """All events of resident ``index``, in time order."""
    who = person(plan.seed, index)
    rng = rng_for(plan.seed, "events", index)
    everywhere = plan.hospital_list
    usual = [_pick(rng, everywhere) for _ in range(rng.randint(1, 3))]
    lam = plan.episodes_chronic if who.chronic else plan.episodes_healthy
    episodes: list[tuple[datetime, Hospital, list[Panel], bool]] = []
    for _ in range(1 + _poisson(rng, lam)):
        day = plan.start + timedelta(
            days=rng.randrange(plan.days), minutes=rng.randrange(7 * 60, 17 * 60)
        )
        where = rng.choice(usual)
        panels = _panels(rng, who.chronic)
        imaging = rng.random() < plan.imaging_share
        episodes.append((day, where, panels, imaging))
        if rng.random() < plan.referral_share:
            later = day + timedelta(days=rng.randint(2, 30), minutes=rng.randint(-120, 120))
            other = _pick(
                rng, [h for h in everywhere if h is not where] or everywhere, above=where.level
            )
            again = [p for p in panels if rng.random() < 0.6] or panels[:1]
            episodes.append((later, other, again, imaging and rng.random() < 0.5))
    episodes.sort(key=lambda e: e[0])
    no_id = {h.id for h in everywhere if rng.random() < plan.missing_national_id_share}
    pending: list[tuple[datetime, Event]] = []
    for n, (when, where, panels, imaging) in enumerate(episodes):
        record = mrn(index, where.number)
        with_id = where.id not in no_id or who.national_id is None
        for k, panel in enumerate(panels):
            filler = f"{when:%y%m%d}{index:09d}{n:02d}{k}"
            collected = when + timedelta(minutes=k)
            issued = collected + timedelta(minutes=rng.randint(40, 300))
            results = tuple(Result(t, draw(t, rng, who.chronic), "final") for t in panel.tests)
            order = Order(
                who, where, record, with_id, filler, panel, collected, issued, "final", results
            )
            pending.append((issued, order))
            roll = rng.random()
            if roll < plan.correction_share:
                pending.append(
                    (issued + timedelta(hours=rng.randint(2, 72)), _corrected(order, rng))
                )
            elif roll < plan.correction_share + plan.cancel_share:
                pending.append((issued + timedelta(hours=rng.randint(1, 48)), _cancelled(order)))
        if imaging:
            modality, part, site, text, _ = rng.choices(IMAGING, weights=[i[4] for i in IMAGING])[0]
            started = when + timedelta(minutes=30 + rng.randint(0, 180))
            study = Study(
                who,
                where,
                record,
                with_id,
                f"{UID_ROOT}.{plan.seed % 100000}.{index}.{n}",
                f"A{when:%y%m%d}{index:08d}{n:02d}",
                started,
                modality,
                part,
                site,
                text,
                1 if modality in ("DX", "US") else rng.randint(2, 5),
                rng.randint(1, 4) if modality in ("DX", "US") else rng.randint(60, 400),
            )
            pending.append((started, study))
    pending.sort(key=lambda p: p[0])
    for _, event in pending:
        yield event


def _corrected(order: Order, rng: random.Random) -> Order:
    numeric = [i for i, r in enumerate(order.results) if r.value.number is not None]
    results = list(order.results)
    if numeric:
        i = rng.choice(numeric)
        old = results[i]
        n = old.value.number
        assert n is not None
        bumped = round(n * rng.uniform(1.05, 1.3), old.test.decimals)
        number: float | int = bumped if old.test.decimals else int(bumped)
        results[i] = Result(old.test, Value(number, None, old.value.flag), "corrected")
    return Order(
        order.person,
        order.hospital,
        order.mrn,
        order.with_national_id,
        order.filler,
        order.panel,
        order.collected,
        order.issued + timedelta(hours=1),
        "corrected",
        tuple(results),
    )


def _cancelled(order: Order) -> Order:
    results = tuple(Result(r.test, Value(None, None, ""), "cancelled") for r in order.results)
    return Order(
        order.person,
        order.hospital,
        order.mrn,
        order.with_national_id,
        order.filler,
        order.panel,
        order.collected,
        order.issued,
        "cancelled",
        results,
    )
