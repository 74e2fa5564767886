"""Patient matching against a loaded population: matches/s and latency of the index's real path.

    python -m bench.matching --db sqlite:////tmp/match.db --population 100000 --probes 3000

A population of ``N`` synthetic people (``bench/population.py``: errors, namesakes, twins,
foreigners; 1-3 hospital records each) is written straight into the exchange's identity
tables by a bench-only loader: exchange patients, hospital records, identifiers, each
person's merged traits and blocking keys, exactly the rows ``Mpi.refresh`` and
``PatientRegistry.link_record`` keep, linked by the generator's ground truth instead of the
matcher (running the matcher a million times is what is being measured, not how to load).
Records the exchange would refuse (a national ID failing GB 11643) are left out, as ingest
refuses them.

Then a few thousand incoming records are matched one at a time on one connection, through
what ingest calls for each new hospital Patient record (``PatientRegistry.link_record``
before it writes anything): ``hie.identity.from_patient`` then ``Mpi.decide`` over the SQL
directory (identifier lookups, blocking-key candidates, their traits, scoring). Two thirds
are further records of people already in the population (held back from the load, with
their own errors: another hospital, a typo, no ID...), one third are new people.

The floor is the indexed SQL lookup of the candidate block alone (the blocking keys' patients
and their traits, one statement through the bare driver) for the same records, same run.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import json
import os
import pickle
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bench.population import TODAY, Population
from bench.processes import in_order
from hie import naming
from hie.identity.blocking import blocking_keys, query_keys
from hie.identity.traits import Traits, from_patient
from hie.outcome import Invalid

JSON = dict[str, Any]
CHUNK = 20_000  # people per generator run (its memory is per chunk, not per population)
NOW = datetime(2026, 1, 1, tzinfo=UTC)
# column order of each table as created (checked against the database before writing)
COLUMNS = {
    "exchange_patient": ("id", "created", "merged_into"),
    "patient_record": ("record_id", "patient_id", "hospital_id", "rule", "score"),
    "patient_identifier": ("system", "value", "record_id", "patient_id"),
    "patient_traits": ("patient_id", "traits"),
    "patient_block": ("key", "patient_id"),
}
TABLES = tuple(COLUMNS)
Rows = dict[str, list[tuple[Any, ...]]]
SEED = 20261125
BLOCK_SQL = (
    "SELECT patient_id, traits FROM patient_traits WHERE patient_id IN "
    "(SELECT patient_id FROM patient_block WHERE key IN ({marks}))"
)


@dataclass(frozen=True)
class Probe:
    patient: JSON
    truth: str | None  # the exchange patient the person was loaded as; None: a new person


def _patient_id(chunk: int, person: str) -> str:
    return hashlib.blake2b(f"{chunk}|{person}".encode(), digest_size=16).hexdigest()


def _namespaced(patient: JSON, prefix: str) -> JSON:
    """MRNs made unique across generator chunks (each chunk numbers its MRNs from scratch)."""
    out = dict(patient)
    out["identifier"] = [
        {**i, "value": f"{prefix}{i['value']}"} if naming.mrn_hospital(i["system"]) else i
        for i in patient["identifier"]
    ]
    return out


def chunk_rows(chunk: int, persons: int, hold: int) -> tuple[Rows, list[Probe]]:
    """The identity rows of one generator chunk, and up to ``hold`` records held back from
    it (the last record of people with several) as incoming records of known people."""
    pop = Population(persons, SEED + chunk)
    by_person: dict[str, list[JSON]] = {}
    for record in pop.records:
        by_person.setdefault(record.person, []).append(
            {
                "id": f"bp{chunk}-{record.hospital}-{record.patient['identifier'][0]['value']}",
                "hospital": record.hospital,
                "patient": _namespaced(record.patient, f"{chunk}-" if chunk else ""),
            }
        )
    rows: Rows = {t: [] for t in TABLES}
    held: list[Probe] = []
    for person, records in by_person.items():
        pid = _patient_id(chunk, person)
        keep = records
        if len(held) < hold and len(records) > 1:
            keep = records[:-1]
            held.append(Probe(records[-1]["patient"], pid))
        merged: Traits | None = None
        for rec in keep:
            try:
                traits = from_patient(rec["patient"], today=TODAY)
            except Invalid:
                continue  # ingest refuses it: not in the index
            merged = merged.merge(traits) if merged else traits
            rows["patient_record"].append((rec["id"], pid, rec["hospital"], "bench:direct", None))
            idents = {(str(i["system"]), str(i["value"])) for i in rec["patient"]["identifier"]}
            rows["patient_identifier"] += [(s, v, rec["id"], pid) for s, v in sorted(idents)]
        if merged is None:
            held = [h for h in held if h.truth != pid]
            continue
        rows["exchange_patient"].append((pid, NOW, None))
        rows["patient_traits"].append((pid, orjson.dumps(merged.to_json()).decode()))
        keys = sorted({k[:128] for k in blocking_keys(merged)})
        rows["patient_block"] += [(k, pid) for k in keys]
    return rows, held


def _chunk_job(
    args: tuple[int, int, int, Path | None],
) -> tuple[Rows, list[Probe], float]:
    """One chunk's rows, from the cache when an earlier run (or backend) generated them;
    returns the seconds spent generating (0 from the cache)."""
    chunk, persons, hold, cache = args
    name = f"chunk-v2-{SEED}-{chunk:04d}-{persons}-{hold}.pickle.gz"
    path = cache / name if cache else None
    if path is not None and path.exists():
        with gzip.open(path, "rb") as f:
            rows, held = pickle.load(f)
        return rows, held, 0.0
    started = time.perf_counter()
    rows, held = chunk_rows(chunk, persons, hold)
    seconds = time.perf_counter() - started
    if path is not None:
        tmp = path.with_suffix(".tmp")
        with gzip.open(tmp, "wb", compresslevel=1) as f:
            pickle.dump((rows, held), f, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(path)
    return rows, held, seconds


def new_people(count: int) -> list[Probe]:
    """First records of people who are not in the population."""
    pop = Population(count, SEED - 1)
    seen: set[str] = set()
    out: list[Probe] = []
    for record in pop.records:
        if record.person not in seen and len(out) < count:
            seen.add(record.person)
            out.append(Probe(_namespaced(record.patient, "new-"), None))
    return out


@dataclass
class LoadReport:
    persons: int = 0
    rows: int = 0
    seconds: float = 0.0  # wall time of the whole load, generation included
    generate_s: float = 0.0  # seconds the generator workers spent, summed (0: all cached)
    write_s: float = 0.0  # wall time of the raw writes


def load_population(
    url: str, persons: int, held: int, *, cache: Path | None = None, workers: int = 0
) -> tuple[LoadReport, list[Probe]]:
    """Write ``persons`` people into ``url`` (migrated, empty); returns the held-back records.

    The generator's rows are kept in ``cache`` (deterministic from the seed), so the second
    backend and later runs only pay for the write, as the city is generated once per size.
    """
    from bench.direct import Writer

    started = time.perf_counter()
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
    writer = Writer(url, TABLES)
    for table, cols in COLUMNS.items():
        if tuple(writer.columns[table]) != cols:
            raise RuntimeError(f"{table} columns are {writer.columns[table]}, not {cols}")
    jobs = []
    left, chunk = persons, 0
    while left > 0:
        n = min(CHUNK, left)
        jobs.append((chunk, n, held if chunk == 0 else 0, cache))
        left -= n
        chunk += 1
    report = LoadReport()
    probes: list[Probe] = []
    workers = workers or min(len(os.sched_getaffinity(0)), len(jobs))
    results: Iterator[tuple[Rows, list[Probe], float]]
    if workers > 1:
        pool = ProcessPoolExecutor(workers)
        results = in_order(pool, _chunk_job, jobs, 2 * workers)
    else:
        pool = None
        results = map(_chunk_job, jobs)
    try:
        for rows, got, generate_s in results:
            report.generate_s += generate_s
            probes += got
            t = time.perf_counter()
            for table, values in rows.items():
                writer.add_tuples(table, values)
                report.rows += len(values)
            report.persons += len(rows["exchange_patient"])
            writer.flush()
            report.write_s += time.perf_counter() - t
    finally:
        if pool is not None:
            pool.shutdown()
    t = time.perf_counter()
    writer.close()  # ANALYZE
    report.write_s += time.perf_counter() - t
    report.seconds = time.perf_counter() - started
    return report, probes


# -- the timed part --------------------------------------------------------------------------


@dataclass
class MatchReport:
    population: int
    probes: int
    matches_per_s: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    cpu_ms: float = 0.0  # mean thread CPU per match
    floor_per_s: float = 0.0
    floor_p50_ms: float = 0.0
    floor_p99_ms: float = 0.0
    candidates_mean: float = 0.0
    outcomes: dict[str, int] = field(default_factory=dict)
    known_linked_right: int = 0
    known_linked_wrong: int = 0
    known: int = 0
    new_kept_new: int = 0
    new: int = 0


def _pct(sorted_ms: list[float], q: float) -> float:
    return sorted_ms[min(len(sorted_ms) - 1, int(len(sorted_ms) * q))] if sorted_ms else 0.0


def block_floor(url: str, keys: list[list[str]]) -> tuple[list[float], float]:
    """Latencies (ms) of the candidate-block SQL through the bare driver, and mean rows."""
    if url.startswith("sqlite"):
        import sqlite3

        conn: Any = sqlite3.connect(url.removeprefix("sqlite:///"))
        mark = "?"
    else:
        import psycopg

        conn = psycopg.connect(
            url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True
        )
        mark = "%s"
    times: list[float] = []
    rows = 0
    for pass_ in range(2):  # the first pass warms the caches, as the matcher's would be
        for k in keys:
            if not k:
                continue
            sql = BLOCK_SQL.format(marks=",".join([mark] * len(k)))
            t = time.perf_counter_ns()
            got = conn.execute(sql, k).fetchall()
            if pass_:
                times.append((time.perf_counter_ns() - t) / 1e6)
                rows += len(got)
    conn.close()
    return times, rows / len(times) if times else 0.0


def time_matches(url: str, population: int, probes: list[Probe]) -> MatchReport:
    """Match each probe as ingest does before it writes; the floor on the same records."""
    from hie.identity.linker import Link, NewPatient, Review
    from hie.services import build_exchange
    from hie.settings import Settings

    report = MatchReport(population, len(probes))
    keys: list[list[str]] = []
    for p in probes:
        try:
            keys.append(query_keys(from_patient(p.patient)))
        except Invalid:
            keys.append([])
    floor_ms, report.candidates_mean = block_floor(url, keys)
    floor_ms.sort()
    report.floor_per_s = len(floor_ms) / (sum(floor_ms) / 1e3) if floor_ms else 0.0
    report.floor_p50_ms, report.floor_p99_ms = _pct(floor_ms, 0.5), _pct(floor_ms, 0.99)

    exchange = build_exchange(Settings(database_url=url, jwt_secret="bench-" + "x" * 32))
    registry = exchange.registry
    mpi = registry.mpi
    outcomes: Counter[str] = Counter()
    times: list[float] = []
    cpu_ns = 0
    with exchange.store.read() as conn:
        for p in probes[: min(50, len(probes))]:  # warm-up: caches and first-call costs
            with contextlib.suppress(Invalid):
                mpi.decide(conn, registry, from_patient(p.patient))
        for p in probes:
            t, c = time.perf_counter_ns(), time.thread_time_ns()
            try:
                decision: Link | NewPatient | Review | None = mpi.decide(
                    conn, registry, from_patient(p.patient)
                )
            except Invalid:
                decision = None
            times.append((time.perf_counter_ns() - t) / 1e6)
            cpu_ns += time.thread_time_ns() - c
            kind: str = "refused" if decision is None else decision.action
            if isinstance(decision, Link):
                kind = decision.rule
            outcomes[kind] += 1
            if p.truth is None:
                report.new += 1
                report.new_kept_new += isinstance(decision, NewPatient)
            else:
                report.known += 1
                if isinstance(decision, Link):
                    right = decision.patient_id == p.truth
                    report.known_linked_right += right
                    report.known_linked_wrong += not right
    exchange.store.engine.dispose()
    total_s = sum(times) / 1e3
    times.sort()
    report.matches_per_s = len(times) / total_s if total_s else 0.0
    report.p50_ms, report.p99_ms = statistics.median(times), _pct(times, 0.99)
    report.cpu_ms = cpu_ns / 1e6 / len(times) if times else 0.0
    report.outcomes = dict(outcomes)
    return report


def run_matching(
    url: str, population: int, probes: int, cache: Path | None = None
) -> tuple[LoadReport, MatchReport]:
    """Fresh database ``url``, the population loaded directly, then the timed matches."""
    from bench.floors import fresh_database

    fresh_database(url)
    known = probes - probes // 3
    load, held = load_population(url, population, known, cache=cache)
    incoming = held[:known] + new_people(probes - len(held[:known]))
    return load, time_matches(url, load.persons, incoming)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--population", type=int, default=100_000)
    parser.add_argument("--probes", type=int, default=3000)
    parser.add_argument("--cache", type=Path, help="folder keeping the generated rows")
    args = parser.parse_args()
    load, match = run_matching(args.db, args.population, args.probes, args.cache)
    print(json.dumps({"load": asdict(load), "match": asdict(match)}, indent=1))


if __name__ == "__main__":
    main()
