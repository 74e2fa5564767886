"""A first end-to-end walk over real HTTP: push a transaction, search it back, replay it."""

from __future__ import annotations

import httpx

from hie import naming

LAB = {"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}


def lab_bundle(mrn: str = "SZ1001", value: float = 5.4) -> dict:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:0b7e6d1e-0000-4000-8000-000000000001",
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [{"system": naming.mrn("szph"), "value": mrn}],
                    "name": [{"family": "张", "given": ["伟"], "text": "张伟"}],
                    "gender": "male",
                    "birthDate": "1980-03-15",
                },
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "fullUrl": "urn:uuid:0b7e6d1e-0000-4000-8000-000000000002",
                "resource": {
                    "resourceType": "Observation",
                    "identifier": [{"system": naming.result_id("szph"), "value": f"{mrn}.GLU"}],
                    "status": "final",
                    "category": [{"coding": [LAB]}],
                    "code": {"coding": [{"system": naming.LOINC, "code": "2345-7"}]},
                    "subject": {"reference": "urn:uuid:0b7e6d1e-0000-4000-8000-000000000001"},
                    "effectiveDateTime": "2026-11-20T08:00:00+08:00",
                    "valueQuantity": {
                        "value": value,
                        "unit": "mmol/L",
                        "system": naming.UCUM,
                        "code": "mmol/L",
                    },
                },
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }


def test_transaction_search_and_idempotent_replay(client: httpx.Client) -> None:
    first = client.post("/", json=lab_bundle())
    assert first.status_code == 200, first.text
    statuses = [e["response"]["status"] for e in first.json()["entry"]]
    assert statuses == ["201 Created", "201 Created"]

    again = client.post("/", json=lab_bundle())
    assert [e["response"]["status"] for e in again.json()["entry"]] == ["200 OK", "200 OK"]
    assert again.json()["entry"][1]["response"]["etag"] == 'W/"1"'

    found = client.get(
        "/Observation",
        params={"patient.identifier": f"{naming.mrn('szph')}|SZ1001", "code": "2345-7"},
    )
    assert found.status_code == 200
    assert found.headers["content-type"].startswith("application/fhir+json")
    entries = found.json()["entry"]
    assert len(entries) == 1
    assert entries[0]["resource"]["valueQuantity"]["value"] == 5.4

    corrected = client.post("/", json=lab_bundle(value=5.9))
    assert corrected.json()["entry"][1]["response"]["etag"] == 'W/"2"'
    obs_id = corrected.json()["entry"][1]["fullUrl"].rsplit("/", 1)[1]
    history = client.get(f"/Observation/{obs_id}/_history").json()
    assert [e["resource"]["valueQuantity"]["value"] for e in history["entry"]] == [5.9, 5.4]


def test_metadata_is_public_and_everything_else_needs_a_token(live) -> None:  # type: ignore[no-untyped-def]
    assert httpx.get(f"{live.base}/metadata").status_code == 200
    denied = httpx.get(f"{live.base}/Observation")
    assert denied.status_code == 401
    assert denied.json()["resourceType"] == "OperationOutcome"
