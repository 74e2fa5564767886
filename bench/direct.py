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
import hashlib
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson

from bench.bundles import bundle
from bench.events import CityPlan, Order, person_events
from hie import naming
from hie.fhirtime import instant
from hie.index.extract import extract
from hie.index.patients import MASTER_TAG
from hie.index.store import content_hash

JSON = dict[str, Any]
NOW = datetime(2025, 1, 1, tzinfo=UTC)
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


def _id(*parts: object) -> str:
    return hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=16).hexdigest()


class Rows:
    """Rows per table for one resident, latest version winning for current-state tables."""

    def __init__(self) -> None:
        self.current: dict[tuple[str, str], dict[str, list[JSON]]] = {}
        self.versions: list[JSON] = []
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
    ) -> None:
        rtype = res["resourceType"]
        key = (rtype, rid)
        version = 1 + sum(1 for v in self.versions if (v["type"], v["id"]) == key)
        meta = {"versionId": str(version), "lastUpdated": instant(NOW)}
        if hospital:
            meta["source"] = f"Organization/{hospital}"
        body_json = {"resourceType": rtype, "id": rid, "meta": meta}
        body_json.update((k, v) for k, v in res.items() if k not in body_json)
        body = orjson.dumps(body_json)
        self.versions.append(
            {
                "type": rtype,
                "id": rid,
                "version_id": version,
                "last_updated": NOW,
                "deleted": False,
                "body": body,
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
        newest: dict[tuple[str, str], int] = {}
        for v in self.versions:
            key = (v["type"], v["id"])
            newest[key] = max(newest.get(key, 0), v["version_id"])
        merged["resource_version"] = [
            v for v in self.versions if v["version_id"] < newest[(v["type"], v["id"])]
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
    patient = _id("patient", index)
    rows.other["exchange_patient"].append({"id": patient, "created": NOW, "merged_into": None})
    records: dict[str, JSON] = {}
    results = 0
    for event in person_events(plan, index):
        doc, _ = bundle(event)
        h = event.hospital.id
        entries = [(e["fullUrl"], e["resource"]) for e in doc["entry"]]
        record = _id("record", index, h)
        local = {entries[0][0]: f"Patient/{record}"}
        ids: list[str] = [record]
        for full_url, res in entries[1:]:
            ident = res["identifier"][0]
            rid = _id(res["resourceType"], h, ident["system"], ident["value"])
            local[full_url] = f"{res['resourceType']}/{rid}"
            ids.append(rid)
        for (_, res), rid in zip(entries, ids, strict=True):
            _rewrite(res, local)
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


def _rewrite(node: Any, local: dict[str, str]) -> None:
    stack = [node]
    while stack:
        cur = stack.pop()
        if isinstance(cur, dict):
            ref = cur.get("reference")
            if isinstance(ref, str) and ref in local:
                cur["reference"] = local[ref]
            stack.extend(v for v in cur.values() if isinstance(v, dict | list))
        elif isinstance(cur, list):
            stack.extend(v for v in cur if isinstance(v, dict | list))


class Writer:
    """Buffered raw writes, one transaction per flush (SQLite executemany / PostgreSQL COPY)."""

    def __init__(self, url: str, tables: tuple[str, ...] = TABLES) -> None:
        from sqlalchemy import inspect

        from hie.index.store import create_engine

        self.url = url
        engine = create_engine(url)
        insp = inspect(engine)
        self.columns = {t: [c["name"] for c in insp.get_columns(t)] for t in tables}
        for name in ("search_token", "search_string"):  # autoincrement keys: the database's
            if name in self.columns:
                self.columns[name].remove("pk")
        # the same bind processing SQLAlchemy applies (DateTime format on SQLite, booleans)
        from hie.index import tables as t

        meta = t.SQLModel.metadata
        self.procs = {
            name: [
                meta.tables[name].c[c].type._cached_bind_processor(engine.dialect)
                for c in self.columns[name]
            ]
            for name in tables
        }
        engine.dispose()
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
        cols, procs = self.columns[table], self.procs[table]
        for r in rows:
            self.buffer[table].append(
                tuple(p(r.get(c)) if p else r.get(c) for c, p in zip(cols, procs, strict=True))
            )
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
            self.sqlite.execute("ANALYZE")
            self.sqlite.close()
        else:
            self.pg.execute("ANALYZE")
            self.pg.commit()
            self.pg.close()


def load(url: str, patients: int, hospitals: int, *, first: int = 0, seed: int = 20240601) -> int:
    """Write residents ``first``… into ``url`` (migrated); returns the number of results."""
    plan = CityPlan(seed=seed, hospitals=hospitals)
    writer = Writer(url)
    results = 0
    started = time.perf_counter()
    for n in range(first, first + patients):
        rows, count = resident_rows(plan, n)
        results += count
        for table, values in rows.tables():
            writer.add(table, values)
        if writer.pending > 200_000:
            writer.flush()
            rate = results / (time.perf_counter() - started)
            print(f"\r{n - first + 1:,} residents, {results:,} results ({rate:,.0f}/s)", end="")
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
