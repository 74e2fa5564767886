"""The shared DICOM → FHIR mapping: golden units, identifiers, names, times, refusals."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.data import get_testdata_file

from adapters.base import BadMessage, Unit
from adapters.dicom import json_model as dj
from adapters.dicom.body_site import BodySiteMap, default_body_sites
from adapters.dicom.dates import fhir_date, fhir_datetime, utc_offset
from adapters.dicom.patient import identifier_system
from adapters.dicom.person_name import display, human_names
from adapters.dicom.study import (
    Pacs,
    study_reference,
    study_unit,
    study_unit_from_datasets,
    unit_from_payload,
)
from hie import naming
from hie.fhir import check_model
from hie.profile.profiles import Profiles

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
FIXTURES = ROOT / "fixtures" / "dicom"
GOLDEN = HERE / "golden"
DATA = HERE / "data"
WADO = "http://pacs.example.org/dicom-web/"

JSON = dict[str, Any]


def unit_json(unit: Unit) -> JSON:
    return {
        "key": unit.key,
        "entries": [{"fullUrl": e.full_url, "resource": e.resource} for e in unit.entries],
    }


def check_golden(name: str, actual: JSON) -> None:
    path = GOLDEN / f"{name}.json"
    text = json.dumps(actual, ensure_ascii=False, indent=2) + "\n"
    if os.environ.get("HIE_UPDATE_GOLDEN") == "1":
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"no golden file {path}; run with HIE_UPDATE_GOLDEN=1 and review it"
    assert json.loads(path.read_text(encoding="utf-8")) == actual


def fixture_studies() -> list[tuple[str, str, list[pydicom.Dataset]]]:
    out = []
    for hospital in ("szph", "pkuszh", "nsdh"):
        for folder in sorted((FIXTURES / hospital).iterdir()):
            datasets: list[pydicom.Dataset] = [
                pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(folder.glob("*.dcm"))
            ]
            out.append((hospital, folder.name, datasets))
    return out


def resource(unit: Unit, rtype: str) -> JSON:
    found = [e.resource for e in unit.entries if e.resource["resourceType"] == rtype]
    assert len(found) == 1, rtype
    return found[0]


def odd_study() -> tuple[JSON, list[JSON]]:
    body = json.loads((DATA / "qido-odd-study.json").read_text(encoding="utf-8"))
    return body["study"], body["series"]


# -- golden mapping ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hospital", "slug", "datasets"),
    [pytest.param(*s, id=f"{s[0]}-{s[1]}") for s in fixture_studies()],
)
def test_fixture_study_maps_to_golden_unit(
    hospital: str, slug: str, datasets: list[pydicom.Dataset]
) -> None:
    unit = study_unit_from_datasets(datasets, Pacs(hospital, WADO))
    check_golden(f"{hospital}-{slug}", unit_json(unit))


def test_odd_qido_study_maps_to_golden_unit() -> None:
    study, series = odd_study()
    unit = study_unit(study, series, Pacs("szph", WADO))
    check_golden("qido-odd-study", unit_json(unit))


def test_every_mapped_resource_is_valid_r4_and_meets_hie_profiles() -> None:
    profiles = Profiles.load(ROOT / "fhir_profiles")
    units = [study_unit_from_datasets(ds, Pacs(h, WADO)) for h, _, ds in fixture_studies()]
    units.append(study_unit(*odd_study(), Pacs("szph", WADO)))
    for unit in units:
        for entry in unit.entries:
            assert check_model(entry.resource) == [], entry.resource
            errors = [i for i in profiles.validate(entry.resource) if i.severity == "error"]
            assert errors == [], (entry.resource["resourceType"], errors)


def test_ct_chest_of_zhang_wei_carries_what_the_exchange_searches_on() -> None:
    (_, _, datasets) = next(s for s in fixture_studies() if s[1] == "ct-chest-zhang-wei")
    unit = study_unit_from_datasets(datasets, Pacs("szph", WADO))
    patient, study = resource(unit, "Patient"), resource(unit, "ImagingStudy")
    endpoint = resource(unit, "Endpoint")
    assert {(i["system"], i["value"]) for i in patient["identifier"]} == {
        (naming.mrn("szph"), "SZ1001"),
        (naming.NATIONAL_ID, "440305198003151231"),  # GB 11643 check character computed
    }
    assert [n["text"] for n in patient["name"]] == ["Zhang Wei", "张伟"]
    assert study["identifier"][0] == {
        "use": "official",
        "system": "urn:dicom:uid",
        "value": f"urn:oid:{datasets[0].StudyInstanceUID}",
    }
    assert study["started"] == "2026-11-10T09:30:00+08:00"  # no offset in file: Shanghai
    assert [m["code"] for m in study["modality"]] == ["CT"]
    assert {s["bodySite"]["code"] for s in study["series"]} == {"51185008"}
    assert (study["numberOfSeries"], study["numberOfInstances"]) == (2, 4)
    assert study["subject"]["reference"] == unit.entries[0].full_url
    assert study["endpoint"] == [{"reference": unit.entries[1].full_url}]
    assert endpoint["address"] == "http://pacs.example.org/dicom-web"
    assert endpoint["identifier"] == [
        {"system": "https://hie.example.org/sid/endpoint/szph", "value": endpoint["address"]}
    ]
    assert endpoint["managingOrganization"] == {"reference": "Organization/szph"}


# -- identifiers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("issuer", "system"),
    [
        (None, naming.mrn("szph")),
        ("", naming.mrn("szph")),
        ("szph", naming.mrn("szph")),
        ("SZPH", naming.mrn("szph")),
        ("CN-RESIDENT-ID", naming.NATIONAL_ID),
        ("nnchn", naming.NATIONAL_ID),
        ("CN-HEALTH-CARD", naming.HEALTH_CARD),
        ("PASSPORT-USA", naming.passport("USA")),
        ("passport-chn", naming.passport("CHN")),
        ("nsdh", "https://hie.example.org/sid/dicom-issuer/szph/nsdh"),
        ("Old RIS / 2019", "https://hie.example.org/sid/dicom-issuer/szph/Old%20RIS%20%2F%202019"),
    ],
)
def test_issuer_of_patient_id_conventions(issuer: str | None, system: str) -> None:
    assert identifier_system(issuer, "szph") == system


def test_configured_issuer_systems_win_over_conventions() -> None:
    table = {"NSDH": naming.mrn("nsdh"), "CN-RESIDENT-ID": "urn:oid:2.16.156.10011.1.3"}
    assert identifier_system("nsdh", "szph", table) == naming.mrn("nsdh")
    assert identifier_system("cn-resident-id", "szph", table) == "urn:oid:2.16.156.10011.1.3"


def test_other_patient_ids_only_validated_national_ids_are_taken() -> None:
    study, series = odd_study()
    patient = resource(study_unit(study, series, Pacs("szph", WADO)), "Patient")
    pairs = [(i["system"], i["value"]) for i in patient["identifier"]]
    assert pairs == [
        (naming.mrn("szph"), "MRN-0042"),  # issuer "SZPH" is the hospital itself; value stripped
        (naming.NATIONAL_ID, "440305198003151231"),  # issuer says so
        (naming.passport("USA"), "E12345678"),
        ("https://hie.example.org/sid/dicom-issuer/szph/Old%20RIS%20%2F%202019", "77-1"),
    ]
    # Not taken: bare "12345" and "NOISSUER" (no namespace), bare "44030519800315123x"
    # (fails the GB 11643 check character; it would hold the whole study back at ingest).


def test_patient_id_without_issuer_is_the_hospital_mrn_and_typed_mr() -> None:
    study = {dj.STUDY_INSTANCE_UID: {"vr": "UI", "Value": ["1.2.3"]}}
    study[dj.PATIENT_ID] = {"vr": "LO", "Value": ["NS3001"]}
    study[dj.STUDY_DATE] = {"vr": "DA", "Value": ["20261121"]}
    patient = resource(study_unit(study, [], Pacs("nsdh")), "Patient")
    assert patient["identifier"] == [
        {
            "system": naming.mrn("nsdh"),
            "value": "NS3001",
            "type": {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}
                ]
            },
            "assigner": {"reference": "Organization/nsdh"},
        }
    ]


# -- names, dates, body sites ----------------------------------------------------------------


def test_person_name_keeps_alphabetic_ideographic_and_phonetic_groups() -> None:
    names = human_names(
        {"Alphabetic": "Yamada^Taro", "Ideographic": "山田^太郎", "Phonetic": "やまだ^たろう"}
    )
    assert [
        (n["extension"][0]["valueCode"], n["family"], n["given"], n["text"]) for n in names
    ] == [
        ("ABC", "Yamada", ["Taro"], "Yamada Taro"),
        ("IDE", "山田", ["太郎"], "山田太郎"),
        ("SYL", "やまだ", ["たろう"], "やまだ たろう"),
    ]


def test_person_name_components_and_empty_groups() -> None:
    (name,) = human_names({"Alphabetic": "Smith^John^Paul^Dr^Jr", "Ideographic": "^"})
    assert name["family"] == "Smith"
    assert name["given"] == ["John", "Paul"]
    assert name["prefix"] == ["Dr"] and name["suffix"] == ["Jr"]
    assert human_names({"Alphabetic": "^^^^"}) == []
    assert display({"Alphabetic": "Chen^Jie", "Ideographic": "陈^杰"}) == "陈杰 (Chen Jie)"
    assert display({"Alphabetic": "Chen^Jie"}) == "Chen Jie"


@pytest.mark.parametrize(
    ("da", "tm", "offset", "expected"),
    [
        ("20261110", "093000", None, "2026-11-10T09:30:00+08:00"),
        ("20261110", "0930", None, "2026-11-10T09:30:00+08:00"),
        ("20261110", "09", None, "2026-11-10T09:00:00+08:00"),
        ("20261110", "093000.123456", "-0500", "2026-11-10T09:30:00.123456-05:00"),
        ("20261110", "09:30:00", "+0000", "2026-11-10T09:30:00+00:00"),  # ACR-NEMA style
        ("2026.11.10", None, None, "2026-11-10"),
        ("20261110", "2561", None, "2026-11-10"),  # broken time: keep the date
        ("20261110", "093000", "+9999", "2026-11-10T09:30:00+08:00"),  # broken offset
        ("20260230", "093000", None, None),  # no such day
        ("", "093000", None, None),
    ],
)
def test_dicom_date_time_to_fhir(
    da: str, tm: str | None, offset: str | None, expected: str | None
) -> None:
    assert fhir_datetime(da, tm, offset) == expected


def test_dates_and_offsets() -> None:
    assert fhir_date("19800315") == "1980-03-15"
    assert fhir_date("19700229") is None
    assert utc_offset("+0800") == "+08:00"
    assert utc_offset("0800") is None


def test_body_site_concept_map_has_the_codes_the_exchange_relies_on() -> None:
    sites = default_body_sites()
    expected = {
        "CHEST": "51185008",
        "BRAIN": "12738006",
        "HEAD": "69536005",
        "ABDOMEN": "818981001",
        "LSPINE": "122496007",
    }
    for term, code in expected.items():
        coding = sites.coding(term)
        assert coding is not None and coding["system"] == naming.SNOMED and coding["code"] == code
    assert sites.coding(" chest ") == sites.coding("CHEST")
    assert sites.coding("L-Spine") == sites.coding("LSPINE")
    assert sites.coding("PHANTOMLIMB") == {"display": "PHANTOMLIMB"}
    assert sites.coding("") is None


def test_body_site_map_ignores_targets_in_other_systems() -> None:
    concept_map = {
        "group": [
            {"target": "http://other", "element": [{"code": "CHEST", "target": [{"code": "x"}]}]},
            {
                "target": naming.SNOMED,
                "element": [
                    {"code": "KNEE", "target": [{"code": "1", "equivalence": "unmatched"}]}
                ],
            },
        ]
    }
    assert BodySiteMap.from_concept_map(concept_map).codings == {}


# -- refusals and edge cases -----------------------------------------------------------------


def _study(**extra: Any) -> JSON:
    study: JSON = {
        dj.STUDY_INSTANCE_UID: {"vr": "UI", "Value": ["1.2.840.99999.7"]},
        dj.PATIENT_ID: {"vr": "LO", "Value": ["P1"]},
        dj.STUDY_DATE: {"vr": "DA", "Value": ["20260101"]},
    }
    for tag, element in extra.items():
        if element is None:
            study.pop(tag, None)
        else:
            study[tag] = element
    return study


def test_missing_study_instance_uid_is_a_bad_message() -> None:
    with pytest.raises(BadMessage, match=r"StudyInstanceUID \(0020,000D\) is missing") as err:
        study_unit(_study(**{dj.STUDY_INSTANCE_UID: None}), [], Pacs("szph"))
    assert err.value.location == "(0020,000D)"


def test_missing_patient_id_is_a_bad_message() -> None:
    with pytest.raises(BadMessage, match=r"PatientID .* cannot be linked to a patient"):
        study_unit(_study(**{dj.PATIENT_ID: {"vr": "LO"}}), [], Pacs("szph"))


@pytest.mark.parametrize("uid", ["1.2.03.4", "1.2.3.", "abc", "3.1.2", "1." + "2" * 70])
def test_malformed_uids_are_refused(uid: str) -> None:
    with pytest.raises(BadMessage, match="is not a DICOM UID"):
        study_unit(_study(**{dj.STUDY_INSTANCE_UID: {"vr": "UI", "Value": [uid]}}), [], Pacs("x"))


def test_started_falls_back_to_the_earliest_series_then_refuses() -> None:
    series = [
        {
            dj.SERIES_INSTANCE_UID: {"vr": "UI", "Value": ["1.2.9.1"]},
            dj.SERIES_DATE: {"vr": "DA", "Value": ["20260102"]},
            dj.SERIES_TIME: {"vr": "TM", "Value": ["0800"]},
        }
    ]
    unit = study_unit(_study(**{dj.STUDY_DATE: None}), series, Pacs("szph"))
    assert resource(unit, "ImagingStudy")["started"] == "2026-01-02T08:00:00+08:00"
    with pytest.raises(BadMessage, match=r"StudyDate \(0008,0020\) is missing"):
        study_unit(_study(**{dj.STUDY_DATE: None}), [], Pacs("szph"))


def test_series_without_uid_is_a_bad_message() -> None:
    with pytest.raises(BadMessage, match="SeriesInstanceUID"):
        study_unit(_study(), [{dj.MODALITY: {"vr": "CS", "Value": ["CT"]}}], Pacs("szph"))


def test_dicomweb_client_search_results_without_patient_id_are_refused() -> None:
    studies = json.loads((DATA / "dicomweb-client" / "search_for_studies.json").read_bytes())
    assert len(studies) == 4
    for study in studies:
        with pytest.raises(BadMessage, match="PatientID"):
            study_unit(study, [], Pacs("szph", WADO))


def test_dicomweb_client_series_map_once_a_patient_is_known() -> None:
    series = json.loads((DATA / "dicomweb-client" / "search_for_series.json").read_bytes())
    uid = dj.text(series[0], dj.STUDY_INSTANCE_UID)
    study = _study(**{dj.STUDY_INSTANCE_UID: {"vr": "UI", "Value": [uid]}})
    mine = [s for s in series if dj.text(s, dj.STUDY_INSTANCE_UID) == uid]
    imaging = resource(study_unit(study, mine, Pacs("szph")), "ImagingStudy")
    assert [(s["modality"]["code"], s["numberOfInstances"]) for s in imaging["series"]] == [
        ("SM", 1)
    ]
    assert imaging["numberOfInstances"] == 1  # summed from the series ("1" as a string)
    assert "endpoint" not in imaging  # no DICOMweb URL configured: no Endpoint entry


def test_same_instance_in_two_transfer_syntaxes_counts_once() -> None:
    names = ("MR_small.dcm", "MR_small_implicit.dcm", "MR_truncated.dcm")
    datasets = [pydicom.dcmread(str(get_testdata_file(n)), stop_before_pixels=True) for n in names]
    imaging = resource(study_unit_from_datasets(datasets, Pacs("szph")), "ImagingStudy")
    assert (imaging["numberOfSeries"], imaging["numberOfInstances"]) == (1, 1)
    assert imaging["started"] == "2004-08-26T18:50:59-04:00"  # MR_small says -0400


def test_instances_disagreeing_on_patient_id_hold_the_study_back() -> None:
    (_, _, datasets) = next(s for s in fixture_studies() if s[1] == "ct-chest-zhang-wei")
    datasets[1].PatientID = "SZ1002"
    with pytest.raises(BadMessage, match="disagree on PatientID: 'SZ1001', 'SZ1002'"):
        study_unit_from_datasets(datasets, Pacs("szph"))


def test_payload_replays_to_the_same_unit_and_units_are_deterministic() -> None:
    for hospital, _, datasets in fixture_studies():
        first = study_unit_from_datasets(datasets, Pacs(hospital, WADO))
        again = study_unit_from_datasets(list(reversed(datasets)), Pacs(hospital, WADO))
        replayed = unit_from_payload(first.raw, Pacs(hospital, WADO))
        from_raw_alone = unit_from_payload(first.raw, hospital)  # the URL is in the payload
        assert unit_json(again) == unit_json(first)
        assert unit_json(replayed) == unit_json(first) == unit_json(from_raw_alone)
        assert first.trusted
        assert first.content_type == "application/vnd.hie.dicom-study+json"
    with pytest.raises(BadMessage, match="not an imaging study payload"):
        unit_from_payload(b"\x00garbage", Pacs("szph"))


def test_study_headers_group_by_series_and_compute_counts() -> None:
    groups: dict[str, list[pydicom.Dataset]] = defaultdict(list)
    for path in sorted((FIXTURES / "pkuszh").rglob("*.dcm")):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        groups[ds.StudyInstanceUID].append(ds)
    (datasets,) = groups.values()
    unit = study_unit_from_datasets(datasets, Pacs("pkuszh"))
    study = json.loads(unit.raw)["study"]
    assert dj.integer(study, dj.NUMBER_OF_STUDY_RELATED_SERIES) == 2
    assert dj.integer(study, dj.NUMBER_OF_STUDY_RELATED_INSTANCES) == 4
    assert dj.texts(study, dj.MODALITIES_IN_STUDY) == ["MR"]


def test_study_reference_for_imaging_reports_matches_the_study_identifier() -> None:
    study, series = odd_study()
    imaging = resource(study_unit(study, series, Pacs("szph")), "ImagingStudy")
    reference = study_reference(" 1.2.840.99999.1.1 ")
    assert reference["identifier"] == {
        k: v for k, v in imaging["identifier"][0].items() if k != "use"
    }
    assert reference["type"] == "ImagingStudy"
    with pytest.raises(BadMessage):
        study_reference("not-a-uid")
