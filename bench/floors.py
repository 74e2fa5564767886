"""Floors: the least work any implementation must do, measured on the same machine, same run.

* **Ingest floor** = parse (orjson) + FHIR model validation (``hie.fhir.check_model``, i.e.
  fhir.resources) of every resource in the input + a raw ``executemany`` (SQLite) or
  ``COPY`` (PostgreSQL) of *the very rows the real load wrote*, copied table by table from
  the loaded database into a fresh one with the same schema. Parse and validation are timed
  on a sample of lines spread over the input; the write is timed on all rows.
* **HL7 floor** = ``hl7.parse`` (python-hl7) of each message + the same raw write.
* **SQL floor** for a lookup = the hand-written indexed SQL through the bare DB driver.
"""

from __future__ import annotations

import itertools
import sqlite3
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import text

from hie import migrate
from hie.fhir import check_model
from hie.index.store import create_engine

SKIP_TABLES = frozenset({"alembic_version"})


@dataclass
class ParseFloor:
    lines: int
    results: int
    resources: int
    parse_s: float
    validate_s: float

    @property
    def per_result_s(self) -> float:
        return (self.parse_s + self.validate_s) / self.results if self.results else 0.0


def sample_lines(files: list[Path], every: int) -> Iterator[bytes]:
    """Every ``every``-th non-empty line over all files (a spread, not just the start)."""
    n = 0
    for path in files:
        with path.open("rb") as f:
            for line in f:
                if line.strip():
                    if n % every == 0:
                        yield line
                    n += 1


def parse_validate(lines: list[bytes]) -> ParseFloor:
    for x in lines[:5]:
        orjson.loads(x)
    t = time.perf_counter()
    docs = [orjson.loads(x) for x in lines]
    parse_s = time.perf_counter() - t
    resources = [
        e["resource"]
        for d in docs
        for e in (d.get("entry") if d.get("resourceType") == "Bundle" else [{"resource": d}])
    ]
    results = sum(1 for r in resources if r.get("resourceType") == "Observation")
    warm: dict[str, Any] = {}
    for r in resources:  # the first model of each type builds its validators: not the floor
        warm.setdefault(r["resourceType"], r)
    for r in warm.values():
        check_model(r)
    t = time.perf_counter()
    bad = 0
    for r in resources:
        bad += bool(check_model(r))
    validate_s = time.perf_counter() - t
    if bad:
        raise ValueError(f"{bad} resources in the floor sample are invalid")
    return ParseFloor(len(lines), results, len(resources), parse_s, validate_s)


def hl7_parse(folders: list[Path], every: int) -> tuple[int, int, float]:
    """(messages, results, seconds) for python-hl7 parsing every ``every``-th message."""
    from adapters.hl7v2.framing import split_messages

    bodies: list[str] = []
    n = 0
    for folder in folders:
        for path in sorted(folder.rglob("*.hl7")):
            for framed in split_messages(path.read_bytes()):
                if n % every == 0:
                    bodies.append(framed.body.decode("utf-8"))
                n += 1
    return parse_hl7_bodies(bodies)


def parse_hl7_bodies(bodies: list[str]) -> tuple[int, int, float]:
    """(messages, results, seconds) for python-hl7 parsing each message body."""
    import hl7

    t = time.perf_counter()
    results = 0
    for body in bodies:
        msg = hl7.parse(body)
        results += sum(1 for seg in msg if str(seg[0]) == "OBX")
    return len(bodies), results, time.perf_counter() - t


# -- the raw write -------------------------------------------------------------------------


def _tables(conn: Any) -> list[str]:
    names = [
        r[0]
        for r in conn.execute(
            text(
                "SELECT name FROM sqlite_master WHERE type='table'"
                if conn.dialect.name == "sqlite"
                # partitions are reached through their parent (COPY routes the rows)
                else "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = "
                "c.relnamespace WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') "
                "AND NOT c.relispartition"
            )
        )
    ]
    return [n for n in names if n not in SKIP_TABLES]


def fresh_database(url: str) -> None:
    """Create (or empty) the floor's target database and give it the product schema."""
    if url.startswith("sqlite"):
        path = Path(url.removeprefix("sqlite:///"))
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    else:
        base, _, name = url.rpartition("/")
        admin = create_engine(f"{base}/postgres").execution_options(isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
    engine = create_engine(url)
    migrate.upgrade(engine)
    engine.dispose()


def drop_database(url: str) -> None:
    """Drop a PostgreSQL database this module created (SQLite files are left to the caller)."""
    base, _, name = url.rpartition("/")
    admin = create_engine(f"{base}/postgres").execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def raw_write(src_url: str, dst_url: str, chunk: int = 5000) -> tuple[int, float]:
    """Copy every row of ``src`` into a fresh ``dst`` with the driver's bulk write; returns
    (rows, seconds spent writing). Reading the source is not timed."""
    fresh_database(dst_url)
    src = create_engine(src_url)
    rows_total = 0
    spent = 0.0
    with src.connect() as sconn:
        tables = _tables(sconn)
        if dst_url.startswith("sqlite"):
            dst = sqlite3.connect(dst_url.removeprefix("sqlite:///"), isolation_level=None)
            dst.execute("PRAGMA journal_mode=WAL")
            dst.execute("PRAGMA synchronous=NORMAL")
            for table in tables:
                result = sconn.execute(text(f'SELECT * FROM "{table}"'))
                cols = list(result.keys())
                sql = (
                    f'INSERT INTO "{table}" ({",".join(cols)}) VALUES ({",".join("?" * len(cols))})'
                )
                while batch := result.fetchmany(chunk):
                    values = [tuple(r) for r in batch]
                    t = time.perf_counter()
                    dst.execute("BEGIN")
                    dst.executemany(sql, values)
                    dst.execute("COMMIT")
                    spent += time.perf_counter() - t
                    rows_total += len(values)
            dst.close()
        else:
            import psycopg

            dsn = dst_url.replace("postgresql+psycopg://", "postgresql://")
            with psycopg.connect(dsn) as pg:
                for table in tables:
                    result = sconn.execute(text(f'SELECT * FROM "{table}"'))
                    cols = list(result.keys())
                    while batch := result.fetchmany(chunk):
                        values = [tuple(r) for r in batch]
                        t = time.perf_counter()
                        with (
                            pg.cursor() as cur,
                            cur.copy(f'COPY "{table}" ({",".join(cols)}) FROM STDIN') as copy,
                        ):
                            for row in values:
                                copy.write_row(row)
                        pg.commit()
                        spent += time.perf_counter() - t
                        rows_total += len(values)
    src.dispose()
    return rows_total, spent


# -- lookups ------------------------------------------------------------------------------

OBS_SQL = (
    "SELECT r.id, r.body FROM search_token t "
    "JOIN resource r ON r.type = 'Observation' AND r.id = t.res_id "
    "WHERE t.patient_id = {p} AND t.type = 'Observation' AND t.param = 'code' "
    "AND t.code = {p} AND t.date >= {p} ORDER BY t.date DESC LIMIT 50"
)
# Five codes, each read back as far as hie reads it (its item's window, or three years) and no
# later than hie reads (a day after the instant asked)
PRIOR_SQL = (
    "SELECT id, body FROM ("
    + " UNION ALL ".join(
        [
            "SELECT r.id, r.body, t.date FROM search_token t "
            "JOIN resource r ON r.type = 'Observation' AND r.id = t.res_id "
            "WHERE t.patient_id = {p} AND t.type = 'Observation' AND t.param = 'code' "
            "AND t.code = {p} AND t.date >= {p} AND t.date <= {p}"
        ]
        * 5
    )
    + ") AS hits ORDER BY date DESC LIMIT 100"
)


def sql_latency(
    url: str, sql: str, params: list[tuple[Any, ...]], repeat: int = 3
) -> dict[str, float]:
    """p50/p99 (ms) of ``sql`` through the bare driver, each parameter set ``repeat`` times.

    On PostgreSQL rows come in binary format, as hie's own hot reads take them: bytea bodies
    in text format are hex, and reading them so would make the floor slower than hie's way.
    """
    binary: dict[str, bool] = {}
    if url.startswith("sqlite"):
        conn: Any = sqlite3.connect(url.removeprefix("sqlite:///"))
        stmt = sql.format(p="?")
    else:
        binary["binary"] = True
        import psycopg

        conn = psycopg.connect(
            url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True
        )
        stmt = sql.format(p="%s")
    times: list[float] = []
    rows = 0
    for args in itertools.islice(itertools.cycle(params), len(params) * repeat):
        t = time.perf_counter_ns()
        cur = conn.execute(stmt, args, **binary)
        got = cur.fetchall()
        times.append((time.perf_counter_ns() - t) / 1e6)
        rows += len(got)
    conn.close()
    times.sort()
    return {
        "p50_ms": statistics.median(times),
        "p99_ms": times[min(len(times) - 1, int(len(times) * 0.99))],
        "rows_per_query": rows / len(times) if times else 0.0,
        "queries": len(times),
    }


def query_plan(url: str, sql: str, args: tuple[Any, ...]) -> str:
    """The plan the database picks (EXPLAIN QUERY PLAN / EXPLAIN), for the index check."""
    if url.startswith("sqlite"):
        conn: Any = sqlite3.connect(url.removeprefix("sqlite:///"))
        plan = " | ".join(
            str(r[-1]) for r in conn.execute("EXPLAIN QUERY PLAN " + sql.format(p="?"), args)
        )
    else:
        import psycopg

        conn = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"))
        plan = " | ".join(r[0].strip() for r in conn.execute("EXPLAIN " + sql.format(p="%s"), args))
    conn.close()
    return plan
