"""The bench-only loader writes what the store would: rows the exchange itself can search."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from sqlalchemy import Engine, text

from bench.direct import load
from hie import migrate
from hie.auth import ALL_SCOPES, Principal
from hie.index.store import create_engine
from hie.services import build_exchange
from hie.settings import Settings
from tests.conftest import SECRET, scratch_postgres


@pytest.fixture
def engine(database_url: str, tmp_path: Path) -> Iterator[Engine]:
    """A database of its own, migrated (the loader appends to empty tables)."""
    if database_url.startswith("sqlite"):
        made = create_engine(f"sqlite:///{tmp_path / 'direct.db'}")
        migrate.upgrade(made)
        yield made
        made.dispose()
        return
    with scratch_postgres(database_url, "direct") as made:
        migrate.upgrade(made)
        yield made


def test_loaded_rows_are_found_by_the_exchange(engine: Engine) -> None:
    url = engine.url.render_as_string(hide_password=False)
    results = load(url, 6, 4, workers=2)
    assert results > 0
    with engine.connect() as conn:
        observations = conn.execute(
            text("SELECT body FROM resource WHERE type = 'Observation'")
        ).scalars()
        bodies = [orjson.loads(b) for b in observations]
        patients = set(
            conn.execute(text("SELECT id FROM resource WHERE type = 'Patient'")).scalars()
        )
        exchange_patient = conn.execute(text("SELECT min(id) FROM exchange_patient")).scalar_one()
    assert len(bodies) >= results
    for body in bodies:  # references point at stored ids, never the bundle's urn:uuid
        assert b"urn:uuid" not in orjson.dumps(body)
        assert body["subject"]["reference"].removeprefix("Patient/") in patients
    settings = Settings(database_url=url, jwt_secret=SECRET, base_url="http://testserver/fhir")
    exchange = build_exchange(settings, run_migrations=False)
    try:
        found = orjson.loads(
            exchange.search(
                Principal("t", "h001", frozenset(ALL_SCOPES)),
                "Observation",
                [("patient", exchange_patient)],
                strict=True,
            )
        )
    finally:
        exchange.store.engine.dispose()
    assert found["entry"] and all(
        e["resource"]["resourceType"] == "Observation" for e in found["entry"]
    )
