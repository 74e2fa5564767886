"""The main searches use indexes on both backends (issue 3, item 6): read the query plans.

The SQL is the real one: :meth:`Searcher.parse` then :meth:`Searcher.statement`, executed with
an ``EXPLAIN`` prefix added by a ``before_cursor_execute`` hook, so the parameters are bound
exactly as in a search. SQLite: ``EXPLAIN QUERY PLAN`` after ``ANALYZE``; PostgreSQL:
``EXPLAIN`` with ``enable_seqscan=off`` (a test-sized table would rightly be seq-scanned, the
question is whether an index *can* serve the query). A full scan of ``resource`` or
``search_token`` fails the test.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Connection, event, text

from adapters.base import Batch, Entry, Unit
from hie import ingest, naming
from hie.exchange import Exchange
from tests.hie.api.api_builders import BACKENDS, imaging_study, observation, patient, serve

PATIENTS = 40
CODES = ("2345-7", "2823-3", "718-7", "2160-0")


def _seed(exchange: Exchange) -> None:
    units = []
    for i in range(PATIENTS):
        p = f"urn:uuid:00000000-0000-4000-8000-{i:012d}"
        entries = [Entry(patient(f"QP{i}"), p)]
        for k, code in enumerate(CODES):
            date = f"2026-{i % 12 + 1:02d}-{k + 1:02d}"
            entries.append(Entry(observation(p, code=code, date=date, result_id=f"QP{i}.{k}")))
        entries.append(Entry(imaging_study(p, uid=f"1.2.840.77.{i}")))
        units.append(Unit(key=f"QP{i}", entries=tuple(entries), trusted=True))
    result = exchange.ingestor.ingest(Batch(hospital_id="szph", adapter="test", units=units))
    assert result.rejected == 0
    with exchange.store.write() as conn:
        conn.execute(text("ANALYZE"))


def _plan(exchange: Exchange, rtype: str, params: list[tuple[str, str]]) -> list[str]:
    searcher = exchange.searcher
    with exchange.store.read() as conn:
        query = searcher.parse(conn, rtype, params, strict=True)
    assert not query.impossible, params
    stmt, _ = searcher.statement(query)
    return _explain(exchange, stmt)


def _explain(exchange: Exchange, stmt: Any, binds: dict[str, Any] | None = None) -> list[str]:
    """The plan of ``stmt`` as it runs, with ``binds`` bound as the caller binds them."""
    with exchange.store.write() as conn:  # SET LOCAL needs a transaction; reads have none
        sqlite = conn.dialect.name == "sqlite"
        if not sqlite:
            conn.execute(text("SET LOCAL enable_seqscan = off"))
        prefix = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN "

        def explain(
            _conn: Connection, _cur: Any, statement: str, parameters: Any, _ctx: Any, _many: bool
        ) -> tuple[str, Any]:
            return prefix + statement, parameters

        event.listen(conn, "before_cursor_execute", explain, retval=True)
        try:
            result = conn.execute(stmt, binds)
            rows = result.cursor.fetchall()  # raw plan rows, not the statement's columns
            result.close()
        finally:
            event.remove(conn, "before_cursor_execute", explain)
    return [str(r[-1]) for r in rows]


def _no_full_scans(plan: list[str]) -> None:
    text_plan = "\n".join(plan)
    for table in ("resource", "search_token"):
        # SQLite: "SCAN resource [USING INDEX ...]" walks the whole table or index;
        # PostgreSQL: "Seq Scan on resource".
        assert not re.search(rf"(^|\s)SCAN {table}\b", text_plan), text_plan
        assert f"Seq Scan on {table} " not in text_plan + " ", text_plan


def _record(exchange: Exchange, n: int) -> str:
    with exchange.store.read() as conn:
        return str(
            conn.execute(
                text("SELECT record_id FROM patient_record ORDER BY record_id LIMIT 1 OFFSET :n"),
                {"n": n},
            ).scalar_one()
        )


@pytest.fixture(scope="module", params=BACKENDS)
def seeded(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Exchange]:
    """One seeded database per backend for the module (the tests only read it)."""
    with serve(request.param, tmp_path_factory.mktemp("plans")) as (_, exchange):
        _seed(exchange)
        yield exchange


def test_observation_by_patient_code_and_date_uses_the_patient_indexes(seeded: Exchange) -> None:
    params = [
        ("patient", _record(seeded, 7)),
        ("code", f"{naming.LOINC}|2345-7"),
        ("date", "ge2026-01-01"),
    ]
    plan = _plan(seeded, "Observation", params)
    _no_full_scans(plan)
    joined = "\n".join(plan)
    assert "ix_token_patient" in joined, joined  # (patient, type, param, code, date)


def test_patient_by_identifier_uses_the_token_index(seeded: Exchange) -> None:
    plan = _plan(seeded, "Patient", [("identifier", f"{naming.mrn('szph')}|QP7")])
    _no_full_scans(plan)
    assert "ix_token_code" in "\n".join(plan)


def test_imaging_study_by_patient_uses_the_patient_index(seeded: Exchange) -> None:
    plan = _plan(seeded, "ImagingStudy", [("patient", _record(seeded, 3))])
    _no_full_scans(plan)
    assert "ix_resource_patient" in "\n".join(plan)


def test_ingest_finds_stored_resources_by_source_with_the_unique_index(seeded: Exchange) -> None:
    """A group commit's lookup of what its units already stored (hie.ingest._source_rows):
    on PostgreSQL the (hospital, source) pairs joined to the unique index, one probe each."""
    with seeded.store.read() as conn:
        rows = conn.execute(
            text("SELECT hospital_id, source_id FROM resource WHERE type = 'Observation' LIMIT 3")
        ).all()
    if seeded.store.dialect == "postgresql":
        stmt = ingest._HOSPITALS_PG
        binds = {"hospitals": [r[0] for r in rows], "sources": [r[1] for r in rows]}
    else:
        stmt = ingest._HOSPITALS
        binds = {"hospitals": sorted({r[0] for r in rows}), "sources": [r[1] for r in rows]}
    plan = _explain(seeded, stmt, {"type": "Observation", **binds})
    _no_full_scans(plan)
    joined = "\n".join(plan)
    if seeded.store.dialect == "postgresql":
        assert "uq_resource_source" in joined, plan
    else:  # SQLite names a UNIQUE constraint's index sqlite_autoindex_resource_N
        assert "(type=? AND hospital_id=? AND source_id=?)" in joined, plan


def test_a_records_identifiers_are_looked_up_together_with_the_primary_key(
    seeded: Exchange,
) -> None:
    """The linker's lookup of a new record's identifiers (PatientRegistry.by_identifiers):
    one statement, each (system, value) a probe of the primary key (SQLite scanned the table
    for a row-value IN)."""
    from hie.index.patients import _by_identifiers

    binds = {"_s0": naming.mrn("szph"), "_v0": "QP5", "_s1": naming.NATIONAL_ID, "_v1": "0"}
    plan = _explain(seeded, _by_identifiers(2), binds)
    joined = "\n".join(plan)
    assert not re.search(r"(^|\s)SCAN patient_identifier\b", joined), plan
    assert "Seq Scan on patient_identifier" not in joined, plan
    if seeded.store.dialect == "postgresql":
        assert "patient_identifier_pkey" in joined, plan
    else:
        assert "(system=? AND value=?)" in joined, plan
    with seeded.store.read() as conn:
        found = seeded.registry.by_identifiers(
            conn, [(naming.mrn("szph"), "QP5"), (naming.mrn("szph"), "QP6"), ("urn:x", "none")]
        )
        alone = [seeded.registry.by_identifier(conn, naming.mrn("szph"), v) for v in ("QP5", "QP6")]
    assert list(found.values()) == alone and all(alone) and alone[0] != alone[1]


@pytest.mark.parametrize(
    ("rtype", "params"),
    [
        ("Observation", [("patient.identifier", f"{naming.mrn('szph')}|QP5"), ("code", "718-7")]),
        ("Observation", [("code", f"{naming.LOINC}|2823-3")]),
        ("DiagnosticReport", [("identifier", f"{naming.filler_order('szph')}|F1")]),
        ("ImagingStudy", [("identifier", "urn:dicom:uid|1.2.840.77.3")]),
    ],
    ids=["chain+code", "code-only", "report-identifier", "study-uid"],
)
def test_other_searches_do_not_scan(seeded: Exchange, rtype: str, params: list[Any]) -> None:
    _no_full_scans(_plan(seeded, rtype, params))


def test_the_plans_answer_the_same_as_the_search(seeded: Exchange) -> None:
    """The planned statement is the one searches run: it finds the expected rows."""
    with seeded.store.read() as conn:
        q = seeded.searcher.parse(
            conn, "Patient", [("identifier", f"{naming.mrn('szph')}|QP7")], strict=True
        )
        stmt, _ = seeded.searcher.statement(q)
        rows = conn.execute(stmt).all()
    assert len(rows) == 2  # the hospital record and its exchange patient
