"""hie.index.extract: the search columns pulled out of a resource (pure; golden values)."""

from __future__ import annotations

from datetime import UTC, datetime

from hie import naming
from hie.index.extract import extract, normalise_name
from tests.hie.api.api_builders import imaging_study, observation, patient


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def test_lab_observation() -> None:
    obs = observation("Patient/p", result_id="R1", date="2026-11-20T08:00:00+08:00")
    ex = extract(obs)
    assert ex.row == {
        "status": "final",
        "code_system": naming.LOINC,
        "code": "2345-7",
        "category": "laboratory",
        "effective": utc(2026, 11, 20),
        "effective_end": utc(2026, 11, 20, 0, 0, 1),
        "issued": None,
    }
    assert ex.date == utc(2026, 11, 20)
    assert sorted(ex.tokens) == sorted(
        [
            ("code", naming.LOINC, "2345-7"),
            (
                "category",
                "http://terminology.hl7.org/CodeSystem/observation-category",
                "laboratory",
            ),
            ("identifier", naming.result_id("szph"), "R1"),
        ]
    )


def test_effective_period_and_day_precision() -> None:
    obs = observation("Patient/p", date=None)
    obs["effectivePeriod"] = {"start": "2026-11-20", "end": "2026-11-21"}
    ex = extract(obs)
    assert ex.row["effective"] == utc(2026, 11, 19, 16)  # local midnight, Asia/Shanghai
    assert ex.row["effective_end"] == utc(2026, 11, 21, 16)
    day = extract(observation("Patient/p", date="2026-11-20"), tz="UTC")
    assert (day.row["effective"], day.row["effective_end"]) == (
        utc(2026, 11, 20),
        utc(2026, 11, 21),
    )


def test_unparseable_dates_are_not_indexed() -> None:
    for bad in ("9999", "not a date", 20261120):
        obs = observation("Patient/p", date=None)
        obs["effectiveDateTime"] = bad
        assert extract(obs).row["effective"] is None


def test_every_coding_is_a_token_and_the_first_fills_the_row() -> None:
    obs = observation("Patient/p")
    obs["code"]["coding"].append({"system": naming.local_codes("szph"), "code": "GLU"})
    obs["code"]["coding"].append({"display": "no code, not indexed"})
    ex = extract(obs)
    codes = [(s, c) for p, s, c in ex.tokens if p == "code"]
    assert codes == [(naming.LOINC, "2345-7"), (naming.local_codes("szph"), "GLU")]
    assert ex.row["code"] == "2345-7"


def test_imaging_study_uid_modality_and_body_site() -> None:
    ex = extract(imaging_study("Patient/p", uid="1.2.3", modality="CT", accession="A9"))
    assert ex.row["study_uid"] == "1.2.3"  # urn:oid: prefix removed
    assert ex.row["modality"] == "CT"
    assert ex.row["body_site"] == "51185008"
    assert ex.row["started"] == utc(2026, 11, 1, 2)
    assert ("identifier", "urn:dicom:uid", "urn:oid:1.2.3") in ex.tokens
    assert ("identifier", "urn:dicom:uid", "1.2.3") in ex.tokens  # the bare UID finds it too


def test_status_is_a_row_column_not_a_token() -> None:
    """Search reads status from the type index (hie.index.search ``Param.row``); a token row
    per result for it was a quarter of search_token (migration 0007 deleted them)."""
    for res in (
        observation("Patient/p", status="amended"),
        imaging_study("Patient/p", uid="1.2.3"),
    ):
        ex = extract(res)
        assert ex.row["status"] == res["status"]
        assert [t for t in ex.tokens if t[0] == "status"] == []
    assert ("modality", naming.DICOM_DCM, "CT") in ex.tokens
    assert [t for t in ex.tokens if t[0] == "modality"] == [("modality", naming.DICOM_DCM, "CT")]


def test_patient_names_identifiers_and_birth() -> None:
    pat = patient("M1", national_id="440305198003151231")
    pat["name"].append({"family": "Zhang", "given": ["Wei", "Ming"]})
    ex = extract(pat)
    names = {v for _, v in ex.strings}
    assert {"张", "伟", "张伟", "zhang", "wei", "ming", "zhangweiming"} <= names
    assert ("identifier", naming.NATIONAL_ID, "440305198003151231") in ex.tokens
    assert ("gender", "", "male") in ex.tokens
    assert ex.row == {"gender": "male", "birthdate": utc(1980, 3, 14, 16)}


def test_normalise_name() -> None:
    assert normalise_name("  José  MÜLLER ") == "josemuller"
    assert normalise_name("张 伟") == "张伟"
    assert normalise_name("Ａｂｃ") == "abc"  # full-width Latin (NFKD)
