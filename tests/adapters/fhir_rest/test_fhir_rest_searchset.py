"""A searchset page → units: grouping, references, identifiers, against the US Core lab examples.

Input: the US Core 8.0.0 metabolic-panel DiagnosticReport, its eight serum Observations and
``patient-example`` (written by HL7, CC0; ../shared/reference-data/fhir-r4/us-core-8.0.0),
wrapped here in a searchset as a server would return them. Expected output:
``golden/us-core-metabolic-panel.json`` (written with ``HIE_REGEN_GOLDEN=1``, then read).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from adapters.base import SourceUnavailable
from adapters.fhir_rest.searchset import SourceServer, build_unit, read_page
from hie import naming
from hie.fhir import check_model
from hie.profile import Profiles

ROOT = Path(__file__).resolve().parents[3]
US_CORE = ROOT.parent / "shared" / "reference-data" / "fhir-r4" / "us-core-8.0.0"
GOLDEN = Path(__file__).parent / "golden" / "us-core-metabolic-panel.json"
BASE = "https://fhir.pkuszh.example.cn/fhir/R4"
SERVER = SourceServer("pkuszh", BASE, mrn_system="http://example.org/patient/identifiers")
SERUM = ["sodium", "potassium", "creatinine", "co2", "chloride", "calcium", "bun", "glucose"]


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((US_CORE / f"{name}.json").read_text(encoding="utf-8"))
    return data


def searchset(matches: list[dict[str, Any]], includes: list[dict[str, Any]]) -> dict[str, Any]:
    def entry(res: dict[str, Any], mode: str) -> dict[str, Any]:
        url = f"{BASE}/{res['resourceType']}/{res['id']}"
        return {"fullUrl": url, "resource": res, "search": {"mode": mode}}

    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "link": [{"relation": "next", "url": f"{BASE}/DiagnosticReport?_page=2"}],
        "entry": [entry(m, "match") for m in matches] + [entry(i, "include") for i in includes],
    }


def panel_unit():  # type: ignore[no-untyped-def]
    report = load("diagnosticreport-metabolic-panel")
    results = [load(f"observation-serum-{n}") for n in SERUM]
    patient = load("patient-example")
    page = read_page(searchset([report], [patient, *results]), "DiagnosticReport", BASE)
    assert page.dead_letters == [] and len(page.matches) == 1 and len(page.included) == 9
    assert page.next_url == f"{BASE}/DiagnosticReport?_page=2"
    return build_unit(report, [patient, *results], SERVER)


@pytest.mark.skipif(not US_CORE.is_dir(), reason="shared reference data not present")
def test_us_core_panel_matches_golden() -> None:
    unit = panel_unit()
    got = {
        "key": unit.key,
        "content_type": unit.content_type,
        "trusted": unit.trusted,
        "entries": [{"fullUrl": e.full_url, "resource": e.resource} for e in unit.entries],
    }
    if os.environ.get("HIE_REGEN_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(got, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    assert got == json.loads(GOLDEN.read_text(encoding="utf-8"))


@pytest.mark.skipif(not US_CORE.is_dir(), reason="shared reference data not present")
def test_us_core_panel_unit_is_valid_and_self_contained() -> None:
    unit = panel_unit()
    profiles = Profiles.load(ROOT / "fhir_profiles")
    types = [e.resource["resourceType"] for e in unit.entries]
    assert types == ["Patient", "DiagnosticReport"] + ["Observation"] * 8
    urls = {e.full_url for e in unit.entries}
    for entry in unit.entries:
        res = entry.resource
        assert check_model(res) == [], res
        assert profiles.validate(res) == [], res
        assert "id" not in res and "lastUpdated" not in res.get("meta", {})
        assert res["meta"]["source"].startswith(f"{BASE}/{res['resourceType']}/")
        assert set(_references(res)) <= urls  # nothing points outside the unit
    patient, report, sodium = (e.resource for e in unit.entries[:3])
    assert {"system": naming.mrn("pkuszh"), "value": "1032702"} in [
        {k: i[k] for k in ("system", "value")} for i in patient["identifier"]
    ]
    assert report["identifier"] == [
        {"system": naming.filler_order("pkuszh"), "value": "fhir:metabolic-panel"}
    ]
    assert sodium["identifier"] == [
        {"system": naming.result_id("pkuszh"), "value": "fhir:serum-sodium"}
    ]
    # Practitioner and Specimen are not in the unit: their display stays, the reference goes.
    assert sodium["performer"] == [{"display": "Dr Ronald Bone"}]
    assert sodium["specimen"] == {"display": "Serum specimen"}
    assert report["encounter"] == {"display": "Office Visit"}
    assert json.loads(unit.raw)["entry"][1]["resource"] == load("diagnosticreport-metabolic-panel")


def test_reference_forms() -> None:
    s = SourceServer("h", "http://x/fhir")
    assert s.key_of("Patient/12") == "Patient/12"
    assert s.key_of("Patient/12/_history/3") == "Patient/12"
    assert s.key_of("http://x/fhir/Observation/a.b-c") == "Observation/a.b-c"
    assert s.key_of("http://elsewhere/fhir/Patient/12") is None
    assert s.key_of("#contained") is None and s.key_of("urn:uuid:1234") is None
    assert s.full_url("Patient/12") == s.full_url("Patient/12") != s.full_url("Patient/13")


def test_own_identifiers_are_kept_and_outside_references_without_display_are_dropped() -> None:
    obs = {
        "resourceType": "Observation",
        "id": "o1",
        "meta": {
            "versionId": "4",
            "lastUpdated": "2026-11-24T09:00:00+08:00",
            "tag": [{"code": "x"}],
        },
        "identifier": [{"system": "urn:oid:2.16.156.1", "value": "LAB-77"}],
        "status": "final",
        "code": {"text": "K"},
        "subject": {"reference": "Patient/p1"},
        "performer": [
            {"reference": "Practitioner/9"},
            {"reference": "Organization/1", "display": "Lab"},
        ],
        "hasMember": [{"reference": "Observation/other"}],
        "contained": [{"resourceType": "Specimen", "id": "s"}],
        "specimen": {"reference": "#s"},
    }
    patient = {
        "resourceType": "Patient",
        "id": "p1",
        "identifier": [
            {"system": "urn:oid:2.16.156.10011.1.3", "value": "440304199207082424"},
            {"system": "urn:other", "value": "1"},
        ],
    }
    server = SourceServer(
        "pkuszh", "http://x/fhir", national_id_system="urn:oid:2.16.156.10011.1.3"
    )
    unit = build_unit(obs, [patient], server)
    p, o = (e.resource for e in unit.entries)
    assert [i["system"] for i in p["identifier"]] == [naming.NATIONAL_ID, "urn:other"]
    assert o["identifier"] == obs["identifier"]  # the hospital's own identifier, untouched
    assert o["meta"] == {"tag": [{"code": "x"}], "source": "http://x/fhir/Observation/o1"}
    assert o["subject"] == {"reference": unit.entries[0].full_url}
    assert o["performer"] == [{"display": "Lab"}]
    assert "hasMember" not in o
    assert o["specimen"] == {"reference": "#s"} and o["contained"] == obs["contained"]
    assert obs["subject"] == {"reference": "Patient/p1"}  # the input is not modified


def test_unreadable_entries_are_dead_letters_and_the_rest_is_read() -> None:
    good = {"resourceType": "Observation", "id": "1"}
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [
            {"resource": good, "search": {"mode": "match"}},
            {"search": {"mode": "match"}},
            {"resource": {"resourceType": "Observation"}, "search": {"mode": "match"}},
            {"resource": {"resourceType": "Patient", "id": "9"}, "search": {"mode": "match"}},
            {"resource": {"resourceType": "OperationOutcome"}, "search": {"mode": "outcome"}},
            {"resource": {"resourceType": "Patient", "id": "p"}},  # no mode: an include
        ],
    }
    page = read_page(bundle, "Observation", "http://x/fhir/Observation")
    assert page.matches == [good] and list(page.included) == ["Patient/p"]
    assert [d.reason for d in page.dead_letters] == [
        "http://x/fhir/Observation entry[1]: entry has no resource",
        "http://x/fhir/Observation entry[2]: Observation has no id",
        "Patient/9: a Observation search matched a Patient",
    ]
    assert json.loads(page.dead_letters[1].raw)["resource"] == {"resourceType": "Observation"}


@pytest.mark.parametrize(
    "body", [{"resourceType": "OperationOutcome"}, {"resourceType": "Bundle", "type": "batch"}]
)
def test_a_page_that_is_not_a_searchset_is_unavailable(body: dict[str, Any]) -> None:
    with pytest.raises(SourceUnavailable, match="expected a searchset Bundle"):
        read_page(body, "Observation", "http://x/fhir/Observation")


def _references(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["reference"]] if isinstance(node.get("reference"), str) else []
        return own + [r for v in node.values() for r in _references(v)]
    if isinstance(node, list):
        return [r for v in node for r in _references(v)]
    return []
