"""Ingest of several units in one batch (hie/ingest.py ``_apply_together``): one lookup and
one insert per table for the batch, yet each unit lands or fails alone, later units see what
earlier ones wrote, and a write the database refuses costs only its own unit.

Written for issue 8 (bulk ingest speed). Input is a tiny synthetic city (bench/city.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import func, select

from adapters.base import Batch, Cursor, Unit
from bench.city import generate
from hie import naming
from hie.bulk import ndjson_unit
from hie.exchange import Exchange
from hie.index import tables as t

R = t.Resource.__table__  # type: ignore[attr-defined]
RV = t.ResourceVersion.__table__  # type: ignore[attr-defined]
OBS = t.ObservationIndex.__table__  # type: ignore[attr-defined]
TOKEN = t.SearchToken.__table__  # type: ignore[attr-defined]
CURSOR = t.Cursor.__table__  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def lines(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[bytes]]:
    out = tmp_path_factory.mktemp("city")
    generate(out, patients=8, hospitals=3, seed=21)
    path = max((out / "fhir").glob("*.ndjson"), key=lambda p: p.stat().st_size)
    return path.stem, path.read_bytes().splitlines()


def _unit(line: bytes | dict[str, Any], key: str, hospital: str) -> Unit:
    raw = line if isinstance(line, bytes) else orjson.dumps(line)
    unit = ndjson_unit(raw, key, hospital)
    assert isinstance(unit, Unit)
    return unit


def _observation(doc: dict[str, Any]) -> dict[str, Any]:
    return next(
        e["resource"] for e in doc["entry"] if e["resource"]["resourceType"] == "Observation"
    )


def _rows(exchange: Exchange, table: Any, *where: Any) -> int:
    with exchange.store.read() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())


def test_units_of_one_batch_land_alone_and_see_each_other(
    exchange: Exchange, lines: tuple[str, list[bytes]]
) -> None:
    hospital, raw = lines
    first = orjson.loads(raw[1])  # patient 0007777777 and three Observations
    obs_id = _observation(first)["identifier"][0]["value"]
    # A correction of the first Observation, in the same batch as the original: its row is
    # still in the batch's buffer when the correction is planned.
    corrected = orjson.loads(raw[1])
    _observation(corrected)["valueQuantity"]["value"] = 12345
    # A new patient whose result names a subject nobody knows: the unit fails after its
    # Patient was planned; neither the Patient nor anything else of it may land.
    orphan = orjson.loads(raw[2])
    orphan["entry"][0]["resource"]["identifier"][0]["value"] = "ORPHAN-1"
    _observation(orphan)["subject"] = {"reference": "Patient/nobody-knows-this-one"}
    units = [
        _unit(raw[1], "a", hospital),
        _unit(orphan, "b", hospital),
        _unit(corrected, "c", hospital),
        _unit(raw[2], "d", hospital),
        _unit(corrected, "e", hospital),  # the correction again: nothing new
    ]
    result = exchange.ingestor.ingest(
        Batch(hospital, "bulk-ndjson", units, [], Cursor("test", "5"))
    )
    assert [i.status for i in result.items] == [
        "created",
        "rejected",
        "updated",
        "created",
        "unchanged",
    ]
    assert "nobody-knows-this-one" in result.items[1].issues[0].diagnostics
    orphan_mrn = f"{naming.mrn(hospital)}|ORPHAN-1"
    assert _rows(exchange, R, R.c.source_id == orphan_mrn) == 0
    source = f"{_observation(first)['identifier'][0]['system']}|{obs_id}"
    with exchange.store.read() as conn:
        row = conn.execute(
            select(R.c.id, R.c.version_id, R.c.body, R.c.patient_id).where(
                R.c.type == "Observation", R.c.source_id == source
            )
        ).one()
    assert row.version_id == 2 and b"12345" in row.body and row.patient_id
    # version 1 went to history; version 2 is the current row only
    assert _rows(exchange, RV, RV.c.type == "Observation", RV.c.id == row.id) == 1
    assert _rows(exchange, OBS, OBS.c.id == row.id) == 1  # re-indexed, not indexed twice
    assert _rows(exchange, TOKEN, TOKEN.c.res_id == row.id, TOKEN.c.param == "code") == 1
    # every Observation of units a and d landed once, each with its patient
    landed = {
        e["resource"]["identifier"][0]["value"]
        for line in (raw[1], raw[2])
        for e in orjson.loads(line)["entry"]
        if e["resource"]["resourceType"] == "Observation"
    }
    assert _rows(exchange, R, R.c.type == "Observation") == len(landed)
    assert _rows(exchange, R, R.c.type == "Observation", R.c.patient_id.is_(None)) == 0
    assert _rows(exchange, CURSOR, CURSOR.c.name == "test", CURSOR.c.value == "5") == 1


@contextmanager
def refusing(exchange: Exchange, value: str) -> Iterator[None]:
    """PostgreSQL refuses, with a data exception, any resource whose source identifier ends in
    ``|value`` (a trigger, dropped after): since ingest refuses an identifier too long for its
    column itself, no value that passes validation is refused by the schema. SQLite's
    triggers raise constraint errors, which ingest reads as a concurrent writer: skipped."""
    if exchange.store.dialect != "postgresql":
        pytest.skip("a data exception from the database: PostgreSQL's")
    with exchange.store.engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE FUNCTION refuse_me() RETURNS trigger AS $$ BEGIN "
            f"IF right(NEW.source_id, {len(value) + 1}) = '|{value}' THEN "
            "RAISE EXCEPTION 'this value is refused' USING ERRCODE = '22000'; END IF; "
            "RETURN NEW; END $$ LANGUAGE plpgsql"
        )
        conn.exec_driver_sql(
            "CREATE TRIGGER refuse_me BEFORE INSERT ON resource "
            "FOR EACH ROW EXECUTE FUNCTION refuse_me()"
        )
    try:
        yield
    finally:
        with exchange.store.engine.begin() as conn:
            conn.exec_driver_sql("DROP TRIGGER refuse_me ON resource")
            conn.exec_driver_sql("DROP FUNCTION refuse_me()")


def test_a_value_the_database_refuses_costs_only_its_unit(
    exchange: Exchange, lines: tuple[str, list[bytes]]
) -> None:
    """A value the database refuses rejects that unit alone, with the database's words; the
    rest of the batch lands, and again."""
    hospital, raw = lines
    bad = orjson.loads(raw[2])
    _observation(bad)["identifier"][0]["value"] = "REFUSE-ME"
    units = [_unit(raw[1], "a", hospital), _unit(bad, "b", hospital), _unit(raw[4], "c", hospital)]
    with refusing(exchange, "REFUSE-ME"):
        result = exchange.ingestor.ingest(Batch(hospital, "bulk-ndjson", units, [], None))
        again = exchange.ingestor.ingest(Batch(hospital, "bulk-ndjson", units, [], None))
    assert [i.status for i in result.items] == ["created", "rejected", "created"]
    assert "this value is refused" in result.items[1].issues[0].diagnostics
    assert [i.status for i in again.items] == ["unchanged", "rejected", "unchanged"]
    expected = {
        e["resource"]["identifier"][0]["value"]
        for line in (raw[1], raw[4])
        for e in orjson.loads(line)["entry"]
        if e["resource"]["resourceType"] == "Observation"
    }
    assert _rows(exchange, R, R.c.type == "Observation") == len(expected)
    assert _rows(exchange, RV, RV.c.type == "Observation") == 0  # nothing superseded


def test_a_batch_and_the_same_units_one_by_one_store_the_same(
    exchange: Exchange, lines: tuple[str, list[bytes]], tmp_path: Path
) -> None:
    hospital, raw = lines
    together = exchange.ingestor.ingest(
        Batch(hospital, "bulk-ndjson", [_unit(x, str(n), hospital) for n, x in enumerate(raw)])
    )
    assert all(i.ok for i in together.items)
    with exchange.store.read() as conn:
        stored = {
            (r.type, r.source_id): (r.version_id, r.patient_id is not None)
            for r in conn.execute(select(R).where(R.c.hospital_id == hospital))
        }
        tokens = conn.execute(select(func.count()).select_from(TOKEN)).scalar_one()
    # one by one into a second exchange's database: the same resources, versions, links
    from hie.services import build_exchange

    other = build_exchange(
        exchange.settings.model_copy(update={"database_url": f"sqlite:///{tmp_path / 'one.db'}"})
    )
    try:
        for n, x in enumerate(raw):
            other.ingestor.ingest(Batch(hospital, "bulk-ndjson", [_unit(x, str(n), hospital)]))
        with other.store.read() as conn:
            alone = {
                (r.type, r.source_id): (r.version_id, r.patient_id is not None)
                for r in conn.execute(select(R).where(R.c.hospital_id == hospital))
            }
            alone_tokens = conn.execute(select(func.count()).select_from(TOKEN)).scalar_one()
    finally:
        other.store.engine.dispose()
    assert stored == alone
    assert tokens == alone_tokens


def test_a_long_local_code_is_stored_and_found_on_every_backend(
    exchange: Exchange, lines: tuple[str, list[bytes]]
) -> None:
    """A hospital's local code may be longer than the type table's ``code`` column (64):
    the column keeps its first 64 characters, the search token the code (up to 255)."""
    hospital, raw = lines
    doc = orjson.loads(raw[2])
    long_code = "LOCAL-" + "7" * 94
    _observation(doc)["code"]["coding"].insert(0, {"system": "urn:local", "code": long_code})
    result = exchange.ingestor.ingest(
        Batch(hospital, "bulk-ndjson", [_unit(doc, "long", hospital)], [], None)
    )
    assert [i.status for i in result.items] == ["created"]
    assert _rows(exchange, OBS, OBS.c.code == long_code[:64]) == 1
    assert _rows(exchange, TOKEN, TOKEN.c.param == "code", TOKEN.c.code == long_code) == 1


def test_a_source_identifier_too_long_to_keep_is_refused_on_both_backends(
    exchange: Exchange, lines: tuple[str, list[bytes]]
) -> None:
    """Its column holds 512 characters: PostgreSQL refused a longer one with a database error,
    SQLite stored it. Now ingest refuses it on both, naming the element, and the rest lands."""
    hospital, raw = lines
    bad = orjson.loads(raw[2])
    _observation(bad)["identifier"][0]["value"] = "X" * 600
    units = [_unit(raw[1], "a", hospital), _unit(bad, "b", hospital)]
    result = exchange.ingestor.ingest(Batch(hospital, "bulk-ndjson", units, [], None))
    assert [i.status for i in result.items] == ["created", "rejected"]
    issue = result.items[1].issues[0]
    assert "at most 512" in issue.diagnostics
    assert issue.expression == "Bundle.entry[1].resource.identifier"  # the Observation
    assert _rows(exchange, R, R.c.source_id.like("%XXXXXXXXXX%")) == 0
