"""The 18-character citizen identity number (公民身份号码, GB 11643-1999).

Layout (GB 11643-1999 §4)::

    440305 19800315 123 X
    │      │        │   └ check character, ISO 7064:1983 MOD 11-2 (§6.2): 0-9 or X (= 10)
    │      │        └ sequence code; its last digit (the 17th character) is odd for men,
    │      │          even for women (§5.3)
    │      └ birth date YYYYMMDD (§5.2)
    └ address code (GB/T 2260 county code of the place of registration, §5.1)

Only the shape of the address code is checked (a known province-level prefix): county codes
are renamed and merged every year and an old code stays valid on an issued card. The 2023
permanent-residence card for foreigners uses the same 18-character layout with a leading
``9`` and the same check character, so it passes too.

A wrong check character catches every single-character typo and every swap of two adjacent
characters, which is why a failing number is rejected rather than used for linking.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import date
from typing import Literal

from hie.identity.errors import InvalidIdentifier

Gender = Literal["male", "female"]

# GB 11643-1999 §6.2: W_i = 2^(i-1) mod 11 for positions 18..2, written left to right.
WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
# Index = (Σ a_i·W_i) mod 11 → check character.
CHECK_CHARACTERS = "10X98765432"

# GB/T 2260 province-level codes (first two digits); 81/82/83 are the Hong Kong, Macao and
# Taiwan residence permits, 9x the 2023 foreigners' permanent-residence card.
PROVINCE_CODES = frozenset(
    {"11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37"}
    | {"41", "42", "43", "44", "45", "46", "50", "51", "52", "53", "54"}
    | {"61", "62", "63", "64", "65", "71", "81", "82", "83"}
)
EARLIEST_BIRTH = date(1900, 1, 1)


@dataclass(frozen=True)
class NationalId:
    """A validated identity number and what it says about its holder."""

    value: str
    region: str
    birth_date: date
    gender: Gender
    sequence: str


def normalise(value: str) -> str:
    """Full-width digits and ``ｘ`` (common from Chinese input methods) → ASCII, upper case."""
    return unicodedata.normalize("NFKC", value).strip().upper()


def check_digit(first17: str) -> str:
    """The check character for the first 17 digits (GB 11643-1999 §6.2, MOD 11-2)."""
    if len(first17) != 17 or not first17.isascii() or not first17.isdigit():
        raise ValueError(f"expected 17 digits, got {first17!r}")
    total = sum(int(c) * w for c, w in zip(first17, WEIGHTS, strict=True))
    return CHECK_CHARACTERS[total % 11]


def validate(
    value: str,
    *,
    birth_date: date | None = None,
    gender: str | None = None,
    today: date | None = None,
) -> NationalId:
    """Check ``value`` and its agreement with the record it came with.

    ``birth_date`` and ``gender`` are the record's own (FHIR ``Patient.birthDate`` and
    ``Patient.gender``); when given they must agree with the number, because a number whose
    date or sex contradicts its record belongs to someone else (a parent's card used for a
    child is the usual case) and linking by it would be wrong. ``gender`` values other than
    ``male``/``female`` are not compared. ``today`` bounds the birth date (default: the
    machine's date).
    """
    v = normalise(value)
    if len(v) != 18:
        raise InvalidIdentifier(f"national ID must have 18 characters, got {len(v)}", kind="length")
    first17, last = v[:17], v[17]
    if not (first17.isascii() and first17.isdigit()) or last not in "0123456789X":
        raise InvalidIdentifier(
            "national ID must be 17 digits followed by a digit or X", kind="characters"
        )
    if v[:2] not in PROVINCE_CODES and v[0] != "9":
        raise InvalidIdentifier(
            f"national ID address code {v[:6]} has no known province prefix", kind="region"
        )
    expected = check_digit(first17)
    if last != expected:
        raise InvalidIdentifier(
            f"national ID check character is {last} but GB 11643 gives {expected}: "
            "the number was mistyped",
            kind="check-digit",
        )
    try:
        born = date(int(v[6:10]), int(v[10:12]), int(v[12:14]))
    except ValueError:
        raise InvalidIdentifier(
            f"national ID birth date {v[6:14]} is not a calendar date", kind="birth-date"
        ) from None
    if born < EARLIEST_BIRTH or born > (today or date.today()):
        raise InvalidIdentifier(
            f"national ID birth date {born.isoformat()} is out of range", kind="birth-date"
        )
    sex: Gender = "male" if int(v[16]) % 2 else "female"
    if birth_date is not None and birth_date != born:
        raise InvalidIdentifier(
            f"national ID says born {born.isoformat()} but the record says "
            f"{birth_date.isoformat()}",
            kind="birth-date-mismatch",
        )
    if gender in ("male", "female") and gender != sex:
        raise InvalidIdentifier(
            f"national ID says {sex} but the record says {gender}", kind="gender-mismatch"
        )
    return NationalId(value=v, region=v[:6], birth_date=born, gender=sex, sequence=v[14:17])


def make(region: str, birth_date: date, gender: Gender, serial: int) -> str:
    """A valid number for synthetic people: ``serial`` 0-499 picks the sequence code.

    The sequence's last digit gets the parity ``gender`` requires (GB 11643-1999 §5.3).
    """
    if not (0 <= serial < 500):
        raise ValueError("serial must be in 0..499")
    sequence = serial * 2 + (1 if gender == "male" else 0)
    first17 = f"{region}{birth_date:%Y%m%d}{sequence:03d}"
    return first17 + check_digit(first17)
