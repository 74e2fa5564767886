"""ORU^R01 mapping rules, one behaviour per test, on small messages written inline."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.base import BadMessage, Unit
from adapters.hl7v2.coding import Context
from adapters.hl7v2.framing import split_messages
from adapters.hl7v2.message import MessageError
from adapters.hl7v2.oru import map_framed
from adapters.hl7v2.patient import gb11643_check_digit, is_valid_national_id
from adapters.hl7v2.timestamp import to_date, to_datetime, to_instant
from hie import naming
from hie.terminology import Terminology

ZHANG_ID = "440305198003151231"
MSH = "MSH|^~\\&|LIS|H1|HIE|X|20261115083000||ORU^R01|C1|P|2.5.1"
PID = f"PID|1||SZ1001^^^H1^MR~{ZHANG_ID}^^^CHN^NNCHN||张^伟||19800315|M"
OBR = "OBR|1|P1|F1|XCG^血常规^L|||20261115081500|||||||||||||||20261115101500|||F"


def unit(*segments: str, msh: str = MSH, hospital: str = "szph", terminology: Any = None) -> Unit:
    raw = "\r".join([msh, *segments]).encode()
    ctx = Context(hospital, terminology or Terminology())
    return map_framed(split_messages(raw)[0], ctx)


def of_type(u: Unit, rtype: str) -> list[dict[str, Any]]:
    return [e.resource for e in u.entries if e.resource["resourceType"] == rtype]


def obs(*obx: str, **kw: Any) -> list[dict[str, Any]]:
    return of_type(unit(PID, OBR, *obx, **kw), "Observation")


def rejected(*segments: str, msh: str = MSH) -> MessageError:
    with pytest.raises(MessageError) as err:
        unit(*segments, msh=msh)
    assert isinstance(err.value, BadMessage)
    return err.value


# -- patient --------------------------------------------------------------------------------


def test_gb11643_check_digits_of_the_demo_patients() -> None:
    assert gb11643_check_digit("44030519800315123") == "1"
    assert gb11643_check_digit("44030419920708242") == "4"
    assert gb11643_check_digit("44030619751130386") == "2"
    assert is_valid_national_id("11010519491231002x")  # lower-case X accepted
    assert not is_valid_national_id("440305198003151232")


def test_pid3_identifier_rule() -> None:
    pid = (
        "PID|1||SZ1001^^^H1^MR~440305198003151231^^^^SFZ~E12345678^^^CN^PPN"
        "~999^^^^SS~X1^^^^PI||SMITH^JOHN||19850120|M"
    )
    (patient,) = of_type(unit(pid, OBR, "OBX|1|NM|XC001||1|g/L"), "Patient")
    assert [
        (i["system"], i["value"], i["type"]["coding"][0]["code"]) for i in patient["identifier"]
    ] == [
        (naming.mrn("szph"), "SZ1001", "MR"),
        (naming.NATIONAL_ID, "440305198003151231", "NI"),
        (naming.passport("CHN"), "E12345678", "PPN"),  # alpha-2 CN → CHN
        (naming.mrn("szph"), "X1", "MR"),  # PI is an MRN too; SS is left out
    ]


def test_an_explicit_identifier_type_wins_over_authority_hints() -> None:
    pid = "PID|1||SZ1001^^^CHN^MR~440305198003151231^^^CHN||Z^W"
    (patient,) = of_type(unit(pid, OBR), "Patient")
    assert [(i["system"], i["value"]) for i in patient["identifier"]] == [
        (naming.mrn("szph"), "SZ1001"),
        (naming.NATIONAL_ID, "440305198003151231"),
    ]


@pytest.mark.parametrize(
    "cx",
    [
        "440305198003151232^^^CHN^NNCHN",  # wrong check digit
        "44030519800315123^^^^ID card",  # 17 digits
        "440305198003151232^^^公安部",  # hinted by the assigning authority
    ],
)
def test_a_hinted_national_id_that_fails_gb11643_rejects_the_message(cx: str) -> None:
    err = rejected(f"PID|1||SZ1^^^H1^MR~{cx}||ZHANG^WEI", OBR)
    assert err.location == "PID-3[2]" and "GB 11643" in err.reason


def test_passport_without_country_is_left_out_and_nothing_left_rejects() -> None:
    err = rejected("PID|1||561234987^^^^PPN||SMITH^JOHN", OBR)
    assert err.location == "PID-3" and "no identifier" in err.reason


def test_names_chinese_compound_and_latin() -> None:
    def names(pid5: str) -> list[dict[str, Any]]:
        (p,) = of_type(unit(f"PID|1||SZ1^^^H1^MR||{pid5}||19800315|M", OBR), "Patient")
        return list(p["name"])

    assert names("张^伟^^^^^L") == [
        {"use": "official", "text": "张伟", "family": "张", "given": ["伟"]}
    ]
    assert names("欧阳娜娜") == [{"text": "欧阳娜娜", "family": "欧阳", "given": ["娜娜"]}]
    assert names("SMITH^JOHN^A^JR^DR") == [
        {
            "text": "JOHN A SMITH",
            "family": "SMITH",
            "given": ["JOHN", "A"],
            "prefix": ["DR"],
            "suffix": ["JR"],
        }
    ]


@pytest.mark.parametrize(
    ("sex", "gender"),
    [
        ("M", "male"),
        ("F", "female"),
        ("1", "male"),
        ("2", "female"),
        ("男", "male"),
        ("U", "unknown"),
    ],
)
def test_sex_codes_hl7_and_gbt2261(sex: str, gender: str) -> None:
    (p,) = of_type(unit(f"PID|1||SZ1^^^H1^MR||ZHANG^WEI||1980|{sex}", OBR), "Patient")
    assert p["gender"] == gender and p["birthDate"] == "1980"


def test_bad_birth_date_and_sex_are_rejected_with_their_field() -> None:
    assert rejected("PID|1||SZ1^^^H1^MR||Z^W||19800230|M", OBR).location == "PID-7"
    assert rejected("PID|1||SZ1^^^H1^MR||Z^W||19800230|Q", OBR).location in ("PID-7", "PID-8")
    assert rejected("PID|1||SZ1^^^H1^MR||Z^W||19800301|Q", OBR).location == "PID-8"


# -- message structure ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("msh", "where", "why"),
    [
        (MSH.replace("ORU^R01", "ADT^A01"), "MSH-9", "not a lab result"),
        (MSH.replace("ORU^R01", "ORU^R03"), "MSH-9", "R03"),
        (MSH.replace("2.5.1", "2.2"), "MSH-12", "2.2 is not supported"),
        (MSH.replace("|2.5.1", "|"), "MSH-12", "empty"),
    ],
)
def test_wrong_type_or_version_is_an_ar_reject(msh: str, where: str, why: str) -> None:
    err = rejected(PID, OBR, msh=msh)
    assert err.reject and err.location == where and why in err.reason


def test_version_26_is_accepted() -> None:
    assert unit(PID, OBR, "OBX|1|NM|XC001||5|g/L", msh=MSH.replace("2.5.1", "2.6")).entries


@pytest.mark.parametrize(
    ("segments", "where", "why"),
    [
        ((OBR,), "PID", "no PID"),
        ((PID,), "OBR", "no OBR"),
        ((PID, OBR.replace("|P1|F1|", "|||")), "OBR[1]-3", "no filler order"),
        ((PID, OBR.replace("XCG^血常规^L", "")), "OBR[1]-4", "empty"),
        ((PID, OBR.replace("XCG^血常规^L", "^血常规")), "OBR[1]-4", "only as text"),
        ((PID, OBR, "OBX|1|NM|^Glucose||5"), "OBX[1]-3", "no observation identifier"),
        ((PID, OBR, "OBX|1|NM|GLU||5||||||Q"), "OBX[1]-11", "table 0085"),
        ((PID, OBR, "OBX|1|NM|GLU||5|||||||||2026133"), "OBX[1]-14", "not an HL7 date"),
        ((PID, OBR.replace("20261115081500", "20261115251500")), "OBR[1]-7", "hour"),
    ],
)
def test_unmappable_content_is_an_ae_with_its_location(
    segments: tuple[str, ...], where: str, why: str
) -> None:
    err = rejected(*segments)
    assert not err.reject and err.location == where and why in err.reason


def test_several_patients_and_orders_in_one_message() -> None:
    pid2 = "PID|2||SZ1003^^^H1^MR||王^芳||19751130|F"
    obr2 = OBR.replace("|P1|F1|", "|P2|F2|").replace("OBR|1", "OBR|2")
    u = unit(PID, OBR, "OBX|1|NM|XC001||6.8", pid2, obr2, "OBX|1|NM|XC001||5.1")
    patients = {
        e.full_url: e.resource["name"][0]["text"]
        for e in u.entries
        if e.resource["resourceType"] == "Patient"
    }
    reports = of_type(u, "DiagnosticReport")
    assert [patients[r["subject"]["reference"]] for r in reports] == ["张伟", "王芳"]
    assert [o["identifier"][0]["value"] for o in of_type(u, "Observation")] == [
        "F1.XC001",
        "F2.XC001",
    ]


def test_full_urls_are_stable_so_mapping_is_deterministic() -> None:
    a = unit(PID, OBR, "OBX|1|NM|XC001||6.8")
    b = unit(PID, OBR, "OBX|1|NM|XC001||6.8")
    assert a == b
    assert len({e.full_url for e in a.entries}) == len(a.entries)


# -- observations ---------------------------------------------------------------------------


def test_nm_values_units_and_comparators() -> None:
    got = obs(
        "OBX|1|NM|A||05.100|10\\S\\9/L",
        "OBX|2|NM|B||<15|mL/min",
        "OBX|3|NM|C||7|mmol/L^millimole per liter^UCUM",
        "OBX|4|NM|D||12|furlongs",
    )
    assert [o["valueQuantity"] for o in got] == [
        {"value": 5.1, "unit": "10^9/L", "system": naming.UCUM, "code": "10*9/L"},
        {"value": 15, "comparator": "<", "unit": "mL/min", "system": naming.UCUM, "code": "mL/min"},
        {"value": 7, "unit": "mmol/L", "system": naming.UCUM, "code": "mmol/L"},
        {"value": 12, "unit": "furlongs"},  # unknown unit: text kept, no UCUM code invented
    ]


def test_nm_that_is_not_a_number_rejects_the_message() -> None:
    err = rejected(PID, OBR, "OBX|1|NM|A||阳性")
    assert err.location == "OBX[1]-5" and "'阳性' is not a number" in err.reason


def test_sn_values() -> None:
    got = obs(
        "OBX|1|SN|A||^182|mg/dL",
        "OBX|2|SN|B||>=^10|U/L",
        "OBX|3|SN|C||^10^-^20|g/L",
        "OBX|4|SN|D||^1^:^128",
        "OBX|5|SN|E||^2^+",
    )
    assert got[0]["valueQuantity"] == {
        "value": 182,
        "unit": "mg/dL",
        "system": naming.UCUM,
        "code": "mg/dL",
    }
    assert got[1]["valueQuantity"]["comparator"] == ">="
    assert (
        got[2]["valueRange"]["low"]["value"] == 10 and got[2]["valueRange"]["high"]["value"] == 20
    )
    assert got[3]["valueRatio"] == {"numerator": {"value": 1}, "denominator": {"value": 128}}
    assert got[4]["valueString"] == "2+"


def test_text_coded_and_date_values() -> None:
    got = obs(
        "OBX|1|ST|A||阴性",
        "OBX|2|TX|B||第一行~第二行",
        "OBX|3|FT|C||line\\.br\\two",
        "OBX|4|CE|D||260385009^Negative^SCT",
        "OBX|5|CWE|E||POS^阳性^L",
        "OBX|6|DT|F||20261101",
        "OBX|7|ED|G||^application^pdf^Base64^AAAA",
    )
    assert got[0]["valueString"] == "阴性"
    assert got[1]["valueString"] == "第一行\n第二行"
    assert got[2]["valueString"] == "line\ntwo"
    assert got[3]["valueCodeableConcept"] == {
        "coding": [{"system": naming.SNOMED, "code": "260385009", "display": "Negative"}],
        "text": "Negative",
    }
    assert got[4]["valueCodeableConcept"]["coding"][0]["system"] == naming.local_codes("szph")
    assert got[5]["valueDateTime"] == "2026-11-01"
    assert got[6]["dataAbsentReason"]["coding"][0]["code"] == "unsupported"


@pytest.mark.parametrize(
    ("obx11", "status", "absent"),
    [
        ("F", "final", "unknown"),
        ("C", "corrected", "unknown"),
        ("X", "cancelled", "not-performed"),
        ("P", "preliminary", "temp-unknown"),
        ("R", "preliminary", "temp-unknown"),
        ("I", "registered", "temp-unknown"),
        ("D", "entered-in-error", "error"),
    ],
)
def test_result_status_and_why_a_value_is_absent(obx11: str, status: str, absent: str) -> None:
    (o,) = obs(f"OBX|1|NM|A|||g/L|||||{obx11}")
    assert o["status"] == status
    assert o["dataAbsentReason"]["coding"][0]["code"] == absent


def test_missing_obx11_inherits_from_obr25() -> None:
    (o,) = obs("OBX|1|NM|A||5")
    assert o["status"] == "final"
    (p,) = of_type(unit(PID, OBR.replace("|||F", "|||P"), "OBX|1|NM|A||5"), "Observation")
    assert p["status"] == "preliminary"


def test_reference_ranges() -> None:
    got = obs(
        "OBX|1|NM|A||5|mmol/L|3.5-5.3",
        "OBX|2|NM|B||5|mmol/L|3.50~5.30",  # raw "~" as Chinese LIS write it
        "OBX|3|NM|C||5|mmol/L|<5.2",
        "OBX|4|NM|D||5|mmol/L|>=1.04",
        "OBX|5|NM|E||5|mmol/L|-2-3",
        "OBX|6|NM|F||5|mmol/L|阴性",
    )
    ranges = [o["referenceRange"][0] for o in got]
    assert [
        (r.get("low", {}).get("value"), r.get("high", {}).get("value")) for r in ranges[:5]
    ] == [
        (3.5, 5.3),
        (3.5, 5.3),
        (None, 5.2),
        (1.04, None),
        (-2, 3),
    ]
    assert ranges[0]["low"]["code"] == "mmol/L"
    assert ranges[5] == {"text": "阴性"}


def test_abnormal_flags_as_interpretation() -> None:
    got = obs("OBX|1|NM|A||5|||H~A", "OBX|2|NM|B||5|||↑", "OBX|3|NM|C||5|||XYZ")
    assert [c["coding"][0]["code"] for c in got[0]["interpretation"]] == ["H", "A"]
    assert got[1]["interpretation"] == [
        {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                    "code": "H",
                    "display": "High",
                }
            ],
            "text": "↑",
        }
    ]
    assert "interpretation" not in got[2]  # the binding is required: not a code → a note
    assert got[2]["note"] == [{"text": "abnormal flag 'XYZ' (OBX-8) is not in HL7 table 0078"}]


def test_times_default_to_shanghai_and_keep_a_sent_zone() -> None:
    (a, b) = obs(
        "OBX|1|NM|A||5||||||F|||202611150900", "OBX|2|NM|B||5||||||F|||20261115090000-0500"
    )
    assert a["effectiveDateTime"] == "2026-11-15T09:00:00+08:00"
    assert b["effectiveDateTime"] == "2026-11-15T09:00:00-05:00"
    assert a["issued"] == "2026-11-15T10:15:00+08:00"  # OBR-22
    (c,) = obs("OBX|1|NM|C||5")
    assert c["effectiveDateTime"] == "2026-11-15T08:15:00+08:00"  # OBR-7 when OBX-14 is empty


def test_sub_ids_and_repeated_codes_keep_identifiers_apart() -> None:
    got = obs(
        "OBX|1|CWE|57719-7^Conditions^LN|^3^2|X^BIO",
        "OBX|2|NM|A|1|5",
        "OBX|3|NM|A|2|6",
        "OBX|4|NM|B||1",
        "OBX|5|NM|B||2",
    )
    assert [o["identifier"][0]["value"] for o in got] == [
        "F1.57719-7.3.2",
        "F1.A.1",
        "F1.A.2",
        "F1.B",
        "F1.B#2",
    ]


def test_nte_after_obx_becomes_a_note_and_escapes_resolve() -> None:
    (o,) = obs("OBX|1|NM|A||5", "NTE|1|L|ALT\\T\\AST\\.br\\复查", "NTE|2|L|第二条")
    assert o["note"] == [{"text": "ALT&AST\n复查"}, {"text": "第二条"}]


def test_codes_loinc_first_local_second_and_unmapped_are_listed() -> None:
    terminology = Terminology.load("fhir_profiles")
    u = unit(
        PID,
        OBR,
        "OBX|1|NM|XC003^血红蛋白^L||148|g/L",
        "OBX|2|NM|ZZ9^新项目^L||1",
        terminology=terminology,
    )
    hgb, new = of_type(u, "Observation")
    assert [(c["system"], c["code"]) for c in hgb["code"]["coding"]] == [
        (naming.LOINC, "718-7"),
        (naming.local_codes("szph"), "XC003"),
    ]
    assert new["code"] == {
        "coding": [{"system": naming.local_codes("szph"), "code": "ZZ9", "display": "新项目"}],
        "text": "新项目",
    }
    assert [(x.hospital_id, x.code, x.display, x.count) for x in terminology.unmapped()] == [
        ("szph", "ZZ9", "新项目", 1)
    ]


def test_loinc_sent_by_the_hospital_is_used_as_is() -> None:
    (o,) = obs("OBX|1|NM|2345-7^Glucose^LN^GLU^血糖^L||5.5|mmol/L")
    assert [c["code"] for c in o["code"]["coding"]] == ["2345-7", "GLU"]


def test_specimen_from_spm_or_obr15() -> None:
    spm = "SPM|1|S1||SER^Serum^HL70487|||||||||||||20261115070000+0800"
    u = unit(PID, OBR, "OBX|1|NM|A||5", spm)
    (s,) = of_type(u, "Specimen")
    assert s["type"]["coding"][0] == {
        "system": "http://terminology.hl7.org/CodeSystem/v2-0487",
        "code": "SER",
        "display": "Serum",
    }
    assert s["collection"] == {"collectedDateTime": "2026-11-15T07:00:00+08:00"}
    assert s["identifier"] == [{"system": naming.filler_order("szph"), "value": "F1"}]
    (o,) = of_type(u, "Observation")
    (r,) = of_type(u, "DiagnosticReport")
    spec_url = next(e.full_url for e in u.entries if e.resource is s)
    assert o["specimen"] == {"reference": spec_url} and r["specimen"] == [{"reference": spec_url}]
    obr15 = OBR.replace("|||||||||||||||2026", "||||||||血清|||||||2026")
    (t,) = of_type(unit(PID, obr15, "OBX|1|NM|A||5"), "Specimen")
    assert t["type"] == {"text": "血清"}


def test_report_fields() -> None:
    (r,) = of_type(unit(PID, OBR, "OBX|1|NM|A||5"), "DiagnosticReport")
    assert (
        r["identifier"][0]["system"] == naming.filler_order("szph")
        and r["identifier"][0]["value"] == "F1"
    )
    assert r["category"][0]["coding"][0]["code"] == "LAB"
    assert r["performer"] == [{"reference": "Organization/szph"}]
    assert r["effectiveDateTime"] == "2026-11-15T08:15:00+08:00"
    assert len(r["result"]) == 1


# -- timestamps -----------------------------------------------------------------------------


def test_timestamp_conversions() -> None:
    assert to_datetime("2026111508", "X") == "2026-11-15T08:00:00+08:00"
    assert to_datetime("20080818183002.1-0700", "X") == "2008-08-18T18:30:02.1-07:00"
    assert to_datetime("19880601120000", "X") == "1988-06-01T12:00:00+09:00"  # China's DST
    assert to_datetime("202611", "X") == "2026-11"
    assert to_date("19371227000000", "X") == "1937-12-27"
    assert to_instant("20261115", "X") is None
    for bad in ("DOB", "196203520", "20170229", "2026111525"):
        with pytest.raises(MessageError):
            to_datetime(bad, "X")
