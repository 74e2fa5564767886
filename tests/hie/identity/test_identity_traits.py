"""Traits read from FHIR Patients: names, phones, addresses, identifiers (golden + rules)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from hie import naming
from hie.identity import Traits, from_patient
from hie.identity.blocking import blocking_keys, query_keys
from hie.identity.names import NameForm, forms_of, fuzzy, latin, pinyin
from hie.identity.traits import address_parts, phone_digits

FIXTURES = Path(__file__).parent / "fixtures"
EXPECTED: dict[str, Any] = json.loads((FIXTURES / "expected-traits.json").read_text("utf-8"))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_golden_traits(name: str, patients: dict[str, dict[str, Any]]) -> None:
    assert from_patient(patients[name]).to_json() == EXPECTED[name]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_traits_survive_a_json_round_trip(name: str, patients: dict[str, dict[str, Any]]) -> None:
    traits = from_patient(patients[name])
    assert Traits.from_json(json.loads(json.dumps(traits.to_json()))) == traits


@pytest.mark.parametrize(
    ("human_name", "expected"),
    [
        ({"text": "张伟"}, [("ZHANG", "WEI", "张伟")]),
        ({"family": "张伟"}, [("ZHANG", "WEI", "张伟")]),  # whole name in family
        ({"family": "欧阳", "given": ["娜娜"]}, [("OUYANG", "NANA", "欧阳娜娜")]),
        ({"text": "曾小贤"}, [("ZENG", "XIAOXIAN", "曾小贤")]),  # surname reading, not "ceng"
        ({"text": "单田芳"}, [("SHAN", "TIANFANG", "单田芳")]),
        ({"text": "吕 布"}, [("LU", "BU", "吕布")]),
        ({"family": "LYU", "given": ["Bu"]}, [("LU", "BU", None)]),  # passport spelling of ü
        (
            {"family": "Müller-Lüdenscheidt", "given": ["José"]},
            [("MULLERLUDENSCHEIDT", "JOSE", None)],
        ),
        ({"text": "John SMITH"}, [("SMITH", "JOHN", None)]),
        (
            {"text": "张伟", "family": "Zhang", "given": ["Wei"]},
            [("ZHANG", "WEI", "张伟"), ("ZHANG", "WEI", None)],
        ),
    ],
)
def test_name_forms(human_name: dict[str, Any], expected: list[tuple[Any, ...]]) -> None:
    forms = forms_of(human_name)
    assert [(f.family, f.given, f.hanzi) for f in forms] == expected
    assert all(f.placeholder is None for f in forms)


@pytest.mark.parametrize(
    ("human_name", "placeholder"),
    [
        ({"text": "张伟之子"}, "newborn"),
        ({"text": "李娜之女二"}, "newborn"),
        ({"text": "王芳婴儿"}, "newborn"),
        ({"text": "Baby of SMITH"}, "newborn"),
        ({"family": "Smith", "given": ["Baby", "Boy"]}, "newborn"),
        ({"text": "B/O Smith"}, "newborn"),
        ({"text": "无名氏"}, "unknown"),
        ({"family": "Doe", "given": ["John"]}, "unknown"),
    ],
)
def test_placeholder_names(human_name: dict[str, Any], placeholder: str) -> None:
    assert {f.placeholder for f in forms_of(human_name)} == {placeholder}


def test_bo_is_a_given_name_not_baby_of() -> None:
    # "Bo" (博/波) is a common pinyin given name; only "B/O" means baby-of.
    assert forms_of({"family": "Wang", "given": ["Bo"]})[0].placeholder is None


def test_pinyin_and_latin_helpers() -> None:
    assert pinyin("张子涵") == "ZHANGZIHAN"
    assert latin(" o'Brien-Smith ") == "OBRIENSMITH"
    assert fuzzy("ZHANGLING") == fuzzy("ZANGNIN")  # zh/z, -ng/-n, l/n merged
    assert NameForm("ZHANG", "WEI").reversed == "WEIZHANG"


@pytest.mark.parametrize(
    ("raw", "digits"),
    [
        ("+86 138 1234 5678", "13812345678"),
        ("0086-13812345678", "13812345678"),
        ("(0755) 8888-1234", "075588881234"),
        ("１３８１２３４５６７８", "13812345678"),
        ("13800138000", None),  # the number everyone types
        ("00000000000", None),
        ("12345", None),
    ],
)
def test_phone_digits(raw: str, digits: str | None) -> None:
    assert phone_digits(raw) == digits


def test_address_parts_drop_province_and_city() -> None:
    a = address_parts("中国广东省深圳市南山区科技园路10号3栋502室")
    b = address_parts("南山区 科技园路 10号 3栋 502")
    assert a == b == {"南山区", "科技园路", "10号", "3栋", "502"}
    assert address_parts("12 Baker Street, London") == {"12", "BAKER", "STREET", "LONDON"}
    # an estate name without a suffix still separates from its building number
    assert address_parts("福田区学府路73号幸福海岸37栋1910") == {
        "福田区",
        "学府路",
        "73号",
        "幸福海岸",
        "37栋",
        "1910",
    }


def test_identifiers_are_normalised_and_others_kept() -> None:
    traits = from_patient(
        {
            "resourceType": "Patient",
            "identifier": [
                {"system": naming.passport("usa"), "value": " e 123 456 78 "},
                {"system": naming.NATIONAL_ID, "value": "11010519491231002x"},
                {"system": "urn:oid:1.2.3", "value": "X-1"},
                {"system": naming.HEALTH_CARD},  # no value: ignored
            ],
        }
    )
    assert traits.identifiers == {
        (naming.passport("USA"), "E12345678"),
        (naming.NATIONAL_ID, "11010519491231002X"),
        ("urn:oid:1.2.3", "X-1"),
    }
    # no recorded birth date or sex: the national ID's are used
    assert traits.birth_dates == frozenset()
    assert traits.effective_birth_dates == {date(1949, 12, 31)}
    assert traits.effective_genders == {"female"}


def test_partial_or_bad_birth_dates_are_not_used() -> None:
    assert from_patient({"birthDate": "1980-03"}).birth_dates == frozenset()
    assert from_patient({"birthDate": "1980-02-30"}).birth_dates == frozenset()


def test_merge_is_the_union(patients: dict[str, dict[str, Any]]) -> None:
    a = from_patient(patients["zhangwei-szph"])
    b = from_patient(patients["zhangwei-hkuszh-typo"])
    merged = a.merge(b)
    assert merged.identifiers == a.identifiers | b.identifiers
    assert [n.hanzi for n in merged.names] == ["张伟", "张玮", None]


def test_blocking_keys_survive_transposed_dates_and_swapped_names() -> None:
    straight = from_patient(
        {"name": [{"family": "Zhang", "given": ["Wei"]}], "birthDate": "1980-03-05"}
    )
    mangled = from_patient(
        {"name": [{"family": "Wei", "given": ["Zhang"]}], "birthDate": "1980-05-03"}
    )
    shared = set(blocking_keys(straight)) & set(blocking_keys(mangled))
    assert "bd:19800305Z" in shared
    assert "nm:ZANWEI:1980" in shared


def test_blocking_keys_include_identifiers_and_phones(
    patients: dict[str, dict[str, Any]],
) -> None:
    keys = blocking_keys(from_patient(patients["zhangwei-szph"]))
    assert f"id:{naming.NATIONAL_ID}|440305198003151231" in keys
    assert "ph:13812345678" in keys


def test_placeholder_names_make_no_name_key(patients: dict[str, dict[str, Any]]) -> None:
    keys = blocking_keys(from_patient(patients["newborn-of-lina-szmch"]))
    assert not [k for k in keys if k.startswith("nm:")]


def test_name_only_keys_are_queried_only_without_a_birth_date() -> None:
    dated = from_patient({"name": [{"text": "张伟"}], "birthDate": "1980-03-15"})
    undated = from_patient({"name": [{"text": "张伟"}]})
    assert "nn:ZANWEI" in blocking_keys(dated)  # stored, so an undated record can find it
    assert "nn:ZANWEI" not in query_keys(dated)
    assert "nn:ZANWEI" in query_keys(undated)
    assert "nd:ZANWEI:0315" in query_keys(dated)  # a wrong year still meets
