"""The demographic traits a match is decided on, read from a FHIR R4 ``Patient``.

A :class:`Traits` is normalised once, when a record arrives, so that comparing it with many
candidates is cheap. The same class holds one record's traits and an exchange patient's
(the union over its linked records, :meth:`Traits.merge`): every field is a set.

Identifier values are checked here. A national ID that fails GB 11643 or contradicts the
record's own birth date or sex raises :class:`~hie.identity.errors.InvalidIdentifier` and
the record is not linked at all (ingest dead-letters it, HTTP answers an OperationOutcome):
guessing which of the two fields is wrong is not the exchange's job.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from hie import naming
from hie.identity import national_id
from hie.identity.errors import InvalidIdentifier
from hie.identity.names import NameForm, name_forms

Identifier = tuple[str, str]  # (system, value)

# Mobile numbers everyone types when the patient has none.
_JUNK_PHONES = frozenset({"13800138000", "12345678901", "13888888888", "13000000000"})
_ADDRESS_PREFIX = re.compile(r"^(中华人民共和国|中国)")
_DIGITS_START = re.compile(r"(?<=\D)(?=\d)")
_ROOM = re.compile(r"^(\d+)[室房]$")  # "502室" and a bare "502" are the same room
# Address parts end in one of these (GB/T 2260 levels, then street, building, unit, room).
_ADDRESS_PART = re.compile(
    r".+?(?:自治区|自治州|街道|社区|单元|大道|花园|小区|大厦|公寓|新村|"
    r"省|市|区|县|镇|乡|村|路|街|巷|里|弄|号|栋|幢|座|楼|层|室|苑|城|院)|.+$"
)


@dataclass(frozen=True)
class Traits:
    """Normalised traits of one record, or of one exchange patient (union of its records).

    * ``identifiers``: (system, value) with values normalised (national ID upper case,
      passports without spaces);
    * ``national_ids``: the validated national IDs among them (their embedded birth date and
      sex are known);
    * ``birth_dates``/``genders``: as *recorded* (``Patient.birthDate``/``gender``); a
      national ID's embedded values are in ``national_ids``, see :attr:`effective_birth_dates`;
    * ``phones``: digits only, ``+86``/``0086`` removed, placeholder numbers dropped;
    * ``addresses``: each address as a set of parts, province and city dropped (everyone in
      a regional exchange shares them).
    """

    identifiers: frozenset[Identifier] = frozenset()
    national_ids: frozenset[national_id.NationalId] = frozenset()
    names: tuple[NameForm, ...] = ()
    birth_dates: frozenset[date] = frozenset()
    genders: frozenset[str] = frozenset()
    phones: frozenset[str] = frozenset()
    addresses: frozenset[frozenset[str]] = frozenset()

    @property
    def effective_birth_dates(self) -> frozenset[date]:
        """Recorded birth dates, or those inside the national IDs when none was recorded."""
        return self.birth_dates or frozenset(n.birth_date for n in self.national_ids)

    @property
    def effective_genders(self) -> frozenset[str]:
        return self.genders or frozenset(n.gender for n in self.national_ids)

    def of_system(self, system: str) -> frozenset[str]:
        return frozenset(v for s, v in self.identifiers if s == system)

    @property
    def passports(self) -> frozenset[Identifier]:
        return frozenset(i for i in self.identifiers if naming.is_passport(i[0]))

    @property
    def mrns(self) -> frozenset[Identifier]:
        return frozenset(i for i in self.identifiers if naming.mrn_hospital(i[0]) is not None)

    def merge(self, other: Traits) -> Traits:
        """The traits of a patient holding both records."""
        return Traits(
            identifiers=self.identifiers | other.identifiers,
            national_ids=self.national_ids | other.national_ids,
            names=tuple(dict.fromkeys(self.names + other.names)),
            birth_dates=self.birth_dates | other.birth_dates,
            genders=self.genders | other.genders,
            phones=self.phones | other.phones,
            addresses=self.addresses | other.addresses,
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON form for storing a patient's traits beside its records."""
        return {
            "identifiers": sorted([s, v] for s, v in self.identifiers),
            "names": [n.to_json() for n in self.names],
            "birthDates": sorted(d.isoformat() for d in self.birth_dates),
            "genders": sorted(self.genders),
            "phones": sorted(self.phones),
            "addresses": sorted(sorted(a) for a in self.addresses),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Traits:
        identifiers = frozenset((s, v) for s, v in data.get("identifiers", []))
        return cls(
            identifiers=identifiers,
            national_ids=frozenset(
                national_id.validate(v) for s, v in identifiers if s == naming.NATIONAL_ID
            ),
            names=tuple(NameForm.from_json(n) for n in data.get("names", [])),
            birth_dates=frozenset(date.fromisoformat(d) for d in data.get("birthDates", [])),
            genders=frozenset(data.get("genders", [])),
            phones=frozenset(data.get("phones", [])),
            addresses=frozenset(frozenset(a) for a in data.get("addresses", [])),
        )


def phone_digits(value: str) -> str | None:
    """A comparable phone number, or None for placeholders and fragments."""
    digits = "".join(c for c in unicodedata.normalize("NFKC", value) if c.isdigit())
    if digits.startswith("0086"):
        digits = digits[4:]
    elif digits.startswith("86") and len(digits) == 13:
        digits = digits[2:]
    if len(digits) < 7 or len(set(digits)) <= 2 or digits in _JUNK_PHONES:
        return None
    return digits


def address_parts(text: str) -> frozenset[str]:
    """An address as a set of parts: ``南山区``, ``科技园路``, ``10号``, ``3栋``, ``502`` ...

    Latin addresses become upper-case words. Province and city parts are dropped; the
    district stays.
    """
    s = "".join(c for c in unicodedata.normalize("NFKC", text) if c.isalnum())
    s = _ADDRESS_PREFIX.sub("", s)
    if not any("\u4e00" <= c <= "\u9fff" for c in s):
        return frozenset(w for w in re.split(r"[^A-Z0-9]+", text.upper()) if w)
    # A number starts a new part too: estate names ("幸福海岸37栋") carry no suffix.
    chunks = _DIGITS_START.split(s)
    parts = [_ROOM.sub(r"\1", p) for c in chunks for p in _ADDRESS_PART.findall(c) if p]
    return frozenset(
        p
        for p in parts
        if not p.endswith(("省", "自治区")) and not (p.endswith("市") and len(p) <= 4)
    )


def _address_text(address: Mapping[str, Any]) -> str:
    lines = [str(x) for x in address.get("line") or []]
    if lines:
        return str(address.get("district") or "") + "".join(lines)
    return str(address.get("text") or "")


def _identifier(raw: Mapping[str, Any]) -> Identifier | None:
    system, value = raw.get("system"), raw.get("value")
    if not system or not value:
        return None
    v = unicodedata.normalize("NFKC", str(value)).strip()
    if system == naming.NATIONAL_ID or naming.is_passport(system):
        v = re.sub(r"\s+", "", v).upper()
    return str(system), v


def from_patient(patient: Mapping[str, Any], *, today: date | None = None) -> Traits:
    """Read and normalise a FHIR R4 Patient (as JSON).

    Raises :class:`InvalidIdentifier` for a national ID that is not valid or that
    contradicts the record's ``birthDate``/``gender`` (``expression`` points at it).
    """
    born: date | None = None
    raw_birth = patient.get("birthDate")
    if isinstance(raw_birth, str) and len(raw_birth) == 10:
        try:
            born = date.fromisoformat(raw_birth)
        except ValueError:
            born = None
    gender = patient.get("gender")
    identifiers: set[Identifier] = set()
    ids: set[national_id.NationalId] = set()
    for index, raw in enumerate(patient.get("identifier") or []):
        ident = _identifier(raw)
        if ident is None:
            continue
        if ident[0] == naming.NATIONAL_ID:
            try:
                ids.add(
                    national_id.validate(
                        ident[1],
                        birth_date=born,
                        gender=gender if isinstance(gender, str) else None,
                        today=today,
                    )
                )
            except InvalidIdentifier as exc:
                raise InvalidIdentifier(
                    exc.reason, kind=exc.kind, expression=f"Patient.identifier[{index}]"
                ) from None
        identifiers.add(ident)
    phones = {
        p
        for t in patient.get("telecom") or []
        if t.get("system") in (None, "phone", "sms") and t.get("value")
        for p in [phone_digits(str(t["value"]))]
        if p
    }
    addresses = {a for a in (address_parts(_address_text(x)) for x in _of(patient, "address")) if a}
    return Traits(
        identifiers=frozenset(identifiers),
        national_ids=frozenset(ids),
        names=name_forms(_of(patient, "name")),
        birth_dates=frozenset([born]) if born else frozenset(),
        genders=frozenset([gender]) if gender in ("male", "female") else frozenset(),
        phones=frozenset(phones),
        addresses=frozenset(addresses),
    )


def _of(patient: Mapping[str, Any], key: str) -> Iterable[Mapping[str, Any]]:
    value = patient.get(key) or []
    return [v for v in value if isinstance(v, Mapping)]
