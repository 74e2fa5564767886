"""The recognition facts stored beside each result (``resource.facts``, migration 0009).

``$prior-results`` builds its candidates from them instead of parsing each body. They must say
what the body says, and a row written before 0009 (no facts) must give the same candidates.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from hie import naming
from hie.cli import app
from hie.demo import load_demo
from hie.exchange import Exchange
from hie.index.store import R, result_facts
from hie.prior_results import Request, parse_at, parse_code
from hie.recognition.candidates import RESULT_TYPES
from hie.services import attach_recognition
from hie.settings import Settings

CODES = ("58410-2", "718-7", "4548-4", "2823-3", "57698-3")


def _demo(settings: Settings, exchange: Exchange, tmp_path: Path) -> None:
    load_demo(settings, tmp_path / "fixtures", exchange)
    attach_recognition(exchange)


def test_each_result_stores_the_facts_of_its_body(
    settings: Settings, exchange: Exchange, tmp_path: Path
) -> None:
    _demo(settings, exchange, tmp_path)
    with exchange.store.read() as conn:
        rows = conn.execute(select(R.c.type, R.c.body, R.c.facts)).all()
    kinds = {r.type for r in rows if r.facts is not None}
    assert kinds == {"Observation", "DiagnosticReport", "ImagingStudy"}
    for r in rows:
        assert r.facts == result_facts(orjson.loads(r.body)), r.type
        assert (r.facts is None) == (r.type not in RESULT_TYPES)


def test_rows_without_facts_give_the_same_candidates(
    settings: Settings, exchange: Exchange, tmp_path: Path
) -> None:
    """Rows from before migration 0009 have none: their bodies are read instead."""
    _demo(settings, exchange, tmp_path)
    service = exchange.prior_results
    with exchange.store.read() as conn:
        patient = exchange.registry.by_identifier(conn, naming.mrn("pkuszh"), "PK2002")
    assert patient is not None
    req = Request(
        patient_id=patient,
        codes=tuple(parse_code(c) for c in CODES),
        requester="szph",
        at=parse_at("2026-11-25T10:00:00+08:00", settings.timezone),
        include_expired=True,
    )
    with exchange.store.read() as conn:
        with_facts = service.gather(conn, req)
        members = [m for r in with_facts[0] for m in r.members]
        members_with_facts = service.members(conn, members)
    with exchange.store.write() as conn:
        conn.execute(update(R).values(facts=None))
    with exchange.store.read() as conn:
        from_bodies = service.gather(conn, req)
        members_from_bodies = service.members(conn, members)
    assert len(with_facts[0]) > 5 and len(members_with_facts) > 5
    assert sorted(with_facts[0], key=repr) == sorted(from_bodies[0], key=repr)
    assert with_facts[1] == from_bodies[1]
    assert sorted(members_with_facts, key=repr) == sorted(members_from_bodies, key=repr)


def test_backfill_gives_old_rows_their_facts(
    settings: Settings, exchange: Exchange, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``hie backfill-facts``: rows from before 0009 get the facts ingest would have stored;
    run again, it finds nothing to do."""
    _demo(settings, exchange, tmp_path)
    with exchange.store.read() as conn:
        stored = dict(conn.execute(select(R.c.id, R.c.facts)).all())
    with exchange.store.write() as conn:
        conn.execute(update(R).values(facts=None))
    monkeypatch.setenv("HIE_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("HIE_JWT_SECRET", settings.jwt_secret)
    first = CliRunner().invoke(app, ["backfill-facts", "--batch", "7"])
    assert first.exit_code == 0, first.output
    with exchange.store.read() as conn:
        assert dict(conn.execute(select(R.c.id, R.c.facts)).all()) == stored
    filled = sum(1 for v in stored.values() if v is not None)
    assert f"{filled:,} results given their facts" in first.output
    assert sum(exchange.store.backfill_facts(batch=7)) == 0
