"""``Searcher.run`` (statements rendered once, run on the DBAPI cursor) gives what SQLAlchemy's
execution of the same statement gives: the same rows, values of the same types (aware
datetimes for paging), in the same order, on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import bindparam, event, select, text

from hie import naming
from hie.exchange import Exchange
from hie.index.search import Rendered, encode_page
from hie.index.store import R
from tests.hie.api.api_builders import BACKENDS, serve
from tests.hie.index.test_index_query_plans import _record, _seed


@pytest.fixture(scope="module", params=BACKENDS)
def seeded(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Exchange]:
    with serve(request.param, tmp_path_factory.mktemp("rendered")) as (_, exchange):
        _seed(exchange)
        yield exchange


def _master(exchange: Exchange, n: int) -> str:
    with exchange.store.read() as conn:
        return str(
            conn.execute(
                text("SELECT patient_id FROM patient_record ORDER BY record_id LIMIT 1 OFFSET :n"),
                {"n": n},
            ).scalar_one()
        )


def _both(exchange: Exchange, rtype: str, params: list[tuple[str, str]]) -> tuple[Any, Any]:
    searcher = exchange.searcher
    with exchange.store.read() as conn:
        q = searcher.parse(conn, rtype, params, strict=True)
        stmt, values, _ = searcher.prepared(q)
        expected = [tuple(r) for r in conn.execute(stmt, values)]
        rows, _ = searcher.run(conn, q)
        return expected, [tuple(r) for r in rows]


@pytest.mark.parametrize(
    "params",
    [
        [("code", f"{naming.LOINC}|2345-7"), ("date", "ge2026-01-01")],
        [("code", f"{naming.LOINC}|2345-7,{naming.LOINC}|718-7"), ("_sort", "-date")],
        [("date", "2026-03"), ("_count", "2"), ("status", "final")],
        [("_sort", "_lastUpdated"), ("_count", "3")],
    ],
)
def test_rendered_rows_are_sqlalchemys_rows(
    seeded: Exchange, params: list[tuple[str, str]]
) -> None:
    for patient in (_record(seeded, 7), _master(seeded, 3)):  # record: the registry resolves
        expected, got = _both(seeded, "Observation", [("patient", patient), *params])
        assert got == expected
    expected, got = _both(seeded, "Observation", params)
    assert expected and got == expected
    value = next(v for v in got[0] if hasattr(v, "tzinfo"))
    assert value.tzinfo is not None  # paging tokens need aware datetimes


def test_next_page_from_rendered_rows(seeded: Exchange) -> None:
    params = [("patient", _master(seeded, 5)), ("_sort", "date"), ("_count", "2")]
    searcher = seeded.searcher
    with seeded.store.read() as conn:
        q = searcher.parse(conn, "Observation", params, strict=True)
        rows, sort_value = searcher.run(conn, q)
    after = [*params, ("_page", encode_page(sort_value(rows[1])))]
    expected, got = _both(seeded, "Observation", after)
    assert got and got == expected


def test_sql_watchers_see_rendered_statements(seeded: Exchange) -> None:
    seen: list[str] = []

    def watch(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    event.listen(seeded.store.engine, "before_cursor_execute", watch)
    try:
        _both(seeded, "Observation", [("patient", _master(seeded, 2))])
    finally:
        event.remove(seeded.store.engine, "before_cursor_execute", watch)
    assert sum("exchange_patient" in s for s in seen) == 1  # the patient, rendered
    assert sum("search_token" not in s and "FROM resource" in s for s in seen) == 2


def test_an_expanding_in_goes_through_sqlalchemy(seeded: Exchange) -> None:
    stmt = select(R.c.id).where(R.c.id.in_(bindparam("_v0", expanding=True))).order_by(R.c.id)
    with seeded.store.read() as conn:
        ids = [r.id for r in conn.execute(select(R.c.id).order_by(R.c.id).limit(2))]
        rendered = Rendered(stmt, conn.dialect)
        assert rendered.stmt is not None
        assert [r.id for r in rendered.rows(conn, [ids])] == ids
