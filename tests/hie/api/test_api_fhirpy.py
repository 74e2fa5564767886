"""An independent FHIR client (fhirpy 2, ``SyncFHIRClient``, built on requests) against the live
server: create, read, update, search with paging through ``next`` links and ``_include``.

fhirpy knows nothing of hie; if it can do its ordinary work here, so can a hospital's client.
"""

from __future__ import annotations

import pytest
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import OperationOutcome, ResourceNotFound

from hie import naming
from tests.conftest import LiveServer, token
from tests.hie.api.api_builders import GLUCOSE, LAB, POTASSIUM


@pytest.fixture
def fhir(live: LiveServer) -> SyncFHIRClient:
    return SyncFHIRClient(
        live.base,
        authorization=f"Bearer {token()}",
        extra_headers={"Accept": "application/fhir+json"},
    )


def _lab(client: SyncFHIRClient, patient_id: str, n: int, code: str = GLUCOSE):  # type: ignore[no-untyped-def]
    return client.resource(
        "Observation",
        identifier=[{"system": naming.result_id("szph"), "value": f"FP.{n}"}],
        status="final",
        category=[{"coding": [LAB]}],
        code={"coding": [{"system": naming.LOINC, "code": code}]},
        subject={"reference": f"Patient/{patient_id}"},
        effectiveDateTime=f"2026-11-{n:02d}T08:00:00+08:00",
        valueQuantity={"value": 5.0 + n / 10, "unit": "mmol/L"},
    )


def test_fhirpy_create_read_update_search_page_and_include(fhir: SyncFHIRClient) -> None:
    pat = fhir.resource(
        "Patient",
        identifier=[{"system": naming.mrn("szph"), "value": "FP-1"}],
        name=[{"family": "王", "given": ["芳"]}],
        gender="female",
        birthDate="1975-06-01",
    )
    pat.save()
    assert pat.id
    assert pat["meta"]["versionId"] == "1"

    read = fhir.reference("Patient", pat.id).to_resource()
    assert read["name"][0]["family"] == "王"

    saved = []
    for n in range(1, 8):
        obs = _lab(fhir, pat.id, n, code=POTASSIUM if n == 7 else GLUCOSE)
        obs.save()
        saved.append(obs.id)

    # update through fhirpy: a corrected value is version 2
    first = fhir.reference("Observation", saved[0]).to_resource()
    first["valueQuantity"]["value"] = 9.9
    first["status"] = "corrected"
    first.save()
    again = fhir.reference("Observation", saved[0]).to_resource()
    assert again["meta"]["versionId"] == "2"
    assert again["valueQuantity"]["value"] == 9.9

    # paging: fhirpy follows the server's next links (3 per page) until there are none
    glucose = fhir.resources("Observation").search(patient=pat.id, code=f"{naming.LOINC}|{GLUCOSE}")
    walked = [o.id for o in glucose.sort("date").limit(3)]
    assert walked == saved[:6]
    raw = glucose.sort("-date").limit(3).fetch_raw()
    assert [link["relation"] for link in raw["link"]] == ["self", "next"]
    assert [e["resource"]["id"] for e in raw["entry"]] == saved[5:2:-1]

    by_identifier = fhir.resources("Patient").search(identifier=f"{naming.mrn('szph')}|FP-1")
    assert pat.id in [p.id for p in by_identifier.fetch_all()]

    chained = fhir.resources("Observation").search(
        **{"patient.identifier": f"{naming.mrn('szph')}|FP-1"}
    )
    assert sorted(o.id for o in chained.fetch_all()) == sorted(saved)

    # _include: a DiagnosticReport and the Observations it reports
    report = fhir.resource(
        "DiagnosticReport",
        identifier=[{"system": naming.filler_order("szph"), "value": "FP-R"}],
        status="final",
        category=[
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "LAB"}]}
        ],
        code={"coding": [{"system": naming.LOINC, "code": "24323-8"}]},
        subject={"reference": f"Patient/{pat.id}"},
        effectiveDateTime="2026-11-01",
        result=[{"reference": f"Observation/{i}"} for i in saved[:2]],
    )
    report.save()
    bundle = (
        fhir.resources("DiagnosticReport")
        .search(patient=pat.id)
        .include("DiagnosticReport", "result")
        .fetch_raw()
    )
    modes = {(e["resource"]["resourceType"], e["search"]["mode"]) for e in bundle["entry"]}
    assert modes == {("DiagnosticReport", "match"), ("Observation", "include")}
    included = sorted(
        e["resource"]["id"] for e in bundle["entry"] if e["search"]["mode"] == "include"
    )
    assert included == sorted(saved[:2])

    count = fhir.resources("Observation").search(patient=pat.id, _summary="count").fetch_raw()
    assert count["total"] == 7


def test_fhirpy_sees_errors_as_exceptions(fhir: SyncFHIRClient) -> None:
    with pytest.raises(ResourceNotFound):
        fhir.reference("Observation", "nope").to_resource()
    bad = fhir.resource("Observation", status="final")  # no code, no subject
    with pytest.raises(OperationOutcome) as caught:
        bad.save()
    assert "Observation.code" in str(caught.value)
