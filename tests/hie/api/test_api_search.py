"""FHIR search over real HTTP (FHIR R4 §3.1.1), on SQLite and PostgreSQL.

One small world is loaded once per module and backend (three patients, their results, two
imaging studies, an Endpoint, two Organizations); every test only reads it, and asserts the
exact set of resources each search returns (by label, so a failure names what was wrong).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from hie import naming
from tests.hie.api.api_builders import (
    BACKENDS,
    GLUCOSE,
    IMAGING,
    POTASSIUM,
    assert_outcome,
    bundle,
    created_ids,
    endpoint,
    entry,
    expressions,
    imaging_study,
    observation,
    organization,
    patient,
    report,
    serve,
    urn,
)

LOINC_GLU = f"{naming.LOINC}|{GLUCOSE}"
ACCESSION = f"{naming.BASE}/sid/accession/szph"
A_ID, B_ID = "440305198003151231", "440305199207012422"
STRICT = {"Prefer": "handling=strict"}


@dataclass
class World:
    client: httpx.Client
    ids: dict[str, str] = field(default_factory=dict)  # label → Type/id
    masters: dict[str, str] = field(default_factory=dict)  # patient label → exchange patient id
    updated: dict[str, str] = field(default_factory=dict)  # label → meta.lastUpdated

    def labels(self, resp: httpx.Response, mode: str = "match") -> list[str]:
        """Labels of the entries of a searchset, in order (masters as 'master:A')."""
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["resourceType"] == "Bundle" and body["type"] == "searchset", body
        back = {v: k for k, v in self.ids.items()}
        back |= {f"Patient/{v}": f"master:{k}" for k, v in self.masters.items()}
        out = []
        for e in body.get("entry", []):
            if e.get("search", {}).get("mode") != mode:
                continue
            ref = f"{e['resource']['resourceType']}/{e['resource']['id']}"
            assert e["fullUrl"].endswith("/" + ref)
            out.append(back.get(ref, ref))
        return out

    def find(self, rtype: str, headers: dict[str, str] | None = None, **params: Any) -> set[str]:
        found = self.labels(self.client.get(f"/{rtype}", params=params, headers=headers))
        assert len(found) == len(set(found)), found
        return set(found)

    def id(self, label: str) -> str:
        return self.ids[label].split("/", 1)[1]


def _seed(client: httpx.Client) -> World:
    w = World(client)
    a = patient(
        "A1",
        national_id=A_ID,
        extra_names=[{"family": "Zhang", "given": ["Wei"]}],
    )
    b = patient(
        "B1", national_id=B_ID, family="李", given="娜", gender="female", birth="1992-07-01"
    )
    c = patient("C1", family="Müller", given="José", gender="other", birth="2001")
    obs_a = {
        "g1": observation(urn(1), date="2026-11-20T08:00:00+08:00"),
        "g2": observation(urn(1), date="2026-11-21T08:00:00+08:00"),
        "g3": observation(urn(1), date="2026-11-22T23:30:00+08:00", status="preliminary"),
        "k1": observation(urn(1), code=POTASSIUM, date="2026-10-05"),
        "loc": observation(
            urn(1), system=naming.local_codes("szph"), date="2026-11-20T09:00:00+08:00"
        ),
        "vs": observation(
            urn(1), code="24627-2", category=IMAGING, date="2026-11-20T10:00:00+08:00"
        ),
    }
    labels = ["A", *obs_a, "E", "dr", "isA"]
    entries = [entry(a, urn(1))]
    entries += [entry(o, urn(10 + n)) for n, o in enumerate(obs_a.values())]
    entries.append(entry(endpoint(), urn(30)))
    entries.append(entry(report(urn(1), [urn(10), urn(13)]), urn(31)))
    entries.append(
        entry(
            imaging_study(
                urn(1), uid="1.2.840.99.1", endpoints=[urn(30)], accession="ACC1", modality="CT"
            )
        )
    )
    first = client.post("/", json=bundle("transaction", entries))
    w.ids.update(zip(labels, created_ids(first), strict=True))
    w.updated["A-tx"] = first.json()["entry"][0]["response"]["lastModified"]

    second = client.post(
        "/",
        json=bundle(
            "transaction",
            [
                entry(b, urn(2)),
                entry(observation(urn(2), date="2026-11-20T08:00:00+08:00"), urn(40)),
                entry(
                    imaging_study(
                        urn(2),
                        uid="1.2.840.99.2",
                        modality="MR",
                        started="2026-09-01T09:00:00+08:00",
                    )
                ),
                entry(c, urn(3)),
            ],
        ),
    )
    w.ids.update(zip(["B", "bg", "isB", "C"], created_ids(second), strict=True))
    w.updated["B-tx"] = second.json()["entry"][0]["response"]["lastModified"]

    for label, name, ident in (
        ("orgS", "深圳市人民医院", "szph"),
        ("orgP", "北京大学深圳医院", "pkuszh"),
    ):
        resp = client.post("/Organization", json=organization(name, ident))
        assert resp.status_code == 201, resp.text
        w.ids[label] = f"Organization/{resp.json()['id']}"

    masters = client.get("/Patient", params={"identifier": f"{naming.EXCHANGE_PATIENT}|"})
    for e in masters.json().get("entry", []):
        linked = {link["other"]["reference"] for link in e["resource"].get("link", [])}
        for label in ("A", "B", "C"):
            if w.ids[label] in linked:
                w.masters[label] = e["resource"]["id"]
    assert set(w.masters) == {"A", "B", "C"}, w.masters
    return w


@pytest.fixture(scope="module", params=BACKENDS)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    with serve(request.param, tmp_path_factory.mktemp("search")) as (client, _):
        yield _seed(client)


A_OBS = {"g1", "g2", "g3", "k1", "loc", "vs"}
A_GLU = {"g1", "g2", "g3"}


# -- Patient ---------------------------------------------------------------------------
def test_patient_by_identifier(world: World) -> None:
    w = world
    assert w.find("Patient", identifier=f"{naming.mrn('szph')}|A1") == {"A", "master:A"}
    assert w.find("Patient", identifier=f"{naming.NATIONAL_ID}|{B_ID}") == {"B", "master:B"}
    assert w.find("Patient", identifier="A1") == {"A", "master:A"}  # value in any system
    assert w.find("Patient", identifier=f"{naming.mrn('szph')}|") >= {"A", "B", "C"}
    assert w.find("Patient", identifier=f"{naming.mrn('other')}|A1") == set()
    assert w.find("Patient", identifier="|A1") == set()  # |value: no system at all
    assert w.find("Patient", identifier=f"{naming.mrn('szph')}|A1,{naming.mrn('szph')}|B1") == {
        "A",
        "B",
        "master:A",
        "master:B",
    }


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("张", {"A"}),
        ("张伟", {"A"}),  # family + given written together, as Chinese names are
        ("伟", {"A"}),
        ("zhang", {"A"}),
        ("Zha", {"A"}),  # prefix match (the default string search, R4 §3.1.1.5.6)
        ("ZHANG WEI", {"A"}),
        ("李", {"B"}),
        ("muller", {"C"}),  # accents are ignored
        ("MÜLLER", {"C"}),
        ("jos", {"C"}),
        ("王", set()),
        ("%", set()),  # LIKE wildcards are literal characters
        ("_", set()),
        ("张,李", {"A", "B"}),
    ],
)
def test_patient_by_name(world: World, name: str, expected: set[str]) -> None:
    found = {x for x in world.find("Patient", name=name) if not x.startswith("master:")}
    assert found == expected


def test_patient_name_exact_and_masters(world: World) -> None:
    w = world
    assert w.find("Patient", **{"name:exact": "zhang"}) == {"A", "master:A"}
    assert w.find("Patient", **{"name:exact": "zha"}) == set()
    # the exchange patient (master) unites the names and identifiers of its records
    master = w.client.get(f"/Patient/{w.masters['A']}").json()
    assert {"system": naming.mrn("szph"), "value": "A1"} in master["identifier"]
    assert {"reference": w.ids["A"]} in [link["other"] for link in master["link"]]


def test_patient_by_birthdate_and_gender(world: World) -> None:
    w = world

    def records(**params: str) -> set[str]:
        return {x for x in w.find("Patient", **params) if not x.startswith("master:")}

    assert records(birthdate="1980-03-15") == {"A"}
    assert records(birthdate="1980") == {"A"}
    assert records(birthdate="1980-03") == {"A"}
    assert records(birthdate="1980-03-16") == set()
    assert records(birthdate="ge1990") == {"B", "C"}
    assert records(birthdate="lt1990-01-01") == {"A"}
    assert records(gender="female") == {"B"}
    assert records(gender="other") == {"C"}
    assert records(gender="male,female") == {"A", "B"}
    assert records(gender="male", birthdate="1992") == set()


# -- Observation -----------------------------------------------------------------------
def test_observation_by_patient_or_subject(world: World) -> None:
    w = world
    a, b = w.id("A"), w.id("B")
    assert w.find("Observation", patient=a) == A_OBS
    assert w.find("Observation", patient=f"Patient/{a}") == A_OBS
    assert w.find("Observation", subject=f"Patient/{a}") == A_OBS
    assert w.find("Observation", patient=w.masters["A"]) == A_OBS  # the exchange patient
    assert w.find("Observation", patient=b) == {"bg"}
    assert w.find("Observation", patient=f"{a},{b}") == A_OBS | {"bg"}
    assert w.find("Observation", patient="nobody") == set()
    assert w.find("Observation", patient=a, subject=f"Patient/{b}") == set()


def test_observation_by_code(world: World) -> None:
    w = world
    a = w.id("A")
    assert w.find("Observation", code=LOINC_GLU) == {"g1", "g2", "g3", "bg"}
    assert w.find("Observation", code=GLUCOSE) == {"g1", "g2", "g3", "bg", "loc"}
    assert w.find("Observation", code=f"{naming.local_codes('szph')}|{GLUCOSE}") == {"loc"}
    assert w.find("Observation", code=f"{naming.LOINC}|", patient=a) == A_OBS - {"loc"}
    assert w.find("Observation", code=f"|{GLUCOSE}") == set()  # |code: codes without a system
    assert w.find("Observation", code=f"{LOINC_GLU},{naming.LOINC}|{POTASSIUM}", patient=a) == {
        "g1",
        "g2",
        "g3",
        "k1",
    }
    assert w.find("Observation", code="http://snomed.info/sct|2345-7") == set()


def test_observation_by_category_and_status(world: World) -> None:
    w = world
    a = w.id("A")
    assert w.find("Observation", patient=a, category="laboratory") == A_OBS - {"vs"}
    assert w.find("Observation", category="imaging") == {"vs"}
    assert w.find("Observation", category=f"{IMAGING['system']}|imaging") == {"vs"}
    assert w.find("Observation", category="social-history") == set()
    assert w.find("Observation", category="http://other.example|imaging") == set()
    assert w.find("Observation", status="preliminary") == {"g3"}
    assert w.find("Observation", patient=a, status="final") == A_OBS - {"g3"}
    assert w.find("Observation", patient=a, status="final,preliminary") == A_OBS


def test_status_forms_on_every_result_type(world: World) -> None:
    """status is read from the type tables (no search_token rows): each token form keeps
    what it meant when it had token rows with an empty system."""
    w = world
    a = w.id("A")
    assert w.find("Observation", status="|preliminary") == {"g3"}  # |code: no system
    assert w.find("Observation", status=f"{naming.LOINC}|preliminary") == set()
    assert w.find("Observation", status="http://other.example|") == set()
    assert w.find("Observation", patient=a, status="|") == A_OBS  # no system, any code
    assert w.find("Observation", patient=a, status="amended,|preliminary") == {"g3"}
    assert w.find("Observation", patient=a, **{"status:exact": "preliminary"}) == {"g3"}
    assert w.find("Observation", status="preliminary", code=LOINC_GLU, date="ge2026-11-22") == {
        "g3"
    }
    repeated = [("patient", a), ("status", "final,preliminary"), ("status", "preliminary")]
    assert w.labels(w.client.get("/Observation", params=repeated)) == ["g3"]  # repeated: AND
    count = w.client.get(
        "/Observation", params={"patient": a, "status": "final", "_summary": "count"}
    )
    assert count.json()["total"] == len(A_OBS) - 1
    assert w.find("DiagnosticReport", status="final") == {"dr"}
    assert w.find("DiagnosticReport", patient=a, status="preliminary,cancelled") == set()
    assert w.find("ImagingStudy", status="available") == {"isA", "isB"}
    assert w.find("ImagingStudy", patient=w.id("B"), status="|available") == {"isB"}
    assert w.find("ImagingStudy", status="cancelled") == set()
    not_final = w.client.get("/Observation", params={"status:not": "final"}, headers=STRICT)
    assert expressions(assert_outcome(not_final, 400)) == ["status:not"]  # as before: no :not


@pytest.mark.parametrize(
    ("dates", "expected"),
    [
        (["2026-11-20"], {"g1"}),
        (["eq2026-11-20"], {"g1"}),
        (["2026-11"], {"g1", "g2", "g3"}),
        (["2026"], {"g1", "g2", "g3"}),
        (["2025"], set()),
        (["ge2026-11-21"], {"g2", "g3"}),
        (["gt2026-11-21"], {"g3"}),
        (["le2026-11-21"], {"g1", "g2"}),
        (["lt2026-11-21"], {"g1"}),
        (["ne2026-11-21"], {"g1", "g3"}),
        (["ge2026-11-21", "le2026-11-21"], {"g2"}),  # two params AND
        (["2026-11-20,2026-11-22"], {"g1", "g3"}),  # comma ORs
        # a date without a zone is the exchange's local day: 23:30 +08:00 is still the 22nd
        (["2026-11-22"], {"g3"}),
        (["2026-11-22T15:30:00Z"], {"g3"}),
        (["2026-11-20T08:00+08:00"], {"g1"}),
        (["gt2026-11-20T08:00:00+08:00"], {"g2", "g3"}),
        (["ge2026-11-20T00:00:00Z"], {"g1", "g2", "g3"}),
        (["lt2026-11-20T00:00:00Z"], set()),
    ],
)
def test_observation_by_date(world: World, dates: list[str], expected: set[str]) -> None:
    params = [("patient", world.id("A")), ("code", LOINC_GLU), *(("date", d) for d in dates)]
    resp = world.client.get("/Observation", params=params)
    assert set(world.labels(resp)) == expected


def test_observation_by_last_updated(world: World) -> None:
    w = world
    a_tx, b_tx = w.updated["A-tx"], w.updated["B-tx"]
    everything = A_OBS | {"bg"}
    assert w.find("Observation", _lastUpdated=a_tx) == A_OBS  # one transaction, one instant
    assert w.find("Observation", _lastUpdated=b_tx) == {"bg"}
    assert w.find("Observation", _lastUpdated=f"gt{a_tx}") == {"bg"}
    assert w.find("Observation", _lastUpdated=f"lt{b_tx}") == A_OBS
    assert w.find("Observation", _lastUpdated=f"ge{a_tx}") == everything
    assert w.find("Observation", _lastUpdated="lt2000") == set()
    assert w.find("Observation", _lastUpdated=f"ge{a_tx[:4]}") == everything


def test_observation_by_id_and_identifier(world: World) -> None:
    w = world
    assert w.find("Observation", _id=f"{w.id('g1')},{w.id('bg')}") == {"g1", "bg"}
    g1 = w.client.get(f"/{w.ids['g1']}").json()
    ident = g1["identifier"][0]
    assert w.find("Observation", identifier=f"{ident['system']}|{ident['value']}") == {"g1"}


# -- DiagnosticReport ------------------------------------------------------------------
def test_diagnostic_report_search_and_include_result(world: World) -> None:
    w = world
    assert w.find("DiagnosticReport", patient=w.id("A")) == {"dr"}
    assert w.find("DiagnosticReport", code=f"{naming.LOINC}|24323-8", date="2026-11-20") == {"dr"}
    assert w.find("DiagnosticReport", date="2026-11-21") == set()
    assert w.find("DiagnosticReport", patient=w.id("B")) == set()
    resp = w.client.get(
        "/DiagnosticReport", params={"patient": w.id("A"), "_include": "DiagnosticReport:result"}
    )
    assert w.labels(resp) == ["dr"]
    assert sorted(w.labels(resp, "include")) == ["g1", "k1"]
    # an include is never repeated, and a search without _include includes nothing
    plain = w.client.get("/DiagnosticReport", params={"patient": w.id("A")})
    assert w.labels(plain, "include") == []
    assert_outcome(
        w.client.get("/DiagnosticReport", params={"_include": "Observation:subject"}), 400
    )


# -- ImagingStudy ----------------------------------------------------------------------
def test_imaging_study_search_and_include_endpoint(world: World) -> None:
    w = world
    assert w.find("ImagingStudy", patient=w.id("A")) == {"isA"}
    assert w.find("ImagingStudy", subject=f"Patient/{w.id('B')}") == {"isB"}
    assert w.find("ImagingStudy", modality="CT") == {"isA"}
    assert w.find("ImagingStudy", modality=f"{naming.DICOM_DCM}|MR") == {"isB"}
    assert w.find("ImagingStudy", modality="CT,MR") == {"isA", "isB"}
    assert w.find("ImagingStudy", started="2026-11-01") == {"isA"}
    assert w.find("ImagingStudy", started="ge2026-10") == {"isA"}
    assert w.find("ImagingStudy", started="lt2026-10") == {"isB"}
    assert w.find("ImagingStudy", identifier="urn:dicom:uid|urn:oid:1.2.840.99.1") == {"isA"}
    assert w.find("ImagingStudy", identifier="urn:dicom:uid|1.2.840.99.2") == {"isB"}
    assert w.find("ImagingStudy", identifier=f"{ACCESSION}|ACC1") == {"isA"}
    assert w.find("ImagingStudy", bodysite=f"{naming.SNOMED}|51185008") == {"isA", "isB"}
    resp = w.client.get(
        "/ImagingStudy", params={"modality": "CT", "_include": "ImagingStudy:endpoint"}
    )
    assert w.labels(resp) == ["isA"]
    assert w.labels(resp, "include") == ["E"]
    included = next(e for e in resp.json()["entry"] if e["search"]["mode"] == "include")
    assert included["resource"]["address"].startswith("https://")


def test_organization_search(world: World) -> None:
    w = world
    assert w.find("Organization") == {"orgS", "orgP"}
    assert w.find("Organization", name="深圳") == {"orgS"}
    assert w.find("Organization", name="北京大学") == {"orgP"}
    assert w.find("Organization", identifier=f"{naming.BASE}/sid/hospital|pkuszh") == {"orgP"}
    assert w.find("Endpoint") == {"E"}


# -- chaining --------------------------------------------------------------------------
def test_patient_identifier_chain(world: World) -> None:
    w = world
    mrn_a = f"{naming.mrn('szph')}|A1"
    assert w.find("Observation", **{"patient.identifier": mrn_a}) == A_OBS
    assert w.find("Observation", **{"patient.identifier": f"{naming.NATIONAL_ID}|{A_ID}"}) == A_OBS
    assert w.find("Observation", **{"subject.identifier": f"{naming.mrn('szph')}|B1"}) == {"bg"}
    assert w.find("DiagnosticReport", **{"patient.identifier": mrn_a}) == {"dr"}
    assert w.find("ImagingStudy", **{"patient.identifier": f"{naming.NATIONAL_ID}|{B_ID}"}) == {
        "isB"
    }
    assert w.find("Observation", **{"patient.identifier": f"{naming.mrn('szph')}|nobody"}) == set()
    both = [("patient.identifier", mrn_a), ("patient", w.id("B"))]
    assert set(w.labels(w.client.get("/Observation", params=both))) == set()
    with_code = {"patient.identifier": mrn_a, "code": LOINC_GLU, "date": "ge2026-11-21"}
    assert w.find("Observation", **with_code) == {"g2", "g3"}
    bad = w.client.get("/Observation", params={"patient.identifier": "A1"})
    assert "patient.identifier" in expressions(assert_outcome(bad, 400))


# -- result shaping --------------------------------------------------------------------
def test_count_sort_and_summary(world: World) -> None:
    w = world
    a = w.id("A")
    resp = w.client.get("/Observation", params={"patient": a, "_sort": "date"})
    assert w.labels(resp) == ["k1", "g1", "loc", "vs", "g2", "g3"]
    desc = w.labels(w.client.get("/Observation", params={"patient": a, "_sort": "-date"}))
    assert desc == ["g3", "g2", "vs", "loc", "g1", "k1"]

    by_update = w.client.get("/Observation", params={"_sort": "_lastUpdated"}).json()
    stamps = [e["resource"]["meta"]["lastUpdated"] for e in by_update["entry"]]
    assert stamps == sorted(stamps) and len(stamps) == len(A_OBS) + 1
    newest = w.client.get("/Observation", params={"_sort": "-_lastUpdated", "_count": "1"})
    assert w.labels(newest) == ["bg"]

    two = w.client.get("/Observation", params={"patient": a, "_count": "2", "_sort": "date"})
    assert w.labels(two) == ["k1", "g1"]
    assert [link["relation"] for link in two.json()["link"]] == ["self", "next"]

    count = w.client.get("/Observation", params={"patient": a, "_summary": "count"}).json()
    assert count["total"] == len(A_OBS)
    assert "entry" not in count
    total = w.client.get("/Observation", params={"patient": a, "_total": "accurate", "_count": "1"})
    assert total.json()["total"] == len(A_OBS)
    assert len(w.labels(total)) == 1

    for bad in ({"_count": "-1"}, {"_count": "x"}, {"_sort": "code"}, {"_summary": "text"}):
        assert_outcome(w.client.get("/Observation", params=bad), 400)
    assert_outcome(w.client.get("/Patient", params={"_sort": "date"}), 400)


@pytest.mark.parametrize(("sort", "count"), [("date", 2), ("-date", 3), ("_lastUpdated", 1)])
def test_next_links_walk_every_match_once(world: World, sort: str, count: int) -> None:
    w = world
    params = {"patient": w.id("A"), "_sort": sort}
    whole = w.labels(w.client.get("/Observation", params=params))
    walked: list[str] = []
    resp = w.client.get("/Observation", params={**params, "_count": str(count)})
    pages = 0
    while True:
        pages += 1
        walked += w.labels(resp)
        nxt = [link["url"] for link in resp.json()["link"] if link["relation"] == "next"]
        if not nxt:
            break
        assert nxt[0].startswith(str(w.client.base_url).rstrip("/"))
        resp = w.client.get(nxt[0])
    assert walked == whole
    assert pages == -(-len(whole) // count)


def test_prefer_handling_strict_and_lenient(world: World) -> None:
    w = world
    a = w.id("A")
    strict = w.client.get("/Observation", params={"patient": a, "colour": "red"}, headers=STRICT)
    outcome = assert_outcome(strict, 400)
    assert expressions(outcome) == ["colour"]

    for headers in (None, {"Prefer": "handling=lenient"}):
        resp = w.client.get("/Observation", params={"patient": a, "colour": "red"}, headers=headers)
        assert set(w.labels(resp)) == A_OBS  # the unknown parameter is ignored
        outcomes = [e["resource"] for e in resp.json()["entry"] if e["search"]["mode"] == "outcome"]
        assert len(outcomes) == 1
        issue = outcomes[0]["issue"][0]
        assert issue["severity"] == "warning"
        assert issue["expression"] == ["colour"]

    # a known parameter with an unknown modifier is unknown too
    assert_outcome(
        w.client.get("/Observation", params={"code:below": GLUCOSE}, headers=STRICT), 400
    )
    # a malformed value of a known parameter is an error in both modes
    for headers in (None, STRICT):
        bad = w.client.get("/Observation", params={"date": "notadate"}, headers=headers)
        assert expressions(assert_outcome(bad, 400)) == ["date"]


def test_post_search_is_the_same_search(world: World) -> None:
    w = world
    resp = w.client.post(
        "/Observation/_search",
        data={"patient": w.id("A"), "code": LOINC_GLU},
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert set(w.labels(resp)) == A_GLU


def test_entered_in_error_never_reaches_the_search_tables(client: httpx.Client) -> None:
    """Sent as entered-in-error from the start: stored, readable, never found."""
    first = client.post(
        "/",
        json=bundle(
            "transaction",
            [
                entry(patient("Z1"), urn(1)),
                entry(observation(urn(1), status="entered-in-error", result_id="Z-1")),
            ],
        ),
    )
    oid = created_ids(first)[1]
    assert client.get(f"/{oid}").json()["status"] == "entered-in-error"
    assert client.get("/Observation", params={"_summary": "count"}).json()["total"] == 0


def test_paging_stays_stable_while_results_arrive(client: httpx.Client) -> None:
    """Rows written between page fetches neither repeat nor push out the original matches."""
    tx = bundle(
        "transaction",
        [entry(patient("P1"), urn(1))]
        + [entry(observation(urn(1), date=f"2026-11-{d:02d}"), urn(100 + d)) for d in range(1, 13)],
    )
    ids = created_ids(client.post("/", json=tx))
    subject = ids[0]
    original = set(ids[1:])
    for sort in ("date", "-date", "_lastUpdated", "-_lastUpdated"):
        seen: list[str] = []
        resp = client.get("/Observation", params={"patient": subject, "_sort": sort, "_count": 5})
        n = 0
        while True:
            seen += [f"Observation/{e['resource']['id']}" for e in resp.json().get("entry", [])]
            # new results land between the pages: dates before, inside and after the range
            for d in ("2026-10-15", "2026-11-06", "2026-12-20"):
                n += 1
                extra = observation(subject, date=d, result_id=f"late-{sort}-{n}")
                assert client.post("/Observation", json=extra).status_code == 201
            nxt = [link["url"] for link in resp.json()["link"] if link["relation"] == "next"]
            if not nxt:
                break
            resp = client.get(nxt[0])
        assert len(seen) == len(set(seen)), sort  # no duplicates
        assert original <= set(seen), sort  # no misses of what was there at the start
