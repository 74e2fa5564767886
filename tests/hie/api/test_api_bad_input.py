"""Bad input gets a 4xx OperationOutcome, never a 500, and the server keeps serving.

Not JSON, the wrong resourceType, unsupported types, a 50 MB body, 10,000-deep JSON, unknown
and malformed search parameters, SQL metacharacters in every parameter of every type, bad ids
and paths, wrong methods, bad tokens and missing scopes; plus a property-based test that
throws random strings at every search parameter. One server per backend for the module; the
last test checks the seeded rows survived everything.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hie import naming
from hie.auth import mint
from hie.index.search import CHAINS, COMMON, PARAMS
from tests.conftest import SECRET, auth
from tests.hie.api.api_builders import (
    BACKENDS,
    assert_outcome,
    created_ids,
    expressions,
    observation,
    patient,
    serve,
    with_patient,
)

JSON_TYPE = {"Content-Type": "application/fhir+json"}
STRICT = {"Prefer": "handling=strict"}
SQL_METACHARACTERS = [
    "' OR 1=1 --",
    '"; DROP TABLE resource; --',
    "%",
    "_",
    "\\",
    "%' OR '1'='1",
    "a|' OR 1=1 --",
    "' OR 1=1 --|x",
    "ge' OR 1=1 --",
    "Patient/' OR 1=1 --",
    "%,_,\\",
]


@dataclass
class Served:
    client: httpx.Client
    base: str
    subject: str
    observation: str


@pytest.fixture(scope="module", params=BACKENDS)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    with serve(request.param, tmp_path_factory.mktemp("bad")) as (client, _):
        ids = created_ids(
            client.post("/", json=with_patient(patient("S1"), observation("x", result_id="S1.1")))
        )
        yield Served(client, str(client.base_url).rstrip("/"), ids[0], ids[1])


def _get(s: Served, url: str, **kw: object) -> httpx.Response:
    """A request on a fresh connection, so a server that dropped one cannot hide a 500."""
    with httpx.Client(base_url=s.base, headers=auth(), timeout=30) as c:
        return c.get(url, **kw)  # type: ignore[arg-type]


# -- bodies ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "body",
    [b"not json", b"{", b'{"resourceType":"Observation",}', b"\xff\xfe", b"[]", b"null", b"{}"],
    ids=["text", "truncated", "trailing-comma", "not-utf8", "array", "null", "no-type"],
)
def test_not_a_resource_is_400_everywhere(served: Served, body: bytes) -> None:
    c = served.client
    assert_outcome(c.post("/Observation", content=body, headers=JSON_TYPE), 400)
    assert_outcome(c.put("/Observation/abc", content=body, headers=JSON_TYPE), 400)
    assert_outcome(c.put("/Observation?identifier=a|b", content=body, headers=JSON_TYPE), 400)
    assert_outcome(c.post("/", content=body, headers=JSON_TYPE), 400)


def test_empty_body_and_foreign_media_types(served: Served) -> None:
    c = served.client
    assert_outcome(c.post("/Observation", content=b"", headers=JSON_TYPE), 400)
    xml = c.post(
        "/Observation", content=b"<Observation/>", headers={"Content-Type": "application/fhir+xml"}
    )
    assert "Content-Type" in expressions(assert_outcome(xml, 400))


def test_wrong_resource_type_for_the_url(served: Served) -> None:
    c = served.client
    pat = patient("W1")
    wrong = c.post("/Observation", json=pat)
    assert expressions(assert_outcome(wrong, 400)) == ["Patient.resourceType"]
    assert_outcome(c.put("/Observation/abc", json={**pat, "id": "abc"}), 400)
    missing = c.post("/Observation", json={"status": "final"})
    assert expressions(assert_outcome(missing, 400)) == ["resourceType"]


def test_unsupported_types(served: Served) -> None:
    c = served.client
    assert_outcome(c.get("/Medication"), 404)
    assert_outcome(c.post("/Medication", json={"resourceType": "Medication"}), 404)
    assert_outcome(c.get("/Medication/1"), 404)
    assert_outcome(c.get("/OperationOutcome"), 404)


def test_a_50_mb_body_is_413(served: Served) -> None:
    big = b'{"resourceType":"Observation","note":[{"text":"' + b"x" * (50 * 1024 * 1024) + b'"}]}'
    assert_outcome(served.client.post("/Observation", content=big, headers=JSON_TYPE), 413)

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while streaming
        yield b'{"resourceType":"Bundle","type":"batch","entry":[],"x":"'
        for _ in range(50):
            yield b"x" * (1024 * 1024)
        yield b'"}'

    assert_outcome(served.client.post("/", content=chunks(), headers=JSON_TYPE), 413)


@pytest.mark.parametrize("depth", [100, 10_000])
def test_deeply_nested_json_is_400(served: Served, depth: int) -> None:
    arrays = b"[" * depth + b"]" * depth
    objects = b'{"resourceType":"Observation","a":' + b'{"a":' * depth + b"1" + b"}" * (depth + 1)
    for body in (arrays, objects):
        for url in ("/Observation", "/"):
            outcome = assert_outcome(served.client.post(url, content=body, headers=JSON_TYPE), 400)
            diagnostics = outcome["issue"][0]["diagnostics"]
            assert "deep" in diagnostics or "depth" in diagnostics, diagnostics


def test_invalid_ids_in_the_path(served: Served) -> None:
    c = served.client
    for rid in ("a" * 65, "a b", "a_b", "a%00", "a'--", "%E4%B8%AD", "%C2%B2"):
        assert "id" in expressions(assert_outcome(c.get(f"/Observation/{rid}"), 400)), rid
        assert_outcome(c.get(f"/Observation/{rid}/_history"), 400)
        assert_outcome(c.put(f"/Observation/{rid}", json=observation("x")), 400)
    for vid in ("one", "99999999999999999999", "%C2%B2", "-1"):
        assert_outcome(c.get(f"/{served.observation}/_history/{vid}"), 404)
    assert_outcome(c.get("/Observation", params={"_count": "²"}), 400)


def test_unknown_paths_and_wrong_methods(served: Served) -> None:
    c = served.client
    for path in ("/Observation/a/b/c", "/Observation/a/$everything", "/$export"):
        assert_outcome(c.get(path), 404)
    assert_outcome(httpx.get(served.base.removesuffix("/fhir") + "/nothing-here"), 404)
    assert_outcome(c.patch(f"/{served.observation}", json={}), 405)
    assert_outcome(c.delete(f"/{served.observation}"), 405)
    assert_outcome(c.delete("/Observation"), 405)
    assert_outcome(c.put("/", json={}), 405)
    assert_outcome(c.get("/"), 405)


def test_bad_tokens_are_401(served: Served) -> None:
    url = f"{served.base}/Observation"
    expired = mint(SECRET, "c", now=time.time() - 7200, lifetime_s=60)
    for header in (
        None,
        "Bearer not-a-jwt",
        "Basic dXNlcjpwYXNz",
        "Bearer " + mint("another-secret-" + "y" * 32, "c"),
        "Bearer " + expired,
    ):
        resp = httpx.get(url, headers={"Authorization": header} if header else {})
        assert_outcome(resp, 401)
        assert resp.headers["www-authenticate"].startswith("Bearer")
    assert httpx.get(f"{served.base}/metadata").status_code == 200  # the one public endpoint


def test_missing_scopes_are_403(served: Served) -> None:
    base = served.base
    read_only = auth(scopes=("system/Observation.rs",))
    assert httpx.get(f"{base}/Observation", headers=read_only).status_code == 200
    assert_outcome(httpx.post(f"{base}/Observation", json=observation("x"), headers=read_only), 403)
    assert_outcome(httpx.get(f"{base}/Patient", headers=read_only), 403)
    assert_outcome(httpx.get(f"{base}/{served.subject}", headers=read_only), 403)
    patients_only = auth(scopes=("system/Patient.cruds",))
    tx = with_patient(patient("F1"), observation("x", result_id="F1.1"))
    assert_outcome(httpx.post(f"{base}/", json=tx, headers=patients_only), 403)
    batch = {**tx, "type": "batch"}
    statuses = [
        e["response"]["status"]
        for e in httpx.post(f"{base}/", json=batch, headers=patients_only).json()["entry"]
    ]
    assert statuses[1] == "403"
    v1 = auth(scopes=("system/*.read",))  # SMART v1 spelling
    assert httpx.get(f"{base}/Observation", headers=v1).status_code == 200
    assert_outcome(httpx.post(f"{base}/Observation", json=observation("x"), headers=v1), 403)


def test_nul_characters_are_refused_on_both_backends(served: Served) -> None:
    """PostgreSQL text cannot hold U+0000; SQLite can. Both answer the same 400."""
    c = served.client
    pat = patient("N1")
    pat["name"][0]["given"] = ["a\u0000b"]
    outcome = assert_outcome(c.post("/Patient", json=pat), 400)
    assert expressions(outcome) == ["Patient.name[0].given[0]"]
    obs = observation(served.subject)
    obs["identifier"][0]["value"] = "x\u0000"
    assert expressions(assert_outcome(c.post("/Observation", json=obs), 400)) == [
        "Observation.identifier[0].value"
    ]
    for name, value in (("code", "a\x00"), ("patient", "\x00"), ("name\x00", "x")):
        resp = c.get(
            "/Patient" if name.startswith("name") else "/Observation", params={name: value}
        )
        assert_outcome(resp, 400)
    assert_outcome(c.put("/Observation", params={"identifier": "a\x00"}, json=obs), 400)


# -- search parameters --------------------------------------------------------------------
def _all_params(rtype: str) -> list[str]:
    names = [p.name for p in PARAMS[rtype]] + [c for c in COMMON if c != "_format"]
    if any(p.name == "patient" for p in PARAMS[rtype]):
        names += list(CHAINS)
    return [*names, "_page", "name:exact", "code:missing", "not-a-param"]


@pytest.mark.parametrize("rtype", sorted(PARAMS))
def test_unknown_parameter_is_400_when_strict(served: Served, rtype: str) -> None:
    resp = served.client.get(f"/{rtype}", params={"colour": "red"}, headers=STRICT)
    assert expressions(assert_outcome(resp, 400)) == ["colour"]


@pytest.mark.parametrize(
    ("rtype", "param"),
    [(t, p.name) for t, ps in sorted(PARAMS.items()) for p in ps if p.kind == "date"]
    + [(t, "_lastUpdated") for t in sorted(PARAMS)],
)
def test_malformed_dates_are_400(served: Served, rtype: str, param: str) -> None:
    for value in ("notadate", "ge2026-13-01", "2026-02-30", "9999", "2026-11-20T25:00", "xx2026"):
        resp = served.client.get(f"/{rtype}", params={param: value})
        assert expressions(assert_outcome(resp, 400)) == [param], value


@pytest.mark.parametrize("rtype", sorted(PARAMS))
def test_sql_metacharacters_in_every_parameter(served: Served, rtype: str) -> None:
    """Values are bound, never spliced: each is a 200 that matches nothing, or a 4xx."""
    for name in _all_params(rtype):
        for n, value in enumerate(SQL_METACHARACTERS):
            for headers in (None, STRICT) if n == 0 else (None,):
                resp = served.client.get(f"/{rtype}", params={name: value}, headers=headers)
                assert resp.status_code < 500, (name, value, resp.text)
                if resp.status_code >= 400:
                    assert_outcome(resp, resp.status_code)
                    continue
                modes = [e["search"]["mode"] for e in resp.json().get("entry", [])]
                if "outcome" in modes or name.startswith("_"):
                    continue  # ignored leniently (and said so), or not a filter
                assert "match" not in modes, (name, value)


def test_sql_metacharacters_in_writes(served: Served) -> None:
    c = served.client
    for value in SQL_METACHARACTERS:
        for criteria in (f"identifier={value}", f"_id={value}"):
            resp = c.post(
                "/Observation",
                json=observation(served.subject),
                headers={"If-None-Exist": criteria},
            )
            assert resp.status_code < 500, (criteria, resp.text)
        resp = c.put("/Observation", params={"identifier": value}, json=observation(served.subject))
        assert resp.status_code < 500, (value, resp.text)


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    target=st.sampled_from([(t, n) for t in sorted(PARAMS) for n in _all_params(t)]),
    value=st.text(
        alphabet=st.sampled_from(list("'\"%_\\|,:;-/ ()*=<>$&#?!@^~`{}[]aZ09中é\t\n"))
        | st.characters(blacklist_categories=("Cs",)),
        max_size=40,
    ),
    strict=st.booleans(),
)
def test_random_strings_in_search_parameters_never_break_the_server(
    served: Served, target: tuple[str, str], value: str, strict: bool
) -> None:
    rtype, name = target
    resp = served.client.get(f"/{rtype}", params={name: value}, headers=STRICT if strict else None)
    assert resp.status_code == 200 or 400 <= resp.status_code < 500, (name, value, resp.text)
    if resp.status_code != 200:
        assert resp.json()["resourceType"] == "OperationOutcome"


def test_the_server_still_serves_and_the_data_is_intact(served: Served) -> None:
    """Runs last in the module: nothing above dropped, emptied or wedged anything."""
    assert _get(served, "/metadata").status_code == 200
    mrn = f"{naming.mrn('szph')}|S1"
    found = _get(served, "/Observation", params={"patient.identifier": mrn, "_count": "1000"})
    assert served.observation in [
        f"Observation/{e['resource']['id']}" for e in found.json()["entry"]
    ]
    assert _get(served, f"/{served.subject}").status_code == 200
