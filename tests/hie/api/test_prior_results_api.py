"""$prior-results end to end: the demo hospitals loaded through their real adapters, asked
over real HTTP, with decisions recorded and counted in the savings ledger."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from hie import naming
from hie.demo import load_demo
from hie.exchange import Exchange
from hie.services import attach_recognition
from hie.settings import Settings
from tests.conftest import LiveServer, auth

AT = "2026-11-25T10:00:00+08:00"


@pytest.fixture
def demo(settings: Settings, exchange: Exchange, tmp_path: Path) -> Iterator[LiveServer]:
    load_demo(settings, tmp_path / "fixtures", exchange)
    attach_recognition(exchange)
    with LiveServer(settings, exchange) as server:
        yield server


def verdicts(bundle: dict[str, Any]) -> list[tuple[str, str, str | None, str | None]]:
    """(source hospital, verdict, reason, item) per result entry, in answer order."""
    out = []
    for e in bundle.get("entry", []):
        if not e.get("extension"):
            continue
        parts = {x["url"]: x for x in e["extension"][0]["extension"]}
        out.append(
            (
                e["resource"]["meta"]["source"].removeprefix("Organization/"),
                parts["verdict"]["valueCoding"]["code"],
                parts.get("reason", {}).get("valueCoding", {}).get("code"),
                parts.get("item", {}).get("valueCoding", {}).get("code"),
            )
        )
    return out


def _li_na_at_szph(demo: LiveServer, codes: str) -> httpx.Response:
    """szph asks $prior-results for 李娜 (pkuszh MRN PK2002) and ``codes``, at AT."""
    with httpx.Client(base_url=demo.base, headers=auth("szph"), timeout=30) as c:
        return c.get(
            "/Patient/$prior-results",
            params={
                "patient.identifier": f"{naming.mrn('pkuszh')}|PK2002",
                "code": codes,
                "at": AT,
            },
        )


def test_li_na_at_szph_gets_recognised_and_reference_only_results(demo: LiveServer) -> None:
    """李娜 has results at pkuszh (CBC, lipids) and nsdh (electrolytes, HbA1c); szph asks."""
    r = _li_na_at_szph(demo, "4548-4,58410-2,2823-3")
    assert r.status_code == 200, r.text
    found = verdicts(r.json())
    hospitals = {h for h, *_ in found}
    assert hospitals == {"pkuszh", "nsdh"}
    # nsdh's HbA1c EQA pass ended 2025-12-31: its 2026 HbA1c is reference-only for szph.
    assert ("nsdh", "reference-only", "no-credential-at-time", "4548-4") in found
    # pkuszh's CBC (3A, credentialed) is recognised for szph (3A).
    assert ("pkuszh", "recognised", None, "58410-2") in found
    # Most useful first: every recognised entry comes before any reference-only one.
    kinds = [v for _, v, _, _ in found]
    assert kinds.index("reference-only") > max(i for i, k in enumerate(kinds) if k == "recognised")
    outcome = r.json()["entry"][-1]["resource"]
    assert outcome["resourceType"] == "OperationOutcome"
    assert any("58410-2: covered" in i["diagnostics"] for i in outcome["issue"])


def test_a_panel_found_through_one_member_reads_its_other_members(demo: LiveServer) -> None:
    """Asked for haemoglobin only, the CBC report relates; its other members are not among
    the hits (their codes were not asked for), so the index reads them on demand to know the
    panel is complete: no component may be reported missing."""
    r = _li_na_at_szph(demo, "718-7")
    assert r.status_code == 200, r.text
    reports = [
        {x["url"]: x for x in e["extension"][0]["extension"]}
        for e in r.json()["entry"]
        if e["resource"]["resourceType"] == "DiagnosticReport"
    ]
    assert reports, "the CBC report relates to haemoglobin"
    recognised = [p for p in reports if p["verdict"]["valueCoding"]["code"] == "recognised"]
    assert recognised
    for parts in recognised:
        assert "missing" not in parts
        assert parts["covers"]["valueCoding"]["code"] == "718-7"
    types = {e["resource"]["resourceType"] for e in r.json()["entry"]}
    # The members read for the check are not answered: only haemoglobin and its panels are.
    codes = {
        e["resource"]["code"]["coding"][0]["code"]
        for e in r.json()["entry"]
        if e["resource"]["resourceType"] == "Observation"
    }
    assert codes == {"718-7"} and types == {"Observation", "DiagnosticReport", "OperationOutcome"}


def test_decisions_are_recorded_withdrawn_and_counted(demo: LiveServer) -> None:
    with httpx.Client(base_url=demo.base, headers=auth("szph"), timeout=30) as c:
        bundle = c.get(
            "/Patient/$prior-results",
            params={
                "patient.identifier": f"{naming.mrn('pkuszh')}|PK2002",
                "code": "58410-2",
                "at": AT,
            },
        ).json()
        cbc = next(
            e
            for e in bundle["entry"]
            if e["resource"].get("code", {}).get("coding", [{}])[0].get("code") == "58410-2"
        )
        patient = bundle["link"][0]["url"].split("/Patient/")[1].split("/")[0]
        result = f"DiagnosticReport/{cbc['resource']['id']}"
        api = demo.base.removesuffix("/fhir") + "/api/recognition"
        accept = c.post(
            f"{api}/decisions",
            json={
                "patient": patient,
                "result": result,
                "item": "58410-2",
                "action": "accept",
                "clinician": "Dr Chen",
                "department": "cardiology",
            },
        )
        assert accept.status_code == 201, accept.text
        bad = c.post(
            f"{api}/decisions",
            json={
                "patient": patient,
                "result": result,
                "item": "58410-2",
                "action": "decline",
                "clinician": "Dr Chen",
                "reason": {"code": "clinician-judgement"},
            },
        )
        assert bad.status_code == 400
        assert "reason" in bad.json()["issue"][0]["expression"][0]
        decline = c.post(
            f"{api}/decisions",
            json={
                "patient": patient,
                "result": result,
                "item": "58410-2",
                "action": "decline",
                "clinician": "Dr Wu",
                "department": "surgery",
                "reason": {"code": "major-procedure"},
            },
        )
        assert decline.status_code == 201
        report = c.get(f"{api}/savings", params={"by": "hospital,item"}).json()["rows"]
        row = next(r for r in report if r["item"] == "58410-2")
        assert (row["accepted"], row["declined"], row["testsAvoided"]) == (1, 1, 1)
        assert float(row["rmbSaved"]) > 0
        assert row["declinedByReason"] == {"major-procedure": 1}
        withdrawn = c.post(
            f"{api}/decisions/{accept.json()['id']}/withdraw", json={"reason": "wrong patient"}
        )
        assert withdrawn.status_code == 200
        report = c.get(f"{api}/savings", params={"by": "hospital,item"}).json()["rows"]
        row = next(r for r in report if r["item"] == "58410-2")
        assert row["accepted"] == 0
        csv = c.get(f"{api}/savings", params={"by": "hospital,month", "format": "csv"})
        assert csv.headers["content-type"].startswith("text/csv")
        assert "rmb_saved" in csv.text.splitlines()[0]


def test_prior_results_is_declared_and_rejects_bad_input(demo: LiveServer) -> None:
    meta = httpx.get(f"{demo.base}/metadata").json()
    ops = meta["rest"][0]["operation"]
    assert ops[0]["name"] == "prior-results"
    with httpx.Client(base_url=demo.base, headers=auth("szph"), timeout=30) as c:
        assert c.get("/OperationDefinition/prior-results").json()["code"] == "prior-results"
        no_code = c.get(
            "/Patient/$prior-results",
            params={"patient.identifier": f"{naming.mrn('pkuszh')}|PK2002"},
        )
        assert no_code.status_code == 400
        assert no_code.json()["issue"][0]["expression"] == ["code"]
        unknown = c.get(
            "/Patient/$prior-results",
            params={"patient.identifier": f"{naming.mrn('pkuszh')}|NOPE", "code": "4548-4"},
        )
        assert unknown.status_code == 404
        nobody = c.get("/Patient/nobody-here/$prior-results", params={"code": "4548-4"})
        assert nobody.status_code == 404
        assert nobody.json()["issue"][0]["expression"] == ["Patient.id"]
        bad_at = c.get(
            "/Patient/$prior-results",
            params={
                "patient.identifier": f"{naming.mrn('pkuszh')}|PK2002",
                "code": "4548-4",
                "at": "yesterday",
            },
        )
        assert bad_at.status_code == 400


def _ask(c: httpx.Client, codes: str, at: str, **more: str) -> dict[str, Any]:
    r = c.get(
        "/Patient/$prior-results",
        params={
            "patient.identifier": f"{naming.mrn('pkuszh')}|PK2002",
            "code": codes,
            "at": at,
            **more,
        },
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _judged(bundle: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The verdict's parts of each result entry, by reference."""
    return {
        f"{e['resource']['resourceType']}/{e['resource']['id']}": {
            x["url"]: x for x in e["extension"][0]["extension"]
        }
        for e in bundle["entry"]
        if e.get("extension")
    }


def test_a_result_is_answered_to_the_end_of_its_window_and_after_only_if_asked(
    demo: LiveServer,
) -> None:
    """By default the index is read back only as far as the longest window of the asked
    items: each result must still be answered in the last second of its own window, and at
    its end only with ``includeExpired=true``, as expired."""
    codes = "58410-2,24326-1,4548-4,2093-3,57698-3"
    with httpx.Client(base_url=demo.base, headers=auth("szph"), timeout=30) as c:
        everything = _judged(_ask(c, codes, AT, includeExpired="true"))
        ends: dict[str, tuple[str, str]] = {}  # item -> (result, the end of its window)
        for ref, parts in everything.items():
            if "expires" in parts and parts["verdict"]["valueCoding"]["code"] == "recognised":
                end = parts["expires"]["valueDateTime"]
                ends.setdefault(parts["item"]["valueCoding"]["code"], (ref, end))
        assert len({end for _, end in ends.values()}) >= 2, ends  # windows of several lengths
        for item, (ref, end) in ends.items():  # asked alone: its own window is the longest
            last = (datetime.fromisoformat(end) - timedelta(seconds=1)).isoformat()
            assert _judged(_ask(c, item, last))[ref]["verdict"]["valueCoding"]["code"] == (
                "recognised"
            )
            assert ref not in _judged(_ask(c, item, end))
            after = _judged(_ask(c, item, end, includeExpired="true"))[ref]
            assert after["reason"]["valueCoding"]["code"] == "expired"


@pytest.mark.parametrize("value", ["yes", "1", "TRUE"])
def test_include_expired_is_true_or_false(demo: LiveServer, value: str) -> None:
    with httpx.Client(base_url=demo.base, headers=auth("szph"), timeout=30) as c:
        r = c.get(
            "/Patient/$prior-results",
            params={
                "patient.identifier": f"{naming.mrn('pkuszh')}|PK2002",
                "code": "58410-2",
                "includeExpired": value,
            },
        )
    assert r.status_code == 400, r.text
    issue = r.json()["issue"][0]
    assert issue["expression"] == ["includeExpired"] and value in issue["diagnostics"]


def test_include_expired_posted_as_a_boolean_parameter(demo: LiveServer) -> None:
    """POSTed Parameters carry it as valueBoolean; the answer is the GET's."""
    later = "2027-06-01T10:00:00+08:00"  # every demo result's window has ended
    with httpx.Client(base_url=demo.base, headers=auth("szph"), timeout=30) as c:
        got = _judged(_ask(c, "58410-2", later, includeExpired="true"))
        none = _judged(_ask(c, "58410-2", later))
        posted = c.post(
            "/Patient/$prior-results",
            json={
                "resourceType": "Parameters",
                "parameter": [
                    {
                        "name": "patient.identifier",
                        "valueIdentifier": {
                            "system": naming.mrn("pkuszh"),
                            "value": "PK2002",
                        },
                    },
                    {"name": "code", "valueString": "58410-2"},
                    {"name": "at", "valueDateTime": later},
                    {"name": "includeExpired", "valueBoolean": True},
                ],
            },
        )
    assert posted.status_code == 200, posted.text
    assert got and none == {}
    assert _judged(posted.json()) == got
    assert {p["reason"]["valueCoding"]["code"] for p in got.values()} == {"expired"}
