"""GB 11643-1999 identity numbers: check character, embedded birth date and sex."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hie.identity import national_id
from hie.identity.errors import InvalidIdentifier
from hie.outcome import Invalid

TODAY = date(2026, 11, 25)


def test_check_digits_of_the_shared_demo_patients() -> None:
    # The demo people other engineers' fixtures use; the prefixes come from the brief.
    assert national_id.check_digit("44030519800315123") == "1"  # 张伟
    assert national_id.check_digit("44030419920708242") == "4"  # 李娜
    assert national_id.check_digit("44030619751130386") == "2"  # 王芳


def test_check_digit_x_and_zero() -> None:
    # The standard's own example (GB 11643-1999 Annex A): 11010519491231002X.
    assert national_id.check_digit("11010519491231002") == "X"
    assert national_id.check_digit("44052418800101001") == "4"
    with pytest.raises(ValueError):
        national_id.check_digit("1234")


def test_validate_reads_birth_date_sex_and_region() -> None:
    nid = national_id.validate("11010519491231002x", today=TODAY)
    assert nid.value == "11010519491231002X"
    assert nid.region == "110105"
    assert nid.birth_date == date(1949, 12, 31)
    assert nid.gender == "female"  # 17th digit 2 is even
    man = national_id.validate("440305198003151231", birth_date=date(1980, 3, 15), gender="male")
    assert man.gender == "male" and man.sequence == "123"


def test_full_width_digits_from_an_input_method_are_accepted() -> None:
    assert (
        national_id.validate("４４０３０５１９８００３１５１２３１").value == "440305198003151231"
    )


@pytest.mark.parametrize(
    ("value", "kind", "words"),
    [
        ("44030519800315123", "length", "18 characters"),
        ("4403051980031512A1", "characters", "17 digits"),
        ("000305198003151231", "region", "address code 000305"),
        ("440305198003151232", "check-digit", "check character is 2 but GB 11643 gives 1"),
        ("440305198002301235", "birth-date", "19800230 is not a calendar date"),
        ("440305189912311234", "birth-date", "out of range"),
        ("440305202712011230", "birth-date", "out of range"),
    ],
)
def test_invalid_numbers_are_rejected_with_the_reason(value: str, kind: str, words: str) -> None:
    if kind in ("birth-date", "region"):
        value = value[:17] + national_id.check_digit(value[:17])  # only that field is wrong
    with pytest.raises(InvalidIdentifier) as caught:
        national_id.validate(value, today=TODAY)
    assert caught.value.kind == kind
    assert words in caught.value.reason


def test_birth_date_and_sex_must_agree_with_the_record() -> None:
    with pytest.raises(InvalidIdentifier) as caught:
        national_id.validate("440306197511303862", birth_date=date(1975, 11, 3), today=TODAY)
    assert caught.value.kind == "birth-date-mismatch"
    assert "1975-11-30" in caught.value.reason and "1975-11-03" in caught.value.reason
    with pytest.raises(InvalidIdentifier) as sex:
        national_id.validate("440306197511303862", gender="male", today=TODAY)
    assert sex.value.kind == "gender-mismatch"
    # "unknown"/"other" are not compared
    assert national_id.validate("440306197511303862", gender="unknown", today=TODAY)


def test_invalid_identifier_becomes_an_operation_outcome() -> None:
    with pytest.raises(Invalid) as caught:
        national_id.validate("440305198003151232", today=TODAY)
    err = caught.value
    assert err.status == 400
    outcome = err.outcome()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "invalid"
    assert outcome["issue"][0]["expression"] == ["Patient.identifier"]
    assert "check character" in outcome["issue"][0]["diagnostics"]


@given(
    born=st.dates(min_value=date(1900, 1, 1), max_value=TODAY),
    gender=st.sampled_from(["male", "female"]),
    serial=st.integers(0, 499),
)
def test_made_numbers_validate_and_say_what_was_asked(
    born: date, gender: national_id.Gender, serial: int
) -> None:
    value = national_id.make("440305", born, gender, serial)
    nid = national_id.validate(value, birth_date=born, gender=gender, today=TODAY)
    assert (nid.birth_date, nid.gender) == (born, gender)


@given(
    born=st.dates(min_value=date(1900, 1, 1), max_value=TODAY),
    serial=st.integers(0, 499),
    position=st.integers(0, 17),
    data=st.data(),
)
def test_every_single_character_typo_is_caught(
    born: date, serial: int, position: int, data: st.DataObject
) -> None:
    # MOD 11-2 detects all single-character substitutions (ISO 7064 §5).
    value = national_id.make("440305", born, "female", serial)
    alphabet = "0123456789X" if position == 17 else "0123456789"
    typo = data.draw(st.sampled_from([c for c in alphabet if c != value[position]]))
    wrong = value[:position] + typo + value[position + 1 :]
    with pytest.raises(InvalidIdentifier):
        national_id.validate(wrong, today=TODAY)


def test_make_rejects_serials_out_of_range() -> None:
    with pytest.raises(ValueError):
        national_id.make("440305", date(1980, 1, 1), "male", 500)
