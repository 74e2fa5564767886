"""Issue 5's promise end to end: 张伟 had a CT at szph and labs at pkuszh; nsdh, which knows
him only by its own new MRN, finds both with one patient identifier, and the CT's Endpoint
leads to the study's metadata at a real PACS (Orthanc with DICOMweb) by WADO-RS."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hie import naming
from hie.demo import load_demo
from hie.exchange import Exchange
from hie.settings import Settings
from tests.conftest import ROOT, LiveServer, auth
from tests.orthanc_service import Orthanc, skip_or_fail_if_absent

ZHANG_ID = "440305198003151231"


@pytest.fixture
def pacs(tmp_path: Path) -> Iterator[Orthanc]:
    skip_or_fail_if_absent(os.environ)
    with Orthanc(tmp_path / "orthanc") as orthanc:
        orthanc.upload(sorted((ROOT / "fixtures" / "dicom" / "szph").rglob("*.dcm")))
        yield orthanc


@pytest.mark.orthanc
def test_ct_at_a_labs_at_b_found_by_c_with_a_working_image_link(
    settings: Settings, exchange: Exchange, tmp_path: Path, pacs: Orthanc
) -> None:
    work = tmp_path / "fixtures"
    shutil.copytree(ROOT / "fixtures", work)
    toml = work / "hospitals.toml"
    toml.write_text(
        toml.read_text("utf-8").replace("http://127.0.0.1:18042/dicom-web", pacs.dicomweb_url),
        "utf-8",
    )
    settings.fixtures_dir = work
    load_demo(settings, tmp_path / "staged", exchange)
    with LiveServer(settings, exchange) as live:
        nsdh = httpx.Client(base_url=live.base, headers=auth("nsdh"), timeout=30)
        # nsdh registers the patient under its own MRN with the national ID: linked.
        patient = {
            "resourceType": "Patient",
            "identifier": [
                {"system": naming.mrn("nsdh"), "value": "NS9001"},
                {"system": naming.NATIONAL_ID, "value": ZHANG_ID},
            ],
            "name": [{"family": "张", "given": ["伟"]}],
            "gender": "male",
            "birthDate": "1980-03-15",
        }
        assert nsdh.post("/Patient", json=patient).status_code in (200, 201)
        mine = f"{naming.mrn('nsdh')}|NS9001"
        studies = nsdh.get(
            "/ImagingStudy",
            params={"patient.identifier": mine, "_include": "ImagingStudy:endpoint"},
        ).json()
        ct = [
            e["resource"]
            for e in studies["entry"]
            if e["resource"]["resourceType"] == "ImagingStudy"
        ]
        assert [s["modality"][0]["code"] for s in ct] == ["CT"]
        assert ct[0]["meta"]["source"] == "Organization/szph"
        labs = nsdh.get("/Observation", params={"patient.identifier": mine, "_count": "200"}).json()
        sources = {e["resource"]["meta"]["source"] for e in labs["entry"]}
        assert "Organization/pkuszh" in sources
        endpoint = next(
            e["resource"] for e in studies["entry"] if e["resource"]["resourceType"] == "Endpoint"
        )
        uid = next(
            i["value"] for i in ct[0]["identifier"] if i["system"] == "urn:dicom:uid"
        ).removeprefix("urn:oid:")
        wado = httpx.get(
            f"{endpoint['address']}/studies/{uid}/metadata", auth=pacs.auth, timeout=30
        )
        assert wado.status_code == 200
        assert {i["0020000D"]["Value"][0] for i in wado.json()} == {uid}
        nsdh.close()
