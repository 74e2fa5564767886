"""Resource and Bundle builders shared by the FHIR API tests (written for these tests).

The resources are small, hand-written R4 JSON in the shape hie's hospitals send: a hospital
Patient carrying its MRN (and sometimes a national ID), lab Observations with a result id,
DiagnosticReports with a filler-order number, ImagingStudies with a StudyInstanceUID.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from hie import naming
from hie.exchange import Exchange
from hie.services import build_exchange
from hie.settings import Settings
from tests.conftest import SECRET, LiveServer, _pg_url, _sqlite_url, auth

JSON = dict[str, Any]
LAB = {"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}
IMAGING = {
    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
    "code": "imaging",
}
GLUCOSE = "2345-7"
POTASSIUM = "2823-3"
HB = "718-7"
_n = itertools.count(1)


def urn(n: int) -> str:
    return f"urn:uuid:0b7e6d1e-0000-4000-8000-{n:012d}"


def patient(
    mrn: str,
    *,
    hospital: str = "szph",
    national_id: str | None = None,
    family: str = "张",
    given: str = "伟",
    gender: str = "male",
    birth: str = "1980-03-15",
    extra_names: list[JSON] | None = None,
) -> JSON:
    idents = [{"system": naming.mrn(hospital), "value": mrn}]
    if national_id:
        idents.append({"system": naming.NATIONAL_ID, "value": national_id})
    return {
        "resourceType": "Patient",
        "identifier": idents,
        "name": [
            {"family": family, "given": [given], "text": family + given},
            *(extra_names or []),
        ],
        "gender": gender,
        "birthDate": birth,
    }


def observation(
    subject: str,
    *,
    code: str = GLUCOSE,
    system: str = naming.LOINC,
    date: str | None = "2026-11-20T08:00:00+08:00",
    status: str = "final",
    category: JSON = LAB,
    value: float = 5.4,
    result_id: str | None = None,
    hospital: str = "szph",
) -> JSON:
    obs: JSON = {
        "resourceType": "Observation",
        "identifier": [
            {"system": naming.result_id(hospital), "value": result_id or f"R{next(_n)}"}
        ],
        "status": status,
        "category": [{"coding": [category]}],
        "code": {"coding": [{"system": system, "code": code}]},
        "subject": {"reference": subject},
        "valueQuantity": {
            "value": value,
            "unit": "mmol/L",
            "system": naming.UCUM,
            "code": "mmol/L",
        },
    }
    if date is not None:
        obs["effectiveDateTime"] = date
    return obs


def report(
    subject: str, results: list[str], *, filler: str = "F1", date: str = "2026-11-20"
) -> JSON:
    return {
        "resourceType": "DiagnosticReport",
        "identifier": [{"system": naming.filler_order("szph"), "value": filler}],
        "status": "final",
        "category": [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "LAB"}]}
        ],
        "code": {"coding": [{"system": naming.LOINC, "code": "24323-8"}]},
        "subject": {"reference": subject},
        "effectiveDateTime": date,
        "result": [{"reference": r} for r in results],
    }


def endpoint(address: str = "https://pacs.szph.example/dicom-web") -> JSON:
    return {
        "resourceType": "Endpoint",
        "status": "active",
        "connectionType": {
            "system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type",
            "code": "dicom-wado-rs",
        },
        "payloadType": [{"text": "DICOM"}],
        "address": address,
    }


def imaging_study(
    subject: str,
    *,
    uid: str,
    modality: str = "CT",
    started: str = "2026-11-01T10:00:00+08:00",
    endpoints: list[str] | None = None,
    accession: str | None = None,
) -> JSON:
    idents = [{"system": naming.DICOM_UID, "value": f"urn:oid:{uid}"}]
    if accession:
        idents.append({"system": f"{naming.BASE}/sid/accession/szph", "value": accession})
    study: JSON = {
        "resourceType": "ImagingStudy",
        "identifier": idents,
        "status": "available",
        "modality": [{"system": naming.DICOM_DCM, "code": modality}],
        "subject": {"reference": subject},
        "started": started,
        "series": [
            {
                "uid": f"{uid}.1",
                "modality": {"system": naming.DICOM_DCM, "code": modality},
                "bodySite": {"system": naming.SNOMED, "code": "51185008", "display": "Thorax"},
            }
        ],
    }
    if endpoints:
        study["endpoint"] = [{"reference": e} for e in endpoints]
    return study


def organization(name: str, ident: str) -> JSON:
    return {
        "resourceType": "Organization",
        "identifier": [{"system": f"{naming.BASE}/sid/hospital", "value": ident}],
        "active": True,
        "name": name,
    }


def entry(resource: JSON, full_url: str | None = None, method: str = "POST", url: str = "") -> JSON:
    e: JSON = {
        "resource": resource,
        "request": {"method": method, "url": url or resource["resourceType"]},
    }
    if full_url:
        e["fullUrl"] = full_url
    return e


def bundle(kind: str, entries: list[JSON]) -> JSON:
    return {"resourceType": "Bundle", "type": kind, "entry": entries}


def with_patient(pat: JSON, *resources: JSON, n: int = 1) -> JSON:
    """A transaction: ``pat`` under a urn:uuid, then ``resources`` (their subject set to it)."""
    entries = [entry(pat, urn(n))]
    for r in resources:
        entries.append(entry({**r, "subject": {"reference": urn(n)}}))
    return bundle("transaction", entries)


def ids_of(resp: httpx.Response, mode: str = "match") -> list[str]:
    body = resp.json()
    assert body["resourceType"] == "Bundle", body
    return [
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in body.get("entry", [])
        if e.get("search", {}).get("mode") == mode
    ]


def created_ids(resp: httpx.Response) -> list[str]:
    """Type/id of each entry of a transaction- or batch-response, in entry order."""
    assert resp.status_code == 200, resp.text
    return [e["fullUrl"].split("/fhir/", 1)[1] for e in resp.json()["entry"]]


def assert_outcome(resp: httpx.Response, status: int | tuple[int, ...]) -> JSON:
    """``resp`` is an OperationOutcome with ``status`` (and the FHIR media type)."""
    wanted = (status,) if isinstance(status, int) else status
    assert resp.status_code in wanted, (resp.status_code, resp.text[:500])
    assert resp.headers["content-type"].startswith("application/fhir+json"), resp.headers
    body: JSON = resp.json()
    assert body["resourceType"] == "OperationOutcome", body
    assert body["issue"], body
    return body


def expressions(outcome: JSON) -> list[str]:
    return [x for i in outcome["issue"] for x in i.get("expression", [])]


BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@contextmanager
def serve(backend: str, tmp: Path) -> Iterator[tuple[httpx.Client, Exchange]]:
    """A fresh database on ``backend`` behind a live server, for module-scoped fixtures
    (the conftest ``client`` fixture is per test; a read-only data set is loaded once)."""
    url = _sqlite_url(tmp) if backend == "sqlite" else _pg_url()
    settings = Settings(database_url=url, jwt_secret=SECRET, base_url="http://x/fhir", pool_size=4)
    exchange = build_exchange(settings, run_migrations=False)
    try:
        with (
            LiveServer(settings, exchange) as live,
            httpx.Client(base_url=live.base, headers=auth(), timeout=30) as client,
        ):
            yield client, exchange
    finally:
        exchange.store.engine.dispose()
