"""hie.fhir: JSON parsing limits and structural validation against the R4 model set, with a
FHIRPath ``expression`` for every fault (what a client needs to find it).

The public examples (tests/hie/reference_data.py) are the independent input: the published
valid ones pass, the validator's invalid ones fail at the element the HL7 test suite names.
"""

from __future__ import annotations

import orjson
import pytest

from hie.fhir import (
    SUPPORTED_TYPES,
    _clean,
    _faults,
    check_model,
    fhirpath,
    model_class,
    parse_json,
)
from hie.outcome import Invalid
from tests.hie.reference_data import FOLDERS, available, examples

needs_reference = pytest.mark.skipif(not available(), reason="../shared/reference-data is absent")


def _obs(**extra: object) -> dict[str, object]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
        **extra,
    }


def expressions(resource: object, path: str = "") -> list[str | None]:
    return [i.expression for i in check_model(resource, path=path)]


# -- parse_json --------------------------------------------------------------------------
def test_parse_json_accepts_json_and_refuses_the_rest() -> None:
    assert parse_json(b'{"a": [1, {"b": null}]}') == {"a": [1, {"b": None}]}
    for body in (b"", b"not json", b"{'a': 1}", b'{"a":1,}', b"\xff", b"[1] [2]", b"NaN"):
        with pytest.raises(Invalid):
            parse_json(body)


@pytest.mark.parametrize("depth", [65, 1_000, 10_000, 100_000])
def test_parse_json_refuses_deep_nesting_without_recursing(depth: int) -> None:
    for body in (b"[" * depth + b"]" * depth, b'{"a":' * depth + b"0" + b"}" * depth):
        with pytest.raises(Invalid) as caught:
            parse_json(body)
        assert "deep" in caught.value.diagnostics or "depth" in caught.value.diagnostics


def test_parse_json_depth_limit_is_inclusive() -> None:
    assert parse_json(b"[" * 64 + b"]" * 64, max_depth=64)
    with pytest.raises(Invalid):
        parse_json(b"[" * 65 + b"]" * 65, max_depth=64)
    wide = orjson.dumps({"entry": [{"resource": {"a": [1]}}] * 5000})
    assert len(parse_json(wide)["entry"]) == 5000  # breadth is not depth


# -- check_model ---------------------------------------------------------------------------
def test_a_valid_resource_has_no_issues() -> None:
    assert check_model(_obs()) == []
    assert {t for t in SUPPORTED_TYPES if model_class(t).__name__ != t} == set()


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        ([], [None]),
        ("Observation", [None]),
        ({"status": "final"}, ["resourceType"]),
        ({"resourceType": 7}, ["resourceType"]),
        ({"resourceType": "Medication"}, ["resourceType"]),
        # the models report in stages: the missing code first, status once code is there
        ({"resourceType": "Observation"}, ["Observation.code"]),
        ({"resourceType": "Observation", "code": {"text": "x"}}, ["Observation.status"]),
        (_obs(status=None), ["Observation.status"]),
        (_obs(colour="red"), ["Observation.colour"]),
        (_obs(valueQuantity={"value": "high"}), ["Observation.valueQuantity.value"]),
        (
            _obs(code={"coding": [{"system": 5, "code": "x"}]}),
            ["Observation.code.coding[0].system"],
        ),
        (_obs(category=[]), ["Observation.category"]),
        (_obs(code={}), ["Observation.code"]),
        (_obs(issued=""), ["Observation.issued"]),
        (_obs(note=[{"text": "a\u0000b"}]), ["Observation.note[0].text"]),
        (
            {"resourceType": "Patient", "name": [{"given": ["ok", "n\u0000"]}]},
            ["Patient.name[0].given[1]"],
        ),
        ({"resourceType": "Patient", "birthDate": "1980-13-01"}, ["Patient.birthDate"]),
        ({"resourceType": "Patient", "id": "a_b"}, ["Patient.id"]),
        ({"resourceType": "Patient", "gender": ["male"]}, ["Patient.gender"]),
    ],
    ids=lambda v: None,
)
def test_faults_are_named_by_fhirpath(resource: object, expected: list[str | None]) -> None:
    assert set(map(str, expressions(resource))) == set(map(str, expected))


def test_unsupported_types_are_not_supported_not_invalid() -> None:
    [issue] = check_model({"resourceType": "Medication"})
    assert issue.code == "not-supported"
    assert "Patient" in issue.diagnostics  # the message lists what is stored


def test_paths_inside_a_bundle_are_prefixed() -> None:
    where = "Bundle.entry[3].resource"
    assert expressions(_obs(valueQuantity={"value": "x"}), where) == [
        f"{where}.valueQuantity.value"
    ]
    assert expressions(_obs(category=[]), where) == [f"{where}.category"]
    assert expressions({"resourceType": "Medication"}, where) == [f"{where}.resourceType"]
    assert expressions({}, where) == [f"{where}.resourceType"]


def test_issues_are_bounded() -> None:
    many = _obs(note=[{"text": ""} for _ in range(500)])
    assert 0 < len(check_model(many)) <= 40


def test_fhirpath_from_pydantic_locations() -> None:
    assert fhirpath("Observation", ("code", "coding", 0, "system")) == (
        "Observation.code.coding[0].system"
    )
    assert fhirpath("X", ("valueQuantity", "function-after[validate(), Decimal]")) == (
        "X.valueQuantity"
    )
    assert fhirpath("Patient", ("fhir_comments", "list[str]", 1)) == "Patient.fhir_comments[1]"
    assert fhirpath("Patient", ("birthDate__ext",)) == "Patient.birthDate"


# -- the public examples ------------------------------------------------------------------
# The only published valid-looking example the models refuse (README of reference-data:
# US Core's CBC report has text.status but no text.div, invalid R4 as published).
INVALID_AS_PUBLISHED = {"us-core-8.0.0/diagnosticreport-cbc.json": ["DiagnosticReport.text.div"]}

# The HL7 validator's test cases of stored types, and the element each is about.
VALIDATOR_CASES = {
    "ai1.json": [],
    "json-good.json": [],
    "obs-temp.json": [],
    "patient-example-ra4.json": [],
    "ai3.json": ["Patient.unknownElement"],
    "ai4.json": ["Patient.birthDate"],
    "patient-id-bad-1.json": ["Patient.id"],
    "patient-id-bad-2.json": ["Patient.id"],
    "Observation-ex-pain.json": ["Observation.code", "Observation._valueInteger"],
    "obs-quantity.json": ["Observation.code"],
    "json-comments.json": ["Patient.fhir_comments", "Patient.fhir_comments[1]"],
    # structurally valid; what is wrong is for profiles or narrative checks, not the models
    "obs-temp-bad.json": [],
    "pat-security-bad-string.json": [],
    "pat-security-bad-xhtml.json": [],
    "patient-id-bad-3.json": [],  # a 65-character id: the length is checked at the edge
}


@needs_reference
@pytest.mark.parametrize("folder", [f for f in FOLDERS if f != "validator-test-cases"])
def test_published_examples_pass_the_models(folder: str) -> None:
    found = examples(folder)
    assert found
    for ex in found:
        assert expressions(ex.resource) == INVALID_AS_PUBLISHED.get(ex.name, []), ex.name


@needs_reference
def test_validator_cases_fail_where_the_test_suite_says() -> None:
    found = {ex.path.name: ex for ex in examples("validator-test-cases")}
    assert set(found) == set(VALIDATOR_CASES)
    for name, expected in VALIDATOR_CASES.items():
        assert expressions(found[name].resource) == expected, name


@needs_reference
def test_the_fast_clean_walk_agrees_with_the_one_that_names_paths() -> None:
    """``_clean`` (no paths built) must say "clean" exactly when ``_faults`` finds nothing,
    on every published example and on each fault of its kind."""
    faulty = [
        _obs(category=[]),
        _obs(code={}),
        _obs(issued=""),
        _obs(note=[{"text": "a\u0000b"}]),
        {"resourceType": "Patient", "name": [{"given": ["ok", "n\u0000"]}]},
        {"resourceType": "Patient", "text": {"status": "empty", "div": ""}},  # div may be ""
    ]
    resources = [ex.resource for folder in FOLDERS for ex in examples(folder)] + faulty
    assert len(resources) > 100
    for res in resources:
        assert _clean(res) == (not _faults(res, "X")), res
    assert [_clean(r) for r in faulty] == [False] * 5 + [True]
