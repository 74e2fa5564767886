"""Fellegi–Sunter match scores between a record and a candidate patient.

Fellegi & Sunter (1969), "A theory for record linkage", JASA 64:1183. For each field the
pair falls in one agreement level γ; its weight is ``log2(m/u)`` where ``m = P(γ | same
person)`` and ``u = P(γ | different people)``; the score is the sum over fields (a field
missing on either side adds 0). Partial agreement levels carry their own m and u:

======== ==================================================================================
name     exact characters · same pinyin, one side without characters · homophone (same
         pinyin, other characters: the input-method slip) · family/given swapped · one
         edit apart (typo) · only the family name agrees · disagree
birth    exact · day and month transposed · one digit wrong · same year and month · disagree
sex      agree · disagree
phone    a number in common · disagree
address  same parts · at least half the parts · disagree
ids      health card, passport (same country), MRN (same hospital): agree · disagree
======== ==================================================================================

The m and u values below are priors for a regional population (u from name and birthday
frequencies, m from published error rates of hospital registration data), checked on the
synthetic population of ``bench/population.py``; they are not fitted to it.

Besides the score, a comparison says what must stop an automatic link whatever the score:

* ``hard_nonmatch``: two different validated national IDs are two people (twins included);
* ``review_only``: reasons a human must look (names that differ beyond a homophone, sex or
  birth date that differ, a placeholder newborn/unknown name, the same hospital giving two
  MRNs). Twins share birth date, address, phone and often all but one character of their
  names: only the name tells them apart, so a name that merely *resembles* is never enough.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date

from hie import naming
from hie.identity.names import NameForm
from hie.identity.traits import Traits

# field → level → (m, u)
PROBABILITIES: Mapping[str, Mapping[str, tuple[float, float]]] = {
    "name": {
        "exact": (0.92, 0.0002),
        "pinyin": (0.92, 0.0012),
        "homophone": (0.03, 0.001),
        "swapped": (0.02, 0.0005),
        "typo": (0.03, 0.003),
        "family": (0.01, 0.06),
        "disagree": (0.01, 0.94),
    },
    "birth_date": {
        "exact": (0.95, 0.00004),
        "transposed": (0.008, 0.00004),
        "typo": (0.02, 0.0005),
        "year-month": (0.005, 0.0012),
        "disagree": (0.017, 0.998),
    },
    "gender": {"agree": (0.98, 0.5), "disagree": (0.02, 0.5)},
    "phone": {"agree": (0.75, 0.002), "disagree": (0.25, 0.998)},
    "address": {"exact": (0.55, 0.002), "partial": (0.2, 0.01), "disagree": (0.25, 0.988)},
    "health_card": {"agree": (0.97, 0.00001), "disagree": (0.1, 0.99999)},
    "passport": {"agree": (0.98, 0.000001), "disagree": (0.05, 0.999999)},
    "mrn": {"agree": (0.999, 0.000001), "disagree": (0.02, 0.999999)},
    "national_id": {"agree": (0.999, 0.0000001)},
}

NAME_LEVELS = ("exact", "pinyin", "homophone", "swapped", "typo", "family", "disagree")
# Name levels that can carry an automatic link; anything weaker could be a twin or relative.
NAME_LINKABLE = frozenset({"exact", "pinyin", "homophone", "swapped"})
DATE_LEVELS = ("exact", "transposed", "typo", "year-month", "disagree")


@dataclass(frozen=True)
class Weights:
    """Field → level → log2(m/u)."""

    table: Mapping[str, Mapping[str, float]]

    @classmethod
    def from_probabilities(cls, mu: Mapping[str, Mapping[str, tuple[float, float]]]) -> Weights:
        return cls(
            {
                f: {lvl: math.log2(m / u) for lvl, (m, u) in levels.items()}
                for f, levels in mu.items()
            }
        )

    def of(self, field: str, level: str) -> float:
        return self.table[field][level]


DEFAULT_WEIGHTS = Weights.from_probabilities(PROBABILITIES)


@dataclass(frozen=True)
class Comparison:
    """The outcome of comparing a record with one candidate."""

    score: float
    levels: Mapping[str, str]
    hard_nonmatch: str | None = None
    review_only: tuple[str, ...] = ()


def within_one_edit(a: str, b: str) -> bool:
    """Damerau–Levenshtein distance ≤ 1 (one substitution, insertion, deletion or swap)."""
    if a == b:
        return True
    la, lb = len(a), len(b)
    if abs(la - lb) > 1:
        return False
    if la == lb:
        diffs = [i for i in range(la) if a[i] != b[i]]
        if len(diffs) == 1:
            return True
        return (
            len(diffs) == 2
            and diffs[1] == diffs[0] + 1
            and a[diffs[0]] == b[diffs[1]]
            and a[diffs[1]] == b[diffs[0]]
        )
    if la > lb:
        a, b = b, a
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    return a[i:] == b[i + 1 :]


def _name_pair(a: NameForm, b: NameForm) -> int:
    if a.hanzi and b.hanzi and a.hanzi == b.hanzi:
        return 0
    if a.full == b.full:
        if a.hanzi and b.hanzi:
            return 2
        return 1 if (a.hanzi or b.hanzi) else 0
    if a.full == b.reversed:
        return 3
    if (a.hanzi and b.hanzi and within_one_edit(a.hanzi, b.hanzi)) or within_one_edit(
        a.full, b.full
    ):
        return 4
    if a.family == b.family:
        return 5
    return 6


def name_level(a: Iterable[NameForm], b: Iterable[NameForm]) -> str | None:
    """Best agreement level between two sets of name forms; ``placeholder`` if one side
    has only placeholder names; None if a side has no name."""
    a, b = list(a), list(b)
    if not a or not b:
        return None
    real_a = [f for f in a if f.placeholder is None]
    real_b = [f for f in b if f.placeholder is None]
    if not real_a or not real_b:
        return "placeholder"
    return NAME_LEVELS[min(_name_pair(x, y) for x in real_a for y in real_b)]


def _date_pair(a: date, b: date) -> int:
    if a == b:
        return 0
    if a.year == b.year and a.month == b.day and a.day == b.month:
        return 1
    if within_one_edit(f"{a:%Y%m%d}", f"{b:%Y%m%d}"):
        return 2
    if a.year == b.year and a.month == b.month:
        return 3
    return 4


def date_level(a: frozenset[date], b: frozenset[date]) -> str | None:
    if not a or not b:
        return None
    return DATE_LEVELS[min(_date_pair(x, y) for x in a for y in b)]


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


def address_level(a: frozenset[frozenset[str]], b: frozenset[frozenset[str]]) -> str | None:
    if not a or not b:
        return None
    if a & b:
        return "exact"
    best = max(_jaccard(x, y) for x in a for y in b)
    return "partial" if best >= 0.5 else "disagree"


def _set_level(a: frozenset[str], b: frozenset[str]) -> str | None:
    if not a or not b:
        return None
    return "agree" if a & b else "disagree"


def _by_group(ids: Iterable[tuple[str, str]]) -> dict[str, frozenset[str]]:
    groups: dict[str, set[str]] = {}
    for system, value in ids:
        groups.setdefault(system, set()).add(value)
    return {k: frozenset(v) for k, v in groups.items()}


def compare(record: Traits, candidate: Traits, weights: Weights = DEFAULT_WEIGHTS) -> Comparison:
    """Score ``record`` against ``candidate`` (a patient's merged traits)."""
    levels: dict[str, str] = {}
    review: list[str] = []
    hard: str | None = None

    rec_ids = {n.value for n in record.national_ids}
    cand_ids = {n.value for n in candidate.national_ids}
    if rec_ids and cand_ids:
        if rec_ids & cand_ids:
            levels["national_id"] = "agree"
        else:
            hard = "different validated national IDs"

    name = name_level(record.names, candidate.names)
    if name is None:
        review.append("no name to compare")
    elif name == "placeholder":
        review.append("placeholder name (newborn or unknown): never linked automatically")
    else:
        levels["name"] = name
        if name not in NAME_LINKABLE:
            review.append(f"names differ ({name}): could be a twin or relative")

    born = date_level(record.effective_birth_dates, candidate.effective_birth_dates)
    if born is None:
        review.append("no birth date to compare")
    else:
        levels["birth_date"] = born
        if born in ("year-month", "disagree"):
            review.append("birth dates differ")

    sex = _set_level(record.effective_genders, candidate.effective_genders)
    if sex is not None:
        levels["gender"] = sex
        if sex == "disagree":
            review.append("sex differs")

    phone = _set_level(record.phones, candidate.phones)
    if phone is not None:
        levels["phone"] = phone
    address = address_level(record.addresses, candidate.addresses)
    if address is not None:
        levels["address"] = address
    card = _set_level(record.of_system(naming.HEALTH_CARD), candidate.of_system(naming.HEALTH_CARD))
    if card is not None:
        levels["health_card"] = card

    for key, group_of in (("passport", record.passports), ("mrn", record.mrns)):
        mine, theirs = (
            _by_group(group_of),
            _by_group(candidate.passports if key == "passport" else candidate.mrns),
        )
        shared = [s for s in mine if s in theirs]
        if shared:
            agree = any(mine[s] & theirs[s] for s in shared)
            levels[key] = "agree" if agree else "disagree"
            if key == "mrn" and not agree:
                review.append("the same hospital holds them under different MRNs")

    score = sum(weights.of(f, lvl) for f, lvl in levels.items())
    return Comparison(score=score, levels=levels, hard_nonmatch=hard, review_only=tuple(review))


def conflicts(record: Traits, patient: Traits) -> list[str]:
    """Why a record that shares a strong identifier with ``patient`` may still be someone else.

    The issue's rule: the same national ID (or passport) with a different birth date or sex
    goes to review, never to an automatic link. A name that agrees in nothing (not even a
    homophone, typo or the family name) is treated the same way: a valid number typed into
    the wrong person's record is the usual cause.
    """
    reasons: list[str] = []
    mine, theirs = record.effective_birth_dates, patient.effective_birth_dates
    if mine and theirs and not (mine & theirs):
        reasons.append(f"birth date {_dates(mine)} differs from the patient's {_dates(theirs)}")
    g_mine, g_theirs = record.effective_genders, patient.effective_genders
    if g_mine and g_theirs and not (g_mine & g_theirs):
        reasons.append(f"sex {_words(g_mine)} differs from the patient's {_words(g_theirs)}")
    ids_mine = {n.value for n in record.national_ids}
    ids_theirs = {n.value for n in patient.national_ids}
    if ids_mine and ids_theirs and not (ids_mine & ids_theirs):
        reasons.append("the record and the patient carry different national IDs")
    if name_level(record.names, patient.names) == "disagree":
        reasons.append("names differ entirely")
    return reasons


def _dates(ds: frozenset[date]) -> str:
    return "/".join(sorted(d.isoformat() for d in ds))


def _words(ws: frozenset[str]) -> str:
    return "/".join(sorted(ws))
