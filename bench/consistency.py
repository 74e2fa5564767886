"""Are several API processes one exchange? Same answers, and a write through one is read by all.

Each request here opens a new TCP connection (``Connection: close``), so successive
requests land on whichever uvicorn worker accepts them: with two workers both are exercised.
The processes keep no state of their own (no per-process cache of results or patients), so
every answer must be identical and a result written through one must be visible to the next
read on any.
"""

from __future__ import annotations

import http.client
from urllib.parse import quote

import orjson

from bench.bundles import bundle
from bench.events import CityPlan, Order, person_events
from bench.lookups import QuerySet
from hie import naming
from hie.auth import ALL_SCOPES, mint

# A resident beyond any city size (people.py makes at most 321M): nobody loaded them before.
PROBE_RESIDENT = 300_000_000


def _get(port: int, path: str, token: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", path, headers={"Authorization": f"Bearer {token}", "Connection": "close"})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, body


def _ids(body: bytes) -> list[str]:
    doc = orjson.loads(body)
    return sorted(e["fullUrl"] for e in doc.get("entry") or [])


def check_consistency(port: int, qs: QuerySet, secret: str, *, reads: int = 4) -> str:
    """A one-line verdict; raises AssertionError when two processes disagree."""
    token = mint(secret, "bench", hospital_id="h001", scopes=ALL_SCOPES, lifetime_s=3600)
    paths = qs.search_paths()[:20]
    for path in paths:
        answers = {tuple(_ids(_get(port, path, token)[1])) for _ in range(reads)}
        assert len(answers) == 1, f"{path}: {len(answers)} different answers"
    # Write one new order through whichever worker takes it, then read it back many times.
    plan = CityPlan(hospitals=1)
    order = next(e for e in person_events(plan, PROBE_RESIDENT) if isinstance(e, Order))
    doc, _ = bundle(order)
    hospital = order.hospital.id
    writer = mint(secret, "bench", hospital_id=hospital, scopes=ALL_SCOPES, lifetime_s=3600)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request(
        "POST",
        "/fhir",
        body=orjson.dumps(doc),
        headers={"Authorization": f"Bearer {writer}", "Content-Type": "application/fhir+json"},
    )
    resp = conn.getresponse()
    resp.read()
    conn.close()
    assert resp.status == 200, f"the probe Bundle was refused: {resp.status}"
    ident = quote(f"{naming.filler_order(hospital)}|{order.filler}", safe="")
    seen = 0
    for _ in range(reads * 5):
        status, body = _get(port, f"/fhir/DiagnosticReport?identifier={ident}", writer)
        assert status == 200 and len(_ids(body)) == 1, "a worker did not see the new report"
        seen += 1
    return (
        f"consistent: {len(paths) * reads} reads on fresh connections agreed; a Bundle written "
        f"through one worker was seen by all {seen} following reads"
    )
