"""Bench-only loader: the city's rows written straight into the index tables, for lookups.

    python -m bench.direct --db URL --patients 230000 --hospitals 120

Not a product path and never used to measure ingest: it exists so the lookup benchmarks can
run against 10 million results without first spending hours in the real ingest. The rows are
the ones ``Store.put`` and the patient registry would write for the same city: the stored
JSON (id, meta, references rewritten to ``Patient/{record}`` and ``Observation/{id}``), its
superseded versions, the type index row and the search tokens from ``hie.index.extract`` (the very
function the store uses), the patient record, identifiers and exchange patient, and the
exchange patient's master Patient. Differences: ids are ordered hex strings (so inserts are
appends), patient matching tables (traits, blocks) are not filled, and the load runs as raw
``executemany`` (SQLite) or ``COPY`` (PostgreSQL) in large transactions. The results say so.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import os
import re
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from typing import Any

import orjson

from bench.bundles import bundle
from bench.events import CityPlan, Order, person_events
from bench.processes import in_order
from hie import naming
from hie.fhirtime import instant
from hie.index.extract import extract
from hie.index.patients import MASTER_TAG
from hie.index.store import content_hash, result_facts

JSON = dict[str, Any]
NOW = datetime(2025, 1, 1, tzinfo=UTC)
NOW_INSTANT = instant(NOW)
TABLES = (
    "exchange_patient",
    "patient_record",
    "patient_identifier",
    "resource",
    "resource_version",
    "observation_index",
    "diagnostic_report_index",
    "imaging_study_index",
    "patient_index",
    "search_token",
    "search_string",
)
INDEX_OF = {
    "Observation": "observation_index",
    "DiagnosticReport": "diagnostic_report_index",
    "ImagingStudy": "imaging_study_index",
    "Patient": "patient_index",
}


def _id(resident: int, *parts: object) -> str:
    """32 hex characters: the resident's number, then a hash of the rest. Every id of one
    resident shares the prefix and the prefixes grow with the load, so rows go in as appends
    to each index's B-tree instead of at random pages (ids the exchange makes are random
    UUIDs; this is a loader's shortcut for a 10M-result index, not the product's rule)."""
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=12).hexdigest()
    return f"{resident:08x}{digest}"


# a bundle's references to its own entries (urn:uuid:…), rewritten in the serialised bytes
_LOCAL_REF = re.compile(rb'"reference":"(urn:uuid:[0-9a-f-]{36})"')


class Rows:
    """Rows per table for one resident, latest version winning for current-state tables."""

    def __init__(self) -> None:
        self.current: dict[tuple[str, str], dict[str, list[JSON]]] = {}
        self.versions: list[JSON] = []
        self.count: dict[tuple[str, str], int] = {}
        self.other: dict[str, list[JSON]] = {t: [] for t in TABLES}

    def put(
        self,
        res: JSON,
        rid: str,
        *,
        hospital: str | None,
        source: str | None,
        patient: str,
        record: str | None,
        local: dict[str, str] | None = None,
    ) -> None:
        """The rows ``Store.put`` would write for ``res``; ``local`` maps the bundle's
        ``urn:uuid`` references to the stored ids (the ingest's reference rewriting)."""
        rtype = res["resourceType"]
        key = (rtype, rid)
        version = self.count[key] = self.count.get(key, 0) + 1
        meta = {"versionId": str(version), "lastUpdated": NOW_INSTANT}
        if hospital:
            meta["source"] = f"Organization/{hospital}"
        body_json = {"resourceType": rtype, "id": rid, "meta": meta}
        body_json.update((k, v) for k, v in res.items() if k not in body_json)
        body = orjson.dumps(body_json)
        if local:
            body = _LOCAL_REF.sub(
                lambda m: b'"reference":"%s"' % local[m[1].decode()].encode(), body
            )
            res = orjson.loads(body)  # as stored: the content hash covers rewritten references
        self.versions.append(
            {
                "type": rtype,
                "id": rid,
                "version_id": version,
                "last_updated": NOW,
                "deleted": False,
                "body": body,
                "patient_id": patient,
            }
        )
        rows: dict[str, list[JSON]] = {
            "resource": [
                {
                    "type": rtype,
                    "id": rid,
                    "version_id": version,
                    "last_updated": NOW,
                    "hospital_id": hospital,
                    "source_id": source,
                    "patient_id": patient,
                    "record_id": record,
                    "deleted": False,
                    "content_hash": content_hash(res),
                    "body": body,
                    # as stored: after the rewrite, the members' references are the ids
                    "facts": result_facts(res if local else body_json),
                }
            ]
        }
        if res.get("status") != "entered-in-error":
            ex = extract(body_json)
            table = INDEX_OF.get(rtype)
            if table:
                row = {"id": rid, "last_updated": NOW, **ex.row}
                row["hospital_id"] = hospital
                row["patient_id"] = patient
                rows[table] = [row]
            rows["search_token"] = [
                {
                    "type": rtype,
                    "res_id": rid,
                    "param": p,
                    "system": s[:255],
                    "code": c[:255],
                    "patient_id": patient,
                    "date": ex.date,
                }
                for p, s, c in dict.fromkeys(ex.tokens)
            ]
            rows["search_string"] = [
                {"type": rtype, "res_id": rid, "param": p, "value": v[:255]} for p, v in ex.strings
            ]
        self.current[key] = rows

    def tables(self) -> Iterator[tuple[str, list[JSON]]]:
        merged: dict[str, list[JSON]] = {t: list(v) for t, v in self.other.items()}
        # history holds only superseded versions; the current one is the resource row
        merged["resource_version"] = [
            v for v in self.versions if v["version_id"] < self.count[(v["type"], v["id"])]
        ]
        for rows in self.current.values():
            for table, values in rows.items():
                merged[table].extend(values)
        for table in TABLES:
            if merged[table]:
                yield table, merged[table]


def resident_rows(plan: CityPlan, index: int) -> tuple[Rows, int]:
    """All rows of resident ``index``; returns them and the number of results (Observations)."""
    rows = Rows()
    patient = _id(index, "patient")
    rows.other["exchange_patient"].append({"id": patient, "created": NOW, "merged_into": None})
    records: dict[str, JSON] = {}
    results = 0
    for event in person_events(plan, index):
        doc, _ = bundle(event)
        h = event.hospital.id
        entries = [(e["fullUrl"], e["resource"]) for e in doc["entry"]]
        record = _id(index, "record", h)
        local = {entries[0][0]: f"Patient/{record}"}
        ids: list[str] = [record]
        for full_url, res in entries[1:]:
            ident = res["identifier"][0]
            rid = _id(index, res["resourceType"], h, ident["system"], ident["value"])
            local[full_url] = f"{res['resourceType']}/{rid}"
            ids.append(rid)
        for (_, res), rid in zip(entries, ids, strict=True):
            if res["resourceType"] == "Patient":
                if rid not in records:
                    records[rid] = res
                    mrn = res["identifier"][0]
                    rows.put(
                        res,
                        rid,
                        hospital=h,
                        source=f"{mrn['system']}|{mrn['value']}",
                        patient=patient,
                        record=rid,
                        local=local,
                    )
                continue
            ident = res["identifier"][0]
            if isinstance(event, Order) and res["resourceType"] == "Observation":
                results += 1
            rows.put(
                res,
                rid,
                hospital=h,
                source=f"{ident['system']}|{ident['value']}",
                patient=patient,
                record=record,
                local=local,
            )
    idents: list[JSON] = [{"system": naming.EXCHANGE_PATIENT, "value": patient}]
    for rid, res in records.items():
        rows.other["patient_record"].append(
            {
                "record_id": rid,
                "patient_id": patient,
                "hospital_id": res["identifier"][0]["system"].rsplit("/", 1)[1],
                "rule": "bench:direct",
                "score": None,
            }
        )
        for i in res["identifier"]:
            rows.other["patient_identifier"].append(
                {
                    "system": i["system"],
                    "value": i["value"],
                    "record_id": rid,
                    "patient_id": patient,
                }
            )
            if i not in idents:
                idents.append(i)
    if records:
        newest = list(records.values())[-1]
        master: JSON = {
            "resourceType": "Patient",
            "meta": {"tag": [MASTER_TAG]},
            "identifier": idents,
            "name": newest.get("name", []),
            "gender": newest.get("gender"),
            "birthDate": newest.get("birthDate"),
            "link": [{"other": {"reference": f"Patient/{r}"}, "type": "seealso"} for r in records],
            "active": True,
        }
        rows.put(
            master,
            patient,
            hospital=None,
            source=f"exchange:{patient}",
            patient=patient,
            record=None,
        )
    return rows, results


class Shapes:
    """Each table's columns in the database's order and how a row dict becomes a tuple of
    driver values: the same bind processing SQLAlchemy applies (DateTime text on SQLite,
    booleans), memoised per value, because most times in a load repeat."""

    def __init__(self, url: str, tables: tuple[str, ...] = TABLES) -> None:
        from sqlalchemy import LargeBinary, inspect

        from hie.index import tables as t
        from hie.index.store import create_engine

        engine = create_engine(url)
        insp = inspect(engine)
        self.columns = {name: [c["name"] for c in insp.get_columns(name)] for name in tables}
        for name in ("search_token", "search_string"):  # autoincrement keys: the database's
            if name in self.columns:
                self.columns[name].remove("pk")
        meta = t.SQLModel.metadata
        self.procs = {
            name: [
                meta.tables[name].c[c].type._cached_bind_processor(engine.dialect)
                for c in self.columns[name]
            ]
            for name in tables
        }
        engine.dispose()
        # bytes go to the drivers as they are (SQLAlchemy would wrap them in a memoryview,
        # which cannot cross from a generator process)
        binary = {
            (name, c.name)
            for name in tables
            for c in meta.tables[name].c
            if isinstance(c.type, LargeBinary)
        }
        self._fix = {
            name: [
                (i, _memo(p))
                for i, p in enumerate(procs)
                if p and (name, self.columns[name][i]) not in binary
            ]
            for name, procs in self.procs.items()
        }

    def rows(self, table: str, dicts: list[JSON]) -> list[tuple[Any, ...]]:
        cols, fix = self.columns[table], self._fix[table]
        out = []
        for r in dicts:
            row = [r.get(c) for c in cols]
            for i, f in fix:
                if row[i] is not None:
                    row[i] = f(row[i])
            out.append(tuple(row))
        return out


def _memo(process: Any) -> Any:
    cache: dict[Any, Any] = {}

    def processed(value: Any) -> Any:
        try:
            return cache[value]
        except KeyError:
            if len(cache) > 100_000:
                cache.clear()
            cache[value] = out = process(value)
            return out

    return processed


@functools.cache
def _shapes(url: str) -> Shapes:
    return Shapes(url)


class Writer:
    """Buffered raw writes, one transaction per flush (SQLite executemany / PostgreSQL COPY)."""

    def __init__(self, url: str, tables: tuple[str, ...] = TABLES) -> None:
        self.url = url
        self.shapes = Shapes(url, tables)
        self.columns = self.shapes.columns
        self.procs = self.shapes.procs
        self.tables = tables
        self.buffer: dict[str, list[tuple[Any, ...]]] = {t: [] for t in tables}
        self.pending = 0
        if url.startswith("sqlite"):
            self.sqlite: sqlite3.Connection | None = sqlite3.connect(
                url.removeprefix("sqlite:///"), isolation_level=None
            )
            self.sqlite.execute("PRAGMA journal_mode=WAL")
            self.sqlite.execute("PRAGMA synchronous=OFF")
            self.sqlite.execute("PRAGMA cache_size=-1048576")
        else:
            import psycopg

            self.sqlite = None
            self.pg = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"))

    def add(self, table: str, rows: list[JSON]) -> None:
        self.extend(table, self.shapes.rows(table, rows))

    def extend(self, table: str, rows: list[tuple[Any, ...]]) -> None:
        """Rows already shaped (``Shapes.rows``): in column order, values processed."""
        self.buffer[table].extend(rows)
        self.pending += len(rows)

    def add_tuples(self, table: str, rows: list[tuple[Any, ...]]) -> None:
        """Rows already in the table's column order (cheaper than ``add`` for many rows)."""
        procs = self.procs[table]
        if any(procs):
            rows = [tuple(p(v) if p else v for v, p in zip(r, procs, strict=True)) for r in rows]
        self.buffer[table].extend(rows)
        self.pending += len(rows)

    def flush(self) -> None:
        if self.sqlite is not None:
            self.sqlite.execute("BEGIN")
            for table, rows in self.buffer.items():
                if rows:
                    cols = self.columns[table]
                    marks = ",".join("?" * len(cols))
                    sql = f"INSERT INTO {table} ({','.join(cols)}) VALUES ({marks})"
                    self.sqlite.executemany(sql, rows)
            self.sqlite.execute("COMMIT")
        else:
            with self.pg.cursor() as cur:
                for table, rows in self.buffer.items():
                    if rows:
                        names = ",".join(self.columns[table])
                        with cur.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                            for row in rows:
                                copy.write_row(row)
            self.pg.commit()
        self.buffer = {t: [] for t in self.tables}
        self.pending = 0

    def close(self) -> None:
        self.flush()
        if self.sqlite is not None:
            # sampled statistics (what `PRAGMA optimize` gathers): a full ANALYZE reads every
            # index of a 40 GB file
            self.sqlite.execute("PRAGMA analysis_limit=2000")
            self.sqlite.execute("ANALYZE")
            self.sqlite.close()
        else:
            self.pg.execute("ANALYZE")
            self.pg.commit()
            self.pg.close()


CHUNK = 100  # residents per generator job


@functools.cache
def _plan(seed: int, hospitals: int) -> CityPlan:
    return CityPlan(seed=seed, hospitals=hospitals)


def _chunk(job: tuple[str, int, int, int, int]) -> tuple[dict[str, list[tuple[Any, ...]]], int]:
    """One generator job (in a worker process): the shaped rows of ``count`` residents from
    ``first``, ready for the writer's executemany/COPY."""
    url, first, count, hospitals, seed = job
    plan, shapes = _plan(seed, hospitals), _shapes(url)
    out: dict[str, list[tuple[Any, ...]]] = {t: [] for t in TABLES}
    results = 0
    for n in range(first, first + count):
        rows, got = resident_rows(plan, n)
        results += got
        for table, values in rows.tables():
            out[table] += shapes.rows(table, values)
    return out, results


def load(
    url: str,
    patients: int,
    hospitals: int,
    *,
    first: int = 0,
    seed: int = 20240601,
    workers: int = 0,
) -> int:
    """Write residents ``first``… into ``url`` (migrated, empty); returns the number of results.

    Residents are generated in ``workers`` processes (default: one per core) while this one
    writes. The indexes stay: with ids ordered by resident nearly every insert is an append
    (dropping them and building them at the end measured slower: 62 s against 45 s for
    214,620 results, the same minute).
    """
    writer = Writer(url)
    results = 0
    started = time.perf_counter()
    jobs = [
        (url, n, min(CHUNK, first + patients - n), hospitals, seed)
        for n in range(first, first + patients, CHUNK)
    ]
    workers = workers or len(os.sched_getaffinity(0))
    done = 0
    with ProcessPoolExecutor(workers) as pool:
        for rows, count in in_order(pool, _chunk, jobs, 2 * workers):
            results += count
            done += len(rows["exchange_patient"])
            for table, values in rows.items():
                writer.extend(table, values)
            if writer.pending > 200_000:
                writer.flush()
                rate = results / (time.perf_counter() - started)
                print(f"\r{done:,} residents, {results:,} results ({rate:,.0f}/s)", end="")
    writer.flush()
    writer.close()
    print()
    return results


def main() -> None:
    from bench.floors import fresh_database

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--patients", type=int, required=True)
    parser.add_argument("--hospitals", type=int, required=True)
    parser.add_argument("--seed", type=int, default=20240601)
    args = parser.parse_args()
    fresh_database(args.db)
    started = time.perf_counter()
    results = load(args.db, args.patients, args.hospitals, seed=args.seed)
    print(f"{results:,} results in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
