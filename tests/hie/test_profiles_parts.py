"""The validator's parts on their own: ValueSet expansion and the FHIRPath subset of invariants.

Inputs are small hand-written CodeSystems/ValueSets and JSON fragments (written for these
tests), plus the shipped ``fhir_profiles/`` expansions the bindings rely on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hie.profile import ProfileError, Profiles
from hie.profile.invariant import compile_invariant
from hie.profile.terminology import Terminology

PROFILES_DIR = Path(__file__).resolve().parents[2] / "fhir_profiles"


def code_system(url: str, concepts: list[Any], content: str = "complete") -> dict[str, Any]:
    return {"resourceType": "CodeSystem", "url": url, "content": content, "concept": concepts}


def value_set(url: str, **compose: Any) -> dict[str, Any]:
    return {"resourceType": "ValueSet", "url": url, "compose": compose}


ABSTRACT = [{"code": "notSelectable", "valueBoolean": True}]
CS = code_system(
    "http://x/cs",
    [
        {"code": "_group", "property": ABSTRACT, "concept": [{"code": "a"}, {"code": "b"}]},
        {"code": "c", "concept": [{"code": "c1"}]},
    ],
)


def test_whole_system_include_is_nested_and_skips_abstract_codes() -> None:
    terms = Terminology([CS], [value_set("http://x/vs", include=[{"system": "http://x/cs"}])])
    expansion = terms.expand("http://x/vs|1.0")  # a version suffix is ignored
    assert expansion.codes == {"a", "b", "c", "c1"}
    assert expansion.pairs == {("http://x/cs", c) for c in ("a", "b", "c", "c1")}
    assert expansion.systems == {"http://x/cs"}


def test_listed_concepts_exclude_and_nested_value_sets() -> None:
    terms = Terminology(
        [CS],
        [
            value_set(
                "http://x/listed",
                include=[{"system": "http://y/unshipped", "concept": [{"code": "z"}]}],
            ),
            value_set(
                "http://x/vs",
                include=[{"system": "http://x/cs"}, {"valueSet": ["http://x/listed"]}],
                exclude=[{"system": "http://x/cs", "concept": [{"code": "b"}]}],
            ),
        ],
    )
    assert terms.expand("http://x/vs").pairs == {
        ("http://x/cs", "a"),
        ("http://x/cs", "c"),
        ("http://x/cs", "c1"),
        ("http://y/unshipped", "z"),
    }


@pytest.mark.parametrize(
    ("code_systems", "compose", "message"),
    [
        ([], {"include": [{"system": "http://x/cs"}]}, "not shipped"),
        (
            [code_system("http://x/cs", [], content="fragment")],
            {"include": [{"system": "http://x/cs"}]},
            "content 'fragment'",
        ),
        ([CS], {"include": [{"valueSet": ["http://x/vs"]}]}, "includes itself"),
        ([CS], {"include": [{"system": "http://x/cs", "filter": []}]}, "filters"),
        ([CS], {}, "no compose.include"),
    ],
)
def test_unexpandable_value_sets_are_profile_errors(
    code_systems: list[Any], compose: dict[str, Any], message: str
) -> None:
    terms = Terminology(code_systems, [value_set("http://x/vs", **compose)])
    with pytest.raises(ProfileError, match=message):
        terms.expand("http://x/vs")
    with pytest.raises(ProfileError, match="not shipped"):
        terms.expand("http://x/other")


def test_shipped_expansions() -> None:
    profiles = Profiles.load(PROFILES_DIR)
    status = profiles.expansion("http://hl7.org/fhir/ValueSet/observation-status")
    assert status.codes == {
        "registered",
        "preliminary",
        "final",
        "amended",
        "corrected",
        "cancelled",
        "entered-in-error",
        "unknown",
    }
    gender = profiles.expansion("http://hl7.org/fhir/ValueSet/administrative-gender")
    assert gender.codes == {"male", "female", "other", "unknown"}
    interpretation = profiles.expansion("http://hl7.org/fhir/ValueSet/observation-interpretation")
    assert {"H", "L", "N", "HH", "LL", "A", "POS", "NEG"} <= interpretation.codes
    assert not any(c.startswith("_") for c in interpretation.codes)
    assert (
        "CT" in profiles.expansion("https://hie.example.org/fhir/ValueSet/hie-dicom-modality").codes
    )


OBS: dict[str, Any] = {
    "resourceType": "Observation",
    "status": "final",
    "valueQuantity": {"value": 1},
    "identifier": [{"value": "1"}, {"system": "s", "value": "2"}],
    "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
}


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("value.exists()", True),  # a choice element is found by its stem
        ("dataAbsentReason.exists()", False),
        ("dataAbsentReason.empty() or value.empty()", True),
        ("value.exists() and dataAbsentReason.exists()", False),
        ("value.exists() xor status.exists()", False),
        ("dataAbsentReason.exists() implies value.empty()", True),
        ("status.exists() implies dataAbsentReason.exists()", False),
        ("(value.exists() or component.exists()).not()", False),
        ("value.exists().not().not()", True),
        ("identifier.where(system.exists() and value.exists()).exists()", True),
        ("identifier.where(system.empty()).value.startsWith('1')", True),
        ("identifier.value.startsWith('1')", False),  # every value must start with '1'
        ("code.coding.system.matches('http://loinc\\\\.org')", True),
        ("code.coding.code.matches('[0-9]+')", False),  # full match: '-' is not a digit
        ("specimen.display.startsWith('x')", True),  # empty input: nothing to violate
        ("status.matches('fin')", False),
        ("status.matches('fin.*')", True),
    ],
)
def test_invariant_subset(expression: str, expected: bool) -> None:
    assert compile_invariant("t-1", expression).holds(OBS) is expected


@pytest.mark.parametrize(
    ("expression", "focus"),
    [
        ("identifier.where(system.exists()).exists()", "identifier"),
        ("identifier.empty() or identifier.where(value.exists()).exists()", "identifier"),
        ("value.matches('x')", "value"),
        ("low.exists() or high.exists()", None),
        ("(identifier.exists())", None),
    ],
)
def test_invariant_focus(expression: str, focus: str | None) -> None:
    assert compile_invariant("t-1", expression).focus == focus


@pytest.mark.parametrize(
    "expression",
    [
        "code.coding.count() > 0",
        "value.exists() or",
        "value",
        "value.exists(",
        "value.resolve()",
        "value.matches('(')",
        "exists()",
        "value.exists() # comment",
    ],
)
def test_invariant_outside_the_subset_is_refused(expression: str) -> None:
    with pytest.raises(ProfileError, match="t-1"):
        compile_invariant("t-1", expression)


@pytest.mark.parametrize("odd", [None, 3, "x", [], [{"value": None}], {"value": [None, {}]}])
def test_invariants_never_raise_on_odd_shapes(odd: Any) -> None:
    rule = compile_invariant("t-1", "value.where(system.exists()).code.matches('a')")
    assert rule.holds(odd) in (True, False)
