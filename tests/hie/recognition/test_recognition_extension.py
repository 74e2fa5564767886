"""Verdicts as FHIR: golden extension JSON, conformance to the shipped StructureDefinition, and
a searchset Bundle carrying it on entry that the R4 model set accepts."""

from __future__ import annotations

import json
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from recognition_world import PROFILES, World, at

from hie.recognition.extension import EXTENSION_URL, pending_extension, verdict_extension
from hie.recognition.model import PendingOrder

GOLDEN = Path(__file__).parent / "golden"
_VALUE_KEY = {
    "Coding": "valueCoding",
    "string": "valueString",
    "dateTime": "valueDateTime",
    "Reference": "valueReference",
}


def _slices() -> dict[str, tuple[int, str, str]]:
    """Sub-extension name -> (min, max, value key), read from the StructureDefinition."""
    sd = json.loads((PROFILES / "StructureDefinition-recognition-verdict.json").read_text("utf-8"))
    assert sd["url"] == EXTENSION_URL
    out: dict[str, tuple[int, str, str]] = {}
    elements = sd["differential"]["element"]
    for el in elements:
        if el["path"] == "Extension.extension" and "sliceName" in el:
            name = el["sliceName"]
            value = next(e for e in elements if e["id"] == f"{el['id']}.value[x]")
            out[name] = (el["min"], el["max"], _VALUE_KEY[value["type"][0]["code"]])
    return out


def conforms(extension: dict[str, Any]) -> None:
    """The checks a profile validator would make on this complex extension."""
    assert extension["url"] == EXTENSION_URL and "value" not in "".join(extension)
    slices = _slices()
    counts: dict[str, int] = {}
    for part in extension["extension"]:
        name = part["url"]
        assert name in slices, f"undeclared sub-extension {name}"
        keys = [k for k in part if k != "url"]
        assert keys == [slices[name][2]], (name, keys)
        counts[name] = counts.get(name, 0) + 1
    for name, (low, high, _) in slices.items():
        n = counts.get(name, 0)
        assert n >= low and (high == "*" or n <= int(high)), (name, n)


def _golden(name: str, actual: dict[str, Any]) -> None:
    path = GOLDEN / name
    if os.environ.get("HIE_UPDATE_GOLDEN"):
        path.write_text(json.dumps(actual, ensure_ascii=False, indent=2) + "\n", "utf-8")
    assert actual == json.loads(path.read_text("utf-8"))


def test_recognised_verdict_extension_golden(world: World) -> None:
    report = world.result(
        "58410-2", resource_type="DiagnosticReport", id="cbc", members=("Observation/hgb",)
    )
    hgb = world.result("718-7", id="hgb", specimen="119297000", value=Decimal(131))
    assessment = world.run([report, hgb], ["718-7"])
    verdicts = {a.result.id: a.verdict for a in assessment.results}
    extension = verdict_extension(verdicts["cbc"])
    conforms(extension)
    _golden("verdict-recognised-cbc.json", extension)


def test_reference_only_verdict_extension_golden(world: World) -> None:
    result = world.result("4548-4", id="a1c", hospital_id="nsdh", value=Decimal("6.4"))
    verdict = world.one(result, when="2027-01-05T09:00:00").verdict
    extension = verdict_extension(verdict)
    conforms(extension)
    _golden("verdict-no-credential-hba1c.json", extension)


def test_pending_extension(world: World) -> None:
    order = PendingOrder(
        "ServiceRequest/o1", "szph", (("http://loinc.org", "4548-4"),), at("2026-11-04T16:00:00")
    )
    (pending,) = world.run([], ["4548-4"], orders=[order]).pending
    extension = pending_extension(pending)
    conforms(extension)
    parts = {p["url"]: p for p in extension["extension"]}
    assert parts["verdict"]["valueCoding"]["code"] == "pending"
    assert parts["rule"]["valueString"] == "pending.order"
    assert "2026-11-04" in parts["explanation"]["valueString"]


def test_searchset_bundle_with_verdicts_is_valid_r4(world: World) -> None:
    """Bundle.entry is a BackboneElement: extensions are allowed on it (FHIR R4 §2.6.0)."""
    result = world.result("2823-3", id="k1")
    verdict = world.one(result).verdict
    observation = {
        "resourceType": "Observation",
        "id": "k1",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2823-3"}]},
        "effectiveDateTime": "2026-11-01T10:00:00+08:00",
        "valueQuantity": {
            "value": 4.2,
            "unit": "mmol/L",
            "system": "http://unitsofmeasure.org",
            "code": "mmol/L",
        },
    }
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": 1,
        "entry": [
            {
                "fullUrl": "https://hie.example.org/fhir/Observation/k1",
                "resource": observation,
                "search": {"mode": "match"},
                "extension": [verdict_extension(verdict)],
            }
        ],
    }
    parsed = Bundle.model_validate(bundle)
    assert parsed.entry and parsed.entry[0].extension
    entry_extension = parsed.entry[0].extension[0]
    assert entry_extension.url == EXTENSION_URL
    assert {e.url for e in entry_extension.extension or []} >= {
        "verdict",
        "rule",
        "expires",
        "mark",
    }
