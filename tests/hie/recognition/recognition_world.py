"""A small world for recognition tests (fixtures in conftest.py): the shipped catalogue and
scope rules, the three demo hospitals other engineers' fixtures use (szph, pkuszh, nsdh) plus
two lower-tier ones, and their EQA credentials. Written for hie's tests; no real patient data.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from hie.naming import LOINC
from hie.recognition.catalogue import Catalogue
from hie.recognition.engine import MemberSource, evaluate
from hie.recognition.model import (
    AssessedResult,
    Assessment,
    HospitalProfile,
    LabCredential,
    PendingOrder,
    PriorResult,
    RecognitionPolicy,
)

PROFILES = Path(__file__).resolve().parents[3] / "fhir_profiles"
SH = ZoneInfo("Asia/Shanghai")

HOSPITALS = (
    HospitalProfile("szph", "3A", "深圳市人民医院", "Shenzhen People's Hospital"),
    HospitalProfile("pkuszh", "3A", "北京大学深圳医院", "Peking University Shenzhen Hospital"),
    HospitalProfile("nsdh", "3B", "南山区人民医院", "Nanshan District People's Hospital"),
    HospitalProfile("baoan2", "2A", "宝安区第二人民医院", "Bao'an District Second Hospital"),
    HospitalProfile("skchc", "CHC", "蛇口社区健康服务中心", "Shekou Community Health Centre"),
)
_DISCIPLINES = ("chemistry", "haematology", "coagulation", "immunology", "urinalysis")


def year_credentials(hospital: str, year: int, *, hba1c: bool = True) -> list[LabCredential]:
    first, last = date(year, 1, 1), date(year, 12, 31)
    out = [
        LabCredential(hospital, f"discipline:{d}", "NCCL-EQA", first, last) for d in _DISCIPLINES
    ]
    out.append(LabCredential(hospital, "discipline:imaging", "GD-EQA", first, last))
    if hba1c:
        out.append(LabCredential(hospital, "item:4548-4", "NCCL-EQA", first, last))
    return out


CREDENTIALS = (
    *year_credentials("szph", 2026),
    *year_credentials("pkuszh", 2026),
    *year_credentials("nsdh", 2026, hba1c=False),  # the demo's "no-credential-at-time"
    *year_credentials("baoan2", 2026),
    *year_credentials("skchc", 2026),
)


def at(text: str) -> datetime:
    """An instant from ISO text; a bare local time is read in Asia/Shanghai."""
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=SH)


def loinc(code: str) -> tuple[str, str]:
    return (LOINC, code)


@dataclass
class World:
    catalogue: Catalogue
    policy: RecognitionPolicy
    credentials: tuple[LabCredential, ...] = CREDENTIALS
    hospitals: tuple[HospitalProfile, ...] = HOSPITALS
    _n: list[int] = field(default_factory=lambda: [0])

    def result(self, code: str = "2823-3", **kw: Any) -> PriorResult:
        """A final result with sensible defaults for ``code`` (unit from the catalogue)."""
        self._n[0] += 1
        item = self.catalogue.items.get(code)
        defaults: dict[str, Any] = {
            "resource_type": "Observation",
            "id": f"r{self._n[0]}",
            "hospital_id": "szph",
            "codes": (loinc(code),),
            "effective": at("2026-11-01T10:00:00"),
            "status": "final",
            "version": "1",
        }
        if item is not None and item.units:
            defaults["value"] = Decimal("4.2")
            defaults["unit"] = item.units[0]
        defaults.update(kw)
        return PriorResult(**defaults)

    def run(
        self,
        results: Iterable[PriorResult],
        codes: Iterable[str | tuple[str, str]],
        when: str | datetime = "2026-11-05T09:00:00",
        requester: str = "pkuszh",
        *,
        orders: Iterable[PendingOrder] = (),
        credentials: Iterable[LabCredential] | None = None,
        catalogue: Catalogue | None = None,
        members: MemberSource | None = None,
        trail: bool = True,
        include_expired: bool = True,
    ) -> Assessment:
        return evaluate(
            list(results),
            [loinc(c) if isinstance(c, str) else c for c in codes],
            requester,
            at(when) if isinstance(when, str) else when,
            catalogue or self.catalogue,
            self.hospitals,
            self.credentials if credentials is None else tuple(credentials),
            self.policy,
            pending_orders=orders,
            members=members,
            trail=trail,
            include_expired=include_expired,
        )

    def one(
        self, result: PriorResult, code: str | tuple[str, str] | None = None, **kw: Any
    ) -> AssessedResult:
        """Assess a single result against a request for its own code."""
        wanted = code or result.codes[0][1]
        found = [a for a in self.run([result], [wanted], **kw).results if a.result == result]
        assert len(found) == 1, found
        return found[0]


def demo_world(base: World, toml_text: str | None = None) -> World:
    """``base`` with the hospitals and credentials of a hospitals-configuration file (the demo's
    ``fixtures/hospitals.toml`` by default), read through the lead's ``hie.hospitals`` model."""
    from hie.hospitals import HospitalsConfig

    if toml_text is None:
        toml_text = (PROFILES.parent / "fixtures" / "hospitals.toml").read_text("utf-8")
    data = tomllib.loads(toml_text)
    data.setdefault("exchange", {"province_prefix": "粤"})
    data = {k: v for k, v in data.items() if k in ("exchange", "hospital")}
    for h in data["hospital"]:
        h.pop("adapter", None)  # adapters need folders and secrets; only credentials matter here
    config = HospitalsConfig.model_validate(data)
    hospitals = tuple(
        HospitalProfile(h.id, h.level, h.name_zh, h.name_en) for h in config.hospitals
    )
    credentials = tuple(
        LabCredential(h.id, c.scope, c.scheme, c.valid_from, c.valid_to)
        for h in config.hospitals
        for c in h.credentials
    )
    return World(base.catalogue, base.policy, credentials, hospitals)
