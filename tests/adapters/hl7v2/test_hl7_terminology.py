"""hie.terminology: ConceptMap-driven local code → LOINC, and the list of unmapped codes."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from adapters.hl7v2.coding import is_loinc
from hie import naming
from hie.terminology import ConceptMapError, Terminology

ROOT = Path(__file__).resolve().parents[3]
PROFILES = ROOT / "fhir_profiles"

# The analytes every demo hospital's map must cover, by the LOINC code it maps to.
REQUIRED = {
    "6690-2", "789-8", "718-7", "4544-3", "777-3", "787-2",  # CBC
    "2823-3", "2951-2", "2075-0", "2000-8", "2601-3", "14879-1",  # electrolytes (molar)
    "14749-6", "14682-9", "22664-7",  # glucose, creatinine, urea (molar)
    "1742-6", "1920-8", "14631-6", "1751-7",  # liver
    "14647-2", "14927-8", "14646-4", "69419-0",  # lipids (molar)
    "4548-4", "5902-2", "6301-6", "3173-2",  # HbA1c, coagulation
    "58410-2", "51990-0", "24326-1", "57698-3", "24325-3",  # panels
}  # fmt: skip


def conceptmap(hospital: str, elements: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "ConceptMap",
        "status": "active",
        "group": [
            {"source": naming.local_codes(hospital), "target": naming.LOINC, "element": elements}
        ],
    }


def test_the_three_demo_maps_load_and_cover_the_required_tests() -> None:
    t = Terminology.load(PROFILES)
    assert t.hospitals() == {"szph", "pkuszh", "nsdh"}
    for hospital in ("szph", "pkuszh", "nsdh"):
        doc = json.loads((PROFILES / f"ConceptMap-{hospital}-lab-loinc.json").read_text("utf-8"))
        targets = {
            tg["code"]
            for el in doc["group"][0]["element"]
            for tg in el["target"]
            if tg["equivalence"] != "unmatched"
        }
        assert targets >= REQUIRED, (hospital, REQUIRED - targets)
        assert all(is_loinc(c) for c in targets)  # every code has a valid check digit


def test_each_hospital_has_its_own_codes_for_the_same_test() -> None:
    t = Terminology.load(PROFILES)
    wbc = ("http://loinc.org", "6690-2", "Leukocytes [#/volume] in Blood by Automated count")
    assert t.map("szph", "XC001") == wbc
    assert t.map("pkuszh", "100101") == wbc
    assert t.map("nsdh", "WBC") == wbc
    assert t.map("szph", "WBC") is None  # nsdh's code means nothing at szph
    # the nsdh LIS CSV export uses the same code table (fixtures/csv/nsdh)
    assert [t.map("nsdh", c)[1] for c in ("K", "NA", "CL", "CA", "GHB")] == [  # type: ignore[index]
        "2823-3",
        "2951-2",
        "2075-0",
        "2000-8",
        "4548-4",
    ]


def test_unmapped_codes_are_counted_with_their_display() -> None:
    t = Terminology.load(PROFILES)
    assert t.map("nsdh", "CO2", "二氧化碳结合力") is None
    assert t.map("nsdh", "CO2") is None
    assert t.map("szph", "NX4", "凝血四项") is None  # "unmatched" in the map counts as unmapped
    rows = [(u.hospital_id, u.code, u.display, u.count) for u in t.unmapped()]
    assert rows == [("nsdh", "CO2", "二氧化碳结合力", 2), ("szph", "NX4", "凝血四项", 1)]


def test_other_maps_in_the_folder_are_ignored_and_missing_folder_means_no_maps(
    tmp_path: Path,
) -> None:
    (tmp_path / "ConceptMap-bodypart.json").write_text(
        json.dumps(
            {
                "resourceType": "ConceptMap",
                "status": "active",
                "group": [{"source": "http://dicom.nema.org", "target": naming.SNOMED}],
            }
        )
    )
    assert len(Terminology.load(tmp_path)) == 0
    assert len(Terminology.load(tmp_path / "absent")) == 0


@pytest.mark.parametrize(
    ("doc", "why"),
    [
        ({"resourceType": "ValueSet"}, "not ConceptMap"),
        (conceptmap("", [{"code": "X", "target": []}]), "does not name a hospital"),
        (
            conceptmap("h1", [{"target": [{"code": "1-8", "equivalence": "equal"}]}]),
            "code is missing",
        ),
    ],
)
def test_broken_maps_say_which_file_and_element(
    tmp_path: Path, doc: dict[str, Any], why: str
) -> None:
    (tmp_path / "ConceptMap-h1.json").write_text(json.dumps(doc))
    with pytest.raises(ConceptMapError) as err:
        Terminology.load(tmp_path)
    assert "ConceptMap-h1.json" in str(err.value) and why in str(err.value)


def test_retired_maps_and_disjoint_targets_map_nothing() -> None:
    retired = conceptmap("h1", [{"code": "A", "target": [{"code": "1-8", "equivalence": "equal"}]}])
    retired["status"] = "retired"
    disjoint = conceptmap(
        "h2",
        [{"code": "B", "target": [{"code": "1-8", "equivalence": "disjoint"}]}],
    )
    t = Terminology.from_resources([retired, disjoint])
    assert t.map("h1", "A") is None and t.map("h2", "B") is None


def test_recording_is_thread_safe() -> None:
    t = Terminology()

    def hammer() -> None:
        for _ in range(2000):
            t.map("h1", "X")

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert t.unmapped()[0].count == 16000
