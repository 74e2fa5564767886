"""Fellegi–Sunter comparison levels, weights, hard non-matches and conflicts."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import date

import pytest

from hie.identity import Traits
from hie.identity.names import NameForm
from hie.identity.scoring import (
    DEFAULT_WEIGHTS,
    PROBABILITIES,
    compare,
    conflicts,
    date_level,
    name_level,
    within_one_edit,
)

TraitsOf = Callable[[str], Traits]
ZW = NameForm("ZHANG", "WEI", "张伟")


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("ZHANGWEI", "ZHANGWEI", True),
        ("ZHANGWEI", "ZHANGWEN", True),  # substitution
        ("ZHANGWEI", "ZHNAGWEI", True),  # adjacent swap
        ("ZHANGWEI", "ZHANGWI", True),  # deletion
        ("ZHANGWEI", "ZHANGWEII", True),  # insertion
        ("ZHANGWEI", "ZHANGWU", False),
        ("ZHANGWEI", "WEIZHANG", False),
        ("张伟", "张玮", True),
    ],
)
def test_within_one_edit(a: str, b: str, expected: bool) -> None:
    assert within_one_edit(a, b) is expected
    assert within_one_edit(b, a) is expected


@pytest.mark.parametrize(
    ("other", "level"),
    [
        (NameForm("ZHANG", "WEI", "张伟"), "exact"),
        (NameForm("ZHANG", "WEI"), "pinyin"),
        (NameForm("ZHANG", "WEI", "章伟"), "homophone"),
        (NameForm("WEI", "ZHANG"), "swapped"),
        (NameForm("ZHANG", "WEN", "张文"), "typo"),
        (NameForm("ZHANG", "XIUYING", "张秀英"), "family"),
        (NameForm("LI", "NA", "李娜"), "disagree"),
        (NameForm("ZHANG", "WEIZHIZI", "张伟之子", "newborn"), "placeholder"),
    ],
)
def test_name_levels(other: NameForm, level: str) -> None:
    assert name_level([ZW], [other]) == level
    assert name_level([ZW], []) is None


@pytest.mark.parametrize(
    ("other", "level"),
    [
        (date(1980, 3, 15), "exact"),
        (date(1980, 5, 3), "transposed"),
        (date(1980, 3, 16), "typo"),
        (date(1908, 3, 15), "typo"),  # 1980 → 1908 is one swap
        (date(1980, 3, 28), "year-month"),
        (date(1979, 12, 1), "disagree"),
    ],
)
def test_birth_date_levels(other: date, level: str) -> None:
    base = date(1980, 3, 5) if level == "transposed" else date(1980, 3, 15)
    assert date_level(frozenset({base}), frozenset({other})) == level


def test_weights_are_log_likelihood_ratios() -> None:
    m, u = PROBABILITIES["name"]["exact"]
    assert DEFAULT_WEIGHTS.of("name", "exact") == pytest.approx(math.log2(m / u))
    # every agreement outweighs its disagreement, partial levels sit in between
    for field, levels in DEFAULT_WEIGHTS.table.items():
        if "disagree" in levels:
            assert max(levels.values()) > 0 > levels["disagree"], field


def test_same_person_scores_the_sum_of_its_fields(traits_of: TraitsOf) -> None:
    c = compare(traits_of("zhangwei-hkuszh-typo"), traits_of("zhangwei-szph"))
    assert c.levels == {
        "name": "pinyin",  # the pinyin form "ZHANG Wei" meets 张伟 without characters
        "birth_date": "exact",
        "gender": "agree",
        "phone": "agree",
        "address": "exact",
    }
    w = DEFAULT_WEIGHTS
    expected = sum(w.of(f, lvl) for f, lvl in c.levels.items())
    assert c.score == pytest.approx(expected)
    assert c.hard_nonmatch is None and c.review_only == ()


def test_different_validated_national_ids_are_a_hard_non_match(traits_of: TraitsOf) -> None:
    c = compare(traits_of("twin-haoyu-szch"), traits_of("twin-haoran-szch"))
    assert c.hard_nonmatch == "different validated national IDs"


def test_twin_names_are_review_only_whatever_the_score(traits_of: TraitsOf) -> None:
    c = compare(traits_of("twin-haoyu-pkuszh-noid"), traits_of("twin-haoran-szch"))
    assert c.levels["name"] == "typo"
    assert c.score > 30  # high: everything but one character agrees
    assert any("twin" in r for r in c.review_only)


def test_mother_and_newborn_score_low(traits_of: TraitsOf) -> None:
    c = compare(traits_of("newborn-of-lina-szmch"), traits_of("lina-szph"))
    assert "name" not in c.levels
    assert c.levels["birth_date"] == "disagree" and c.levels["gender"] == "disagree"
    assert c.score < 18
    assert any("placeholder" in r for r in c.review_only)


def test_conflicts_of_a_shared_identifier(traits_of: TraitsOf) -> None:
    record = traits_of("wangfang-pkuszh")
    patient = traits_of("wangfang-szph-first-visit").merge(traits_of("wangfang-szph-id-added"))
    assert conflicts(record, patient) == [
        "birth date 1975-11-30 differs from the patient's 1975-11-03"
    ]
    assert conflicts(record, traits_of("wangfang-szph-id-added")) == []
    assert "names differ entirely" in conflicts(record, traits_of("lina-szph"))
