"""FHIR R4 REST interactions over real HTTP (FHIR R4 §3.1.0 RESTful API), on both backends.

read, vread, instance history with ETag/Last-Modified; create (201 + Location), update with
If-Match, update-as-create, conditional update and create; transaction (all or nothing) and
batch (each entry on its own); entered-in-error leaves search but stays readable.
"""

from __future__ import annotations

import itertools
import threading
from email.utils import parsedate_to_datetime
from typing import Any
from unittest.mock import patch
from urllib.parse import quote

import httpx
import orjson
import pytest

from hie import naming
from hie.auth import ALL_SCOPES, Principal
from hie.exchange import Exchange
from hie.fhirtime import parse_instant
from hie.outcome import PreconditionFailed
from hie.writes import Writer
from tests.hie.api.api_builders import (
    GLUCOSE,
    assert_outcome,
    bundle,
    created_ids,
    entry,
    expressions,
    ids_of,
    observation,
    patient,
    report,
    urn,
    with_patient,
)


def _seed_patient(client: httpx.Client, mrn: str = "M1") -> str:
    """A hospital Patient record; returns ``Patient/<id>``."""
    resp = client.post("/Patient", json=patient(mrn))
    assert resp.status_code == 201, resp.text
    return f"Patient/{resp.json()['id']}"


def test_read_vread_history_carry_versions_etag_and_last_modified(client: httpx.Client) -> None:
    subject = _seed_patient(client)
    created = client.post("/Observation", json=observation(subject, value=5.4, result_id="R1"))
    assert created.status_code == 201, created.text
    oid = created.json()["id"]
    v1 = client.get(f"/Observation/{oid}")
    assert v1.status_code == 200
    assert v1.headers["content-type"].startswith("application/fhir+json")
    assert v1.headers["etag"] == 'W/"1"'
    meta = v1.json()["meta"]
    assert meta["versionId"] == "1"
    # Last-Modified is meta.lastUpdated at HTTP-date precision (RFC 9110 §8.8.2)
    modified = parsedate_to_datetime(v1.headers["last-modified"])
    assert modified == parse_instant(meta["lastUpdated"]).replace(microsecond=0)

    corrected = client.put(
        f"/Observation/{oid}",
        json={**observation(subject, value=5.9, result_id="R1"), "id": oid},
    )
    assert corrected.status_code == 200, corrected.text
    assert corrected.headers["etag"] == 'W/"2"'
    assert corrected.headers["location"].endswith(f"/Observation/{oid}/_history/2")

    current = client.get(f"/Observation/{oid}")
    assert current.headers["etag"] == 'W/"2"'
    assert current.json()["valueQuantity"]["value"] == 5.9

    old = client.get(f"/Observation/{oid}/_history/1")
    assert old.status_code == 200
    assert old.headers["etag"] == 'W/"1"'
    assert old.json()["valueQuantity"]["value"] == 5.4
    assert old.json()["meta"]["versionId"] == "1"

    history = client.get(f"/Observation/{oid}/_history")
    assert history.status_code == 200
    body = history.json()
    assert body["type"] == "history"
    assert body["total"] == 2
    assert [e["resource"]["meta"]["versionId"] for e in body["entry"]] == ["2", "1"]
    assert [e["request"]["method"] for e in body["entry"]] == ["PUT", "POST"]

    assert_outcome(client.get(f"/Observation/{oid}/_history/9"), 404)
    assert_outcome(client.get(f"/Observation/{oid}/_history/x"), 404)
    assert_outcome(client.get("/Observation/doesnotexist"), 404)
    assert_outcome(client.get("/Observation/doesnotexist/_history"), 404)


def test_create_assigns_the_id_and_answers_201_with_location(
    client: httpx.Client, live: object
) -> None:
    subject = _seed_patient(client)
    sent = {**observation(subject), "id": "client-chosen"}
    resp = client.post("/Observation", json=sent)
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["id"] != "client-chosen"  # create ignores a client id (FHIR R4 §3.1.0.8)
    assert body["meta"]["versionId"] == "1"
    assert body["meta"]["source"] == "Organization/szph"
    base = str(client.base_url).rstrip("/")
    assert resp.headers["location"] == f"{base}/Observation/{body['id']}/_history/1"
    assert resp.headers["etag"] == 'W/"1"'
    # everything the client sent comes back as sent
    assert {k: v for k, v in body.items() if k not in ("id", "meta")} == {
        k: v for k, v in sent.items() if k != "id"
    }

    minimal = client.post(
        "/Observation", json=observation(subject), headers={"Prefer": "return=minimal"}
    )
    assert minimal.status_code == 201
    assert minimal.content == b""
    assert "/Observation/" in minimal.headers["location"]

    outcome = client.post(
        "/Observation", json=observation(subject), headers={"Prefer": "return=OperationOutcome"}
    )
    assert outcome.status_code == 201
    assert outcome.json()["resourceType"] == "OperationOutcome"


def test_resending_the_same_content_makes_no_new_version(client: httpx.Client) -> None:
    subject = _seed_patient(client)
    obs = observation(subject, result_id="R-same")
    first = client.post("/Observation", json=obs)
    again = client.post("/Observation", json=obs)
    assert first.status_code == 201
    assert again.status_code == 200  # idempotent by (hospital, source identifier)
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["etag"] == 'W/"1"'


def test_update_with_if_match_detects_lost_updates(client: httpx.Client) -> None:
    subject = _seed_patient(client)
    oid = client.post("/Observation", json=observation(subject, result_id="R1")).json()["id"]
    body = {**observation(subject, value=6.1, result_id="R1"), "id": oid}

    ok = client.put(f"/Observation/{oid}", json=body, headers={"If-Match": 'W/"1"'})
    assert ok.status_code == 200, ok.text
    assert ok.headers["etag"] == 'W/"2"'

    stale = client.put(
        f"/Observation/{oid}", json={**body, "status": "amended"}, headers={"If-Match": 'W/"1"'}
    )
    assert_outcome(stale, 412)
    current = client.get(f"/Observation/{oid}")
    assert current.headers["etag"] == 'W/"2"'
    assert current.json()["status"] == "final"

    mismatch = client.put(f"/Observation/{oid}", json={**body, "id": "other"})
    assert "Observation.id" in expressions(assert_outcome(mismatch, 400))


def test_update_as_create_uses_the_client_id(client: httpx.Client) -> None:
    subject = _seed_patient(client)
    body = {**observation(subject, result_id="R-uac"), "id": "szph-obs-1"}
    resp = client.put("/Observation/szph-obs-1", json=body)
    assert resp.status_code == 201, resp.text
    assert resp.headers["location"].endswith("/Observation/szph-obs-1/_history/1")
    read = client.get("/Observation/szph-obs-1")
    assert read.status_code == 200
    assert read.json()["identifier"][0]["value"] == "R-uac"


def test_conditional_update_creates_updates_or_refuses(client: httpx.Client) -> None:
    subject = _seed_patient(client)
    system = naming.result_id("szph")
    criteria = {"identifier": f"{system}|R-cond"}
    obs = observation(subject, result_id="R-cond", value=1.0)

    created = client.put("/Observation", params=criteria, json=obs)  # 0 matches → create
    assert created.status_code == 201, created.text
    oid = created.json()["id"]

    updated = client.put("/Observation", params=criteria, json={**obs, "status": "amended"})
    assert updated.status_code == 200, updated.text  # 1 match → update that resource
    assert updated.json()["id"] == oid
    assert updated.headers["etag"] == 'W/"2"'

    # two resources share a second identifier → the criteria are ambiguous (R4 §3.1.0.8.2)
    shared = {"system": "https://lab.szph.example/accession", "value": "ACC-9"}
    for rid in ("R-a", "R-b"):
        o = observation(subject, result_id=rid)
        o["identifier"].append(shared)
        assert client.post("/Observation", json=o).status_code == 201
    ambiguous = client.put(
        "/Observation",
        params={"identifier": f"{shared['system']}|{shared['value']}"},
        json=observation(subject, result_id="R-c"),
    )
    assert_outcome(ambiguous, 412)
    found = client.get("/Observation", params={"identifier": f"{system}|R-c"})
    assert ids_of(found) == []

    assert_outcome(client.put("/Observation", json=obs), 400)  # no criteria at all


def test_conditional_create_with_if_none_exist(client: httpx.Client) -> None:
    subject = _seed_patient(client)
    system = naming.result_id("szph")
    header = {"If-None-Exist": f"identifier={system}|R-once"}
    first = client.post(
        "/Observation", json=observation(subject, result_id="R-once"), headers=header
    )
    assert first.status_code == 201
    second = client.post(
        "/Observation", json=observation(subject, result_id="R-once", value=9.9), headers=header
    )
    assert second.status_code == 200  # matched: nothing created, the match is returned
    assert second.json()["id"] == first.json()["id"]
    assert second.json()["valueQuantity"]["value"] == 5.4
    assert client.get(f"/Observation/{first.json()['id']}").headers["etag"] == 'W/"1"'

    # the header is a query string: percent-encoded criteria match the same resource
    encoded = {"If-None-Exist": "identifier=" + quote(f"{system}|R-once", safe="")}
    third = client.post(
        "/Observation", json=observation(subject, result_id="R-once"), headers=encoded
    )
    assert third.status_code == 200
    assert third.json()["id"] == first.json()["id"]

    shared = {"system": "https://lab.szph.example/accession", "value": "ACC-1"}
    for rid in ("R-x", "R-y"):
        o = observation(subject, result_id=rid)
        o["identifier"].append(shared)
        client.post("/Observation", json=o)
    many = client.post(
        "/Observation",
        json=observation(subject),
        headers={"If-None-Exist": f"identifier={shared['system']}|{shared['value']}"},
    )
    assert_outcome(many, 412)
    unsupported = client.post(
        "/Observation", json=observation(subject), headers={"If-None-Exist": "code=2345-7"}
    )
    assert_outcome(unsupported, 400)


def test_transaction_writes_everything_and_rewrites_references(client: httpx.Client) -> None:
    pat = patient("M-tx")
    o1, o2 = observation(urn(1), result_id="R1"), observation(urn(1), result_id="R2")
    tx = bundle(
        "transaction",
        [
            entry(o1, urn(2)),
            entry(report(urn(1), [urn(2), urn(3)]), urn(4)),
            entry(pat, urn(1)),  # the Patient need not come first
            entry(o2, urn(3)),
        ],
    )
    resp = client.post("/", json=tx)
    body = resp.json()
    assert body["type"] == "transaction-response"
    ids = created_ids(resp)
    assert [i.split("/")[0] for i in ids] == [
        "Observation",
        "DiagnosticReport",
        "Patient",
        "Observation",
    ]
    assert [e["response"]["status"] for e in body["entry"]] == ["201 Created"] * 4
    dr = client.get(f"/{ids[1]}").json()
    assert [r["reference"] for r in dr["result"]] == [ids[0], ids[3]]
    assert dr["subject"]["reference"] == ids[2]


def _nothing_stored(client: httpx.Client) -> None:
    for rtype in ("Patient", "Observation", "DiagnosticReport"):
        assert ids_of(client.get(f"/{rtype}")) == [], rtype


@pytest.mark.parametrize(
    ("bad_entry", "where"),
    [
        # a structural error in the resource: the FHIRPath names the element in the entry
        (
            lambda: entry({**observation(urn(1)), "valueQuantity": {"value": "high"}}),
            "Bundle.entry[2].resource.valueQuantity.value",
        ),
        (lambda: entry({**observation(urn(1)), "statuz": "final"}), "Bundle.entry[2].resource"),
        (lambda: entry({"resourceType": "Medication"}), "Bundle.entry[2].resource"),
        (
            lambda: {"resource": observation(urn(1)), "request": {"method": "DELETE", "url": "x"}},
            "Bundle.entry[2].request.method",
        ),
        (
            lambda: entry({**observation(urn(1)), "id": "a"}, method="PUT", url="Observation/b"),
            "Bundle.entry[2].resource.id",
        ),
    ],
    ids=["bad-decimal", "unknown-element", "unsupported-type", "delete", "put-id-mismatch"],
)
def test_transaction_is_all_or_nothing(client: httpx.Client, bad_entry, where: str) -> None:  # type: ignore[no-untyped-def]
    tx = with_patient(patient("M-bad"), observation(urn(1), result_id="R-ok"))
    tx["entry"].append(bad_entry())
    outcome = assert_outcome(client.post("/", json=tx), 400)
    assert any(x.startswith(where) for x in expressions(outcome)), outcome
    _nothing_stored(client)


def test_transaction_unknown_subject_names_the_entry(client: httpx.Client) -> None:
    tx = with_patient(patient("M-bad"), observation(urn(1), result_id="R-ok"))
    tx["entry"].append(entry(observation("Patient/nobody", result_id="R-lost")))
    outcome = assert_outcome(client.post("/", json=tx), 400)
    _nothing_stored(client)
    assert any(x.startswith("Bundle.entry[2]") for x in expressions(outcome)), outcome


def test_batch_entries_succeed_or_fail_alone(client: httpx.Client) -> None:
    subject = _seed_patient(client)
    batch = bundle(
        "batch",
        [
            entry(observation(subject, result_id="B1")),
            entry({**observation(subject, result_id="B2"), "valueQuantity": {"value": "x"}}),
            entry({"resourceType": "Medication"}),
            entry(observation("Patient/nobody", result_id="B3")),
            entry(observation(subject, result_id="B4")),
        ],
    )
    resp = client.post("/", json=batch)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["type"] == "batch-response"
    statuses = [e["response"]["status"].split()[0] for e in body["entry"]]
    assert statuses == ["201", "400", "400", "400", "201"]
    for n in (1, 2, 3):
        outcome = body["entry"][n]["response"]["outcome"]
        assert outcome["resourceType"] == "OperationOutcome"
        assert expressions(outcome), outcome
    assert expressions(body["entry"][1]["response"]["outcome"]) == [
        "Observation.valueQuantity.value"
    ]
    landed = ids_of(client.get("/Observation", params={"patient": subject}))
    assert sorted(landed) == sorted(
        e["fullUrl"].split("/fhir/")[1] for e in (body["entry"][0], body["entry"][4])
    )


def test_bundle_posted_at_base_must_be_transaction_or_batch(client: httpx.Client) -> None:
    assert "Bundle.type" in expressions(
        assert_outcome(client.post("/", json=bundle("collection", [])), 400)
    )
    assert_outcome(client.post("/", json=patient("M1")), 400)
    empty = client.post("/", json=bundle("transaction", []))
    assert empty.status_code == 200
    assert empty.json()["type"] == "transaction-response"


def test_entered_in_error_leaves_search_but_stays_in_history(client: httpx.Client) -> None:
    subject = _seed_patient(client)
    obs = observation(subject, result_id="R-eie", code=GLUCOSE)
    oid = client.post("/Observation", json=obs).json()["id"]
    keep = client.post("/Observation", json=observation(subject, result_id="R-keep")).json()["id"]
    assert sorted(ids_of(client.get("/Observation", params={"patient": subject}))) == sorted(
        [f"Observation/{oid}", f"Observation/{keep}"]
    )

    wrong = client.put(f"/Observation/{oid}", json={**obs, "id": oid, "status": "entered-in-error"})
    assert wrong.status_code == 200, wrong.text
    for params in (
        {"patient": subject},
        {"code": GLUCOSE},
        {"status": "entered-in-error"},
        {"_id": oid},
        {"date": "2026-11-20"},
    ):
        assert f"Observation/{oid}" not in ids_of(client.get("/Observation", params=params)), params
    assert (
        client.get("/Observation", params={"_summary": "count", "patient": subject}).json()["total"]
        == 1
    )

    read = client.get(f"/Observation/{oid}")
    assert read.status_code == 200
    assert read.json()["status"] == "entered-in-error"
    history = client.get(f"/Observation/{oid}/_history").json()
    assert [e["resource"]["status"] for e in history["entry"]] == ["entered-in-error", "final"]

    # nor is it brought back by a report's _include
    dr = report(subject, [f"Observation/{oid}", f"Observation/{keep}"], filler="F-eie")
    assert client.post("/DiagnosticReport", json=dr).status_code == 201
    included = client.get(
        "/DiagnosticReport", params={"patient": subject, "_include": "DiagnosticReport:result"}
    )
    assert ids_of(included, "include") == [f"Observation/{keep}"]

    # and the correction brings it back
    client.put(f"/Observation/{oid}", json={**obs, "id": oid, "status": "corrected"})
    assert f"Observation/{oid}" in ids_of(client.get("/Observation", params={"patient": subject}))


def test_delete_is_refused_with_a_reason(client: httpx.Client) -> None:
    subject = _seed_patient(client)
    oid = client.post("/Observation", json=observation(subject)).json()["id"]
    outcome = assert_outcome(client.delete(f"/Observation/{oid}"), 405)
    assert "entered-in-error" in outcome["issue"][0]["diagnostics"]
    assert client.get(f"/Observation/{oid}").status_code == 200


def test_metadata_declares_what_the_routes_do(client: httpx.Client) -> None:
    cs = client.get("/metadata").json()
    assert cs["resourceType"] == "CapabilityStatement"
    assert cs["fhirVersion"] == "4.0.1"
    rest = cs["rest"][0]
    assert {i["code"] for i in rest["interaction"]} == {"transaction", "batch"}
    by_type = {r["type"]: r for r in rest["resource"]}
    assert set(by_type) >= {"Patient", "Observation", "DiagnosticReport", "ImagingStudy"}
    obs = by_type["Observation"]
    names = {p["name"] for p in obs["searchParam"]}
    assert names >= {"patient", "subject", "code", "category", "date", "status", "_lastUpdated"}
    assert "DiagnosticReport:result" in by_type["DiagnosticReport"]["searchInclude"]
    assert "ImagingStudy:endpoint" in by_type["ImagingStudy"]["searchInclude"]
    assert {p["name"] for p in by_type["ImagingStudy"]["searchParam"]} >= {
        "patient",
        "modality",
        "started",
        "identifier",
    }
    assert {p["name"] for p in by_type["Patient"]["searchParam"]} >= {
        "identifier",
        "name",
        "birthdate",
        "gender",
    }
    # every declared parameter is accepted by a strict search
    for rtype, res in by_type.items():
        for p in res["searchParam"]:
            value = "ge2026" if p["type"] == "date" else "x|y" if "identifier" in p["name"] else "x"
            resp = client.get(
                f"/{rtype}", params={p["name"]: value}, headers={"Prefer": "handling=strict"}
            )
            assert resp.status_code == 200, (rtype, p["name"], resp.text)


def test_if_match_is_atomic_with_the_write(exchange: Exchange) -> None:
    """Two updates carrying the same If-Match: exactly one may win (no lost update).

    The race is made deterministic: both requests read the current version, then wait for
    each other before writing.
    """
    writer = Writer(exchange)
    principal = Principal("t", hospital_id="szph", scopes=frozenset(ALL_SCOPES))
    pat = writer.create(principal, "Patient", orjson.dumps(patient("RACE")))
    obs = observation(f"Patient/{pat.written.id}", result_id="RACE.1")
    oid = writer.create(principal, "Observation", orjson.dumps(obs)).written.id

    barrier = threading.Barrier(2, timeout=10)
    real_get = exchange.store.get
    calls = itertools.count()

    def get_then_wait(rtype: str, rid: str) -> Any:
        cur = real_get(rtype, rid)
        if next(calls) < 2:  # the two If-Match reads
            barrier.wait()
        return cur

    outcomes: list[str] = []

    def put(value: float) -> None:
        body = orjson.dumps(
            {**observation(obs["subject"]["reference"], result_id="RACE.1", value=value), "id": oid}
        )
        try:
            writer.update(principal, "Observation", oid, body, 'W/"1"')
            outcomes.append("ok")
        except PreconditionFailed:
            outcomes.append("412")

    with patch.object(exchange.store, "get", side_effect=get_then_wait):
        threads = [threading.Thread(target=put, args=(v,)) for v in (6.0, 7.0)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sorted(outcomes) == ["412", "ok"]
    assert exchange.store.get("Observation", oid).version_id == 2  # type: ignore[union-attr]


def test_transaction_conflict_is_409_and_writes_nothing(client: httpx.Client) -> None:
    subject = _seed_patient(client)
    obs = observation(subject, result_id="R-taken")
    assert client.post("/Observation", json=obs).status_code == 201
    tx = bundle(
        "transaction",
        [
            entry(patient("M-new"), urn(1)),
            entry({**obs, "id": "another"}, method="PUT", url="Observation/another"),
        ],
    )
    outcome = assert_outcome(client.post("/", json=tx), 409)
    assert outcome["issue"][0]["code"] == "conflict"
    assert (
        ids_of(client.get("/Patient", params={"identifier": f"{naming.mrn('szph')}|M-new"})) == []
    )
