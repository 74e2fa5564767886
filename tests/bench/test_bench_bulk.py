"""Bulk loads (hie/bulk.py) through the one ingest path: counts, idempotence, resume after a
crash mid-batch, dead letters, HL7 folders, and validation workers.

Written for issue 8. Input is a tiny synthetic city generated from its seed (bench/city.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import func, select

from adapters.base import Batch
from bench.city import generate
from hie import naming
from hie.bulk import HL7_ADAPTER, NDJSON_ADAPTER, load_hl7_folder, load_ndjson, ndjson_cursor_name
from hie.exchange import Exchange
from hie.index import tables as t

R = t.Resource.__table__  # type: ignore[attr-defined]
DEAD = t.DeadLetter.__table__  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("city")
    generate(out, patients=8, hospitals=3, seed=21)
    return out


def _observations(path: Path) -> set[str]:
    """Distinct Observation identifiers in an NDJSON file."""
    out = set()
    for line in path.read_bytes().splitlines():
        for e in orjson.loads(line)["entry"]:
            if e["resource"]["resourceType"] == "Observation":
                out.add(e["resource"]["identifier"][0]["value"])
    return out


def _count(exchange: Exchange, rtype: str) -> int:
    with exchange.store.read() as conn:
        return int(conn.execute(select(func.count()).where(R.c.type == rtype)).scalar_one())


def _largest(city: Path) -> Path:
    return max((city / "fhir").glob("*.ndjson"), key=lambda p: p.stat().st_size)


def test_ndjson_lands_once_and_a_rerun_is_a_no_op(exchange: Exchange, city: Path) -> None:
    path = _largest(city)
    lines = len(path.read_bytes().splitlines())
    stats = load_ndjson(exchange.ingestor, path, batch_size=7)
    assert stats.hospital_id == path.stem  # taken from the first line's MRN system
    assert stats.units == lines and stats.rejected == 0 and stats.dead_letters == 0
    assert stats.batches == -(-lines // 7)
    assert _count(exchange, "Observation") == len(_observations(path))
    assert stats.cursor == str(path.stat().st_size)
    again = load_ndjson(exchange.ingestor, path, batch_size=7)
    assert again.units == 0 and again.resumed_from == str(path.stat().st_size)
    assert _count(exchange, "Observation") == len(_observations(path))


def test_a_crash_inside_a_batch_loses_nothing_and_duplicates_nothing(
    exchange: Exchange, city: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _largest(city)
    ingestor = exchange.ingestor
    real = ingestor._save_cursor
    calls = {"n": 0}

    def crash_on_third(*args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 3:  # batch 3's rows are written, its transaction not committed
            raise KeyboardInterrupt("killed")
        real(*args, **kwargs)

    monkeypatch.setattr(ingestor, "_save_cursor", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        load_ndjson(ingestor, path, batch_size=5)
    committed = ingestor.cursor(path.stem, NDJSON_ADAPTER, ndjson_cursor_name(path))
    assert committed is not None
    offsets = [0]
    for line in path.read_bytes().splitlines(keepends=True):
        offsets.append(offsets[-1] + len(line))
    assert int(committed) == offsets[10]  # two batches of five lines, not three
    monkeypatch.setattr(ingestor, "_save_cursor", real)
    resumed = load_ndjson(ingestor, path, batch_size=5)
    assert resumed.resumed_from == committed
    assert resumed.units == len(offsets) - 1 - 10
    assert resumed.created > 0 and resumed.rejected == 0
    assert _count(exchange, "Observation") == len(_observations(path))


def test_bad_lines_become_dead_letters_and_the_rest_lands(
    exchange: Exchange, city: Path, tmp_path: Path
) -> None:
    good = _largest(city).read_bytes().splitlines()[:3]
    foreign = good[0].replace(
        naming.mrn(_largest(city).stem).encode(), naming.mrn("elsewhere").encode()
    )
    invalid = orjson.loads(good[1])
    invalid["entry"][1]["resource"]["status"] = "not-a-status"
    path = tmp_path / "mixed.ndjson"
    path.write_bytes(
        b"\n".join([good[0], b"{not json", foreign, orjson.dumps(invalid), good[2]]) + b"\n"
    )
    stats = load_ndjson(exchange.ingestor, path, hospital_id=_largest(city).stem)
    assert stats.units == 3 and stats.dead_letters == 2 and stats.rejected == 1
    with exchange.store.read() as conn:
        reasons = [r.reason for r in conn.execute(select(DEAD.c.reason))]
    assert len(reasons) == 3
    assert any("not JSON" in r for r in reasons)
    assert any("hospital elsewhere" in r for r in reasons)
    assert any("status" in r for r in reasons)


def test_hl7_folder_gives_the_same_results_and_resumes(exchange: Exchange, city: Path) -> None:
    folder = max((city / "hl7").iterdir(), key=lambda p: sum(f.stat().st_size for f in p.iterdir()))
    stats = load_hl7_folder(exchange.ingestor, folder, batch_size=4)
    assert stats.rejected == 0 and stats.dead_letters == 0 and stats.units > 4
    expected = _observations(city / "fhir" / f"{folder.name}.ndjson")
    assert _count(exchange, "Observation") == len(expected)
    cursor = exchange.ingestor.cursor(folder.name, HL7_ADAPTER, f"hl7:{folder.name}")
    assert cursor is not None and cursor.startswith("00001.hl7#")
    again = load_hl7_folder(exchange.ingestor, folder, batch_size=4)
    assert again.units == 0
    # The FHIR export of the same orders updates the same results instead of adding new ones.
    load_ndjson(exchange.ingestor, city / "fhir" / f"{folder.name}.ndjson")
    assert _count(exchange, "Observation") == len(expected)


def test_validation_workers_change_nothing_but_where_the_check_runs(
    sqlite_url: str, city: Path, tmp_path: Path
) -> None:
    from hie import migrate
    from hie.index.store import create_engine
    from hie.services import build_exchange
    from hie.settings import Settings

    path = _largest(city)
    lines = path.read_bytes().splitlines()
    first = next(n for n, x in enumerate(lines) if b'"Observation"' in x)
    invalid = orjson.loads(lines[first])
    invalid["entry"][1]["resource"]["valueQuantity"] = {"value": "many"}
    lines[first] = orjson.dumps(invalid)
    broken = tmp_path / path.name
    broken.write_bytes(b"\n".join(lines) + b"\n")
    other = f"sqlite:///{tmp_path / 'other.db'}"
    engine = create_engine(other)
    migrate.upgrade(engine)
    engine.dispose()
    outcomes = []
    for url, workers in ((sqlite_url, 1), (other, 0)):
        exchange = build_exchange(Settings(database_url=url, jwt_secret="x" * 40))
        try:
            stats = load_ndjson(exchange.ingestor, broken, batch_size=10, workers=workers)
            counts = [_count(exchange, k) for k in ("Observation", "DiagnosticReport", "Patient")]
            outcomes.append((stats.units, stats.rejected, stats.errors, counts))
        finally:
            exchange.store.engine.dispose()
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][1] == 1 and "Decimal" in outcomes[0][2][0]


def test_batches_are_one_transaction_per_batch(exchange: Exchange, city: Path) -> None:
    seen: list[int] = []
    real = exchange.ingestor.ingest

    class Counting:
        def ingest(self, batch: Batch) -> Any:
            seen.append(len(batch.units))
            return real(batch)

        def cursor(self, hospital_id: str, adapter: str, name: str) -> str | None:
            return exchange.ingestor.cursor(hospital_id, adapter, name)

    path = _largest(city)
    load_ndjson(Counting(), path, batch_size=6)
    n = len(path.read_bytes().splitlines())
    assert seen == [6] * (n // 6) + ([n % 6] if n % 6 else [])
