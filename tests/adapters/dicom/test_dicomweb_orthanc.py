"""Against a real PACS: Orthanc with its DICOMweb plugin, loaded with the fixtures.

The DICOMweb adapter indexes what Orthanc holds; the same study read from the folder and
from DICOMweb maps to the same resources; and the Endpoint of a mapped ImagingStudy leads
to the study's metadata by WADO-RS — the reference works.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from imaging_support import FIXTURES, HOSPITALS, RecordingSink, orthanc_service
from pydicom.data import get_testdata_file

from adapters.base import Unit
from adapters.dicom_folder.source import DicomFolderSource
from adapters.dicomweb.qido import QidoClient
from adapters.dicomweb.source import DicomWebSource

pytestmark = pytest.mark.orthanc

JSON = dict[str, Any]
BUNDLED = ("CT_small.dcm", "MR_small.dcm")


@pytest.fixture(scope="module")
def pacs(orthanc: orthanc_service.Orthanc) -> orthanc_service.Orthanc:
    files = sorted(p for h in HOSPITALS for p in (FIXTURES / h).rglob("*.dcm"))
    files += [Path(get_testdata_file(n)) for n in BUNDLED]  # type: ignore[arg-type]
    orthanc.upload(files)
    return orthanc


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def dicomweb(
    pacs: orthanc_service.Orthanc, http: httpx.Client, hospital: str = "szph", **kw: Any
) -> DicomWebSource:
    user, password = pacs.auth
    qido = QidoClient(http, pacs.dicomweb_url, username=user, password=password)
    options: dict[str, Any] = {"today": lambda: date(2026, 12, 1), "window_days": 3650}
    options.update(kw)
    return DicomWebSource(hospital, qido, **options)


def entry(unit: Unit, rtype: str) -> JSON:
    return next(e.resource for e in unit.entries if e.resource["resourceType"] == rtype)


def test_dicomweb_indexes_every_study_orthanc_holds(
    pacs: orthanc_service.Orthanc, http: httpx.Client, sink: RecordingSink
) -> None:
    result = dicomweb(pacs, http, page_size=2).run(sink)
    assert (result.error, result.received, result.rejected) == (None, 6, 0)
    assert result.cursor_after == "2026-12-01"
    assert len({u.key for u in sink.units}) == 6  # paged by 2 over the real server
    ct_small = next(u for u in sink.units if u.key.endswith(".20040119072730.12322"))
    assert entry(ct_small, "ImagingStudy")["started"] == "2004-01-19T07:27:30-05:00"


@pytest.mark.parametrize("hospital", HOSPITALS)
def test_folder_and_dicomweb_map_a_study_to_the_same_resources(
    pacs: orthanc_service.Orthanc, http: httpx.Client, hospital: str
) -> None:
    web, folder = RecordingSink(), RecordingSink()
    dicomweb(pacs, http, hospital, start_date=date(2026, 1, 1)).run(web)
    DicomFolderSource(
        hospital, FIXTURES / hospital, wado_base_url=pacs.dicomweb_url, settle_seconds=0
    ).run(folder)
    by_uid = {u.key: u for u in web.units}
    assert folder.units
    for unit in folder.units:
        got = by_uid[unit.key]
        assert [e.resource for e in got.entries] == [e.resource for e in unit.entries]
        assert [e.full_url for e in got.entries] == [e.full_url for e in unit.entries]


def test_without_metadata_fallback_orthanc_loses_the_sequences(
    pacs: orthanc_service.Orthanc, http: httpx.Client, sink: RecordingSink
) -> None:
    # Why the fallback exists: Orthanc 1.10's QIDO-RS leaves every sequence out, so the
    # resident ID number in OtherPatientIDsSequence would never reach identity linking.
    source = dicomweb(pacs, http, "pkuszh", start_date=date(2026, 10, 1), metadata_fallback=False)
    source.run(sink)
    (unit,) = [u for u in sink.units if entry(u, "Patient")["identifier"][0]["value"] == "PK2002"]
    systems = {i["system"] for i in entry(unit, "Patient")["identifier"]}
    assert "https://hie.example.org/sid/cn-resident-id" not in systems
    assert "procedureCode" not in entry(unit, "ImagingStudy")


def test_chinese_names_survive_qido_in_gb18030_and_utf8(
    pacs: orthanc_service.Orthanc, http: httpx.Client, sink: RecordingSink
) -> None:
    dicomweb(pacs, http, "nsdh", start_date=date(2026, 11, 1)).run(sink)
    texts = {n["text"] for u in sink.units for n in entry(u, "Patient").get("name", [])}
    assert {"王芳", "Wang Fang", "李娜", "Li Na"} <= texts


def test_the_endpoint_of_an_imaging_study_leads_to_its_metadata(
    pacs: orthanc_service.Orthanc, http: httpx.Client, sink: RecordingSink
) -> None:
    dicomweb(pacs, http, start_date=date(2026, 11, 10)).run(sink)
    unit = next(u for u in sink.units if entry(u, "Patient")["identifier"][0]["value"] == "SZ1001")
    study = entry(unit, "ImagingStudy")
    endpoints = {e.full_url: e.resource for e in unit.entries}
    endpoint = endpoints[study["endpoint"][0]["reference"]]
    assert endpoint["connectionType"]["code"] == "dicom-wado-rs"
    uid = study["identifier"][0]["value"].removeprefix("urn:oid:")

    # PS3.18 §10.4.1: {address}/studies/{uid}/metadata
    response = http.get(
        f"{endpoint['address']}/studies/{uid}/metadata",
        auth=pacs.auth,
        headers={"Accept": "application/dicom+json"},
    )
    assert response.status_code == 200
    instances = response.json()
    assert len(instances) == study["numberOfInstances"] == 4
    assert {i["0020000D"]["Value"][0] for i in instances} == {uid}
    assert {i["00100020"]["Value"][0] for i in instances} == {"SZ1001"}
    series_uids = {i["0020000E"]["Value"][0] for i in instances}
    assert series_uids == {s["uid"] for s in study["series"]}
