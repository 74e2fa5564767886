"""A synthetic Shenzhen population and its hospital records, with errors and ground truth.

Deterministic for a given ``(persons, seed)``. Nothing here is real: names are drawn from
surname and given-name character lists, national IDs are built with the GB 11643 check
character (``hie.identity.national_id.make``), phones and addresses are made up.

What it models (rates per record unless said otherwise; see ``Rates``):

* households sharing an address; children under 16 and some elderly use a parent's phone;
  wives keep their own surname (Chinese custom), children take the father's;
* surnames with approximate national frequencies (the top of the 2020 household-registration
  ranking; shares rounded), given names of one or two characters from sex-specific lists
  with Zipf-like weights, so common names such as 张伟 or 王芳 recur;
* namesake groups: several people with one very common full name born in the same year,
  a few on the same day;
* twins (same birth date, address, phone, surname; given names differing in one character),
  newborns registered as "{mother}之子/之女" without ID and with the mother's phone;
* foreigners with a Latin name and a passport, some Chinese with a passport too;
* 1-3 records per person at different hospitals, each with its own MRN, and injected errors:
  national ID missing, mistyped (fails the check character) or contradicting the record;
  homophone or one-character name typos, pinyin-only names (family/given sometimes swapped);
  birth date transposed, mistyped or missing (only where the record has no ID: hospital
  systems fill the birth date from the ID card); sex missing; a newer phone or address;
  missing phone or address; address written in varying forms.

``python bench/population.py --persons 1000 --seed 6 > records.jsonl`` writes one JSON
object per record (``record_id``, ``person``, ``hospital``, ``errors``, ``patient``).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from pypinyin import lazy_pinyin

from hie import naming
from hie.identity import national_id

TODAY = date(2026, 11, 25)


def _words(text: str) -> list[str]:
    return text.split()


# (surname, share in %) - rounded shares of the 2020 national ranking, head only; the rest
# of the population is spread over the tail list evenly.
SURNAMES = [
    ("王", 7.1), ("李", 6.9), ("张", 6.7), ("刘", 5.4), ("陈", 4.6), ("杨", 3.1), ("黄", 2.4),
    ("赵", 2.2), ("吴", 2.0), ("周", 1.9), ("徐", 1.5), ("孙", 1.5), ("马", 1.3), ("朱", 1.3),
    ("胡", 1.2), ("郭", 1.1), ("何", 1.1), ("林", 1.0), ("高", 0.9), ("罗", 0.9), ("郑", 0.9),
    ("梁", 0.9), ("谢", 0.8), ("宋", 0.7), ("唐", 0.7), ("许", 0.7), ("韩", 0.6), ("邓", 0.6),
    ("冯", 0.6), ("曹", 0.6), ("彭", 0.6), ("曾", 0.5), ("肖", 0.5), ("田", 0.5), ("董", 0.5),
    ("潘", 0.4), ("袁", 0.4), ("蔡", 0.4), ("蒋", 0.4), ("余", 0.4), ("于", 0.4), ("杜", 0.4),
    ("叶", 0.4), ("程", 0.4), ("魏", 0.4), ("苏", 0.3), ("吕", 0.3), ("丁", 0.3), ("任", 0.3),
    ("卢", 0.3), ("姚", 0.3), ("沈", 0.3), ("钟", 0.3), ("姜", 0.3), ("崔", 0.3), ("谭", 0.3),
]  # fmt: skip
SURNAME_TAIL = (
    "陆范汪廖石金韦贾夏付方邹熊白孟秦邱侯江尹薛闫段雷龙黎史陶贺毛郝顾龚邵万覃武钱戴严莫孔向常"
    "汤康易乔赖文施洪辛柯庄章翁温甘倪鲁葛单邢焦牛凌欧"
)
COMPOUND = ["欧阳", "司马", "诸葛", "上官"]
MALE_CHARS = (
    "伟强磊军勇杰涛斌超明刚平辉鹏华飞鑫波宇浩凯健俊帆帅旭宁龙林欢阳建亮成峰东文博晨然轩子豪睿"
    "泽瑞嘉思志国海天云德奇毅诚宏永康昊翔振航立伦亦楠铭坤皓锐彬"
)
FEMALE_CHARS = (
    "芳娜敏静丽艳娟霞秀英婷雪慧玲萍红燕琳欣颖怡佳梅兰倩洁晶莉丹琴萱涵雨梓诗悦婉淑月彤桐蕾薇"
    "琪瑶妍露璐菲晓芸馨岚婧钰蓉"
)
# Extra characters so that most given-name characters have a homophone to slip to.
HOMOPHONE_POOL = (
    "玮炜维为威微卫唯蔚巍薇娓纬伟围 婧靖晶菁精敬竞镜 丽莉俐立利力历励 芳方昉舫 娜纳 敏闽珉旻 "
    "强蔷墙 磊垒蕾 军君钧筠均 勇永咏泳 杰洁捷婕 涛韬滔 斌彬宾滨 超潮 明铭鸣茗 辉晖徽慧惠 鹏朋彭 "
    "华桦骅 飞菲霏非 鑫欣馨心新昕 波博柏泊 宇雨语羽禹玉 浩昊皓灏 凯恺楷锴 健建剑坚 俊骏峻君 "
    "帆凡繁 阳杨扬洋 林琳霖麟 亮靓 成诚程承 峰锋枫丰 东冬栋 文雯 晨辰宸 然冉 轩萱宣 子梓紫 "
    "豪毫 睿瑞锐蕊 泽择 嘉佳家 思斯丝 志智致 国果 海 天添 云芸昀 德 奇琪琦淇 燕艳雁彦 婷亭 "
    "雪 玲铃凌灵 萍平苹屏 红宏鸿虹 颖莹盈 怡宜仪 梅媚 兰岚澜 倩茜 秀 英瑛鹰 霞 娟鹃 静 涵寒韩 "
    "悦越跃月 婉 淑舒 彤桐 瑶遥 妍艳 露璐路 晓 蓉荣融 钰 伦 亦 楠 坤 航"
)
ROADS = _words(
    "深南大道 滨海大道 北环大道 科技园路 科苑路 高新南一道 沙河西路 南海大道 侨香路 香蜜湖路 "
    "福华路 莲花路 益田路 金田路 彩田路 新洲路 红荔路 笋岗路 宝安大道 前进路 新安路 建安路 "
    "布吉路 龙岗大道 翠竹路 东门路 春风路 田贝路 梅林路 民治大道 龙华大道 人民路 东滨路 学府路"
)
ESTATES = _words(
    "莲花北村 华侨城 百花园 翠海花园 桃源村 蛇口新村 海月花园 天安大厦 福田花园 碧海湾 "
    "阳光棕榈园 书香门第 金域蓝湾 星海名城 幸福海岸 半岛城邦 世纪村 中海阳光 万科城 佳兆业城"
)
DISTRICTS = {
    "440303": "罗湖区", "440304": "福田区", "440305": "南山区", "440306": "宝安区",
    "440307": "龙岗区", "440308": "盐田区", "440309": "龙华区", "440310": "坪山区",
}  # fmt: skip
# Where Shenzhen's residents were registered: the city itself and the usual provinces.
REGIONS = [
    *DISTRICTS,
    "440104", "440106", "440402", "441302", "445202", "440881", "430104", "430602", "421002",
    "420106", "360702", "362204", "410105", "411302", "510107", "513701", "450103", "350102",
    "220102", "370202", "110105", "310115",
]  # fmt: skip
LATIN_GIVEN = _words(
    "John James Robert Michael David William Thomas Daniel Paul Mark Anna Mary Emma Sarah "
    "Laura Julia Sophie Olivia Hannah Lucas Pierre Marie Hans Klaus Min-jun Seo-yeon Hiroshi Yuki"
)
LATIN_FAMILY = _words(
    "Smith Johnson Brown Taylor Miller Wilson Moore Anderson Martin Garcia Müller Schmidt "
    "Schneider Dubois Lefèvre Bernard Rossi Kim Lee Park Choi Tanaka Suzuki Sato O'Brien Nguyen"
)
COUNTRIES = ["USA", "GBR", "DEU", "FRA", "ITA", "KOR", "JPN", "CAN", "AUS", "SGP"]
# Hospital id → probability that a record there carries the national ID.
HOSPITALS = {
    "szph": 0.85, "pkuszh": 0.8, "nsdh": 0.75, "hkuszh": 0.6,
    "szch": 0.55, "szmch": 0.7, "sz2h": 0.8, "lgch": 0.65,
}  # fmt: skip
POPULAR_NAMES = [("张", "伟", "male"), ("王", "伟", "male"), ("王", "芳", "female"),
                 ("李", "伟", "male"), ("李", "娜", "female"), ("张", "敏", "female"),
                 ("李", "静", "female"), ("王", "静", "female"), ("刘", "伟", "male"),
                 ("王", "秀英", "female"), ("张", "丽", "female"), ("李", "强", "male"),
                 ("王", "磊", "male"), ("刘", "洋", "male"), ("张", "勇", "male")]  # fmt: skip
MOBILE_PREFIXES = _words("133 135 136 137 138 139 150 151 152 158 159 186 187 188 189 177 180 199")


@dataclass(frozen=True)
class Rates:
    """Error and variety rates (probabilities per record unless named per person)."""

    id_typo: float = 0.004
    id_contradicts_record: float = 0.002
    homophone: float = 0.03
    name_typo: float = 0.01
    pinyin_only: float = 0.03
    pinyin_only_hkuszh: float = 0.4
    pinyin_swapped: float = 0.25
    dob_transposed: float = 0.02
    dob_typo: float = 0.02
    dob_missing: float = 0.01
    sex_missing: float = 0.01
    new_phone: float = 0.12
    phone_missing: float = 0.15
    moved: float = 0.12
    address_missing: float = 0.25
    health_card_recorded: float = 0.5
    passport_recorded_foreigner: float = 0.9
    passport_recorded_chinese: float = 0.3
    twin_household: float = 0.02  # per household with children
    newborn_household: float = 0.02  # per household with a mother under 45
    namesake_person: float = 0.01  # per adult: replaced by a namesake-group member
    foreign_household: float = 0.015
    records_weights: tuple[float, float, float] = (0.45, 0.35, 0.20)


@dataclass
class Person:
    pid: str
    family: str
    given: str
    sex: str
    born: date
    address: str
    district: str
    phone: str | None
    national_id: str | None = None
    passport: tuple[str, str] | None = None  # (country, number)
    health_card: str | None = None
    latin: tuple[str, str] | None = None  # foreigners' (family, given)
    new_phone: str | None = None
    new_address: str | None = None
    newborn_of: str | None = None  # mother's full name for a newborn without a real name
    tags: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Record:
    record_id: str
    person: str
    hospital: str
    patient: dict[str, Any]
    errors: tuple[str, ...]


class Population:
    """People and their hospital records, built from ``random.Random(seed)`` only."""

    def __init__(self, persons: int, seed: int, rates: Rates | None = None) -> None:
        self.rng = random.Random(seed)
        self.rates = rates or Rates()
        self.people: list[Person] = []
        self._ids: set[str] = set()
        self._phones: set[str] = set()
        self._mrn = dict.fromkeys(HOSPITALS, 100000)
        self._surnames = [s for s, _ in SURNAMES] + list(SURNAME_TAIL) + COMPOUND
        head = sum(w for _, w in SURNAMES)
        tail_share = (100 - head) / (len(SURNAME_TAIL) + len(COMPOUND))
        self._surname_w = [w for _, w in SURNAMES] + [tail_share] * (
            len(SURNAME_TAIL) + len(COMPOUND)
        )
        self._male_w = [1 / (i + 1) ** 0.8 for i in range(len(MALE_CHARS))]
        self._female_w = [1 / (i + 1) ** 0.8 for i in range(len(FEMALE_CHARS))]
        self._homophones = _homophone_index()
        self._namesake_groups = [
            (*self.rng.choice(POPULAR_NAMES), self.rng.randint(1965, 1995)) for _ in range(40)
        ]
        while len(self.people) < persons:
            self._household(persons - len(self.people))
        self.records: list[Record] = [r for p in self.people for r in self._records(p)]
        self.rng.shuffle(self.records)  # arrival order across hospitals

    # -- people --------------------------------------------------------------------------------
    def _phone(self) -> str:
        while True:
            phone = self.rng.choice(MOBILE_PREFIXES) + f"{self.rng.randrange(10**8):08d}"
            if phone not in self._phones:
                self._phones.add(phone)
                return phone

    def _address(self) -> tuple[str, str]:
        code = self.rng.choice(list(DISTRICTS))
        r = self.rng
        road, estate = r.choice(ROADS), r.choice(ESTATES)
        room = f"{r.randint(1, 33)}{r.randint(1, 12):02d}"
        text = f"{road}{r.randint(1, 399)}号{estate}{r.randint(1, 40)}栋{room}"
        return DISTRICTS[code] + text, code

    def _given(self, sex: str) -> str:
        chars, weights = (
            (MALE_CHARS, self._male_w) if sex == "male" else (FEMALE_CHARS, self._female_w)
        )
        n = 1 if self.rng.random() < 0.15 else 2
        return "".join(self.rng.choices(chars, weights, k=n))

    def _surname(self) -> str:
        return self.rng.choices(self._surnames, self._surname_w)[0]

    def _born(self, low_age: int, high_age: int) -> date:
        days = self.rng.randint(low_age * 365, high_age * 365 + 364)
        return TODAY - timedelta(days=days)

    def _national_id(self, person: Person, region: str | None = None) -> str:
        region = region or self.rng.choice(REGIONS)
        while True:
            gender: national_id.Gender = "male" if person.sex == "male" else "female"
            value = national_id.make(region, person.born, gender, self.rng.randrange(500))
            if value not in self._ids:
                self._ids.add(value)
                return value

    def _person(
        self, family: str, sex: str, born: date, home: tuple[str, str], phone: str | None
    ) -> Person:
        r = self.rng
        p = Person(
            pid=f"person-{len(self.people):07d}",
            family=family,
            given=self._given(sex),
            sex=sex,
            born=born,
            address=home[0],
            district=home[1],
            phone=phone,
        )
        p.national_id = self._national_id(p)
        if r.random() < 0.03:
            p.passport = ("CHN", f"E{r.randrange(10**8):08d}")
        if r.random() < 0.5:
            p.health_card = f"SZ{r.randrange(10**9):09d}"
        p.new_phone = self._phone()
        p.new_address = self._address()[0]
        self.people.append(p)
        return p

    def _household(self, room: int) -> None:
        r = self.rng
        home = self._address()
        if r.random() < self.rates.foreign_household:
            self._foreigner(home)
            return
        family = self._surname()
        adult = self._person(
            family, r.choice(["male", "female"]), self._born(20, 85), home, self._phone()
        )
        if r.random() < self.rates.namesake_person:
            self._make_namesake(adult)
        if room < 2 or adult.born > TODAY - timedelta(days=365 * 24) or r.random() < 0.3:
            return
        spouse_sex = "female" if adult.sex == "male" else "male"
        spouse_born = min(
            adult.born + timedelta(days=r.randint(-2500, 2500)), TODAY - timedelta(days=365 * 20)
        )
        spouse = self._person(self._surname(), spouse_sex, spouse_born, home, self._phone())
        father, mother = (adult, spouse) if adult.sex == "male" else (spouse, adult)
        mother_age = (TODAY - mother.born).days // 365
        if mother_age < 45 and r.random() < self.rates.newborn_household:
            self._newborn(father, mother, home)
            return
        kids = r.choices([0, 1, 2], [0.3, 0.45, 0.25])[0] if mother_age < 65 else 0
        for _ in range(min(kids, room - 2)):
            youngest = max(0, mother_age - 45)
            kid_born = self._born(youngest, max(youngest, min(mother_age - 20, 40)))
            phone = mother.phone if (TODAY - kid_born).days < 16 * 365 else self._phone()
            kid = self._person(father.family, r.choice(["male", "female"]), kid_born, home, phone)
            if r.random() < self.rates.twin_household:
                self._twin(kid, home)

    def _make_namesake(self, person: Person) -> None:
        family, given, sex, year = self.rng.choice(self._namesake_groups)
        person.family, person.given, person.sex = family, given, sex
        person.born = date(year, self.rng.randint(1, 12), self.rng.randint(1, 28))
        if self.rng.random() < 0.2:  # same day as the group's first member
            person.born = date(year, 3, 15)
        self._ids.discard(person.national_id or "")
        person.national_id = self._national_id(person)
        person.tags.append("namesake")

    def _twin(self, kid: Person, home: tuple[str, str]) -> None:
        r = self.rng
        sex = kid.sex if r.random() < 0.6 else ("female" if kid.sex == "male" else "male")
        twin = self._person(kid.family, sex, kid.born, home, kid.phone)
        # twins usually share a character: 浩然/浩宇
        while twin.given == kid.given or len(twin.given) != len(kid.given):
            twin.given = self._given(sex)
        if len(kid.given) == 2 and twin.given[1] != kid.given[1]:
            twin.given = kid.given[0] + twin.given[1]
        region = (kid.national_id or "")[:6] or None
        self._ids.discard(twin.national_id or "")
        twin.national_id = self._national_id(twin, region)
        kid.tags.append("twin")
        twin.tags.append("twin")

    def _newborn(self, father: Person, mother: Person, home: tuple[str, str]) -> None:
        sex = self.rng.choice(["male", "female"])
        baby = self._person(
            father.family, sex, TODAY - timedelta(days=self.rng.randint(0, 20)), home, mother.phone
        )
        baby.national_id = None  # not registered yet
        baby.health_card = baby.passport = None
        baby.newborn_of = mother.family + mother.given
        baby.new_phone, baby.new_address = None, None
        baby.tags.append("newborn")

    def _foreigner(self, home: tuple[str, str]) -> None:
        r = self.rng
        sex = r.choice(["male", "female"])
        p = self._person(
            "", sex, self._born(18, 75), home, self._phone() if r.random() < 0.7 else None
        )
        self._ids.discard(p.national_id or "")
        p.national_id = None
        p.health_card = None
        p.latin = (r.choice(LATIN_FAMILY), r.choice(LATIN_GIVEN))
        p.passport = (r.choice(COUNTRIES), f"{r.randrange(10**8, 10**9)}")
        p.tags.append("foreigner")

    # -- records -------------------------------------------------------------------------------
    def _records(self, person: Person) -> Iterator[Record]:
        r = self.rng
        if person.newborn_of:
            hospitals = ["szmch", "szch"][: r.choice([1, 2])]
        else:
            k = r.choices([1, 2, 3], self.rates.records_weights)[0]
            hospitals = r.sample(list(HOSPITALS), k)
        for hospital in hospitals:
            self._mrn[hospital] += r.randint(1, 30)
            mrn = f"{hospital[:2].upper()}{self._mrn[hospital]}"
            patient, errors = self._patient(person, hospital, mrn)
            yield Record(f"{hospital}|{mrn}", person.pid, hospital, patient, tuple(errors))

    def _patient(self, p: Person, hospital: str, mrn: str) -> tuple[dict[str, Any], list[str]]:
        r, rates = self.rng, self.rates
        errors: list[str] = list(p.tags)
        identifiers: list[dict[str, str]] = [{"system": naming.mrn(hospital), "value": mrn}]
        born: date | None = p.born
        sex = p.sex
        has_id = p.national_id is not None and r.random() < HOSPITALS[hospital]
        if p.national_id and not has_id:
            errors.append("no-id")
        if has_id and p.national_id:
            value = p.national_id
            roll = r.random()
            if roll < rates.id_typo:
                pos = r.randrange(17)
                value = (
                    value[:pos] + str((int(value[pos]) + r.randint(1, 9)) % 10) + value[pos + 1 :]
                )
                errors.append("id-typo")
            elif roll < rates.id_typo + rates.id_contradicts_record:
                born = p.born + timedelta(days=r.choice([-1, 1, 31]))
                errors.append("id-contradicts-record")
            identifiers.append({"system": naming.NATIONAL_ID, "value": value})
        if p.passport and r.random() < (
            rates.passport_recorded_foreigner if p.latin else rates.passport_recorded_chinese
        ):
            country, number = p.passport
            if r.random() < 0.2:
                number = " ".join([number[:3], number[3:6], number[6:]])
            identifiers.append({"system": naming.passport(country), "value": number})
        if p.health_card and r.random() < rates.health_card_recorded:
            identifiers.append({"system": naming.HEALTH_CARD, "value": p.health_card})

        patient: dict[str, Any] = {"resourceType": "Patient", "identifier": identifiers}
        patient["name"] = [self._name(p, hospital, errors)]
        if not has_id and born is not None:
            roll = r.random()
            if roll < rates.dob_missing:
                born = None
                errors.append("dob-missing")
            elif (
                roll < rates.dob_missing + rates.dob_transposed
                and born.day <= 12
                and born.day != born.month
            ):
                born = born.replace(month=born.day, day=born.month)
                errors.append("dob-transposed")
            elif roll < rates.dob_missing + rates.dob_transposed + rates.dob_typo:
                born = _dob_typo(born, r)
                errors.append("dob-typo")
        if born is not None:
            patient["birthDate"] = born.isoformat()
        if r.random() >= rates.sex_missing:
            patient["gender"] = sex
        phone = p.phone
        if p.new_phone and r.random() < rates.new_phone:
            phone = p.new_phone
            errors.append("new-phone")
        if phone and r.random() >= rates.phone_missing:
            patient["telecom"] = [{"system": "phone", "value": _phone_style(phone, r)}]
        address = p.address
        if p.new_address and r.random() < rates.moved:
            address = p.new_address
            errors.append("moved")
        if r.random() >= rates.address_missing:
            patient["address"] = [_address_style(address, r)]
        return patient, errors

    def _name(self, p: Person, hospital: str, errors: list[str]) -> dict[str, Any]:
        r, rates = self.rng, self.rates
        if p.latin:
            family, given = p.latin
            return (
                {"family": family, "given": [given]}
                if r.random() < 0.7
                else {"text": f"{given} {family.upper()}"}
            )
        if p.newborn_of:
            return {"text": p.newborn_of + ("之子" if p.sex == "male" else "之女")}
        given = p.given
        roll = r.random()
        if roll < rates.homophone:
            given = self._homophone_slip(given, errors)
        elif roll < rates.homophone + rates.name_typo:
            i = r.randrange(len(given))
            pool = MALE_CHARS if p.sex == "male" else FEMALE_CHARS
            given = given[:i] + r.choice([c for c in pool if c != given[i]]) + given[i + 1 :]
            errors.append("name-typo")
        share = rates.pinyin_only_hkuszh if hospital == "hkuszh" else rates.pinyin_only
        if r.random() < share:
            fam = "".join(lazy_pinyin(p.family)).capitalize()
            giv = "".join(lazy_pinyin(given)).capitalize()
            errors.append("pinyin-only")
            if r.random() < rates.pinyin_swapped:
                fam, giv = giv, fam
                errors.append("swapped")
            return {"family": fam.upper(), "given": [giv]}
        style = r.random()
        if style < 0.5:
            return {"text": p.family + given}
        if style < 0.8:
            return {"family": p.family, "given": [given]}
        return {"family": p.family + given}

    def _homophone_slip(self, given: str, errors: list[str]) -> str:
        options = [
            (i, c) for i, ch in enumerate(given) for c in self._homophones.get(ch, ()) if c != ch
        ]
        if not options:
            return given
        i, c = self.rng.choice(options)
        errors.append("homophone")
        return given[:i] + c + given[i + 1 :]


def _homophone_index() -> dict[str, tuple[str, ...]]:
    chars = set(MALE_CHARS + FEMALE_CHARS + HOMOPHONE_POOL.replace(" ", ""))
    by_sound: dict[str, list[str]] = {}
    for c in sorted(chars):
        by_sound.setdefault(lazy_pinyin(c)[0], []).append(c)
    return {c: tuple(group) for group in by_sound.values() for c in group if len(group) > 1}


def _dob_typo(born: date, r: random.Random) -> date:
    for _ in range(20):
        s = f"{born:%Y%m%d}"
        pos = r.choice([2, 3, 5, 6, 7])  # decade, year, month and day digits
        s = s[:pos] + str(r.randrange(10)) + s[pos + 1 :]
        try:
            typo = date(int(s[:4]), int(s[4:6]), int(s[6:]))
        except ValueError:
            continue
        if typo != born and typo <= TODAY:
            return typo
    return born


def _phone_style(phone: str, r: random.Random) -> str:
    style = r.random()
    if style < 0.7:
        return phone
    if style < 0.85:
        return f"+86 {phone[:3]} {phone[3:7]} {phone[7:]}"
    return f"{phone[:3]}-{phone[3:7]}-{phone[7:]}"


def _address_style(address: str, r: random.Random) -> dict[str, Any]:
    style = r.random()
    if style < 0.4:
        return {"text": address}
    if style < 0.7:
        return {"text": "广东省深圳市" + address + "室"}
    district_end = address.index("区") + 1
    return {"line": [address[district_end:]], "district": address[:district_end], "city": "深圳市"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=6)
    args = parser.parse_args(argv)
    population = Population(args.persons, args.seed)
    for rec in population.records:
        line = {"record_id": rec.record_id, "person": rec.person, "hospital": rec.hospital,
                "errors": list(rec.errors), "patient": rec.patient}  # fmt: skip
        sys.stdout.write(json.dumps(line, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
