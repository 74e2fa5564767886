"""The shipped catalogue, scope, verdict and decline-reason files: valid FHIR, the demo codes
other engineers' fixtures use, windows as documented, and load-time refusal of bad edits."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from recognition_world import PROFILES

from hie.naming import LOINC
from hie.recognition.catalogue import Catalogue, CatalogueError
from hie.recognition.decision import DeclineReasons
from hie.recognition.explanation import REASONS, VERDICT_URL
from hie.recognition.extension import DISPLAY
from hie.recognition.rules import RecognitionRules
from hie.recognition.scope import ScopeRules

MINE = (
    "CodeSystem-recognition-catalogue.json",
    "CodeSystem-recognition-scope.json",
    "CodeSystem-recognition-verdict.json",
    "CodeSystem-decline-reasons.json",
    "ValueSet-decline-reasons.json",
    "StructureDefinition-recognition-verdict.json",
    "OperationDefinition-prior-results.json",
)


def _doc(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((PROFILES / name).read_text("utf-8"))
    return data


@pytest.mark.parametrize("name", MINE)
def test_profile_files_are_valid_r4_resources(name: str) -> None:
    doc = _doc(name)
    get_fhir_model_class(doc["resourceType"]).model_validate(doc)
    assert doc["url"].startswith("https://hie.example.org/")
    assert name.split("-", 1)[0] == doc["resourceType"]


# Windows from the Hubei list (public practice) and hie's defaults, as docs/recognition.md says.
WINDOWS = {
    **dict.fromkeys(["2823-3", "2951-2", "2075-0", "17861-6", "19123-9", "2777-1"], "P7D"),
    **dict.fromkeys(
        ["2345-7", "2093-3", "2571-8", "2085-9", "13457-7", "2885-2", "1751-7", "1975-2"], "P30D"
    ),
    **dict.fromkeys(["2160-0", "3094-0", "1742-6", "1920-8"], "P30D"),
    "4548-4": "P60D",
    **dict.fromkeys(["58410-2", "6690-2", "789-8", "718-7", "4544-3", "777-3", "787-2"], "P7D"),
    **dict.fromkeys(["5902-2", "6301-6", "3173-2"], "P3D"),
    "51990-0": "P7D",
    "57698-3": "P30D",
    "24325-3": "P30D",
    "CT-chest-plain": "P6M",
    "MR-brain-plain": "P6M",
    "DX-chest": "P3M",
    "US-abdomen": "P1M",
    "5196-1": "P3M",
}


def test_demo_codes_and_windows(catalogue: Catalogue) -> None:
    assert {code: catalogue.item(code).window.text for code in WINDOWS} == WINDOWS
    public = {c for c, i in catalogue.items.items() if i.window_source == "public-practice"}
    assert {"2823-3", "2345-7", "4548-4", "1975-2"} <= public
    assert catalogue.item("58410-2").window_source == "hie-default"


def test_panels_know_their_components(catalogue: Catalogue) -> None:
    # Required components are what the demo hospitals' panels always carry (fixtures/hl7v2).
    cbc = catalogue.item("58410-2")
    assert cbc.components == ("6690-2", "789-8", "718-7", "4544-3", "777-3", "787-2")
    assert cbc.optional_components == ("785-6", "786-4")
    bmp = catalogue.item("51990-0")
    assert set(bmp.components) == {
        "2345-7",
        "3094-0",
        "2160-0",
        "2951-2",
        "2823-3",
        "2075-0",
        "17861-6",
    }
    assert bmp.optional_components == ("2028-9",)
    assert set(catalogue.item("57698-3").components) == {"2093-3", "2571-8", "2085-9", "13457-7"}
    assert set(catalogue.item("24325-3").components) == {"1742-6", "1920-8", "1975-2", "1751-7"}
    assert [p.code for p in catalogue.panels_with("2823-3")] == ["51990-0", "24326-1"]
    assert [p.code for p in catalogue.panels_with("2028-9")] == ["51990-0", "24326-1"]


@pytest.mark.parametrize(
    ("code", "item"),
    [
        ((LOINC, "2823-3"), "2823-3"),
        ((LOINC, "2000-8"), "17861-6"),  # calcium in mmol/L, its molar LOINC code
        ((LOINC, "14682-9"), "2160-0"),
        ((LOINC, "18262-6"), "13457-7"),  # direct LDL
        ((LOINC, "79103-8"), "CT-abdomen-contrast"),
        (("https://hie.example.org/cs/recognition-catalogue", "US-abdomen"), "US-abdomen"),
        ((LOINC, "22664-7"), "3094-0"),  # urea, as the demo hospitals' ConceptMaps map it
        ((LOINC, "69419-0"), "13457-7"),
        ((LOINC, "14646-4"), "2085-9"),
        ((LOINC, "24326-1"), "24326-1"),
        ((LOINC, "2324-2"), None),  # GGT is not on the list
        (("https://hie.example.org/cs/local/szph", "K"), None),  # an unmapped local code
    ],
)
def test_resolve(catalogue: Catalogue, code: tuple[str, str], item: str | None) -> None:
    found = catalogue.resolve(code)
    assert (found.code if found else None) == item


def test_every_item_has_complete_rules(catalogue: Catalogue) -> None:
    for item in catalogue.items.values():
        assert item.display_zh != item.display_en, item.code
        assert item.price_rmb > Decimal(0) and item.minutes_saved > 0, item.code
        assert item.window_source in {
            "public-practice",
            "public-practice-class",
            "components",
            "hie-default",
        }
        if item.kind != "imaging":
            assert item.credential_scope != "none" and item.credential_schemes, item.code
            assert item.discipline in {
                "chemistry",
                "haematology",
                "coagulation",
                "immunology",
                "urinalysis",
            }
    assert catalogue.item("4548-4").credential_scope == "item"


def _broken(edit: Any) -> dict[str, Any]:
    doc = copy.deepcopy(_doc("CodeSystem-recognition-catalogue.json"))
    edit(doc)
    return doc


def _concept(doc: dict[str, Any], code: str) -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in doc["concept"] if c["code"] == code)
    return found


def _set(doc: dict[str, Any], code: str, prop: str, **value: Any) -> None:
    props = _concept(doc, code)["property"]
    props[:] = [p for p in props if p["code"] != prop] + (
        [{"code": prop, **value}] if value else []
    )


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda d: _set(d, "2823-3", "window", valueString="seven days"),
            "2823-3.*not a supported",
        ),
        (lambda d: _set(d, "2823-3", "window"), "2823-3.*'window' is missing"),
        (lambda d: _set(d, "2823-3", "kind", valueCode="drug"), "kind 'drug'"),
        (lambda d: _set(d, "58410-2", "window", valueString="P1M"), "58410-2.*outlive"),
        (
            lambda d: _concept(d, "57698-3")["property"].append(
                {"code": "component", "valueCode": "9999-9"}
            ),
            "component '9999-9'",
        ),
        (
            lambda d: _concept(d, "2823-3")["property"].append(
                {"code": "colour", "valueCode": "red"}
            ),
            "'colour' is not declared",
        ),
        (
            lambda d: _concept(d, "2951-2")["property"].append(
                {"code": "loinc", "valueCode": "2823-3"}
            ),
            "2823-3 is claimed",
        ),
        (lambda d: _set(d, "CT-head-plain", "contrast"), "CT-head-plain.*needs modality"),
        (lambda d: _set(d, "2823-3", "credential-scope", valueCode="someone"), "not understood"),
        (lambda d: d.update(resourceType="ValueSet"), "must be a CodeSystem"),
    ],
)
def test_bad_catalogue_is_refused_at_load(edit: Any, message: str) -> None:
    with pytest.raises(CatalogueError, match=message):
        Catalogue.from_json(_broken(edit))


def test_unreadable_catalogue_file(tmp_path: Path) -> None:
    (tmp_path / "c.json").write_text("{not json", "utf-8")
    with pytest.raises(CatalogueError, match="cannot read"):
        Catalogue.load(tmp_path / "c.json")


@pytest.mark.parametrize(
    ("producer", "requester", "basic", "allowed", "rule"),
    [
        ("3A", "3A", False, True, "scope.same-tier"),
        ("3B", "3A", False, True, "scope.same-tier"),
        ("2A", "2B", False, True, "scope.same-tier"),
        ("1", "CHC", False, True, "scope.same-tier"),
        ("3A", "2A", False, True, "scope.higher-tier"),
        ("2B", "CHC", False, True, "scope.higher-tier"),
        ("2A", "3A", True, True, "scope.lower-tier-basic"),
        ("2A", "3A", False, False, "scope.no-rule"),
        ("CHC", "2A", False, False, "scope.no-rule"),
        ("4A", "3A", True, False, "scope.unknown-level"),
    ],
)
def test_scope_rules(producer: str, requester: str, basic: bool, allowed: bool, rule: str) -> None:
    scope = ScopeRules.load(PROFILES / "CodeSystem-recognition-scope.json")
    decision = scope.decide(producer, requester, basic)
    assert (decision.in_scope, decision.rule) == (allowed, rule)
    assert decision.note_zh and decision.note_en


def test_scope_rules_are_data() -> None:
    doc = copy.deepcopy(_doc("CodeSystem-recognition-scope.json"))
    rules = next(c for c in doc["concept"] if c["code"] == "rules")
    rules["concept"] = [c for c in rules["concept"] if c["code"] != "scope.lower-tier-basic"]
    assert ScopeRules.from_json(doc).decide("2A", "3A", True).in_scope is False


def test_verdict_codes_match_the_engine() -> None:
    doc = _doc("CodeSystem-recognition-verdict.json")
    assert doc["url"] == VERDICT_URL
    top = {c["code"]: c for c in doc["concept"]}
    assert set(top) == {"recognised", "reference-only", "pending"}
    assert [c["code"] for c in top["reference-only"]["concept"]] == list(REASONS)
    every = {c["code"]: c["display"] for c in doc["concept"]}
    for parent in doc["concept"]:
        every.update({c["code"]: c["display"] for c in parent.get("concept", [])})
    assert every == DISPLAY


def test_decline_reasons() -> None:
    reasons = DeclineReasons.load(PROFILES / "CodeSystem-decline-reasons.json")
    assert list(reasons.reasons) == [
        "condition-changed",
        "fast-changing",
        "major-procedure",
        "emergency",
        "forensic-assessment",
        "patient-request",
        "issuer-failed-eqa",
        "too-old",
        "clinician-judgement",
    ]
    assert [r.code for r in reasons.reasons.values() if r.requires_text] == ["clinician-judgement"]
    assert reasons["emergency"].display_zh.startswith("患者处于急诊")
    vs = _doc("ValueSet-decline-reasons.json")
    assert vs["compose"]["include"] == [{"system": reasons.url}]


def test_operation_definition_shape() -> None:
    od = _doc("OperationDefinition-prior-results.json")
    assert (od["code"], od["resource"], od["system"], od["type"], od["instance"]) == (
        "prior-results",
        ["Patient"],
        False,
        True,
        True,
    )
    params = {p["name"]: p for p in od["parameter"]}
    assert (params["code"]["min"], params["code"]["max"], params["code"]["searchType"]) == (
        1,
        "*",
        "token",
    )
    assert params["patient.identifier"]["searchType"] == "token"
    assert params["at"]["type"] == "dateTime" and params["return"]["type"] == "Bundle"


def test_rules_bundle_loads_everything() -> None:
    rules = RecognitionRules.load(PROFILES, province_prefix="粤")
    assert rules.policy.mark == "粤HR"
    assert "4548-4" in rules.catalogue.items and "too-old" in rules.decline_reasons
    assert rules.policy.scope.tier("CHC") == 1
