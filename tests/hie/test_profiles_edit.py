"""The profiles are data that drive code: edit a copy of ``fhir_profiles/`` and the verdict
changes, with no code change; write something the validator cannot enforce and loading fails.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_profiles import (  # tests/hie is on sys.path (pytest's default prepend mode)
    PROFILES_DIR,
    diagnostic_report,
    imaging_study,
    lab_observation,
    verdict,
)

from hie.profile import ProfileError, Profiles

Json = dict[str, Any]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    target = tmp_path / "fhir_profiles"
    shutil.copytree(PROFILES_DIR, target)
    return target


def edit(folder: Path, name: str, change: Callable[[Json], None]) -> None:
    path = folder / name
    doc = json.loads(path.read_text(encoding="utf-8"))
    change(doc)
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")


def element(doc: Json, eid: str) -> Json:
    for ed in doc["differential"]["element"]:
        if ed["id"] == eid:
            return ed
    new = {"id": eid, "path": eid}
    doc["differential"]["element"].append(new)
    return new


OBS = "StructureDefinition-hie-lab-observation.json"
REPORT = "StructureDefinition-hie-diagnostic-report.json"
STUDY = "StructureDefinition-hie-imaging-study.json"


def test_making_issued_required_rejects_a_report_without_it(folder: Path) -> None:
    report = diagnostic_report()
    assert "issued" not in report
    assert Profiles.load(folder).validate(report) == []

    edit(folder, REPORT, lambda sd: element(sd, "DiagnosticReport.issued").update(min=1))

    issues = Profiles.load(folder).validate(report)
    assert verdict(issues) == [("error", "required", "DiagnosticReport.issued")]
    assert "DiagnosticReport.issued 1..1 in profile hie-diagnostic-report" in issues[0].diagnostics


def test_a_pattern_added_to_category_rejects_imaging_findings(folder: Path) -> None:
    finding = lab_observation()
    finding["category"][0]["coding"][0]["code"] = "imaging"
    assert Profiles.load(folder).validate(finding) == []

    lab = {
        "coding": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                "code": "laboratory",
            }
        ]
    }
    edit(
        folder,
        OBS,
        lambda sd: element(sd, "Observation.category").update(patternCodeableConcept=lab),
    )

    profiles = Profiles.load(folder)
    issues = profiles.validate(finding)
    assert verdict(issues) == [("error", "value", "Observation.category[0]")]
    assert "must match the pattern" in issues[0].diagnostics
    # a pattern is a subset match: extra codings and text still pass
    lab_result = lab_observation()
    lab_result["category"][0]["coding"].insert(0, {"system": "http://local", "code": "检验"})
    lab_result["category"][0]["text"] = "检验"
    assert profiles.validate(lab_result) == []


def test_a_fixed_value_must_match_exactly(folder: Path) -> None:
    edit(
        folder,
        OBS,
        lambda sd: element(sd, "Observation.valueQuantity.system").update(
            fixedUri="http://unitsofmeasure.org"
        ),
    )
    profiles = Profiles.load(folder)
    assert profiles.validate(lab_observation()) == []
    doc = lab_observation()
    doc["valueQuantity"]["system"] = "urn:local:units"
    assert verdict(profiles.validate(doc)) == [
        ("error", "value", "Observation.valueQuantity.system")
    ]


def test_editing_a_value_set_changes_the_required_binding(folder: Path) -> None:
    finding = lab_observation()
    finding["category"][0]["coding"][0]["code"] = "imaging"

    def lab_only(vs: Json) -> None:
        concepts = vs["compose"]["include"][0]["concept"]
        vs["compose"]["include"][0]["concept"] = [c for c in concepts if c["code"] != "imaging"]

    edit(folder, "ValueSet-hie-observation-category.json", lab_only)
    issues = Profiles.load(folder).validate(finding)
    assert verdict(issues) == [("error", "required", "Observation.category")]
    assert "hie-observation-category (laboratory)" in issues[0].diagnostics


def test_value_set_exclude_is_applied(folder: Path) -> None:
    doc = lab_observation()
    doc["status"] = "preliminary"
    edit(
        folder,
        "ValueSet-observation-status.json",
        lambda vs: vs["compose"].update(
            exclude=[
                {
                    "system": "http://hl7.org/fhir/observation-status",
                    "concept": [{"code": "preliminary"}],
                }
            ]
        ),
    )
    assert verdict(Profiles.load(folder).validate(doc)) == [
        ("error", "code-invalid", "Observation.status")
    ]


def test_closing_the_identifier_slicing_rejects_other_identifiers(folder: Path) -> None:
    study = imaging_study()  # carries an accession number beside the Study Instance UID
    edit(
        folder,
        STUDY,
        lambda sd: element(sd, "ImagingStudy.identifier")["slicing"].update(rules="closed"),
    )
    assert verdict(Profiles.load(folder).validate(study)) == [
        ("error", "structure", "ImagingStudy.identifier[1]")
    ]


def test_a_new_invariant_is_enforced(folder: Path) -> None:
    rule = {
        "key": "hie-test-1",
        "severity": "warning",
        "human": "issued is given whenever the result is final",
        "expression": "issued.exists() or status.matches('(preliminary|registered)')",
    }
    edit(
        folder, OBS, lambda sd: element(sd, "Observation").setdefault("constraint", []).append(rule)
    )
    doc = lab_observation()
    del doc["issued"]
    assert verdict(Profiles.load(folder).validate(doc)) == [("warning", "invariant", "Observation")]


def test_tightening_max_cardinality(folder: Path) -> None:
    edit(folder, OBS, lambda sd: element(sd, "Observation.interpretation").update(max="0"))
    assert verdict(Profiles.load(folder).validate(lab_observation())) == [
        ("error", "structure", "Observation.interpretation")
    ]


def test_a_choice_type_restriction(folder: Path) -> None:
    edit(
        folder,
        OBS,
        lambda sd: element(sd, "Observation.value[x]").update(
            type=[{"code": "Quantity"}, {"code": "CodeableConcept"}, {"code": "string"}]
        ),
    )
    doc = lab_observation()
    del doc["valueQuantity"]
    doc["valueBoolean"] = True
    assert verdict(Profiles.load(folder).validate(doc)) == [
        ("error", "structure", "Observation.valueBoolean")
    ]


@pytest.mark.parametrize(
    ("name", "change", "message"),
    [
        (
            OBS,
            lambda sd: element(sd, "Observation.valueQuantity").update(
                minValueQuantity={"value": 0}
            ),
            "minValueQuantity",
        ),
        (
            OBS,
            lambda sd: (
                element(sd, "Observation")
                .setdefault("constraint", [])
                .append(
                    {
                        "key": "x-1",
                        "severity": "error",
                        "human": "x",
                        "expression": "code.coding.count() > 0",
                    }
                )
            ),
            "x-1",
        ),
        (
            OBS,
            lambda sd: element(sd, "Observation.code").update(
                binding={"strength": "required", "valueSet": "http://loinc.org/vs"}
            ),
            "not shipped",
        ),
        (
            OBS,
            lambda sd: element(sd, "Observation.status").update(min=2, max="1"),
            "max must be",
        ),
        (
            OBS,
            lambda sd: element(sd, "Observation.value[x]:valueQuantity").update(min=1),
            "type slicing",
        ),
        (
            STUDY,
            lambda sd: element(sd, "ImagingStudy.identifier")["slicing"]["discriminator"][0].update(
                type="exists"
            ),
            "discriminator",
        ),
        (
            "ValueSet-hie-observation-category.json",
            lambda vs: vs["compose"]["include"][0].update(
                filter=[{"property": "concept", "op": "is-a", "value": "laboratory"}]
            ),
            "filters are not supported",
        ),
    ],
)
def test_what_cannot_be_enforced_stops_loading(
    folder: Path, name: str, change: Callable[[Json], None], message: str
) -> None:
    edit(folder, name, change)
    with pytest.raises(ProfileError, match=message):
        Profiles.load(folder)


def test_two_profiles_for_one_type_are_refused(folder: Path) -> None:
    doc = json.loads((folder / OBS).read_text(encoding="utf-8"))
    doc["id"] = "another"
    doc["url"] = "https://hie.example.org/fhir/StructureDefinition/another"
    (folder / "StructureDefinition-another.json").write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(ProfileError, match="two profiles for Observation"):
        Profiles.load(folder)


def test_non_resource_definitions_and_other_files_are_ignored(folder: Path) -> None:
    extension = {
        "resourceType": "StructureDefinition",
        "id": "hie-ext",
        "url": "https://hie.example.org/fhir/StructureDefinition/hie-ext",
        "kind": "complex-type",
        "type": "Extension",
        "derivation": "constraint",
    }
    (folder / "StructureDefinition-hie-ext.json").write_text(
        json.dumps(extension), encoding="utf-8"
    )
    (folder / "ConceptMap-x.json").write_text("not even json", encoding="utf-8")
    assert Profiles.load(folder).validate(lab_observation()) == []


def test_an_unreadable_profile_file_is_a_profile_error(folder: Path) -> None:
    (folder / OBS).write_text("{", encoding="utf-8")
    with pytest.raises(ProfileError, match="cannot read"):
        Profiles.load(folder)
