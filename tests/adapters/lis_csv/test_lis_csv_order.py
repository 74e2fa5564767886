"""LIS rows → FHIR: the nsdh export against its golden JSON, and each mapping rule on its own.

Golden file: ``golden/nsdh-lis-20261124.json`` (written by this test with
``HIE_REGEN_GOLDEN=1`` and then read line by line before committing).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from adapters.base import Unit
from adapters.lis_csv.source import LisCsvSource
from hie import naming
from hie.fhir import check_model
from hie.hospitals import load_hospitals
from hie.profile import Profiles
from hie.terminology import Terminology

ROOT = Path(__file__).resolve().parents[3]
FIXTURE = ROOT / "fixtures" / "csv" / "nsdh" / "nsdh-lis-20261124.csv"
GOLDEN = Path(__file__).parent / "golden" / "nsdh-lis-20261124.json"
# The real terminology: fhir_profiles/ConceptMap-nsdh-lab-loinc.json (hie.terminology).
TERMINOLOGY = Terminology.load(ROOT / "fhir_profiles")
map_code = TERMINOLOGY.map


def nsdh_source(folder: Path | None = None) -> LisCsvSource:
    config = load_hospitals(ROOT / "fixtures" / "hospitals.toml", {})
    adapter = config.hospital("nsdh").adapter("lis-csv")
    assert adapter.kind == "lis-csv"
    source = LisCsvSource.from_config("nsdh", adapter, config.exchange, map_code)
    if folder is not None:
        source.folder = folder
    return source


def as_json(units: list[Unit], dead: list[Any]) -> dict[str, Any]:
    return {
        "units": [
            {
                "key": u.key,
                "content_type": u.content_type,
                "raw_lines": len(u.raw.splitlines()),
                "entries": [{"fullUrl": e.full_url, "resource": e.resource} for e in u.entries],
            }
            for u in units
        ],
        "dead_letters": [
            {
                "key": d.key,
                "reason": d.reason,
                "location": d.location,
                "raw": d.raw.decode("gb18030"),
            }
            for d in dead
        ],
    }


def test_nsdh_export_matches_golden() -> None:
    units, dead = nsdh_source().parse(FIXTURE.read_bytes(), key=FIXTURE.name)
    got = as_json(units, dead)
    if os.environ.get("HIE_REGEN_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(got, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    assert got == json.loads(GOLDEN.read_text(encoding="utf-8"))


def test_nsdh_export_is_valid_fhir_and_self_contained() -> None:
    profiles = Profiles.load(ROOT / "fhir_profiles")
    units, dead = nsdh_source().parse(FIXTURE.read_bytes(), key=FIXTURE.name)
    assert [u.key.split(":")[1] for u in units] == [
        "order NS2611230012",
        "order NS2611230013",
        "order NS2611240031",
        "order NS2611240032",
    ]
    for unit in units:
        urls = {e.full_url for e in unit.entries}
        for entry in unit.entries:
            assert check_model(entry.resource) == [], entry.resource
            assert profiles.validate(entry.resource) == [], entry.resource
            for ref in _references(entry.resource):
                assert ref in urls  # every reference resolves inside the unit
        assert unit.trusted and unit.content_type == "text/csv; charset=gb18030"
        assert unit.raw.decode("gb18030").startswith("申请单号,病历号,身份证号")
    wang = units[2].entries
    assert [e.resource["resourceType"] for e in wang] == [
        "Patient",
        "DiagnosticReport",
        "Observation",
        "Observation",
        "Observation",
    ]  # calcium's row was the bad one
    assert len(dead) == 1


def test_bad_row_names_row_and_column_and_keeps_its_bytes() -> None:
    _, dead = nsdh_source().parse(FIXTURE.read_bytes(), key=FIXTURE.name)
    (bad,) = dead
    assert bad.key == "nsdh-lis-20261124.csv:row 10"
    assert bad.location == "row 10, column 采集时间"
    assert bad.reason == (
        "row 10, column 采集时间: '2026-11-31 07:48:00' is not a date and time (%Y-%m-%d %H:%M:%S)"
    )
    assert bad.raw == FIXTURE.read_bytes().splitlines(keepends=True)[9]


def test_parsing_twice_gives_identical_units() -> None:
    source = nsdh_source()
    assert source.parse(FIXTURE.read_bytes(), key="a") == source.parse(
        FIXTURE.read_bytes(), key="a"
    )


# -- one rule at a time, on a small UTF-8 export -----------------------------------------------

HEADER = "单号,病历号,身份证号,姓名,性别,出生日期,代码,名称,结果,单位,参考,标志,状态,采集,报告"
LI_NA = "NS3001,440304199207082424,李娜,女,1992-07-08"
COLUMNS = {
    "order_number": "单号",
    "mrn": "病历号",
    "national_id": "身份证号",
    "name": "姓名",
    "sex": "性别",
    "birth_date": "出生日期",
    "test_code": "代码",
    "test_name": "名称",
    "value": "结果",
    "unit": "单位",
    "reference_range": "参考",
    "flag": "标志",
    "status": "状态",
    "collected_at": "采集",
    "reported_at": "报告",
}


def small(*rows: str) -> tuple[list[Unit], list[Any]]:
    source = LisCsvSource(
        "nsdh", "lis-csv", Path("."), COLUMNS, map_code, ZoneInfo("Asia/Shanghai")
    )
    return source.parse("\n".join([HEADER, *rows]).encode(), key="t.csv")


def row(code: str = "K", value: str = "4.1", *, unit: str = "mmol/L", ref: str = "3.5-5.3",
        flag: str = "", status: str = "F", patient: str = LI_NA, order: str = "A1",
        when: str = "2026-11-23 08:00") -> str:  # fmt: skip
    return f"{order},{patient},{code},名称,{value},{unit},{ref},{flag},{status},{when},{when}"


def observation(units: list[Unit], n: int = 0) -> dict[str, Any]:
    return [e.resource for e in units[0].entries if e.resource["resourceType"] == "Observation"][n]


def test_numbers_comparators_and_text_values() -> None:
    units, dead = small(
        row("K", "4"), row("CRP", "<0.5", unit="mg/L", ref="<10"), row("HBSAG", "阴性", unit="")
    )
    assert dead == []
    k, crp, hbsag = (observation(units, n) for n in range(3))
    assert k["valueQuantity"] == {
        "value": 4,
        "unit": "mmol/L",
        "system": naming.UCUM,
        "code": "mmol/L",
    }
    assert crp["valueQuantity"]["comparator"] == "<" and crp["valueQuantity"]["value"] == 0.5
    assert crp["referenceRange"] == [
        {
            "high": {"value": 10, "unit": "mg/L", "system": naming.UCUM, "code": "mg/L"},
            "text": "<10",
        }
    ]
    assert hbsag["valueString"] == "阴性" and "referenceRange" in hbsag


def test_unmapped_code_is_kept_under_the_hospitals_own_system() -> None:
    units, _ = small(row("XYZ1"))
    assert observation(units)["code"] == {
        "coding": [{"system": naming.local_codes("nsdh"), "code": "XYZ1", "display": "名称"}],
        "text": "名称",
    }
    units, _ = small(row("K"))
    systems = [c["system"] for c in observation(units)["code"]["coding"]]
    assert systems == [naming.LOINC, naming.local_codes("nsdh")]


@pytest.mark.parametrize(
    ("statuses", "report"),
    [
        (["F", "F"], "final"),
        (["F", "P"], "partial"),
        (["P", "未审核"], "preliminary"),
        (["F", "C"], "corrected"),
        (["X", "作废"], "cancelled"),
        (["已审核", "X"], "final"),
    ],
)
def test_report_status_follows_its_results(statuses: list[str], report: str) -> None:
    units, dead = small(*(row(f"T{n}", status=s) for n, s in enumerate(statuses)))
    assert dead == []
    assert units[0].entries[1].resource["status"] == report


def test_cancelled_result_without_value_gets_data_absent_reason() -> None:
    units, dead = small(row("K", "", status="X"))
    assert dead == []
    obs = observation(units)
    assert obs["status"] == "cancelled" and "valueQuantity" not in obs
    assert obs["dataAbsentReason"]["coding"][0]["code"] == "not-performed"
    assert check_model(obs) == []


@pytest.mark.parametrize(
    ("bad_row", "column", "why"),
    [
        (row(value=""), "结果", "empty result value"),
        (row(flag="??"), "标志", "unknown abnormal flag '??'"),
        (row(status="Q"), "状态", "unknown result status 'Q'"),
        (row(when="23/11/2026"), "采集", "is not a date and time"),
        (row(code=""), "代码", "empty test code"),
        (
            row(patient="NS3001,440304199207082425,李娜,女,1992-07-08"),
            "身份证号",
            "check character",
        ),
        (row(patient="NS3001,440304199207082424,李娜,男,1992-07-08"), "身份证号", "says female"),
        (
            row(patient="NS3001,440304199207082424,李娜,女,1992-07-09"),
            "身份证号",
            "born 1992-07-08",
        ),
        (row(patient="NS3001,440304199207082424,李娜,X,1992-07-08"), "性别", "unknown sex 'X'"),
        (row(patient="NS3001,440304199207082424,李娜,女,1992"), "出生日期", "is not a date"),
        (row(patient=",,李娜,女,1992-07-08"), "病历号", "no patient identifier"),
    ],
)
def test_bad_rows_name_their_column(bad_row: str, column: str, why: str) -> None:
    units, dead = small(row("NA", "140"), bad_row)
    assert len(units) == 1 and len(units[0].entries) == 3  # the good row still lands
    (letter,) = dead
    assert letter.location == f"row 3, column {column}"
    assert letter.reason.startswith(f"row 3, column {column}: ") and why in letter.reason


def test_rows_of_one_order_must_agree_on_patient_and_not_repeat_a_test() -> None:
    other = "NS3003,440306197511303862,王芳,女,1975-11-30"
    units, dead = small(row("K"), row("NA", patient=other), row("K", "5.0"))
    assert len(units[0].entries) == 3  # Patient, report, K
    assert [d.reason for d in dead] == [
        "row 3, column 身份证号: patient differs from row 2 of the same order",
        "row 4, column 代码: test K already in this order at row 2",
    ]


def test_orders_group_rows_even_when_interleaved() -> None:
    other = "NS3003,440306197511303862,王芳,女,1975-11-30"
    units, dead = small(
        row("K", order="A1"), row("K", order="B7", patient=other), row("NA", order="A1")
    )
    assert dead == []
    assert [u.key for u in units] == ["t.csv:order A1", "t.csv:order B7"]
    report = units[0].entries[1].resource
    assert report["identifier"] == [{"system": naming.filler_order("nsdh"), "value": "A1"}]
    assert len(report["result"]) == 2
    ids = [e.resource["identifier"][0]["value"] for e in units[0].entries[2:]]
    assert ids == ["A1.K", "A1.NA"]


def _references(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["reference"]] if isinstance(node.get("reference"), str) else []
        return own + [r for v in node.values() for r in _references(v)]
    if isinstance(node, list):
        return [r for v in node for r in _references(v)]
    return []
