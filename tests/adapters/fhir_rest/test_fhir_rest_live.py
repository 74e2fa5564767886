"""FhirRestSource against a real FHIR server over HTTP: a second hie instance on a socket.

The "hospital" is a hie (``live`` from tests/conftest.py: uvicorn on 127.0.0.1, SQLite or
PostgreSQL) holding pkuszh's results, loaded through its own ingest from the nsdh CSV fixture
re-labelled as pkuszh. The poller pulls them over real TCP, with a bearer token, into a third,
empty exchange through ``run_pull`` and that exchange's real ingest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import select

from adapters.base import Batch
from adapters.fhir_rest.client import FhirClient, RetryPolicy
from adapters.fhir_rest.searchset import SourceServer
from adapters.fhir_rest.source import FhirRestSource
from adapters.lis_csv.source import LisCsvSource
from adapters.runner import run_pull
from hie.auth import ALL_SCOPES, mint
from hie.exchange import Exchange
from hie.hospitals import load_hospitals
from hie.index import tables as t
from hie.services import build_exchange
from hie.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
FIXTURE = ROOT / "fixtures" / "csv" / "nsdh" / "nsdh-lis-20261124.csv"
LOINC = {"K": ("http://loinc.org", "2823-3", "Potassium [Moles/volume] in Serum or Plasma")}


def seed(exchange: Exchange) -> int:
    """Load the hospital's own server through its ingest; returns resources written."""
    config = load_hospitals(ROOT / "fixtures" / "hospitals.toml", {})
    adapter = config.hospital("nsdh").adapter("lis-csv")
    assert adapter.kind == "lis-csv"
    csv = LisCsvSource.from_config("pkuszh", adapter, config.exchange, lambda h, c: LOINC.get(c))
    units, _ = csv.parse(FIXTURE.read_bytes(), key=FIXTURE.name)
    result = exchange.ingestor.ingest(Batch("pkuszh", "lis", units))
    assert result.rejected == 0, [i.issues for i in result.items if not i.ok]
    return int(result.created)


@pytest.fixture
def downstream(tmp_path: Path, settings: Settings) -> Iterator[Exchange]:
    """The exchange that polls: a fresh SQLite index of its own."""
    own = Settings(database_url=f"sqlite:///{tmp_path / 'downstream.db'}", jwt_secret="z" * 40)
    ex = build_exchange(own)
    yield ex
    ex.store.engine.dispose()


@pytest.fixture
def poller(live: Any, settings: Settings) -> Iterator[Callable[[int], FhirRestSource]]:
    """Sources polling the live hie with a bearer token of its own; closed afterwards."""
    made: list[FhirRestSource] = []
    token = mint(settings.jwt_secret, "client-hie-poller", hospital_id=None, scopes=ALL_SCOPES)

    def make(page_size: int = 2) -> FhirRestSource:
        http = httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=30)
        client = FhirClient(http, policy=RetryPolicy(max_attempts=2), sleep=lambda s: None)
        made.append(FhirRestSource("pkuszh", "fhir", client, SourceServer("pkuszh", live.base),
                                   page_size))  # fmt: skip
        return made[-1]

    yield make
    for source in made:
        source.close()


def stored(ex: Exchange, rtype: str) -> list[dict[str, Any]]:
    with ex.store.read() as conn:
        rows = conn.execute(
            select(t.Resource.__table__.c.body).where(  # type: ignore[attr-defined]
                t.Resource.__table__.c.type == rtype  # type: ignore[attr-defined]
            )
        ).all()
    return [orjson.loads(r.body) for r in rows]


def test_poll_a_second_hie_over_http(
    exchange: Exchange, downstream: Exchange, poller: Callable[[int], FhirRestSource]
) -> None:
    written = seed(exchange)
    assert written == 2 + 4 + 9  # patients (each in two orders), reports, results
    source = poller(2)
    result = run_pull(source, downstream.ingestor, "pkuszh", "fhir")
    assert result.error is None, result.error
    assert result.rejected == 0
    reports = stored(downstream, "DiagnosticReport")
    results = stored(downstream, "Observation")
    assert sorted(r["identifier"][0]["value"] for r in reports) == [
        "NS2611230012",
        "NS2611230013",
        "NS2611240031",
        "NS2611240032",
    ]
    assert len(results) == 9
    potassium = next(o for o in results if o["identifier"][0]["value"] == "NS2611240031.K")
    assert potassium["code"]["coding"][0]["code"] == "2823-3"
    patients = stored(downstream, "Patient")
    ids = {i["value"] for p in patients for i in p.get("identifier", [])}
    assert {"440304199207082424", "440306197511303862"} <= ids

    again = run_pull(poller(2), downstream.ingestor, "pkuszh", "fhir")
    assert again.error is None and again.cursor_before == result.cursor_after
    assert (again.indexed, again.new_versions) == (0, 0)

    replay = poller(5)
    from_scratch = run_pull(replay, _NoCursor(downstream), "pkuszh", "fhir")
    assert from_scratch.error is None
    assert (from_scratch.indexed, from_scratch.new_versions) == (0, 0)  # a replay is a no-op
    assert from_scratch.unchanged > 0


class _NoCursor:
    """The downstream ingest, but reading no cursor: forces a full re-read."""

    def __init__(self, ex: Exchange) -> None:
        self.ex = ex

    def cursor(self, hospital_id: str, adapter: str, name: str) -> str | None:
        return None

    def ingest(self, batch: Batch) -> Any:
        return self.ex.ingestor.ingest(batch)


def test_wrong_token_is_reported_not_retried(live: Any, settings: Settings) -> None:
    http = httpx.Client(headers={"Authorization": "Bearer nonsense"}, timeout=30)
    sleeps: list[float] = []
    client = FhirClient(http, policy=RetryPolicy(max_attempts=3), sleep=sleeps.append)
    source = FhirRestSource("pkuszh", "fhir", client, SourceServer("pkuszh", live.base))
    try:
        result = run_pull(source, _Unused(), "pkuszh", "fhir")
    finally:
        source.close()
    assert result.error is not None and "HTTP 401" in result.error
    assert sleeps == []  # no retry on a client error


class _Unused:
    def cursor(self, hospital_id: str, adapter: str, name: str) -> str | None:
        return None

    def ingest(self, batch: Batch) -> Any:
        raise AssertionError("nothing should be ingested")
