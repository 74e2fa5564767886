"""HL7 v2 folders mapped by a worker process in chunks of messages (hie/bulk.py): the same
results as mapping in the writer, small first batches, and a resume that skips what landed.

Written for issue 8 (bulk ingest speed). Input is a tiny synthetic city (bench/city.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from adapters.base import Batch
from bench.city import generate
from hie import bulk
from hie.bulk import HL7_ADAPTER, load_hl7_folder, worker_pool
from hie.exchange import Exchange
from hie.fhirtime import now_utc
from hie.index import tables as t

R = t.Resource.__table__  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("city")
    generate(out, patients=12, hospitals=2, seed=8)
    return max((out / "hl7").iterdir(), key=lambda p: sum(f.stat().st_size for f in p.iterdir()))


def _sources(exchange: Exchange) -> set[tuple[str, str, int]]:
    with exchange.store.read() as conn:
        return {
            (r.type, r.source_id, r.version_id)
            for r in conn.execute(select(R.c.type, R.c.source_id, R.c.version_id))
            if r.type != "Patient"
        }


def test_chunks_in_a_worker_store_what_the_writer_alone_stores(
    exchange: Exchange, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bulk, "HL7_CHUNK", 3)  # several chunks per file, a file ends mid-batch
    sizes: list[int] = []
    real = exchange.ingestor.ingest

    class Counting:
        def ingest(self, batch: Batch) -> Any:
            sizes.append(len(batch.units) + len(batch.dead_letters))
            return real(batch)

        def cursor(self, hospital_id: str, adapter: str, name: str) -> str | None:
            return exchange.ingestor.cursor(hospital_id, adapter, name)

    with worker_pool(1) as pool:
        stats = load_hl7_folder(Counting(), folder, batch_size=100, pool=pool)  # type: ignore[arg-type]
    assert stats.rejected == 0 and stats.dead_letters == 0 and stats.units > 32
    assert stats.bytes_done == stats.bytes_total
    assert sizes[0] == 32 and sizes[1] == min(64, stats.units - 32)  # small first batches
    with_worker = _sources(exchange)
    cursor = exchange.ingestor.cursor(folder.name, HL7_ADAPTER, f"hl7:{folder.name}")
    assert cursor is not None
    with worker_pool(1) as pool:
        again = load_hl7_folder(exchange.ingestor, folder, batch_size=100, pool=pool)
    assert again.units == 0 and again.resumed_from == cursor
    with exchange.store.write() as conn:  # forget everything, then load without a worker
        for table in reversed(t.SQLModel.metadata.sorted_tables):
            if table.name not in ("alembic_version", "hospital"):
                conn.execute(table.delete())
    alone = load_hl7_folder(exchange.ingestor, folder, batch_size=100)
    assert alone.units == stats.units
    assert _sources(exchange) == with_worker
    with exchange.store.read() as conn:
        assert conn.execute(select(func.count()).select_from(R)).scalar_one() > stats.units


def test_resume_inside_a_file_skips_the_messages_that_landed(
    exchange: Exchange, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bulk, "HL7_CHUNK", 5)
    first = sorted(folder.glob("*.hl7"))[0]
    # a cursor as a kill after message 7 of the first file would leave it
    with exchange.store.write() as conn:
        exchange.ingestor._save_cursor(
            conn,
            folder.name,
            HL7_ADAPTER,
            bulk.Cursor(f"hl7:{folder.name}", f"{first.name}#7"),
            now_utc(),
        )
    with worker_pool(1) as pool:
        stats = load_hl7_folder(exchange.ingestor, folder, batch_size=50, pool=pool)
    alone = load_hl7_folder(exchange.ingestor, folder, batch_size=50)
    assert alone.units == 0
    messages = sum(f.read_bytes().count(b"MSH|") for f in folder.glob("*.hl7"))
    assert stats.units + stats.dead_letters == messages - 7
