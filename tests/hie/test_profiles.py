"""Golden tests, one per profile rule: a valid resource with one thing broken → the exact issues.

The valid resources below were written for these tests (by the profiles engineer, from the
shapes hie's adapters produce for a Shenzhen hospital, ``sz-h1``); each case changes one
thing and names the (severity, issue code, FHIRPath expression) the validator must report.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hie.outcome import Issue
from hie.profile import Profiles

PROFILES_DIR = Path(__file__).resolve().parents[2] / "fhir_profiles"
OBS_CAT = "http://terminology.hl7.org/CodeSystem/observation-category"
V3_INTERP = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
DCM = "http://dicom.nema.org/resources/ontology/DCM"

Json = dict[str, Any]


@pytest.fixture(scope="module")
def profiles() -> Profiles:
    return Profiles.load(PROFILES_DIR)


def lab_observation() -> Json:
    """A haemoglobin result as the HL7 v2 adapter maps it (OBX-3 LOINC, OBX-8 N)."""
    return {
        "resourceType": "Observation",
        "id": "hb-1",
        "identifier": [{"system": "https://hie.example.org/sid/result/sz-h1", "value": "F1.HGB"}],
        "status": "final",
        "category": [{"coding": [{"system": OBS_CAT, "code": "laboratory"}]}],
        "code": {
            "coding": [{"system": "http://loinc.org", "code": "718-7", "display": "Hemoglobin"}],
            "text": "血红蛋白",
        },
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2024-03-01T08:30:00+08:00",
        "issued": "2024-03-01T10:00:00+08:00",
        "valueQuantity": {
            "value": 135,
            "unit": "g/L",
            "system": "http://unitsofmeasure.org",
            "code": "g/L",
        },
        "interpretation": [{"coding": [{"system": V3_INTERP, "code": "N"}]}],
        "referenceRange": [{"low": {"value": 115, "unit": "g/L"}, "high": {"value": 150}}],
    }


def diagnostic_report() -> Json:
    return {
        "resourceType": "DiagnosticReport",
        "identifier": [{"system": "https://hie.example.org/sid/filler-order/sz-h1", "value": "F1"}],
        "status": "final",
        "category": [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "LAB"}]}
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": "58410-2"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2024-03-01T08:30:00+08:00",
        "result": [{"reference": "Observation/hb-1"}],
    }


def imaging_study() -> Json:
    uid = "1.2.840.113619.2.55.3.604688119.969.1268071029.320"
    return {
        "resourceType": "ImagingStudy",
        "identifier": [
            {"system": "urn:dicom:uid", "value": f"urn:oid:{uid}"},
            {"type": {"text": "accession"}, "value": "A123"},
        ],
        "status": "available",
        "modality": [{"system": DCM, "code": "CT"}],
        "subject": {"reference": "Patient/p1"},
        "started": "2024-03-01T09:00:00+08:00",
        "endpoint": [{"reference": "Endpoint/pacs-sz-h1"}],
        "series": [
            {"uid": f"{uid}.1", "modality": {"system": DCM, "code": "CT"}},
            {"uid": f"{uid}.2", "modality": {"system": DCM, "code": "SR"}},
            {"uid": f"{uid}.3", "modality": {"system": DCM, "code": "MR"}},
        ],
    }


def patient() -> Json:
    return {
        "resourceType": "Patient",
        "identifier": [
            {"system": "https://hie.example.org/sid/mrn/sz-h1", "value": "M0001"},
        ],
        "name": [{"text": "张三"}],
        "gender": "male",
        "birthDate": "1980-05-06",
    }


def verdict(issues: list[Issue]) -> list[tuple[str, str, str | None]]:
    return sorted((i.severity, i.code, i.expression) for i in issues)


Edit = Callable[[Json], None]


def _set(path: str, value: Any) -> Edit:
    """Set a dotted path (list indices as numbers; one past the end appends) to ``value``;
    ``...`` deletes it."""

    def edit(doc: Json) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        if value is ...:
            del node[int(last) if last.isdigit() else last]
        elif last.isdigit() and int(last) == len(node):
            node.append(value)
        elif last.isdigit():
            node[int(last)] = value
        else:
            node[last] = value

    return edit


def _both(*edits: Edit) -> Edit:
    def edit(doc: Json) -> None:
        for e in edits:
            e(doc)

    return edit


E, W = "error", "warning"

OBSERVATION_CASES: list[tuple[str, Edit, list[tuple[str, str, str]]]] = [
    ("status missing", _set("status", ...), [(E, "required", "Observation.status")]),
    ("status bogus", _set("status", "bogus"), [(E, "code-invalid", "Observation.status")]),
    ("status not a string", _set("status", 42), [(E, "code-invalid", "Observation.status")]),
    ("category missing", _set("category", ...), [(E, "required", "Observation.category")]),
    (
        "vital signs are not exchanged",
        _set("category.0.coding.0.code", "vital-signs"),
        [(E, "required", "Observation.category")],
    ),
    (
        "category code unknown",
        _set(
            "category.0.coding",
            [{"system": "http://local/cat", "code": "检验"}, {"system": OBS_CAT, "code": "bogus"}],
        ),
        [(E, "required", "Observation.category")],
    ),
    (
        "category text only",
        _set("category", [{"text": "lab"}]),
        [(E, "required", "Observation.category")],
    ),
    (
        "one good coding is enough for a CodeableConcept",
        _set(
            "category.0.coding",
            [{"system": "http://local/cat", "code": "x"}, {"system": OBS_CAT, "code": "imaging"}],
        ),
        [],
    ),
    (
        "other categories may follow the exchanged one (HL7 LRI style)",
        _set(
            "category.1",
            {"coding": [{"system": "urn:oid:2.16.840.1.113883.9.195.4.61", "code": "RSLT"}]},
        ),
        [],
    ),
    ("code missing", _set("code", ...), [(E, "required", "Observation.code")]),
    (
        "code with text only",
        _set("code", {"text": "Hb"}),
        [(E, "required", "Observation.code.coding")],
    ),
    (
        "code coding without system",
        _set("code.coding.0.system", ...),
        [(E, "required", "Observation.code.coding[0].system")],
    ),
    ("subject missing", _set("subject", ...), [(E, "required", "Observation.subject")]),
    (
        "subject is a Group",
        _set("subject", {"reference": "Group/herd"}),
        [(E, "value", "Observation.subject.reference")],
    ),
    (
        "subject absolute URL to a Patient",
        _set("subject", {"reference": "https://h1.example/fhir/Patient/9/_history/2"}),
        [],
    ),
    (
        "subject logical reference (identifier only)",
        _set("subject", {"identifier": {"system": "x", "value": "1"}}),
        [],
    ),
    (
        "subject Reference.type disagrees",
        _set("subject", {"type": "Device", "identifier": {"value": "1"}}),
        [(E, "value", "Observation.subject.type")],
    ),
    (
        "subject is a contained Patient",
        _both(
            _set("contained", [{"resourceType": "Patient", "id": "p"}]),
            _set("subject", {"reference": "#p"}),
        ),
        [],
    ),
    (
        "subject points at a missing contained resource",
        _set("subject", {"reference": "#nobody"}),
        [(E, "value", "Observation.subject.reference")],
    ),
    (
        "subject reference unreadable",
        _set("subject", {"reference": "p1"}),
        [(E, "value", "Observation.subject.reference")],
    ),
    (
        "effective missing",
        _set("effectiveDateTime", ...),
        [(E, "required", "Observation.effective")],
    ),
    (
        "effective as an instant is not allowed",
        _both(_set("effectiveDateTime", ...), _set("effectiveInstant", "2024-03-01T08:30:00Z")),
        [(E, "structure", "Observation.effectiveInstant")],
    ),
    (
        "effective twice",
        _set("effectivePeriod", {"start": "2024-03-01"}),
        [(E, "structure", "Observation.effective")],
    ),
    (
        "no value, no dataAbsentReason, no components",
        _set("valueQuantity", ...),
        [(E, "invariant", "Observation")],
    ),
    (
        "dataAbsentReason instead of a value",
        _both(_set("valueQuantity", ...), _set("dataAbsentReason", {"text": "haemolysed"})),
        [],
    ),
    (
        "dataAbsentReason beside a value",
        _set("dataAbsentReason", {"text": "haemolysed"}),
        [(E, "invariant", "Observation")],
    ),
    (
        "interpretation outside v3 ObservationInterpretation",
        _set("interpretation.0.coding.0.code", "HIGH"),
        [(E, "code-invalid", "Observation.interpretation[0].coding[0].code")],
    ),
    (
        "interpretation with an abstract (notSelectable) code",
        _set("interpretation.0.coding.0.code", "_ObservationInterpretationNormality"),
        [(E, "code-invalid", "Observation.interpretation[0].coding[0].code")],
    ),
    (
        "interpretation from a nested concept (HH under AA under A)",
        _set("interpretation.0.coding.0.code", "HH"),
        [],
    ),
    (
        "reference range without low, high or text",
        _set("referenceRange", [{"low": {"value": 1}}, {"type": {"text": "normal"}}]),
        [(E, "invariant", "Observation.referenceRange[1]")],
    ),
    ("identifier missing", _set("identifier", ...), [(E, "required", "Observation.identifier")]),
    (
        "identifier without a system",
        _set("identifier", [{"value": "F1.HGB"}]),
        [(E, "invariant", "Observation.identifier")],
    ),
    (
        "component code without coding",
        _set(
            "component",
            [
                {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]}},
                {"code": {"text": "diastolic"}},
            ],
        ),
        [(E, "required", "Observation.component[1].code.coding")],
    ),
    (
        "component interpretation outside the ValueSet",
        _set(
            "component",
            [
                {
                    "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                    "interpretation": [{"coding": [{"system": V3_INTERP, "code": "nope"}]}],
                }
            ],
        ),
        [(E, "code-invalid", "Observation.component[0].interpretation[0].coding[0].code")],
    ),
    (
        "hasMember must be Observations",
        _set("hasMember", [{"reference": "Observation/a"}, {"reference": "DiagnosticReport/b"}]),
        [(E, "value", "Observation.hasMember[1].reference")],
    ),
    (
        "empty array (FHIR JSON forbids it; fhir.resources lets it through)",
        _set("category", []),
        [(E, "invalid", "Observation.category"), (E, "required", "Observation.category")],
    ),
    (
        "empty coding array inside a CodeableConcept",
        _set("category", [{"coding": []}]),
        [
            (E, "required", "Observation.category"),
            (E, "invalid", "Observation.category[0].coding"),
        ],
    ),
    ("null property", _set("issued", None), [(E, "invalid", "Observation.issued")]),
    ("empty string", _set("code.text", ""), [(E, "invalid", "Observation.code.text")]),
    ("empty object", _set("valueQuantity", {}), [(E, "invalid", "Observation.valueQuantity")]),
    ("id too long", _set("id", "x" * 65), [(E, "invalid", "Observation.id")]),
    (
        "odd shape: code is a string",
        _set("code", "718-7"),
        [(E, "structure", "Observation.code")],
    ),
    (
        "odd shape: category is an object, not an array",
        _set("category", {"coding": [{"system": OBS_CAT, "code": "laboratory"}]}),
        [],  # structural typing is fhir.resources' job; the content itself is acceptable
    ),
]


@pytest.mark.parametrize(
    ("edit", "expected"),
    [pytest.param(e, x, id=name) for name, e, x in OBSERVATION_CASES],
)
def test_observation_rule(profiles: Profiles, edit: Edit, expected: list[Any]) -> None:
    doc = lab_observation()
    edit(doc)
    assert verdict(profiles.validate(doc)) == sorted(expected)


def test_valid_resources_pass(profiles: Profiles) -> None:
    for doc in (lab_observation(), diagnostic_report(), imaging_study(), patient()):
        assert profiles.validate(doc) == [], doc["resourceType"]


def test_diagnostics_name_the_rule_and_the_profile(profiles: Profiles) -> None:
    doc = lab_observation()
    del doc["status"]
    doc["category"][0]["coding"][0]["code"] = "vital-signs"
    doc["interpretation"][0]["coding"].append({"system": V3_INTERP, "code": "bogus"})
    doc["interpretation"][0]["coding"][0]["code"] = "HIGH"
    by_expr = {i.expression: i.diagnostics for i in profiles.validate(doc)}
    assert by_expr["Observation.status"] == (
        "Observation.status: at least 1 required, missing "
        "(Observation.status 1..1 in profile hie-lab-observation)"
    )
    assert by_expr["Observation.category"] == (
        "Observation.category: slice 'exchanged' ($this in "
        "https://hie.example.org/fhir/ValueSet/hie-observation-category (imaging, laboratory)): "
        "at least 1 required, missing "
        "(Observation.category:exchanged 1..* in profile hie-lab-observation)"
    )
    interpretation = by_expr["Observation.interpretation[0].coding[0].code"]
    assert interpretation.startswith(
        "Observation.interpretation[0].coding[0].code: no coding from the required ValueSet "
        "http://hl7.org/fhir/ValueSet/observation-interpretation (found "
        "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation|HIGH, "
        "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation|bogus; allowed: "
    )
    assert interpretation.endswith(
        "(profile hie-lab-observation, element Observation.interpretation)"
    )


def test_waive_lifts_one_element_rule_only(profiles: Profiles) -> None:
    """The HTTP API may accept a plain create without a source identifier; the other rules
    on identifiers (and everything else) still apply."""
    doc = lab_observation()
    del doc["identifier"]
    assert verdict(profiles.validate(doc, waive={"Observation.identifier"})) == []
    doc["identifier"] = [{"value": "no system"}]
    # hie-id-1 sits on the root element, which is not waived
    assert verdict(profiles.validate(doc, waive={"Observation.identifier"})) == [
        (E, "invariant", "Observation.identifier")
    ]
    del doc["status"]
    assert (E, "required", "Observation.status") in verdict(
        profiles.validate(doc, waive={"Observation.identifier"})
    )


REPORT_CASES: list[tuple[str, Edit, list[tuple[str, str, str]]]] = [
    ("status bogus", _set("status", "done"), [(E, "code-invalid", "DiagnosticReport.status")]),
    ("category missing", _set("category", ...), [(E, "required", "DiagnosticReport.category")]),
    (
        "category outside v2-0074 is only a warning (extensible)",
        _set("category.0.coding.0", {"system": "http://loinc.org", "code": "LP29684-5"}),
        [(W, "code-invalid", "DiagnosticReport.category[0]")],
    ),
    (
        "unknown v2-0074 code",
        _set("category.0.coding.0.code", "LABX"),
        [(W, "code-invalid", "DiagnosticReport.category[0].coding[0].code")],
    ),
    ("code missing", _set("code", ...), [(E, "required", "DiagnosticReport.code")]),
    ("subject missing", _set("subject", ...), [(E, "required", "DiagnosticReport.subject")]),
    (
        "effective missing",
        _set("effectiveDateTime", ...),
        [(E, "required", "DiagnosticReport.effective")],
    ),
    ("issued is optional", _set("issued", "2024-03-01T10:00:00+08:00"), []),
    (
        "result must be Observations",
        _set("result", [{"reference": "Patient/p1"}]),
        [(E, "value", "DiagnosticReport.result[0].reference")],
    ),
    (
        "identifier missing",
        _set("identifier", ...),
        [(E, "required", "DiagnosticReport.identifier")],
    ),
]


@pytest.mark.parametrize(
    ("edit", "expected"), [pytest.param(e, x, id=name) for name, e, x in REPORT_CASES]
)
def test_diagnostic_report_rule(profiles: Profiles, edit: Edit, expected: list[Any]) -> None:
    doc = diagnostic_report()
    edit(doc)
    assert verdict(profiles.validate(doc)) == sorted(expected)


STUDY_CASES: list[tuple[str, Edit, list[tuple[str, str, str]]]] = [
    ("status bogus", _set("status", "done"), [(E, "code-invalid", "ImagingStudy.status")]),
    (
        "no Study Instance UID identifier",
        _set("identifier", [{"type": {"text": "accession"}, "value": "A123"}]),
        [(E, "required", "ImagingStudy.identifier")],
    ),
    (
        "two Study Instance UIDs",
        _set(
            "identifier",
            [
                {"system": "urn:dicom:uid", "value": "urn:oid:1.2.3"},
                {"system": "urn:dicom:uid", "value": "urn:oid:1.2.4"},
            ],
        ),
        [(E, "structure", "ImagingStudy.identifier")],
    ),
    (
        "UID without the urn:oid: prefix",
        _set("identifier.0.value", "1.2.840.113619.2.55"),
        [(E, "invariant", "ImagingStudy.identifier[0].value")],
    ),
    (
        "UID slice without a value",
        _set("identifier", [{"system": "urn:dicom:uid"}]),
        [(E, "required", "ImagingStudy.identifier[0].value")],
    ),
    (
        "UID longer than 64 characters (+ urn:oid:)",
        _set("identifier.0.value", "urn:oid:1." + "1" * 70),
        [(E, "value", "ImagingStudy.identifier[0].value")],
    ),
    ("subject missing", _set("subject", ...), [(E, "required", "ImagingStudy.subject")]),
    ("started missing", _set("started", ...), [(E, "required", "ImagingStudy.started")]),
    (
        "series modality missing",
        _set("series.0.modality", ...),
        [(E, "required", "ImagingStudy.series[0].modality")],
    ),
    (
        "series modality unknown DCM code (extensible → warning)",
        _set("series.2.modality", {"system": DCM, "code": "XYZ"}),
        [(W, "code-invalid", "ImagingStudy.series[2].modality.code")],
    ),
    (
        "series modality from another system",
        _set("series.2.modality", {"system": "http://local/modality", "code": "CT"}),
        [(W, "code-invalid", "ImagingStudy.series[2].modality")],
    ),
    (
        "endpoint must be an Endpoint",
        _set("endpoint", [{"reference": "Organization/sz-h1"}]),
        [(E, "value", "ImagingStudy.endpoint[0].reference")],
    ),
]


@pytest.mark.parametrize(
    ("edit", "expected"), [pytest.param(e, x, id=name) for name, e, x in STUDY_CASES]
)
def test_imaging_study_rule(profiles: Profiles, edit: Edit, expected: list[Any]) -> None:
    doc = imaging_study()
    edit(doc)
    assert verdict(profiles.validate(doc)) == sorted(expected)


PATIENT_CASES: list[tuple[str, Edit, list[tuple[str, str, str]]]] = [
    ("gender as GB/T 2261.1 code", _set("gender", "1"), [(E, "code-invalid", "Patient.gender")]),
    ("gender missing is allowed", _set("gender", ...), []),
    ("identifier missing", _set("identifier", ...), [(E, "required", "Patient.identifier")]),
    (
        "identifier without value",
        _set("identifier", [{"system": "https://hie.example.org/sid/mrn/sz-h1"}]),
        [(E, "invariant", "Patient.identifier")],
    ),
    (
        "one complete identifier is enough",
        _set(
            "identifier",
            [{"system": "https://hie.example.org/sid/mrn/sz-h1"}, {"system": "s", "value": "v"}],
        ),
        [],
    ),
]


@pytest.mark.parametrize(
    ("edit", "expected"), [pytest.param(e, x, id=name) for name, e, x in PATIENT_CASES]
)
def test_patient_rule(profiles: Profiles, edit: Edit, expected: list[Any]) -> None:
    doc = patient()
    edit(doc)
    assert verdict(profiles.validate(doc)) == sorted(expected)


def test_types_without_a_profile_get_only_json_rules(profiles: Profiles) -> None:
    assert profiles.resource_types == {"Observation", "DiagnosticReport", "ImagingStudy", "Patient"}
    org = {"resourceType": "Organization", "name": "深圳市人民医院"}
    assert profiles.validate(org) == []
    assert profiles.profile_url("Organization") is None
    org["alias"] = []
    assert verdict(profiles.validate(org)) == [(E, "invalid", "Organization.alias")]
    assert (
        profiles.profile_url("Observation")
        == "https://hie.example.org/fhir/StructureDefinition/hie-lab-observation"
    )


@pytest.mark.parametrize("resource", [None, [], "Observation", 3, {}, {"resourceType": 5}])
def test_not_a_resource(profiles: Profiles, resource: Any) -> None:
    issues = profiles.validate(resource)
    assert len(issues) == 1 and issues[0].severity == "error"


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
_builders = {
    "Observation": lab_observation,
    "DiagnosticReport": diagnostic_report,
    "ImagingStudy": imaging_study,
    "Patient": patient,
}


def _slots(node: Any) -> list[tuple[Any, Any]]:
    """Every (container, key-or-index) in a JSON document, depth first."""
    found: list[tuple[Any, Any]] = []
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in items:
        if key != "resourceType":
            found.append((node, key))
        if isinstance(value, (dict, list)):
            found.extend(_slots(value))
    return found


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(sorted(_builders)), slot=st.integers(min_value=0), value=_json)
def test_odd_shapes_never_raise(kind: str, slot: int, value: Any) -> None:
    """Any JSON value in any place of a valid resource: the validator reports, never raises."""
    profiles = _shared_profiles()
    doc = _builders[kind]()
    slots = _slots(doc)
    container, key = slots[slot % len(slots)]
    container[key] = value
    issues = profiles.validate(doc)
    assert all(isinstance(i, Issue) for i in issues)


_cache: dict[str, Profiles] = {}


def _shared_profiles() -> Profiles:
    if "p" not in _cache:  # hypothesis forbids function-scoped fixtures in @given tests
        _cache["p"] = Profiles.load(PROFILES_DIR)
    return _cache["p"]
