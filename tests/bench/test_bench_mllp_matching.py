"""The MLLP and patient-matching benchmarks measure what they claim, on both backends.

* MLLP (bench/mllp.py): ``hie serve``'s own listener, 20 senders over TCP; every message is
  acknowledged and the index holds exactly the results acknowledged AA; an order's
  correction travels on the same connection after its original.
* Matching (bench/matching.py): the bench-only loader writes the identity rows the registry
  reads, so the real ``Mpi.decide`` finds the held-back records' people and links them right.

Written for issue 8 (benchmarks). Data: a tiny synthetic city (bench/city.py) and a small
synthetic population (bench/population.py), both generated here from fixed seeds.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.city import generate
from bench.floors import drop_database
from bench.matching import _chunk_job, load_population, time_matches
from bench.mllp import result_keys, run_mllp, select_messages, shares

pytestmark = pytest.mark.slow


def _oru(order: str, status: str, tests: list[str]) -> bytes:
    segs = [
        f"MSH|^~\\&|LIS|h001|HIE|SZHIE|20240101||ORU^R01|{order}{status}|P|2.5.1",
        "PID|1||1^^^h001^MR",
        f"OBR|1||{order}|58410-2^CBC^LN|||20240101|||||||||||||||20240101|||{status}",
        *(f"OBX|{n}|NM|{t}^x^LN||1||||||{status}" for n, t in enumerate(tests, 1)),
    ]
    return ("\r".join(segs) + "\r").encode()


def test_an_orders_versions_share_a_sender_in_sequence() -> None:
    messages = [_oru(f"ORD{n}", "F", ["718-7"]) for n in range(50)]
    messages.append(_oru("ORD7", "C", ["718-7", "789-8"]))
    parts = shares(messages, 20)
    assert sum(map(len, parts)) == 51 and sum(1 for p in parts if p) > 10
    mine = next(p for p in parts if _oru("ORD7", "F", ["718-7"]) in p)
    assert mine.index(_oru("ORD7", "F", ["718-7"])) < mine.index(messages[-1])
    assert result_keys(messages[-1]) == [(b"h001", b"ORD7", b"718-7"), (b"h001", b"ORD7", b"789-8")]


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("city")
    generate(out, patients=4, hospitals=2, seed=8)
    return out


def _own_db(database_url: str, tmp_path: Path) -> str:
    """A database the benchmark may drop and recreate (it starts from a fresh one)."""
    if database_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'mllp.db'}"
    base, _, name = database_url.rpartition("/")
    return f"{base}/{name}_mllp"


def test_mllp_senders_get_every_ack_and_the_index_holds_the_acked_results(
    database_url: str, city: Path, tmp_path: Path
) -> None:
    db = _own_db(database_url, tmp_path)
    report, sent = run_mllp(db, city, 1000, tmp_path, senders=20)
    stats = report.stats
    assert stats.messages == len(sent) == len(select_messages(city, 1000)) > 20
    assert stats.acks == {"AA": len(sent)}, stats.first_error
    assert stats.results_aa >= stats.distinct_results_aa > 0
    assert report.observations == stats.distinct_results_aa
    if not db.startswith("sqlite"):
        drop_database(db)


def test_directly_loaded_population_is_found_by_the_real_matcher(
    database_url: str, tmp_path: Path
) -> None:
    load, held = load_population(database_url, 400, 30, cache=tmp_path, workers=1)
    assert load.persons > 350 and load.rows > 10 * load.persons and len(held) == 30
    cached = sorted(tmp_path.glob("chunk-*.pickle.gz"))
    assert len(cached) == 1 and _chunk_job((0, 400, 30, tmp_path))[1:] == (held, 0.0)
    report = time_matches(database_url, load.persons, held)
    assert report.known == 30 and report.known_linked_wrong == 0
    assert report.known_linked_right >= 20, report.outcomes
    assert report.matches_per_s > 0 and report.p99_ms >= report.p50_ms > 0
    assert report.floor_per_s > 0 and report.candidates_mean > 0
