"""Golden mapping of the demo hospitals' HL7 v2 fixtures: file in → expected FHIR JSON out.

Regenerate after a deliberate mapping change with ``HIE_REGEN_GOLDEN=1 pytest <this file>``
and review the diff like code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from adapters.base import DeadLetter, Unit
from adapters.hl7v2.coding import Context
from adapters.hl7v2.drop_folder import read_payload
from hie.profile import Profiles
from hie.terminology import Terminology

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "fixtures" / "hl7v2"
GOLDEN = Path(__file__).parent / "golden"
FILES = sorted(FIXTURES.glob("*/*.hl7"))


@pytest.fixture(scope="module")
def profiles() -> Profiles:
    return Profiles.load(ROOT / "fhir_profiles")


def mapped(path: Path) -> tuple[list[Unit], list[DeadLetter], Terminology]:
    terminology = Terminology.load(ROOT / "fhir_profiles")
    hospital = path.parent.name
    units, dead = read_payload(path.read_bytes(), path.name, Context(hospital, terminology))
    return units, dead, terminology


def as_json(units: list[Unit], dead: list[DeadLetter], terminology: Terminology) -> Any:
    return {
        "units": [
            {
                "key": u.key,
                "content_type": u.content_type,
                "raw_bytes": len(u.raw),
                "entries": [{"fullUrl": e.full_url, "resource": e.resource} for e in u.entries],
            }
            for u in units
        ],
        "dead_letters": [
            {"key": d.key, "reason": d.reason, "location": d.location, "raw_bytes": len(d.raw)}
            for d in dead
        ],
        "unmapped": [[u.hospital_id, u.code, u.display, u.count] for u in terminology.unmapped()],
    }


def test_every_hospital_has_fixtures() -> None:
    assert {p.parent.name for p in FILES} == {"szph", "pkuszh", "nsdh"}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_fixture_matches_golden(path: Path) -> None:
    got = as_json(*mapped(path))
    golden = GOLDEN / f"{path.stem}.json"
    if os.environ.get("HIE_REGEN_GOLDEN"):
        GOLDEN.mkdir(exist_ok=True)
        golden.write_text(json.dumps(got, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    assert got == json.loads(golden.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_fixture_output_is_valid_fhir_and_self_contained(path: Path, profiles: Profiles) -> None:
    units, _, _ = mapped(path)
    for unit in units:
        urls = {e.full_url for e in unit.entries}
        assert all(u and u.startswith("urn:uuid:") for u in urls)
        for entry in unit.entries:
            res = entry.resource
            get_fhir_model_class(res["resourceType"]).model_validate(res)
            assert profiles.validate(res) == [], res
            for ref in _references(res):
                assert ref in urls or ref.startswith("Organization/"), ref
            if res["resourceType"] == "Observation":
                # dateTimes with a time carry a zone (FHIR R4 dateTime)
                assert res["effectiveDateTime"][-6] in "+-"


def test_dialects_differ_but_the_same_test_gets_the_same_loinc() -> None:
    """szph XC001, pkuszh 100101 and nsdh/ConceptMap WBC: all leukocytes, LOINC first."""
    codes = {}
    for name, hospital in (
        ("szph-20261115-zhang-wei", "szph"),
        ("pkuszh-20261118-batch", "pkuszh"),
    ):
        units, _, _ = mapped(FIXTURES / hospital / f"{name}.hl7")
        for e in units[-1].entries:
            r = e.resource
            if r["resourceType"] == "Observation" and r["code"]["coding"][0]["code"] == "6690-2":
                codes[hospital] = [
                    c["system"].rsplit("/", 1)[-1] + "|" + c["code"] for c in r["code"]["coding"]
                ]
    assert codes == {
        "szph": ["loinc.org|6690-2", "szph|XC001"],
        "pkuszh": ["loinc.org|6690-2", "pkuszh|100101"],
    }


def test_bad_message_in_a_file_is_a_dead_letter_and_the_rest_lands() -> None:
    units, dead, _ = mapped(FIXTURES / "szph" / "szph-20261116-batch.hl7")
    assert [u.key.split("#")[1].split(" ")[0] for u in units] == ["1", "2", "4"]
    (bad,) = dead
    assert bad.location == "OBX[1]-5"
    assert "OBX-5 '见备注' is not a number" in bad.reason
    assert bad.raw.startswith(b"MSH|") and b"SZ20261116000203" in bad.raw
    assert b"SZ20261116000202" not in bad.raw and b"SZ20261116000204" not in bad.raw


def test_corrected_result_keeps_its_identifier() -> None:
    first, _, _ = mapped(FIXTURES / "pkuszh" / "pkuszh-20261118-batch.hl7")
    again, _, _ = mapped(FIXTURES / "pkuszh" / "pkuszh-20261119-correction.hl7")

    def hba1c(units: list[Unit]) -> dict[str, Any]:
        return next(
            e.resource
            for u in units
            for e in u.entries
            if e.resource["resourceType"] == "Observation"
            and e.resource["code"]["coding"][0]["code"] == "4548-4"
        )

    before, after = hba1c(first), hba1c(again)
    assert before["identifier"] == after["identifier"]
    assert (before["status"], before["valueQuantity"]["value"]) == ("final", 6.3)
    assert (after["status"], after["valueQuantity"]["value"]) == ("corrected", 6.5)
    assert after["note"] == [{"text": "复核后更正：原报告 6.3%"}]


def _references(node: Any) -> list[str]:
    out: list[str] = []
    if isinstance(node, dict):
        if isinstance(node.get("reference"), str):
            out.append(node["reference"])
        for v in node.values():
            out.extend(_references(v))
    elif isinstance(node, list):
        for v in node:
            out.extend(_references(v))
    return out
