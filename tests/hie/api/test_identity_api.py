"""Patient identity through the real ingest path and HTTP: linking across hospitals, twins,
invalid national IDs, $ihe-pix, $match, and the review queue with accept and unlink.

The people here are written for this test (not real): one person (刘洋) seen at three
hospitals, twins (陈思 and 陈想) born the same day at the same address, and a person whose
third hospital record has a one-character name typo and no national ID.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from hie import naming
from tests.conftest import LiveServer, auth

LAB = {"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}
LIU_ID = "440305196501014513"  # valid GB 11643, born 1965-01-01, male
TWIN_A, TWIN_B = "44030520100505304X", "440305201005053023"  # born 2010-05-05


def person(
    hospital: str,
    mrn: str,
    family: str,
    given: str,
    birth: str,
    gender: str,
    *,
    national_id: str | None = None,
    phone: str | None = None,
    address: str | None = None,
) -> dict[str, Any]:
    idents = [{"system": naming.mrn(hospital), "value": mrn}]
    if national_id:
        idents.append({"system": naming.NATIONAL_ID, "value": national_id})
    p: dict[str, Any] = {
        "resourceType": "Patient",
        "identifier": idents,
        "name": [{"family": family, "given": [given], "text": family + given}],
        "birthDate": birth,
        "gender": gender,
    }
    if phone:
        p["telecom"] = [{"system": "phone", "value": phone}]
    if address:
        p["address"] = [{"text": address, "city": "深圳市", "state": "广东省"}]
    return p


def send(
    live: LiveServer, hospital: str, patient: dict[str, Any], code: str = "2345-7"
) -> httpx.Response:
    mrn = patient["identifier"][0]["value"]
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:00000000-0000-4000-8000-0000000000a1",
                "resource": patient,
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "fullUrl": "urn:uuid:00000000-0000-4000-8000-0000000000a2",
                "resource": {
                    "resourceType": "Observation",
                    "identifier": [
                        {"system": naming.result_id(hospital), "value": f"{mrn}.{code}"}
                    ],
                    "status": "final",
                    "category": [{"coding": [LAB]}],
                    "code": {"coding": [{"system": naming.LOINC, "code": code}]},
                    "subject": {"reference": "urn:uuid:00000000-0000-4000-8000-0000000000a1"},
                    "effectiveDateTime": "2026-11-20T08:00:00+08:00",
                    "valueQuantity": {
                        "value": 5.1,
                        "unit": "mmol/L",
                        "system": naming.UCUM,
                        "code": "mmol/L",
                    },
                },
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    return httpx.post(f"{live.base}/", json=bundle, headers=auth(hospital), timeout=30)


def exchange_patient(live: LiveServer, hospital: str, mrn: str) -> str:
    r = httpx.get(
        f"{live.base}/Patient/$ihe-pix",
        params={"sourceIdentifier": f"{naming.mrn(hospital)}|{mrn}"},
        headers=auth(hospital),
    )
    assert r.status_code == 200, r.text
    ref = next(p for p in r.json()["parameter"] if p["name"] == "targetId")
    return str(ref["valueReference"]["reference"].split("/")[1])


def observations(live: LiveServer, patient_id: str) -> int:
    r = httpx.get(
        f"{live.base}/Observation",
        params={"patient": patient_id, "_summary": "count"},
        headers=auth(),
    )
    return int(r.json()["total"])


def test_one_person_at_three_hospitals_is_one_patient(live: LiveServer) -> None:
    addr = "南山区科技园南路18号3栋1201"
    assert (
        send(
            live,
            "szph",
            person(
                "szph",
                "S1",
                "刘",
                "洋",
                "1965-01-01",
                "male",
                national_id=LIU_ID,
                phone="13800138000",
                address=addr,
            ),
        ).status_code
        == 200
    )
    assert (
        send(
            live,
            "pkuszh",
            person(
                "pkuszh", "P1", "刘", "洋", "1965-01-01", "male", national_id=LIU_ID, address=addr
            ),
            "4548-4",
        ).status_code
        == 200
    )
    # nsdh: no national ID, the name typed as 刘阳 (a homophone): probabilistic territory.
    assert (
        send(
            live,
            "nsdh",
            person(
                "nsdh",
                "N1",
                "刘",
                "阳",
                "1965-01-01",
                "male",
                phone="+86 138 0013 8000",
                address=addr,
            ),
            "2823-3",
        ).status_code
        == 200
    )
    a = exchange_patient(live, "szph", "S1")
    assert exchange_patient(live, "pkuszh", "P1") == a
    n = exchange_patient(live, "nsdh", "N1")
    if n != a:  # not auto-linked: then it must wait in the review queue, never be lost
        queue = httpx.get(
            f"{live.base.removesuffix('/fhir')}/api/patients/review",
            headers=auth(None, roles=("ops",)),
        ).json()
        assert any(i["candidate_patient_id"] == a for i in queue)
    # PIX: from the szph MRN to every other identifier of the person.
    pix = httpx.get(
        f"{live.base}/Patient/$ihe-pix",
        params={"sourceIdentifier": f"{naming.mrn('szph')}|S1"},
        headers=auth("szph"),
    ).json()
    values = {p["valueIdentifier"]["value"] for p in pix["parameter"] if "valueIdentifier" in p}
    assert {LIU_ID, "P1"} <= values
    assert observations(live, a) >= 2


def test_twins_stay_apart(live: LiveServer) -> None:
    addr = "福田区福中三路1号2栋801"
    for mrn, given, nid in (("T1", "思", TWIN_A), ("T2", "想", TWIN_B)):
        sent = send(
            live,
            "szph",
            person(
                "szph",
                mrn,
                "陈",
                given,
                "2010-05-05",
                "female",
                national_id=nid,
                phone="13900139000",
                address=addr,
            ),
        )
        assert sent.status_code == 200, sent.text
    assert exchange_patient(live, "szph", "T1") != exchange_patient(live, "szph", "T2")


def test_invalid_national_id_is_refused_with_the_element(live: LiveServer) -> None:
    bad = person("szph", "B1", "王", "五", "1965-01-01", "male", national_id="440305196501014510")
    r = send(live, "szph", bad)
    assert r.status_code == 400
    issue = r.json()["issue"][0]
    assert issue["expression"][0].startswith("Bundle.entry[0].resource.identifier")
    assert "check" in issue["diagnostics"].lower()
    # the same ID with a birth date that contradicts it
    clash = person("szph", "B2", "王", "五", "1970-01-01", "male", national_id=LIU_ID)
    assert send(live, "szph", clash).status_code == 400


def test_review_accept_moves_results_and_unlink_restores(live: LiveServer) -> None:
    addr = "罗湖区东门中路2号"
    send(live, "szph", person("szph", "R1", "黄", "丽", "1980-02-02", "female", address=addr))
    # Same name and birth date only, at another hospital: never auto-linked.
    send(live, "pkuszh", person("pkuszh", "R2", "黄", "丽", "1980-02-02", "female"), "4548-4")
    first, second = exchange_patient(live, "szph", "R1"), exchange_patient(live, "pkuszh", "R2")
    assert first != second
    ops = auth(None, roles=("ops",))
    api = live.base.removesuffix("/fhir") + "/api/patients"
    queue = httpx.get(f"{api}/review", headers=ops).json()
    item = next(i for i in queue if i["candidate_patient_id"] in (first, second))
    assert httpx.get(f"{api}/review", headers=auth("szph")).status_code == 403
    accepted = httpx.post(f"{api}/review/{item['id']}/accept", headers=ops)
    assert accepted.status_code == 200, accepted.text
    joined = exchange_patient(live, "pkuszh", "R2")
    assert joined == exchange_patient(live, "szph", "R1")
    assert observations(live, joined) == 2
    again = httpx.post(f"{api}/review/{item['id']}/accept", headers=ops)
    assert again.status_code == 400
    undone = httpx.post(f"{api}/unlink", json={"record": item["record_id"]}, headers=ops)
    assert undone.status_code == 200, undone.text
    # restored as it was: each record back on the exchange patient it had before the accept
    assert {exchange_patient(live, "szph", "R1"), exchange_patient(live, "pkuszh", "R2")} == {
        first,
        second,
    }
    assert observations(live, first) + observations(live, second) == 2
    assert observations(live, exchange_patient(live, "szph", "R1")) == 1
    history = httpx.get(f"{api}/{joined}/links", headers=ops).json()
    assert [e["action"] for e in history][-2:] in (["merge", "unlink"], ["link", "unlink"])


def test_match_returns_graded_candidates(live: LiveServer) -> None:
    send(
        live,
        "szph",
        person(
            "szph", "M1", "刘", "洋", "1965-01-01", "male", national_id=LIU_ID, phone="13800138000"
        ),
    )
    query = person("nsdh", "X", "Liu", "Yang", "1965-01-01", "male", phone="13800138000")
    query["name"] = [{"family": "LIU", "given": ["YANG"]}]
    r = httpx.post(
        f"{live.base}/Patient/$match",
        json={
            "resourceType": "Parameters",
            "parameter": [
                {"name": "resource", "resource": query},
                {"name": "count", "valueInteger": 3},
            ],
        },
        headers=auth("nsdh"),
    )
    assert r.status_code == 200, r.text
    entries = r.json()["entry"]
    assert entries, "the pinyin name, birth date and phone should find 刘洋"
    top = entries[0]
    assert top["resource"]["id"] == exchange_patient(live, "szph", "M1")
    assert 0 < top["search"]["score"] <= 1
    assert top["search"]["extension"][0]["valueCode"] in ("certain", "probable", "possible")


@pytest.mark.parametrize("body", [{}, {"resourceType": "Parameters"}, [1, 2]])
def test_match_rejects_bad_input(live: LiveServer, body: Any) -> None:
    r = httpx.post(f"{live.base}/Patient/$match", json=body, headers=auth("nsdh"))
    assert r.status_code == 400
    assert r.json()["resourceType"] == "OperationOutcome"
