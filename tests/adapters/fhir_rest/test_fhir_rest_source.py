"""FhirRestSource against a canned FHIR server on httpx.MockTransport.

The canned server implements just enough FHIR R4 search for the poller: ``_lastUpdated=gt``,
``_sort=_lastUpdated``, ``_count``, ``_include`` (subject, result), ``_id`` lists, and offset
``next`` links. Every resource here is written for this test.
"""

from __future__ import annotations

import gc
import json
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters.base import Batch, DeadLetter
from adapters.fhir_rest.client import FhirClient, RetryPolicy
from adapters.fhir_rest.searchset import SourceServer
from adapters.fhir_rest.source import FhirRestSource, http_client, parse_cursor
from adapters.runner import run_pull
from hie import naming
from hie.hospitals import FhirRestAdapter, load_hospitals

JSON = dict[str, Any]
BASE = "http://pkuszh.test/fhir"
T0 = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)


def stamp(minutes: int) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def patient(n: int) -> JSON:
    return {
        "resourceType": "Patient",
        "id": f"p{n}",
        "identifier": [{"system": "https://pkuszh.test/mrn", "value": f"PK{n:04d}"}],
        "meta": {"lastUpdated": stamp(0)},
    }


def observation(oid: str, pat: int, minutes: int, pad: int = 0) -> JSON:
    res: JSON = {
        "resourceType": "Observation",
        "id": oid,
        "meta": {"versionId": "1", "lastUpdated": stamp(minutes)},
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "laboratory",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": naming.LOINC, "code": "2823-3"}]},
        "subject": {"reference": f"Patient/p{pat}"},
        "effectiveDateTime": "2026-11-23T08:00:00+08:00",
        "valueQuantity": {"value": 4.1, "unit": "mmol/L"},
    }
    if pad:
        res["note"] = [{"text": "x" * pad}]
    return res


def report(rid: str, pat: int, minutes: int, results: list[str]) -> JSON:
    return {
        "resourceType": "DiagnosticReport",
        "id": rid,
        "meta": {"lastUpdated": stamp(minutes)},
        "identifier": [{"system": "https://pkuszh.test/order", "value": rid.upper()}],
        "status": "final",
        "code": {"text": "电解质"},
        "subject": {"reference": f"Patient/p{pat}"},
        "effectiveDateTime": "2026-11-23T08:00:00+08:00",
        "result": [{"reference": f"Observation/{r}"} for r in results],
    }


@dataclass
class CannedFhir:
    resources: list[JSON]
    honour_include: bool = True
    faults: dict[int, list[httpx.Response]] = field(default_factory=dict)  # request no → answers
    requests: list[httpx.Request] = field(default_factory=list)
    on_page: Callable[[int], None] | None = None
    pages_served: int = 0

    def find(self, kind: str, rid: str) -> JSON | None:
        return next(
            (r for r in self.resources if r["resourceType"] == kind and r.get("id") == rid), None
        )

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        fault = self.faults.get(len(self.requests))
        if fault:
            return fault.pop(0)
        kind = request.url.path.rsplit("/", 1)[-1]
        params = request.url.params
        if "_id" in params:
            found = [self.find(kind, i) for i in params["_id"].split(",")]
            return self.bundle([r for r in found if r], [], None)
        items = sorted(
            (r for r in self.resources if r["resourceType"] == kind),
            key=lambda r: (r["meta"]["lastUpdated"], r.get("id", "")),
        )
        since = params.get("_lastUpdated")
        if since:
            assert since.startswith("gt")
            items = [r for r in items if r["meta"]["lastUpdated"] > since[2:]]
        offset, count = int(params.get("_offset", "0")), int(params["_count"])
        page = items[offset : offset + count]
        includes: list[JSON] = []
        if self.honour_include:
            for inc in params.get_list("_include"):
                field_name = inc.split(":")[1]
                for res in page:
                    value = res.get(field_name)
                    for ref in value if isinstance(value, list) else [value]:
                        target = self.find(*ref["reference"].split("/")) if ref else None
                        if target is not None and target not in includes:
                            includes.append(target)
        nxt = None
        if offset + count < len(items):
            nxt = str(request.url.copy_set_param("_offset", str(offset + count)))
        self.pages_served += 1
        if self.on_page:
            self.on_page(self.pages_served)
        return self.bundle(page, includes, nxt)

    @staticmethod
    def bundle(matches: list[JSON], includes: list[JSON], nxt: str | None) -> httpx.Response:
        entries = [{"resource": r, "search": {"mode": "match"}} for r in matches]
        entries += [{"resource": r, "search": {"mode": "include"}} for r in includes]
        body: JSON = {"resourceType": "Bundle", "type": "searchset", "entry": entries}
        if nxt:
            body["link"] = [{"relation": "next", "url": nxt}]
        return httpx.Response(200, json=body)


def source_for(server: CannedFhir, page_size: int = 2, attempts: int = 3) -> FhirRestSource:
    http = httpx.Client(transport=httpx.MockTransport(server.handler))
    client = FhirClient(
        http, policy=RetryPolicy(max_attempts=attempts), sleep=lambda s: None, random=lambda: 0.0
    )
    return FhirRestSource(
        "pkuszh", "fhir", client, SourceServer("pkuszh", BASE), page_size=page_size
    )


@dataclass
class Counts:
    received: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0


@dataclass
class MemorySink:
    cursors: dict[tuple[str, str, str], str] = field(default_factory=dict)
    units: dict[str, list[JSON]] = field(default_factory=dict)
    writes: list[str] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)

    def cursor(self, hospital_id: str, adapter: str, name: str) -> str | None:
        return self.cursors.get((hospital_id, adapter, name))

    def ingest(self, batch: Batch) -> Counts:
        counts = Counts(received=len(batch.units) + len(batch.dead_letters))
        for unit in batch.units:
            body = [e.resource for e in unit.entries]
            if unit.key not in self.units:
                counts.created += 1
            elif self.units[unit.key] == body:
                counts.unchanged += 1
            else:
                counts.updated += 1
            self.units[unit.key] = body
            self.writes.append(unit.key)
        self.dead.extend(batch.dead_letters)
        counts.rejected = len(batch.dead_letters)
        if batch.cursor:
            self.cursors[(batch.hospital_id, batch.adapter, batch.cursor.name)] = batch.cursor.value
        return counts


def clinic() -> list[JSON]:
    """3 reports of 2 results each, then 2 results ordered on their own, for 2 patients."""
    out: list[JSON] = [patient(1), patient(2)]
    for n in range(3):
        a, b = f"o{n}a", f"o{n}b"
        out += [observation(a, 1 + n % 2, 10 * n + 1), observation(b, 1 + n % 2, 10 * n + 2)]
        out.append(report(f"r{n}", 1 + n % 2, 10 * n + 3, [a, b]))
    out += [observation("s1", 1, 40), observation("s2", 2, 41)]
    return out


def test_reports_with_results_then_lone_observations() -> None:
    server = CannedFhir(clinic())
    sink = MemorySink()
    result = run_pull(source_for(server), sink, "pkuszh", "fhir")
    assert result.error is None
    assert sink.writes == [
        "DiagnosticReport/r0",
        "DiagnosticReport/r1",
        "DiagnosticReport/r2",
        "Observation/s1",
        "Observation/s2",
    ]  # the six results already sent inside their reports are not sent again
    r1 = sink.units["DiagnosticReport/r1"]
    assert [r["resourceType"] for r in r1] == [
        "Patient",
        "DiagnosticReport",
        "Observation",
        "Observation",
    ]
    assert r1[0]["identifier"][0]["value"] == "PK0002"
    assert r1[2]["identifier"] == [{"system": naming.result_id("pkuszh"), "value": "fhir:o1a"}]
    assert parse_cursor(result.cursor_after) == {
        "DiagnosticReport": stamp(23),
        "Observation": stamp(41),
    }
    first = server.requests[0].url
    assert first.path == "/fhir/DiagnosticReport"
    assert first.params.get_list("_include") == [
        "DiagnosticReport:subject",
        "DiagnosticReport:result",
    ]
    assert (first.params["_sort"], first.params["_count"]) == ("_lastUpdated", "2")
    assert "_lastUpdated" not in first.params


def test_next_run_asks_only_for_what_changed_since_the_cursor() -> None:
    server = CannedFhir(clinic())
    sink = MemorySink()
    run_pull(source_for(server), sink, "pkuszh", "fhir")
    server.resources.append(observation("s3", 2, 50))
    server.requests.clear()
    result = run_pull(source_for(server), sink, "pkuszh", "fhir")
    assert sink.writes[-1] == "Observation/s3" and result.received == 1
    asked = [r.url.params.get("_lastUpdated") for r in server.requests]
    assert asked == [f"gt{stamp(23)}", f"gt{stamp(41)}"]


def test_every_page_is_a_batch_and_next_links_are_followed() -> None:
    server = CannedFhir([patient(1), *(observation(f"o{n}", 1, n) for n in range(9))])
    source = source_for(server, page_size=2)
    source.resource_types = ("Observation",)
    batches = list(source.batches(None))
    assert [len(b.units) for b in batches] == [2, 2, 2, 2, 1]
    assert [r.url.params.get("_offset") for r in server.requests] == [None, "2", "4", "6", "8"]
    # mid-run the cursor stops just below a page's last instant; the last page closes it
    values = [parse_cursor(b.cursor.value if b.cursor else None) for b in batches]
    assert [v.get("Observation") for v in values] == [
        stamp(0),
        stamp(2),
        stamp(4),
        stamp(6),
        stamp(8),
    ]


def test_a_crash_between_pages_loses_nothing_even_on_tied_timestamps() -> None:
    # Six results updated in the same instant straddle the page boundaries.
    tied = [observation(f"t{n}", 1, 5) for n in range(6)]
    server = CannedFhir([patient(1), observation("early", 1, 1), *tied, observation("late", 1, 9)])
    sink = MemorySink()
    source = source_for(server, page_size=3)
    source.resource_types = ("Observation",)
    batches = source.batches(None)
    sink.ingest(next(batches))  # early, t0, t1 committed
    batches.close()  # the process dies
    assert parse_cursor(sink.cursors[("pkuszh", "fhir", "fhir-rest")]) == {"Observation": stamp(1)}
    again = source_for(server, page_size=3)
    again.resource_types = ("Observation",)
    run_pull(again, sink, "pkuszh", "fhir")
    delivered = set(sink.writes)
    assert delivered == {"Observation/early", "Observation/late"} | {
        f"Observation/t{n}" for n in range(6)
    }


def test_patients_and_results_left_out_of_include_are_fetched_once_per_page() -> None:
    server = CannedFhir(clinic(), honour_include=False)
    sink = MemorySink()
    result = run_pull(source_for(server, page_size=3), sink, "pkuszh", "fhir")
    assert result.error is None and len(sink.writes) == 5
    by_id = [r.url for r in server.requests if "_id" in r.url.params]
    # page 1 of reports: both patients and six results, one search per type
    assert [(u.path, u.params["_id"]) for u in by_id[:2]] == [
        ("/fhir/Patient", "p1,p2"),
        ("/fhir/Observation", "o0a,o0b,o1a,o1b,o2a,o2b"),
    ]
    assert len(sink.units["DiagnosticReport/r2"]) == 4


def test_bad_resources_go_to_dead_letters_and_the_rest_of_the_page_lands() -> None:
    no_id = observation("x", 1, 2)
    del no_id["id"]
    group = observation("grp", 1, 3)
    group["subject"] = {"reference": "Group/5"}
    orphan = observation("orph", 99, 4)  # its patient does not exist on the server
    server = CannedFhir([patient(1), observation("ok1", 1, 1), no_id, group, orphan,
                         observation("ok2", 1, 5)])  # fmt: skip
    source = source_for(server, page_size=10)
    source.resource_types = ("Observation",)
    sink = MemorySink()
    result = run_pull(source, sink, "pkuszh", "fhir")
    assert sink.writes == ["Observation/ok1", "Observation/ok2"]
    assert result.rejected == 3 and result.received == 5
    reasons = sorted(d.reason for d in sink.dead)
    assert reasons == [
        "Observation/grp: subject 'Group/5' is not a Patient on this server",
        "Observation/orph: subject Patient/p99 was not returned by the server",
        f"{BASE}/Observation entry[1]: Observation has no id",
    ]
    grp = next(d for d in sink.dead if d.key == "Observation/grp")
    assert json.loads(grp.raw)["subject"] == {"reference": "Group/5"}
    assert grp.content_type == "application/fhir+json"


def test_transient_errors_mid_run_are_retried_and_429_waits() -> None:
    server = CannedFhir(clinic())
    server.faults = {
        2: [httpx.Response(503)],
        3: [httpx.Response(429, headers={"Retry-After": "2"})],
    }
    slept: list[float] = []
    source = source_for(server)
    source.client.sleep = slept.append
    result = run_pull(source, MemorySink(), "pkuszh", "fhir")
    assert result.error is None and result.received == 5
    assert slept == [0.0, 2.0]


def test_a_server_that_stays_down_ends_the_run_at_the_last_committed_page() -> None:
    server = CannedFhir(clinic())
    server.faults = {n: [httpx.Response(502)] for n in (2, 3, 4)}  # page 2 and its retries
    sink = MemorySink()
    result = run_pull(source_for(server, attempts=3), sink, "pkuszh", "fhir")
    assert result.error is not None and "HTTP 502 (gave up after 3 tries)" in result.error
    assert sink.writes == ["DiagnosticReport/r0", "DiagnosticReport/r1"]
    assert parse_cursor(result.cursor_after) == {"DiagnosticReport": stamp(3)}
    assert sink.cursors[("pkuszh", "fhir", "fhir-rest")] == result.cursor_after
    server.faults.clear()
    again = run_pull(source_for(server), sink, "pkuszh", "fhir")
    assert again.error is None and sink.writes[2:] == [
        "DiagnosticReport/r1",  # the boundary page is read again (unchanged), never skipped
        "DiagnosticReport/r2",
        "Observation/o0a",  # r0's results: sent in the first run's report, not in this run's,
        "Observation/o0b",  # so they come again on their own (an unchanged upsert at ingest)
        "Observation/s1",
        "Observation/s2",
    ]


def test_a_next_link_to_another_host_is_refused() -> None:
    server = CannedFhir(clinic())

    def evil(request: httpx.Request) -> httpx.Response:
        response = server.handler(request)
        body = json.loads(response.content)
        body["link"] = [{"relation": "next", "url": "http://attacker.test/fhir/Observation"}]
        return httpx.Response(200, json=body)

    source = source_for(server)
    source.client.http = httpx.Client(transport=httpx.MockTransport(evil))
    result = run_pull(source, MemorySink(), "pkuszh", "fhir")
    assert result.error is not None and "leaves http://pkuszh.test/fhir" in result.error


def peak_memory(pages: int, size: int = 20) -> int:
    """Peak traced memory while draining ``pages`` pages of 20 results of ~20 kB each."""
    resources = [patient(1)] + [
        observation(f"o{n:03d}", 1, n, pad=20_000) for n in range(pages * size)
    ]
    server = CannedFhir(resources)
    consumed = [0]

    def no_read_ahead(served: int) -> None:
        # page k+1 is asked for only after batch k was handed over and given back
        assert served == consumed[0] + 1, (served, consumed[0])

    server.on_page = no_read_ahead
    source = source_for(server, page_size=size)
    source.resource_types = ("Observation",)
    gc.collect()
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        for batch in source.batches(None):
            assert len(batch.units) == size
            consumed[0] += 1
            del batch  # the sink is done with it
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert consumed[0] == pages and server.pages_served == pages
    return peak - base


def test_memory_holds_one_page_of_a_twenty_page_result_set() -> None:
    two, twenty = peak_memory(2), peak_memory(20)
    # A page is ~400 kB of text, ~3 MB at its peak in flight (response bytes, parsed JSON,
    # unit copies, raw payloads). Keeping every page would add 18 pages' worth (>14 MB)
    # over the two-page run; one page at a time leaves the peak where it was, give or take
    # garbage the collector has not reached yet.
    assert twenty < 1.5 * two, (two, twenty)


def test_http_client_from_config_carries_credentials(tmp_path: Path) -> None:
    text = """
[exchange]
province_prefix = "粤"
[[hospital]]
id = "pkuszh"
name_zh = "北京大学深圳医院"
name_en = "Peking University Shenzhen Hospital"
level = "3A"
[[hospital.adapter]]
name = "fhir"
kind = "fhir-rest"
base_url = "http://127.0.0.1:8081/fhir"
auth = { token_env = "PKUSZH_FHIR_TOKEN" }
timeout = 12.5
[[hospital.adapter]]
name = "basic"
kind = "fhir-rest"
base_url = "http://127.0.0.1:8081/fhir"
auth = { username = "hie", password_env = "PK_PW" }
"""
    path = tmp_path / "h.toml"
    path.write_text(text, encoding="utf-8")
    config = load_hospitals(path, {"PKUSZH_FHIR_TOKEN": "tok", "PK_PW": "pw"})
    bearer, basic = config.hospital("pkuszh").adapters
    assert isinstance(bearer, FhirRestAdapter) and isinstance(basic, FhirRestAdapter)
    with http_client(bearer) as http:
        assert http.headers["Authorization"] == "Bearer tok"
        assert http.timeout.read == 12.5 and http.timeout.connect == 10.0
    source = FhirRestSource.from_config("pkuszh", basic)
    request = source.client.http.build_request("GET", "http://127.0.0.1:8081/fhir/Observation")
    flow = source.client.http.auth.sync_auth_flow(request)  # type: ignore[union-attr]
    assert next(flow).headers["Authorization"].startswith("Basic ")
    assert (source.page_size, source.cursor_name, source.name) == (100, "fhir-rest", "basic")
    source.close()


@pytest.mark.parametrize(
    ("value", "state"),
    [
        (None, {}),
        ("", {}),
        ('{"Observation":"2026-11-24T00:00:00Z"}', {"Observation": "2026-11-24T00:00:00Z"}),
        ("2026-01-01T00:00:00Z", {"DiagnosticReport": "2026-01-01T00:00:00Z",
                                  "Observation": "2026-01-01T00:00:00Z"}),
        ("[1]", {}),
    ],
)  # fmt: skip
def test_cursor_values(value: str | None, state: dict[str, str]) -> None:
    assert parse_cursor(value) == state
