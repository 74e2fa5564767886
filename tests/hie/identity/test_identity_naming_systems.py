"""The NamingSystems in fhir_profiles/ declare exactly the URIs of hie.naming."""

from __future__ import annotations

import json
from pathlib import Path

from fhir.resources.R4B.namingsystem import NamingSystem

from hie import naming

PROFILES = Path(__file__).resolve().parents[3] / "fhir_profiles"


def _systems() -> dict[str, dict[str, object]]:
    return {
        p.name: json.loads(p.read_text("utf-8"))
        for p in sorted(PROFILES.glob("NamingSystem-*.json"))
    }


def test_each_naming_system_is_valid_r4() -> None:
    systems = _systems()
    assert len(systems) == 5
    for data in systems.values():
        NamingSystem.model_validate(data)


def test_unique_ids_are_the_uris_hie_mints() -> None:
    ids = {d["id"]: d["uniqueId"][0]["value"] for d in _systems().values()}  # type: ignore[index]
    assert ids == {
        "cn-resident-id": naming.NATIONAL_ID,
        "health-card": naming.HEALTH_CARD,
        "exchange-patient": naming.EXCHANGE_PATIENT,
        "passport": naming.passport("{ISO3166-1-alpha-3}"),
        "mrn": naming.mrn("{hospital-id}"),
    }
    # the patterns are the real prefixes
    assert naming.is_passport(ids["passport"].replace("{ISO3166-1-alpha-3}", "USA"))
    assert naming.mrn_hospital(ids["mrn"].replace("{hospital-id}", "szph")) == "szph"
