"""Validation ahead of the ingest (``Ingestor.checked``, what the MLLP listener runs in the
thread that mapped a message): the ingest takes the issues found then instead of validating
again, refuses what they refuse, and a plain HTTP batch is still judged by HTTP's rules.

Written for issue 8 (MLLP on PostgreSQL: the checks ran on the commit thread's critical
path). Input is a tiny synthetic city (bench/city.py).
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from adapters.base import Batch, Unit
from hie import naming
from hie.exchange import Exchange
from tests.hie.test_ingest_batch import _observation, _unit
from tests.hie.test_ingest_many import city  # noqa: F401  (the fixture)


def _first(city: dict[str, list[bytes]]) -> tuple[str, list[bytes]]:  # noqa: F811
    hospital = sorted(city)[0]
    return hospital, city[hospital]


def test_a_unit_checked_ahead_is_not_validated_again(
    exchange: Exchange,
    city: dict[str, list[bytes]],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hospital, lines = _first(city)
    unit = exchange.ingestor.checked(_unit(lines[1], "a", hospital))
    assert unit.issues == ()
    calls: list[str] = []
    real = exchange.ingestor.validate

    def counting(u: Unit, **kw: Any) -> Any:
        calls.append(u.key)
        return real(u, **kw)

    monkeypatch.setattr(exchange.ingestor, "validate", counting)
    plain = _unit(lines[2], "b", hospital)
    result = exchange.ingestor.ingest(Batch(hospital, "lis-mllp", [unit, plain]))
    assert [i.status for i in result.items] == ["created", "created"]
    assert calls == ["b"]  # only the unit nobody checked ahead


def test_issues_found_ahead_refuse_the_unit_as_the_ingest_would(
    exchange: Exchange,
    city: dict[str, list[bytes]],  # noqa: F811
) -> None:
    hospital, lines = _first(city)
    doc = orjson.loads(lines[1])
    for ident in doc["entry"][0]["resource"]["identifier"]:
        if ident["system"] == naming.NATIONAL_ID:  # a bad GB 11643 check digit
            ident["value"] = ident["value"][:-1] + ("2" if ident["value"][-1] != "2" else "3")
    ahead = exchange.ingestor.checked(_unit(doc, "ahead", hospital))
    assert ahead.issues
    result = exchange.ingestor.ingest(
        Batch(hospital, "lis-mllp", [ahead, _unit(doc, "plain", hospital)])
    )
    assert [i.status for i in result.items] == ["rejected", "rejected"]
    first, second = (i.issues for i in result.items)
    assert [x.diagnostics for x in first] == [x.diagnostics for x in second]


def test_an_http_batch_is_judged_by_http_rules_whatever_was_found_ahead(
    exchange: Exchange,
    city: dict[str, list[bytes]],  # noqa: F811
) -> None:
    hospital, lines = _first(city)
    doc = next(d for d in map(orjson.loads, lines) if b'"Observation"' in orjson.dumps(d))
    del _observation(doc)["identifier"]  # adapters must give one; HTTP clients need not
    ahead = exchange.ingestor.checked(_unit(doc, "a", hospital))
    assert any("identifier" in (i.expression or "") for i in ahead.issues or ())
    assert exchange.ingestor.ingest(Batch(hospital, "lis-mllp", [ahead])).items[0].status == (
        "rejected"
    )
    result = exchange.ingestor.ingest(Batch(hospital, "http", [ahead]))
    assert result.items[0].status == "created"


def test_a_patient_passes_the_fhir_model_once_and_a_bad_one_every_time(
    exchange: Exchange,
    city: dict[str, list[bytes]],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A feed repeats its Patient in every unit: the model check of a Patient is remembered
    by content once it passed, and never when it failed."""
    import hie.ingest

    hospital, lines = _first(city)
    checked: list[str] = []
    real = hie.ingest.check_model

    def counting(res: Any, **kw: Any) -> Any:
        checked.append(res.get("resourceType"))
        return real(res, **kw)

    monkeypatch.setattr(hie.ingest, "check_model", counting)
    doc = orjson.loads(lines[1])
    units = [_unit(doc, f"u{n}", hospital) for n in range(3)]
    assert not any(u.trusted for u in units)
    exchange.ingestor.ingest(Batch(hospital, "bulk-ndjson", units))
    assert checked.count("Patient") == 1
    assert checked.count("Observation") == 3 * sum(
        e["resource"]["resourceType"] == "Observation" for e in doc["entry"]
    )
    doc["entry"][0]["resource"]["gender"] = ["male"]  # not a code
    checked.clear()
    bad = [_unit(doc, f"b{n}", hospital) for n in range(2)]
    result = exchange.ingestor.ingest(Batch(hospital, "bulk-ndjson", bad))
    assert [i.status for i in result.items] == ["rejected", "rejected"]
    assert checked.count("Patient") == 2
