"""A token search carries the patient whatever the order of the parameters (issue 8).

``Observation?code=…&patient=…`` built its token condition before the patient was read, so it
searched the code's rows across the whole city (ix_token_code) and only then kept the
patient's; the token index on (patient, type, param, code, date) must drive in both orders,
and both orders must find the same rows.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hie import naming
from hie.exchange import Exchange
from tests.hie.api.api_builders import BACKENDS, serve
from tests.hie.index.test_index_query_plans import _no_full_scans, _plan, _record, _seed


@pytest.fixture(scope="module", params=BACKENDS)
def seeded(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Exchange]:
    with serve(request.param, tmp_path_factory.mktemp("order")) as (_, exchange):
        _seed(exchange)
        yield exchange


def _ids(exchange: Exchange, params: list[tuple[str, str]]) -> list[str]:
    with exchange.store.read() as conn:
        q = exchange.searcher.parse(conn, "Observation", params, strict=True)
        stmt, _ = exchange.searcher.statement(q)
        return sorted(r.id for r in conn.execute(stmt))


def test_code_before_patient_still_reads_only_the_patients_tokens(seeded: Exchange) -> None:
    patient = _record(seeded, 7)
    code = ("code", f"{naming.LOINC}|2345-7")
    plan = _plan(seeded, "Observation", [code, ("patient", patient)])
    _no_full_scans(plan)
    joined = "\n".join(plan)
    assert "ix_token_patient" in joined, joined
    assert "ix_token_code" not in joined, joined
    forward = _ids(seeded, [("patient", patient), code])
    assert forward and forward == _ids(seeded, [code, ("patient", patient)])


def test_a_patient_with_no_such_code_finds_nothing(seeded: Exchange) -> None:
    params = [("code", f"{naming.LOINC}|0000-0"), ("patient", _record(seeded, 3))]
    assert _ids(seeded, params) == []
