"""Replaying a feed is a no-op, also when a cancellation or correction carries the same
``issued`` as the result it replaces (the synthetic city's cancellations do; so do LIS
exports that stamp the report time, not the change time).

Before, a replay of the original restored it over the cancellation (equal ``issued`` is not
"older"), and the replayed cancellation cancelled it again: two new versions per replay.
Input is a tiny synthetic city (bench/city.py), edited here into the messages a LIS sends.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from sqlalchemy import func, select

from adapters.base import Batch
from bench.city import generate
from hie.exchange import Exchange
from hie.index.store import RV, R
from tests.hie.test_ingest_batch import _observation, _unit


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any]]:
    """One hospital's transaction Bundle with an Observation that says when it was issued."""
    out = tmp_path_factory.mktemp("city")
    generate(out, patients=4, hospitals=1, seed=5)
    path = next((out / "fhir").glob("*.ndjson"))
    for line in path.read_bytes().splitlines():
        doc = orjson.loads(line)
        if any(e["resource"].get("issued") for e in doc["entry"]):
            return path.stem, doc
    raise AssertionError("the city wrote no Observation with issued")


def _edited(doc: dict[str, Any], **changes: Any) -> dict[str, Any]:
    copy = orjson.loads(orjson.dumps(doc))
    _observation(copy).update(changes)
    return copy


def _send(exchange: Exchange, hospital: str, *docs: dict[str, Any]) -> list[str]:
    units = [_unit(d, f"m{n}", hospital) for n, d in enumerate(docs)]
    return [i.status for i in exchange.ingestor.ingest(Batch(hospital, "lis-mllp", units)).items]


def _state(exchange: Exchange, doc: dict[str, Any]) -> tuple[int, str, int]:
    """(version, status, versions in history) of the bundle's Observation."""
    ident = _observation(doc)["identifier"][0]
    with exchange.store.read() as conn:
        row = conn.execute(
            select(R.c.id, R.c.version_id, R.c.body).where(
                R.c.type == "Observation", R.c.source_id == f"{ident['system']}|{ident['value']}"
            )
        ).one()
        history = conn.execute(
            select(func.count()).where(RV.c.type == "Observation", RV.c.id == row.id)
        ).scalar_one()
    return row.version_id, orjson.loads(row.body)["status"], int(history)


def test_replaying_a_cancellation_with_its_originals_issued_changes_nothing(
    exchange: Exchange, original: tuple[str, dict[str, Any]]
) -> None:
    hospital, doc = original
    cancelled = _edited(doc, status="cancelled")
    assert _send(exchange, hospital, doc)[0] == "created"
    assert _send(exchange, hospital, cancelled)[0] == "updated"
    assert _state(exchange, doc) == (2, "cancelled", 1)
    # the feed replayed, together and one by one: every message was stored before
    assert _send(exchange, hospital, doc, cancelled) == ["unchanged", "unchanged"]
    assert _send(exchange, hospital, doc) == ["unchanged"]
    assert _state(exchange, doc) == (2, "cancelled", 1)


def test_new_content_with_the_same_issued_still_lands(
    exchange: Exchange, original: tuple[str, dict[str, Any]]
) -> None:
    """Only content already stored for the result is a replay: an amendment that keeps the
    report's ``issued`` is news, and so is a later re-issue of the original content."""
    hospital, doc = original
    obs = _observation(doc)
    amended = _edited(doc, status="amended", note=[{"text": "haemolysed; repeat advised"}])
    assert _send(exchange, hospital, doc, amended) == ["created", "updated"]
    assert _state(exchange, doc) == (2, "amended", 1)
    assert _send(exchange, hospital, doc) == ["unchanged"]  # a replay of version 1
    later = _edited(doc, issued=obs["issued"].replace(obs["issued"][:4], "2099", 1))
    assert _send(exchange, hospital, later) == ["updated"]
    assert _state(exchange, doc) == (3, obs["status"], 2)
