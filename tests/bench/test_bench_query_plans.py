"""Which index each main query uses: the lookups must cost O(the patient), not O(the city).

Every SELECT that ``Observation?patient=&code=&date=ge`` and ``$prior-results`` send is
captured and explained on the real backend. A read of a large table must be an index search
constrained by the patient or by id: SQLite's ``SEARCH resource USING INDEX
ix_resource_updated (type=?)`` walks every Observation in the city, and did, until the search
was fixed; this test keeps it from coming back. On PostgreSQL sequential scans are disabled
for the EXPLAIN, so the plan shows the index the planner would use on a large table.

Written for issue 8; data: a tiny synthetic city (bench/city.py) through the bulk loader.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from bench.city import generate
from hie.auth import ALL_SCOPES, Principal
from hie.bulk import load_ndjson
from hie.exchange import Exchange
from hie.prior_results import Request, parse_at, parse_code
from hie.services import build_exchange
from hie.settings import Settings

LARGE = (
    "resource",
    "resource_version",
    "search_token",
    "observation_index",
    "diagnostic_report_index",
    "imaging_study_index",
)
NARROW = re.compile(r"\b(patient_id|id|res_id|record_id|source_id)\s*=")


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("city")
    generate(out, patients=6, hospitals=2, seed=31, hl7=False)
    return out


@pytest.fixture
def loaded(settings: Settings, city: Path) -> Iterator[Exchange]:
    settings.config_file = city / "hospitals.toml"
    exchange = build_exchange(settings, run_migrations=False)
    for path in sorted((city / "fhir").glob("*.ndjson")):
        load_ndjson(exchange.ingestor, path)
    yield exchange
    exchange.store.engine.dispose()


def _selects(exchange: Exchange, action: Any) -> list[tuple[str, Any]]:
    seen: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, params))

    event.listen(exchange.store.engine, "before_cursor_execute", capture)
    try:
        action()
    finally:
        event.remove(exchange.store.engine, "before_cursor_execute", capture)
    return seen


def _bad_steps(exchange: Exchange, statement: str, params: Any) -> list[str]:
    """Plan steps that read a large table without a patient or id constraint."""
    bad = []
    with exchange.store.engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params).all()
            for row in rows:
                step = str(row[-1])
                m = re.match(r"(SCAN|SEARCH) (\w+)", step)
                if not m or m.group(2) not in LARGE:
                    continue
                if m.group(1) == "SCAN" or not NARROW.search(step):
                    bad.append(step)
        else:
            conn.exec_driver_sql("SET enable_seqscan = off")
            plan = [r[0] for r in conn.exec_driver_sql("EXPLAIN " + statement, params)]
            text = "\n".join(plan)
            for table in LARGE:
                if re.search(rf"Seq Scan on {table}\b", text):
                    bad.append(f"Seq Scan on {table}")
            for n, line in enumerate(plan):
                m = re.search(r"Index (?:Only )?Scan(?: Backward)? using (\w+) on (\w+)", line)
                if not m or m.group(2) not in LARGE:
                    continue
                conds = re.sub(r"::[a-z ]+|[()]", "", " ".join(plan[n + 1 : n + 3]))
                if "Index Cond" not in conds or not NARROW.search(conds):
                    bad.append(line.strip())
    return bad


def _patient_and_code(exchange: Exchange) -> tuple[str, str]:
    from sqlalchemy import select

    from hie.index.store import TOKEN

    with exchange.store.read() as conn:
        row = conn.execute(
            select(TOKEN.c.patient_id, TOKEN.c.code)
            .where(TOKEN.c.type == "Observation", TOKEN.c.param == "code")
            .limit(1)
        ).one()
    return row.patient_id, row.code


def test_observation_search_reads_only_the_patients_rows(loaded: Exchange) -> None:
    patient, code = _patient_and_code(loaded)
    principal = Principal("bench", "h001", frozenset(ALL_SCOPES))
    params = [("patient", patient), ("code", f"http://loinc.org|{code}"), ("date", "ge2023-07-01")]
    selects = _selects(loaded, lambda: loaded.search(principal, "Observation", params, strict=True))
    assert selects
    for statement, args in selects:
        assert _bad_steps(loaded, statement, args) == [], statement


AT = "2024-12-31T12:00:00+08:00"  # the end of the simulated years


@pytest.mark.parametrize("include_expired", [False, True])
def test_prior_results_reads_only_the_patients_rows(
    loaded: Exchange, include_expired: bool
) -> None:
    patient, code = _patient_and_code(loaded)
    principal = Principal("bench", "h001", frozenset(ALL_SCOPES))
    codes = (code, "4548-4", "2345-7", "718-7", "2160-0")
    req = Request(
        patient_id=patient,
        codes=tuple(parse_code(f"http://loinc.org|{c}") for c in codes),
        requester="h001",
        at=parse_at(AT, "Asia/Shanghai"),
        department=None,
        include_expired=include_expired,
    )
    service = loaded.prior_results  # type: ignore[attr-defined]
    selects = _selects(loaded, lambda: service.assess(principal, req))
    assert selects
    for statement, args in selects:
        assert _bad_steps(loaded, statement, args) == [], statement
