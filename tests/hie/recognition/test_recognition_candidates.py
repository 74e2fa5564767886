"""From stored FHIR to verdicts: the other engineers' adapter outputs for the demo hospitals
(golden JSON under tests/adapters/, mapped from fixtures/hl7v2 and fixtures/dicom) stand in for
the index, with ingest's upsert by source identifier simulated (a correction becomes version 2
of the same resource). One patient, 张伟, has results at szph and pkuszh."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from recognition_world import PROFILES, SH, World, at, demo_world, loinc

from hie.naming import NATIONAL_ID
from hie.recognition.candidates import (
    facts,
    from_facts,
    pending_order,
    prior_result,
    specimen_reference,
    specimen_type,
)
from hie.recognition.catalogue import CATALOGUE_URL
from hie.recognition.model import Assessment, PriorResult

ADAPTERS = PROFILES.parent / "tests" / "adapters"
GOLDEN = [
    ADAPTERS / "hl7v2" / "golden" / "szph-20261115-zhang-wei.json",
    ADAPTERS / "hl7v2" / "golden" / "szph-20261116-batch.json",
    ADAPTERS / "hl7v2" / "golden" / "pkuszh-20261118-batch.json",
    ADAPTERS / "hl7v2" / "golden" / "pkuszh-20261119-correction.json",
    ADAPTERS / "dicom" / "golden" / "szph-ct-chest-zhang-wei.json",
]
ZHANG_WEI = "440305198003151231"


@dataclass
class Index:
    """Just enough of the index: versions per resource, keyed like ingest keys them."""

    versions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    hospital: dict[str, str] = field(default_factory=dict)

    def load(self, path: Path) -> None:
        hospital = path.name.split("-", 1)[0]
        doc = json.loads(path.read_text("utf-8"))
        for unit in doc.get("units", [doc]):
            entries = unit["entries"]
            refs = {e["fullUrl"]: self._ref(e["resource"], hospital, e["fullUrl"]) for e in entries}
            for e in entries:
                resource = _rewrite(e["resource"], refs)
                ref = refs[e["fullUrl"]]
                rid = ref.split("/", 1)[1]
                history = self.versions.setdefault(ref, [])
                resource = {**resource, "id": rid, "meta": {"versionId": str(len(history) + 1)}}
                history.append(resource)
                self.hospital[ref] = hospital

    @staticmethod
    def _ref(resource: dict[str, Any], hospital: str, full_url: str) -> str:
        ids = resource.get("identifier") or [{"value": full_url.rsplit(":", 1)[-1]}]
        value = re.sub(r"[^A-Za-z0-9.-]", "-", str(ids[0]["value"]).replace("urn:oid:", ""))
        return f"{resource['resourceType']}/{hospital}-{value[-48:]}"

    def patient_refs(self, national_id: str) -> set[str]:
        return {
            ref
            for ref, history in self.versions.items()
            if ref.startswith("Patient/")
            and any(
                i.get("system") == NATIONAL_ID and i.get("value") == national_id
                for i in history[-1].get("identifier", [])
            )
        }

    def candidates(self, national_id: str) -> list[PriorResult]:
        patients = self.patient_refs(national_id)
        out: list[PriorResult] = []
        for ref, history in sorted(self.versions.items()):
            for resource in history:
                if (resource.get("subject") or {}).get("reference") not in patients:
                    continue
                spec = resource.get("specimen") or {}
                spec_ref = (spec[0] if isinstance(spec, list) else spec).get("reference")
                specimen = self.versions[spec_ref][-1] if spec_ref in self.versions else None
                result = prior_result(
                    resource, hospital_id=self.hospital[ref], specimen=specimen_type(specimen)
                )
                if result is not None:
                    out.append(result)
        return out


def _rewrite(value: Any, refs: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {
            k: (refs.get(v, v) if k == "reference" else _rewrite(v, refs)) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_rewrite(v, refs) for v in value]
    return value


@pytest.fixture(scope="module")
def index() -> Index:
    missing = [p for p in GOLDEN if not p.exists()]
    if missing:
        pytest.fail(f"adapter golden files moved: {missing}")
    idx = Index()
    for path in GOLDEN:
        idx.load(path)
    return idx


CODES: list[str | tuple[str, str]] = [
    "58410-2",
    "4548-4",
    "2823-3",
    "57698-3",
    "24325-3",
    (CATALOGUE_URL, "CT-chest-plain"),
]


def _ask(world: World, index: Index, when: str, requester: str = "nsdh") -> Assessment:
    demo = demo_world(world)
    return demo.run(index.candidates(ZHANG_WEI), CODES, when, requester)


def test_patient_with_results_at_two_hospitals(world: World, index: Index) -> None:
    assessment = _ask(world, index, "2026-11-20T10:00:00")
    producers = {a.verdict.producer_id for a in assessment.results}
    assert producers == {"szph", "pkuszh"}
    coverage = {c.requested[1]: c for c in assessment.coverage}
    assert {k: c.state for k, c in coverage.items()} == {
        "58410-2": "covered",
        "4548-4": "covered",
        "2823-3": "covered",
        "57698-3": "covered",  # pkuszh's lipid panel, its moles codes matched through aliases
        "24325-3": "none",  # szph's liver panel in the fixtures is another patient's
        "CT-chest-plain": "covered",
    }
    # Newest first among recognised: pkuszh's CBC (18 Nov) before szph's (15 and 16 Nov).
    cbc = [a for a in assessment.results if a.verdict.item_code == "58410-2"]
    assert [a.verdict.producer_id for a in cbc][:1] == ["pkuszh"]
    for a in assessment.results:
        assert a.verdict.explanation_zh and a.verdict.explanation_en
        if a.verdict.recognised:
            assert a.verdict.mark == "粤HR" and a.verdict.expires_at is not None


def test_corrected_hba1c_replaces_its_first_version(world: World, index: Index) -> None:
    assessment = _ask(world, index, "2026-11-20T10:00:00")
    a1c = [
        a
        for a in assessment.results
        if a.result.resource_type == "Observation" and a.verdict.item_code == "4548-4"
    ]
    by_version = {a.result.version: a for a in a1c if a.result.hospital_id == "pkuszh"}
    assert by_version["2"].verdict.kind == "recognised"
    assert by_version["2"].result.value == Decimal("6.5")
    assert by_version["1"].verdict.reason == "superseded"


def test_the_same_results_a_few_weeks_later(world: World, index: Index) -> None:
    assessment = _ask(world, index, "2026-12-10T10:00:00")
    states = {c.requested[1]: c.state for c in assessment.coverage}
    # The 7-day items have expired; HbA1c (60 days), lipids (30) and the CT (6 months) stand.
    assert states["58410-2"] == "none" and states["2823-3"] == "none"
    assert states["4548-4"] == "covered" and states["57698-3"] == "covered"
    assert states["CT-chest-plain"] == "covered"
    k = next(a for a in assessment.results if a.verdict.item_code == "2823-3")
    assert (k.verdict.reason, k.verdict.expires_at) == (
        "expired",
        datetime(2026, 11, 23, tzinfo=SH),
    )


def test_own_results_for_szph(world: World, index: Index) -> None:
    assessment = _ask(world, index, "2026-11-20T10:00:00", requester="szph")
    own = [a.verdict for a in assessment.results if a.result.hospital_id == "szph"]
    recognised = [v for v in own if v.recognised]
    assert recognised and all(v.basis == "own-result" and v.mark is None for v in recognised)


def test_reading_stored_json_details() -> None:
    observation = {
        "resourceType": "Observation",
        "id": "k",
        "meta": {"versionId": "3"},
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2823-3"}], "text": "钾"},
        "effectiveDateTime": "2026-11-01",
        "valueQuantity": {
            "value": 4.2,
            "unit": "mmol/l",
            "system": "http://unitsofmeasure.org",
            "code": "mmol/L",
            "comparator": "<",
        },
        "referenceRange": [{"low": {"value": 3.5}, "high": {"value": 5.3}}],
        "basedOn": [{"reference": "ServiceRequest/o1"}],
    }
    r = prior_result(observation, hospital_id="szph")
    assert r is not None
    assert (r.ref, r.version, r.display, r.unit, r.value) == (
        "Observation/k",
        "3",
        "钾",
        "mmol/L",
        "<4.2",
    )
    assert r.effective == at("2026-11-01T00:00:00")
    assert (r.reference_range, r.based_on_order) == ("3.5-5.3", "ServiceRequest/o1")
    assert prior_result({"resourceType": "Patient"}, hospital_id="szph") is None
    assert prior_result({**observation, "effectiveDateTime": None}, hospital_id="szph") is None
    text_unit = {**observation, "valueQuantity": {"value": 31, "unit": "秒"}}
    assert prior_result(text_unit, hospital_id="szph").unit == "秒"  # type: ignore[union-attr]
    order = pending_order(
        {
            "resourceType": "ServiceRequest",
            "id": "o1",
            "status": "active",
            "code": {"coding": [{"system": "http://loinc.org", "code": "58410-2"}]},
            "authoredOn": "2026-11-04T16:00:00+08:00",
        },
        hospital_id="szph",
    )
    assert order is not None and order.codes == (loinc("58410-2"),)
    assert pending_order({"resourceType": "ServiceRequest", "id": "x"}, hospital_id="szph") is None


def test_facts_stored_as_json_give_the_same_candidate(index: Index) -> None:
    """The index stores ``facts`` as JSON beside each result (migration 0009) and builds the
    candidate from them: every adapter output gives the candidate its body gives."""
    seen = 0
    for ref, history in index.versions.items():
        for resource in history:
            found = facts(resource)
            if found is None:
                assert resource["resourceType"] not in ("Observation", "DiagnosticReport")
                continue
            stored = orjson.loads(orjson.dumps(found))
            again = from_facts(stored, hospital_id=index.hospital[ref], specimen="SER")
            direct = prior_result(resource, hospital_id=index.hospital[ref], specimen="SER")
            assert again == direct, ref
            if direct is not None:
                spec = resource.get("specimen")  # a list on DiagnosticReport: not resolved
                expected = spec.get("reference") if isinstance(spec, dict) else None
                assert specimen_reference(stored) == expected
                seen += 1
    assert seen > 20
