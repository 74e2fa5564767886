"""Several hospitals' batches in one transaction (``Ingestor.ingest_many``, what the MLLP
listener's group commit calls): each unit is judged under its own hospital exactly as if its
batch had come alone, and each batch keeps its own dead letters and cursor.

Written for issue 8 (MLLP ingest speed). Input is a tiny synthetic city (bench/city.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import func, select

from adapters.base import Batch, Cursor
from bench.city import generate
from hie.exchange import Exchange
from hie.index.store import R
from hie.ingest import CURSOR, DEAD
from hie.services import build_exchange
from tests.hie.test_ingest_batch import _unit


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[bytes]]:
    """Two hospitals' NDJSON lines (one transaction Bundle each)."""
    out = tmp_path_factory.mktemp("city")
    generate(out, patients=8, hospitals=2, seed=21)
    return {p.stem: p.read_bytes().splitlines() for p in sorted((out / "fhir").glob("*.ndjson"))}


def _stored(exchange: Exchange) -> dict[tuple[str, str | None, str | None], tuple[int, bool]]:
    """The hospitals' resources (the exchange's own patient records have minted ids)."""
    with exchange.store.read() as conn:
        return {
            (r.type, r.hospital_id, r.source_id): (r.version_id, r.patient_id is not None)
            for r in conn.execute(select(R).where(R.c.hospital_id.is_not(None)))
        }


def _batches(city: dict[str, list[bytes]], take: int) -> list[Batch]:
    return [
        Batch(h, "lis-mllp", [_unit(x, f"{h}-{n}", h) for n, x in enumerate(lines[:take])])
        for h, lines in city.items()
    ]


def test_hospitals_in_one_transaction_store_what_each_alone_would(
    exchange: Exchange, city: dict[str, list[bytes]], tmp_path: Path
) -> None:
    assert len(city) == 2
    results = exchange.ingestor.ingest_many(_batches(city, 6))
    assert [len(r.items) for r in results] == [6, 6]
    assert all(i.ok for r in results for i in r.items)
    together = _stored(exchange)
    assert {h for _, h, _ in together} == set(city)
    other = build_exchange(
        exchange.settings.model_copy(update={"database_url": f"sqlite:///{tmp_path / 'a.db'}"})
    )
    try:
        for batch in _batches(city, 6):
            other.ingestor.ingest(batch)
        alone = _stored(other)
        # sent again: a replay changes nothing (cancellations included, which keep their
        # original's `issued`: tests/hie/test_ingest_replay.py)
        replayed = [[i.status for i in other.ingestor.ingest(b).items] for b in _batches(city, 6)]
        alone_again = _stored(other)
    finally:
        other.store.engine.dispose()
    assert together == alone
    assert {s for statuses in replayed for s in statuses} == {"unchanged"}
    assert alone_again == alone
    # again, hospitals in the other order: every unit finds its own stored resources
    again = exchange.ingestor.ingest_many(_batches(city, 6)[::-1])
    assert [[i.status for i in r.items] for r in again] == replayed[::-1]
    assert _stored(exchange) == together


def test_the_same_source_identifier_from_two_hospitals_is_two_resources(
    exchange: Exchange, city: dict[str, list[bytes]]
) -> None:
    """A source identifier is the sender's: one hospital's resubmission must never find, and
    so update, the other's resource of the same identifier in the same commit."""
    first, second = city
    line = next(x for x in city[first] if b'"valueQuantity"' in x)
    results = exchange.ingestor.ingest_many(
        [Batch(first, "lis-mllp", [_unit(line, "a", first)]), Batch(second, "lis-mllp", [])]
    )
    assert [i.status for i in results[0].items] == ["created"]
    mine = next(
        e["resource"] for e in orjson.loads(line)["entry"] if "valueQuantity" in e["resource"]
    )
    theirs = orjson.loads(next(x for x in city[second] if b'"valueQuantity"' in x))
    obs = next(e["resource"] for e in theirs["entry"] if "valueQuantity" in e["resource"])
    obs["identifier"] = mine["identifier"]
    obs["valueQuantity"]["value"] = 999
    source = f"{obs['identifier'][0]['system']}|{obs['identifier'][0]['value']}"
    results = exchange.ingestor.ingest_many(
        [
            Batch(second, "lis-mllp", [_unit(theirs, "b", second)]),
            Batch(first, "lis-mllp", [_unit(line, "a", first)]),
        ]
    )
    assert [i.status for i in results[0].items] == ["created"]  # the second hospital's own
    assert [i.status for i in results[1].items] == ["unchanged"]
    with exchange.store.read() as conn:
        rows = conn.execute(
            select(R.c.hospital_id, R.c.version_id, R.c.body).where(
                R.c.type == "Observation", R.c.source_id == source
            )
        ).all()
    by_hospital = {r.hospital_id: r for r in rows}
    assert set(by_hospital) == {first, second}

    def value(row: Any) -> Any:
        return orjson.loads(row.body)["valueQuantity"]["value"]

    assert by_hospital[first].version_id == 1
    assert value(by_hospital[first]) == mine["valueQuantity"]["value"] != 999
    assert value(by_hospital[second]) == 999


def test_each_batch_keeps_its_dead_letters_and_cursor(
    exchange: Exchange, city: dict[str, list[bytes]]
) -> None:
    first, second = city
    orphan = orjson.loads(city[second][1])
    for e in orphan["entry"]:
        if e["resource"]["resourceType"] != "Patient":
            e["resource"]["subject"] = {"reference": "Patient/nobody-knows-this-one"}
    orphan["entry"] = orphan["entry"][1:]
    results = exchange.ingestor.ingest_many(
        [
            Batch(first, "lis-mllp", [_unit(city[first][1], "ok", first)], [], Cursor("c", "7")),
            Batch(second, "lis-mllp", [_unit(orphan, "orphan", second)], [], Cursor("c", "3")),
        ]
    )
    assert [i.status for i in results[0].items] == ["created"]
    assert [i.status for i in results[1].items] == ["rejected"]
    with exchange.store.read() as conn:
        dead = conn.execute(select(DEAD.c.hospital_id, DEAD.c.key)).all()
        cursors = dict(conn.execute(select(CURSOR.c.hospital_id, CURSOR.c.value)).all())
        landed = conn.execute(
            select(func.count()).select_from(R).where(R.c.hospital_id == first)
        ).scalar_one()
    assert [(d.hospital_id, d.key) for d in dead] == [(second, "orphan")]
    assert cursors == {first: "7", second: "3"}
    assert landed > 1
