"""Synthetic residents of the city: names, GB 11643 national IDs, passports, MRNs.

Everything is a pure function of ``(seed, index)``, so person 7,000,001 can be made without
making the seven million before it, two runs with the same seed agree byte for byte, and
nothing is kept in memory between people.

National IDs are *unique by construction*, not by luck: drawing birth dates and sequence
codes at random would give a few hundred collisions among a million people (the birthday
problem), and a collision links two people into one. Index ``i`` picks the (region, serial)
pair from ``i mod 10,000`` and the birth date from ``i div 10,000`` through a bijection of
the days in the birth range, so distinct indexes give distinct numbers.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

from hie.identity.national_id import make as make_national_id

Gender = Literal["male", "female"]

# Shenzhen districts (GB/T 2260) and the home regions of many of its residents.
REGIONS = (
    "440303",  # 罗湖区
    "440304",  # 福田区
    "440305",  # 南山区
    "440306",  # 宝安区
    "440307",  # 龙岗区
    "440308",  # 盐田区
    "440309",  # 龙华区
    "440310",  # 坪山区
    "440311",  # 光明区
    "441302",  # 惠州惠城区
    "445102",  # 潮州湘桥区
    "440106",  # 广州天河区
    "430102",  # 长沙芙蓉区
    "360102",  # 南昌东湖区
    "420102",  # 武汉江岸区
    "450102",  # 南宁兴宁区
    "510104",  # 成都锦江区
    "410102",  # 郑州中原区
    "350203",  # 厦门思明区
    "220102",  # 长春南关区
)
SERIALS = 500  # GB 11643 sequence codes per (region, date, sex parity)
BLOCK = len(REGIONS) * SERIALS
BIRTH_FIRST = date(1935, 1, 1)
BIRTH_DAYS = (date(2022, 12, 31) - BIRTH_FIRST).days + 1
_STRIDE = 7919  # prime, coprime with BIRTH_DAYS: day = (STRIDE*k + c) mod DAYS is a bijection

SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏"
    "魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵"
)
COMPOUND_SURNAMES = ("欧阳", "司马", "上官", "诸葛", "东方")
GIVEN_CHARS = (
    "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超霞平刚桂英华玉萍红梅鑫波斌宇浩凯秀兰建国志文辉力"
    "慧颖婷雪琳晨欣怡子轩梓涵诗雨嘉豪俊博宁晓东海燕倩思远鹏飞"
)
FOREIGN_GIVEN = ("John", "Mary", "David", "Emma", "Kenji", "Yuki", "Min-jun", "Anna", "Ravi")
FOREIGN_FAMILY = ("Smith", "Brown", "Tanaka", "Sato", "Kim", "Park", "Müller", "Singh", "Nguyen")
FOREIGN_COUNTRIES = ("USA", "GBR", "JPN", "KOR", "DEU", "IND", "VNM", "HKG")


@dataclass(frozen=True)
class Person:
    """One resident. ``national_id`` is None for foreigners who only carry a passport."""

    index: int
    family: str
    given: str
    gender: Gender
    birth_date: date
    national_id: str | None
    passport: tuple[str, str] | None  # (ISO 3166 alpha-3 country, number)
    chronic: bool  # diabetes / hypertension follow-up: more visits, HbA1c and lipids

    @property
    def text(self) -> str:
        if self.national_id is None:
            return f"{self.given} {self.family}"
        return self.family + self.given


def rng_for(seed: int, *parts: object) -> random.Random:
    """An independent, reproducible stream for one (seed, parts) key."""
    return random.Random(":".join(str(p) for p in (seed, *parts)))


def birth_date_for(index: int, seed: int) -> date:
    block, within = divmod(index, BLOCK)
    if block >= BIRTH_DAYS:
        raise ValueError(f"at most {BLOCK * BIRTH_DAYS:,} distinct people per city")
    offset = (within * 104729 + seed) % BIRTH_DAYS
    return BIRTH_FIRST + timedelta(days=(_STRIDE * block + offset) % BIRTH_DAYS)


def person(
    seed: int, index: int, *, foreign_share: float = 0.02, passport_share: float = 0.01
) -> Person:
    """Resident ``index`` of the city made from ``seed``."""
    rng = rng_for(seed, "person", index)
    gender: Gender = "male" if rng.random() < 0.5 else "female"
    born = birth_date_for(index, seed)
    chronic = rng.random() < (0.35 if born.year < 1970 else 0.08)
    if rng.random() < foreign_share:
        country = rng.choice(FOREIGN_COUNTRIES)
        return Person(
            index,
            rng.choice(FOREIGN_FAMILY),
            rng.choice(FOREIGN_GIVEN),
            gender,
            born,
            None,
            (country, f"{country[0]}{index:08d}"),
            chronic,
        )
    within = index % BLOCK
    region, serial = REGIONS[within // SERIALS], within % SERIALS
    national_id = make_national_id(region, born, gender, serial)
    if rng.random() < 0.03:
        family = rng.choice(COMPOUND_SURNAMES)
    else:
        family = SURNAMES[min(int(rng.expovariate(1 / 14)), len(SURNAMES) - 1)]
    given = "".join(rng.choice(GIVEN_CHARS) for _ in range(1 if rng.random() < 0.3 else 2))
    passport = ("CHN", f"E{index:08d}") if rng.random() < passport_share else None
    return Person(index, family, given, gender, born, national_id, passport, chronic)


def mrn(index: int, hospital_number: int) -> str:
    """A hospital's medical record number: a bijection of the person index, per hospital."""
    return f"{(index * 2654435761 + hospital_number * 7_777_777) % 4_294_967_296:010d}"
