"""Run every benchmark at one size and write a Markdown table and JSON of the results.

    python -m bench.run --size tiny|small|1m|10m --out bench/out/ [--pg postgresql+psycopg://postgres@127.0.0.1:15442]

Every figure comes with a floor measured in the same run (``bench.floors``) and their ratio
(``bench.figures``). The ``tiny`` size is the smoke test that the test suite runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import floors, lookups, wrk
from bench.city import SIZES, generate
from bench.figures import Figure, Run
from bench.loads import run_load
from bench.poster import post_bundles
from bench.processes import ROOT, SERVER_CORE, free_port, server, stop, taskset, wait_http
from hie.auth import ALL_SCOPES, mint

SECRET = "bench-secret-" + "x" * 32


@dataclass(frozen=True)
class Plan:
    wrk_seconds: float
    http_bundles: int  # bundles posted over HTTP per backend
    hl7_hospitals: int  # hospitals whose HL7 folders are loaded (0 = all)
    floor_every: int  # parse/validate floor: every n-th line
    queries: int
    startup_runs: int
    probe_patients: int  # residents of the slice loaded into an empty and a full index
    workers: int  # bulk loads: validation/mapping processes beside the writer
    mllp_messages: int = 0  # HL7 v2 messages sent over MLLP by the 20 senders
    match_populations: tuple[int, ...] = ()  # people loaded for the matching figures
    match_probes: int = 0  # incoming records matched against each population


PLANS = {
    "tiny": Plan(1, 10_000, 0, 1, 20, 1, 3, 0, 60, (1_000,), 200),
    "small": Plan(4, 600, 0, 3, 100, 3, 40, 1, 4_000, (100_000,), 3_000),
    "1m": Plan(10, 2_000, 6, 40, 200, 3, 200, 1, 20_000, (100_000, 1_000_000), 3_000),
    # 10m: the lookups' index is written by the bench-only loader (--direct); MLLP, into a
    # fresh database whatever the size, sends the probe slice's messages
    "10m": Plan(10, 2_000, 6, 400, 200, 3, 200, 1, 4_000, (100_000, 1_000_000), 3_000),
}
AREAS = ("ingest", "mllp", "matching", "lookups", "start-up")


def _db(base: str, backend: str, name: str, out: Path) -> str:
    """A database per role; ``out`` is the size's data folder (``data-1m``), so sizes differ."""
    if backend == "sqlite":
        return f"sqlite:///{out / f'{name}.db'}"
    size = out.name.removeprefix("data-").replace("-", "_")
    server, _, prefix = base.rstrip("/").partition("#")  # "URL#prefix": --pg-prefix
    return f"{server}/{prefix or 'hie_bench'}_{size}_{name.replace('-', '_')}"


def _load(
    db: str,
    kind: str,
    inputs: list[Path],
    report: Path,
    *,
    fresh: bool = True,
    workers: int = 0,
    isolated: bool = False,
) -> dict[str, Any]:
    """A bulk load; ``isolated`` runs it in a fresh pinned process, so its RSS is its own."""
    if fresh:
        floors.fresh_database(db)
    if not isolated:
        data = asdict(run_load(db, kind, inputs, workers=workers))
        report.write_text(json.dumps(data, indent=1))
        return data
    cmd = [
        *(taskset(SERVER_CORE) if not workers else []),
        sys.executable,
        "-m",
        "bench.loads",
        "--db",
        db,
        "--out",
        str(report),
        "--workers",
        str(workers),
        kind,
        *map(str, inputs),
    ]
    subprocess.run(cmd, cwd=ROOT, check=True)
    loaded: dict[str, Any] = json.loads(report.read_text())
    return loaded


def _city(out: Path, size: str, *, patients: int, hospitals: int, first: int = 0) -> Path:
    city = out / f"city-{size}" if not first else out / f"probe-{size}"
    marker = city / "city.json"
    if marker.exists():
        meta = json.loads(marker.read_text())
        # a run that needs no residents (only the hospitals file) takes any city of the size
        same = meta.get("hospitals") == hospitals
        if same and (patients == 0 or meta.get("patients") == patients):
            return city
    generate(city, patients=patients, hospitals=hospitals, first=first)
    return city


def ingest(
    run: Run, plan: Plan, backend: str, base: str, out: Path, city: Path, probe: Path
) -> str:
    """Bulk NDJSON (rate, memory, full vs empty index), HL7 folders, Bundles over HTTP."""
    files = sorted((city / "fhir").glob("*.ndjson"))
    bulk_db = _db(base, backend, "bulk", out)
    w = plan.workers
    with run.phase(f"bulk NDJSON load ({backend})"):
        rep = _load(
            bulk_db, "ndjson", files, out / f"load-ndjson-{backend}.json", workers=w, isolated=True
        )
    if rep["rejected"] or rep["dead_letters"]:
        run.notes.append(
            f"bulk NDJSON on {backend}: {rep['rejected']} rejected, e.g. {rep['errors'][:1]}"
        )
    with run.phase(f"ingest floor ({backend})"):
        sample = list(floors.sample_lines(files, plan.floor_every))
        pv = floors.parse_validate(sample)
        rows, write_s = floors.raw_write(bulk_db, _db(base, backend, "floor", out))
    floor_rate = 1 / (pv.per_result_s + write_s / rep["results"])
    run.notes.append(
        f"ingest floor on {backend}: parse {pv.parse_s / pv.results * 1e6:.0f} µs + validate "
        f"{pv.validate_s / pv.results * 1e6:.0f} µs per result (sample of {pv.lines:,} lines, "
        f"{pv.results:,} results), raw write {write_s / rep['results'] * 1e6:.0f} µs per "
        f"result ({rows:,} rows)"
    )
    how = f"writer + {w} validation process" if w else "one process"
    run.add(
        Figure(
            "ingest",
            "bulk NDJSON, in process",
            backend,
            rep["results_per_s"],
            "results/s",
            floor_rate,
            "parse + validate + raw write (1 core)",
            True,
            "≥ 60% of floor and ≥ 1,500/s",
            rep["results_per_s"] >= 0.6 * floor_rate and rep["results_per_s"] >= 1500,
            f"{rep['results']:,} results in {rep['seconds']:.0f} s, {how}",
        )
    )
    growth = rep["rss_peak_mb"] - rep["rss_baseline_mb"]
    flat = abs(rep["rss_at_100pct_mb"] - rep["rss_at_10pct_mb"]) / max(rep["rss_at_10pct_mb"], 1)
    run.add(
        Figure(
            "memory",
            "bulk load peak RSS",
            backend,
            rep["rss_peak_mb"],
            "MB",
            rep["rss_baseline_mb"],
            "RSS before the first line",
            False,
            "< 250 MB",
            rep["rss_peak_mb"] < 250,
            f"writer process; RSS at 10% {rep['rss_at_10pct_mb']:.0f} MB, at 100% "
            f"{rep['rss_at_100pct_mb']:.0f} MB ({flat:.1%} apart)",
        )
    )
    run.add(
        Figure(
            "memory",
            "bulk load RSS growth",
            backend,
            max(growth, 0.0),
            "MB",
            rep["rss_baseline_mb"],
            "RSS before the first line",
            False,
            "≤ 50 MB and flat within 10%",
            growth <= 50 and flat <= 0.10,
        )
    )
    # The same slice of new people into an empty index and into the full one.
    probe_files = sorted((probe / "fhir").glob("*.ndjson"))
    with run.phase(f"probe slice, empty and full index ({backend})"):
        empty_db = _db(base, backend, "probe-empty", out)
        empty = _load(
            empty_db, "ndjson", probe_files, out / f"probe-empty-{backend}.json", workers=w
        )
        full = _load(
            bulk_db,
            "ndjson",
            probe_files,
            out / f"probe-full-{backend}.json",
            fresh=False,
            workers=w,
        )
        single = (
            _load(empty_db, "ndjson", probe_files, out / f"probe-single-{backend}.json")
            if w
            else empty  # without workers the empty-index load already was one process
        )
    run.add(
        Figure(
            "ingest",
            f"bulk NDJSON with {rep['results']:,} results indexed",
            backend,
            full["results_per_s"],
            "results/s",
            empty["results_per_s"],
            "same slice into an empty index",
            True,
            "within 20% (ratio ≥ 0.8)",
            full["results_per_s"] >= 0.8 * empty["results_per_s"],
            f"slice of {full['results']:,} results",
        )
    )
    run.add(
        Figure(
            "ingest",
            "bulk NDJSON, one process (no validation worker)",
            backend,
            single["results_per_s"],
            "results/s",
            floor_rate,
            "parse + validate + raw write (1 core)",
            True,
            "≥ 60% of floor",
            single["results_per_s"] >= 0.6 * floor_rate,
            f"slice of {single['results']:,} results into an empty index",
        )
    )
    # HL7 v2 folders.
    folders = sorted(p for p in (city / "hl7").iterdir() if p.is_dir())
    if plan.hl7_hospitals:
        folders = folders[: plan.hl7_hospitals]
    hl7_db = _db(base, backend, "hl7", out)
    with run.phase(f"HL7 v2 folders ({backend})"):
        h = _load(hl7_db, "hl7", folders, out / f"load-hl7-{backend}.json", workers=w)
        _, obx, parse_s = floors.hl7_parse(folders, max(plan.floor_every // 4, 1))
        _, hwrite_s = floors.raw_write(hl7_db, _db(base, backend, "floor", out))
    hl7_floor = 1 / (parse_s / max(obx, 1) + hwrite_s / max(h["results"], 1))
    run.add(
        Figure(
            "ingest",
            "bulk HL7 v2 folder",
            backend,
            h["results_per_s"],
            "results/s",
            hl7_floor,
            "python-hl7 parse + raw write (1 core)",
            True,
            "≥ 1,000/s",
            h["results_per_s"] >= 1000,
            f"{h['results']:,} results from {len(folders)} hospitals, {how}; "
            f"{h['rejected'] + h['dead_letters']} rejected",
        )
    )
    # FHIR transaction Bundles over HTTP.
    with run.phase(f"Bundles over HTTP ({backend})"):
        posted, results, failed, seconds, first_error = _post_city(plan, base, backend, out, files)
    if failed:
        run.notes.append(f"HTTP ingest on {backend}: {failed} of {posted} failed: {first_error}")
    run.add(
        Figure(
            "ingest",
            "FHIR transaction Bundles over HTTP",
            backend,
            results / seconds if seconds else 0.0,
            "results/s",
            floor_rate,
            "parse + validate + raw write (1 core)",
            True,
            "",
            None,
            f"{posted:,} Bundles, {results:,} results, 4 connections",
        )
    )
    return bulk_db


def mllp(run: Run, plan: Plan, backend: str, base: str, out: Path, city: Path) -> None:
    """20 MLLP senders against ``hie serve``'s listener; floor as for the HL7 folders."""
    from bench.mllp import run_mllp

    db = _db(base, backend, "mllp", out)
    with run.phase(f"MLLP, 20 senders ({backend})"):
        rep, messages = run_mllp(db, city, plan.mllp_messages, out)
        _, obx, parse_s = floors.parse_hl7_bodies([m.decode("utf-8") for m in messages])
        _, write_s = floors.raw_write(db, _db(base, backend, "floor", out))
    s = rep.stats
    floor_rate = 1 / (parse_s / max(obx, 1) + write_s / max(s.distinct_results_aa, 1))
    exact = rep.observations == s.distinct_results_aa
    acks = ", ".join(f"{n:,} {code}" for code, n in sorted(s.acks.items()))
    check = (
        "the index holds exactly the results acknowledged AA"
        if exact
        else f"**the index holds {rep.observations:,} results, not the "
        f"{s.distinct_results_aa:,} acknowledged AA**"
    )
    run.add(
        Figure(
            "ingest",
            "HL7 v2 over MLLP, 20 concurrent senders",
            backend,
            s.results_per_s,
            "results/s",
            floor_rate,
            "python-hl7 parse + raw write (1 core)",
            True,
            "≥ 1,000/s",
            s.results_per_s >= 1000,
            f"{s.messages:,} messages ({acks}), {s.results_aa:,} results acknowledged AA in "
            f"{s.seconds:.0f} s; {check} ({rep.observations:,} Observations); `hie serve` on "
            f"one core, senders on the other; server CPU "
            f"{rep.server_cpu_s / max(s.results_aa, 1) * 1e3:.2f} ms per result"
            + (f"; first error: {s.first_error}" if s.first_error else ""),
        )
    )


def matching(run: Run, plan: Plan, backend: str, base: str, out: Path) -> None:
    """Patient matches/s and p99 against directly loaded populations (bench/matching.py)."""
    from bench.matching import run_matching

    for size in plan.match_populations:
        label = f"{size // 1_000_000}M" if size >= 1_000_000 else f"{size // 1000}k"
        db = _db(base, backend, f"match-{label.lower()}", out)
        with run.phase(f"patient matching, {label} people ({backend})"):
            load, m = run_matching(db, size, plan.match_probes, out / "match-population")
        made = f"generated in {load.generate_s:.0f} s of worker time, " if load.generate_s else ""
        run.notes.append(
            f"patient matching on {backend}: the population of {load.persons:,} people "
            f"({load.rows:,} identity rows) was loaded directly by the bench-only loader "
            f"bench/matching.py ({made}written in {load.write_s:.0f} s, {load.seconds:.0f} s "
            "in all), linked by the generator's ground truth, not through ingest"
        )
        outcomes = ", ".join(f"{n:,} {k}" for k, n in sorted(m.outcomes.items()))
        quality = (
            f"of {m.known:,} records of known people {m.known_linked_right:,} linked right, "
            f"{m.known_linked_wrong} wrong; {m.new_kept_new:,} of {m.new:,} new people kept new"
        )
        run.add(
            Figure(
                "matching",
                f"patient match (from_patient + Mpi.decide), {label} people",
                backend,
                m.matches_per_s,
                "matches/s",
                m.floor_per_s,
                "candidate-block SQL alone",
                True,
                "",
                None,
                f"{m.probes:,} incoming records, one connection, one thread ({outcomes}); "
                f"{quality}; CPU {m.cpu_ms:.2f} ms per match; block "
                f"{m.candidates_mean:.1f} candidates on average",
            )
        )
        run.add(
            Figure(
                "matching",
                f"patient match p99, {label} people",
                backend,
                m.p99_ms,
                "ms",
                m.floor_p99_ms,
                "candidate-block SQL p99",
                False,
                "",
                None,
                f"p50 {m.p50_ms:.2f} ms (SQL p50 {m.floor_p50_ms:.3f} ms)",
            )
        )


def _post_city(
    plan: Plan, base: str, backend: str, out: Path, files: list[Path]
) -> tuple[int, int, int, float, str | None]:
    http_db = _db(base, backend, "http", out)
    floors.fresh_database(http_db)
    port = free_port()
    env = {"HIE_DATABASE_URL": http_db, "HIE_JWT_SECRET": SECRET}
    posted = results = failed = 0
    seconds = 0.0
    first_error = None
    with server(env, port, log=out / "server.log"):
        for path in files:
            if posted >= plan.http_bundles:
                break
            token = mint(
                SECRET, "bench", hospital_id=path.stem, scopes=ALL_SCOPES, lifetime_s=86400
            )
            lines: list[bytes] = []
            with path.open("rb") as f:
                for line in f:
                    if posted + len(lines) >= plan.http_bundles:
                        break
                    lines.append(line.rstrip(b"\n"))
            stats = post_bundles(port, token, iter(lines), concurrency=4)
            posted += stats.requests
            failed += stats.failed
            first_error = first_error or stats.first_error
            seconds += stats.seconds
            results += sum(x.count(b'"resourceType":"Observation"') for x in lines)
    return posted, results, failed, seconds, first_error


def direct_load(
    run: Run,
    plan: Plan,
    backend: str,
    base: str,
    data: Path,
    probe: Path,
    patients: int,
    hospitals: int,
) -> None:
    """Fill the lookup database with the bench-only loader, then measure the real ingest of a
    slice of new people into that full index against the same slice into an empty one."""
    from bench.direct import load

    db = _db(base, backend, "bulk", data)
    floors.fresh_database(db)
    with run.phase(f"bench-only loader ({backend})"):
        started = time.perf_counter()
        results = load(db, patients, hospitals)
        seconds = time.perf_counter() - started
    run.dataset.update(patients=patients, hospitals=hospitals, results=results)
    run.notes.append(
        f"{backend}: the {results:,} results for the lookups were written by the bench-only "
        f"loader bench/direct.py (raw executemany/COPY of the rows the store would write; "
        f"{results / seconds:,.0f} results/s), not through ingest"
    )
    probe_files = sorted((probe / "fhir").glob("*.ndjson"))
    w = plan.workers
    with run.phase(f"probe slice, empty and full index ({backend})"):
        empty_db = _db(base, backend, "probe-empty", data)
        empty = _load(
            empty_db, "ndjson", probe_files, data / f"probe-empty-{backend}.json", workers=w
        )
        full = _load(
            db, "ndjson", probe_files, data / f"probe-full-{backend}.json", fresh=False, workers=w
        )
    run.add(
        Figure(
            "ingest",
            f"bulk NDJSON with {results:,} results indexed",
            backend,
            full["results_per_s"],
            "results/s",
            empty["results_per_s"],
            "same slice into an empty index",
            True,
            "within 20% (ratio ≥ 0.8)",
            full["results_per_s"] >= 0.8 * empty["results_per_s"],
            f"slice of {full['results']:,} results through the real bulk path",
        )
    )


def lookup(
    run: Run, plan: Plan, backend: str, db: str, out: Path, config: Path, *, workers_check: bool
) -> None:
    qs = lookups.draw_queries(db, plan.queries)
    if not qs.patients:
        run.notes.append(f"lookups on {backend}: no results to query")
        return
    sql = floors.sql_latency(db, floors.OBS_SQL, lookups.sql_params(db, qs))
    prior_sql = floors.sql_latency(db, floors.PRIOR_SQL, lookups.sql_params(db, qs, prior=True))
    history_sql = floors.sql_latency(
        db, floors.PRIOR_SQL, lookups.sql_params(db, qs, prior=True, include_expired=True)
    )
    plan_text = floors.query_plan(db, floors.OBS_SQL, lookups.sql_params(db, qs)[0])
    run.notes.append(f"SQL floor plan on {backend}: {plan_text}")
    port = free_port()
    env = {"HIE_DATABASE_URL": db, "HIE_JWT_SECRET": SECRET, "HIE_CONFIG_FILE": str(config)}
    token = mint(SECRET, "bench", hospital_id="h001", scopes=ALL_SCOPES, lifetime_s=86400)
    s = plan.wrk_seconds
    with server(env, port, log=out / "server.log") as proc:
        pid = proc.pid
        trivial_paths = ["/bench/trivial"]
        trivial = lookups.single(port, trivial_paths, token, s, pid)
        search = lookups.single(port, qs.search_paths(), token, s, pid)
        prior_exists = _exists(port, qs.prior_paths()[0], token)
        prior = lookups.single(port, qs.prior_paths(), token, s, pid) if prior_exists else None
        history_paths = qs.prior_paths(include_expired=True)
        history = lookups.single(port, history_paths, token, s, pid) if prior_exists else None
        trivial_c = lookups.concurrent(port, trivial_paths, token, s, pid=pid)
        search_c = lookups.concurrent(port, qs.search_paths(), token, s, pid=pid)
        prior_c = (
            lookups.concurrent(port, qs.prior_paths(), token, s, pid=pid) if prior_exists else None
        )
        history_c = (
            lookups.concurrent(port, history_paths, token, s, pid=pid) if prior_exists else None
        )
    _latency_figures(
        run, backend, "Observation?patient&code&date=ge", search, search_c, sql, trivial, trivial_c
    )
    if prior is not None and prior_c is not None:
        _latency_figures(
            run, backend, "$prior-results, 5 codes", prior, prior_c, prior_sql, trivial, trivial_c
        )
    if history is not None and history_c is not None:
        _latency_figures(
            run,
            backend,
            "$prior-results, 5 codes, includeExpired (3 years)",
            history,
            history_c,
            history_sql,
            trivial,
            trivial_c,
        )
    else:
        run.notes.append(
            "$prior-results is not served (GET /fhir/Patient/{id}/$prior-results answers "
            "404): its figures are skipped; the SQL floor for 5 codes was "
            f"p50 {prior_sql['p50_ms']:.2f} ms, p99 {prior_sql['p99_ms']:.2f} ms on {backend}"
        )
    if workers_check:
        scale_out(run, backend, db, qs, token, plan, config)


def _exists(port: int, path: str, token: str) -> bool:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp.status != 404


def _latency_figures(
    run: Run,
    backend: str,
    name: str,
    single: lookups.Latency,
    conc: lookups.Latency,
    sql: dict[str, float],
    trivial: lookups.Latency,
    trivial_c: lookups.Latency,
) -> None:
    floor50 = sql["p50_ms"] + trivial.p50_ms
    floor99 = sql["p99_ms"] + trivial.p99_ms
    errs = f"; {single.errors + conc.errors} errors" if single.errors + conc.errors else ""
    run.add(
        Figure(
            "lookup",
            f"{name} p50, 1 connection",
            backend,
            single.p50_ms,
            "ms",
            floor50,
            "SQL p50 + trivial endpoint p50",
            False,
            "≤ 3× floor",
            single.p50_ms <= 3 * floor50,
            f"{single.requests:,} requests{errs}",
        )
    )
    run.add(
        Figure(
            "lookup",
            f"{name} p99, 1 connection",
            backend,
            single.p99_ms,
            "ms",
            floor99,
            "SQL p99 + trivial endpoint p99",
            False,
            "≤ 5× floor",
            single.p99_ms <= 5 * floor99,
        )
    )
    run.add(
        Figure(
            "lookup",
            f"{name}, 32 connections",
            backend,
            conc.rps,
            "req/s",
            trivial_c.rps,
            "trivial endpoint, 32 connections",
            True,
            "≥ 20% of floor",
            conc.rps >= 0.2 * trivial_c.rps,
            f"p99 {conc.p99_ms:.1f} ms",
        )
    )
    run.add(
        Figure(
            "lookup",
            f"{name}, server CPU per request",
            backend,
            single.cpu_ms,
            "ms",
            trivial.cpu_ms + sql["p50_ms"],
            "trivial endpoint CPU + SQL p50",
            False,
            "",
            None,
            "CPU time of the server process per request: unaffected by other jobs on the machine",
        )
    )
    if name.startswith("$prior"):
        limit = 15.0 if backend == "sqlite" else 20.0
        run.add(
            Figure(
                "lookup",
                f"{name} absolute: p99 (value) and p50 (floor column)",
                backend,
                single.p99_ms,
                "ms",
                single.p50_ms,
                "its own p50",
                False,
                f"p50 < 3 ms, p99 < {limit:.0f} ms",
                single.p50_ms < 3 and single.p99_ms < limit,
            )
        )


def scale_out(
    run: Run, backend: str, db: str, qs: lookups.QuerySet, token: str, plan: Plan, config: Path
) -> None:
    """Two uvicorn workers on one PostgreSQL: same answers, more requests per second."""
    from bench.consistency import check_consistency

    env = {"HIE_DATABASE_URL": db, "HIE_JWT_SECRET": SECRET, "HIE_CONFIG_FILE": str(config)}
    rates = {}
    for workers in (1, 2):
        port = free_port()
        with server(env, port, workers=workers, pin=False):
            rates[workers] = lookups.concurrent(
                port, qs.search_paths(), token, plan.wrk_seconds
            ).rps
            if workers == 2:
                verdict = check_consistency(port, qs, SECRET)
    run.add(
        Figure(
            "scale-out",
            "2 API workers, Observation search, 32 connections",
            backend,
            rates[2],
            "req/s",
            rates[1],
            "1 worker",
            True,
            "higher than 1 worker",
            rates[2] > rates[1],
            verdict,
        )
    )


def startup(run: Run, plan: Plan, backend: str, db: str, config: Path) -> None:
    """``hie serve`` on the loaded database until /fhir/metadata answers, vs a bare app."""
    hie = Path(sys.executable).with_name("hie")
    times, bare = [], []
    for _ in range(plan.startup_runs):
        port = free_port()
        env = {
            **os.environ,
            "HIE_DATABASE_URL": db,
            "HIE_JWT_SECRET": SECRET,
            "HIE_CONFIG_FILE": str(config),
        }
        t = time.perf_counter()
        proc = subprocess.Popen(
            [*taskset(SERVER_CORE), str(hie), "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            wait_http(port, "/fhir/metadata")
            times.append(time.perf_counter() - t)
        finally:
            stop(proc)
        port = free_port()
        t = time.perf_counter()
        proc = subprocess.Popen(
            [
                *taskset(SERVER_CORE),
                sys.executable,
                "-m",
                "bench.server",
                "--bare",
                "--port",
                str(port),
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            wait_http(port, "/bench/trivial")
            bare.append(time.perf_counter() - t)
        finally:
            stop(proc)
    value, floor = sorted(times)[len(times) // 2], sorted(bare)[len(bare) // 2]
    run.add(
        Figure(
            "start-up",
            "hie serve ready (GET /fhir/metadata)",
            backend,
            value,
            "s",
            floor,
            "bare FastAPI + uvicorn app",
            False,
            "< 2 s",
            value < 2,
        )
    )


def _backend(
    run: Run,
    plan: Plan,
    args: argparse.Namespace,
    only: set[str],
    direct: set[str],
    backend: str,
    base: str,
    data: Path,
    city: Path,
    probe: Path,
) -> None:
    """Every selected part of the run on one backend."""
    patients, hospitals = SIZES[args.size]
    db = _db(base, backend, "bulk", data)
    if "ingest" not in only or args.skip_ingest:
        pass
    elif backend in direct:
        direct_load(run, plan, backend, base, data, probe, patients, hospitals)
    else:
        db = ingest(run, plan, backend, base, data, city, probe)
    if "mllp" in only and plan.mllp_messages and run.dataset.get("results"):
        # MLLP runs into a fresh database; a directly loaded city has no HL7 files of its own,
        # so the senders take the probe slice's
        mllp(run, plan, backend, base, data, probe if backend in direct else city)
    if "matching" in only:
        matching(run, plan, backend, base, data)
    if "lookups" in only and wrk.available():
        with run.phase(f"lookups ({backend})"):
            lookup(
                run,
                plan,
                backend,
                db,
                data,
                city / "hospitals.toml",
                workers_check=backend == "postgres",
            )
    if "start-up" in only:
        with run.phase(f"start-up ({backend})"):
            startup(run, plan, backend, db, city / "hospitals.toml")


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    parser.add_argument("--pg", help="PostgreSQL server URL without database name")
    parser.add_argument(
        "--pg-prefix",
        default="hie_bench",
        help="name prefix of the PostgreSQL databases the run creates (and drops and recreates)",
    )
    parser.add_argument("--skip-ingest", action="store_true", help="lookups on an existing load")
    parser.add_argument(
        "--backends",
        default="",
        help="comma-separated backends to run (sqlite,postgres); default: sqlite, and postgres "
        "with --pg (the 10M indexes of both do not fit this machine's disk together)",
    )
    parser.add_argument(
        "--direct",
        default="",
        help="backends (sqlite,postgres) whose lookup data is written by the bench-only loader "
        "(bench/direct.py) instead of the real ingest; their ingest figures are then the probe "
        "slice into that full index only",
    )
    parser.add_argument(
        "--only",
        default=",".join(AREAS),
        help=f"comma-separated parts to run, of {','.join(AREAS)} (default: all); lookups and "
        "start-up without ingest use the database an earlier run loaded",
    )
    args = parser.parse_args(argv)
    direct = {b for b in args.direct.split(",") if b}
    only = {a.strip() for a in args.only.split(",") if a.strip()}
    if only - set(AREAS):
        parser.error(f"--only: unknown {sorted(only - set(AREAS))}; choose from {AREAS}")
    started = time.perf_counter()
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    plan = PLANS[args.size]
    run = Run(
        args.size, "python -m bench.run " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    )
    run.machine_info()
    if not wrk.available() and "lookups" in only:
        run.notes.append("wrk is not installed (apt-get install -y wrk): lookup figures skipped")
    patients, hospitals = SIZES[args.size]
    data = out / f"data-{args.size}"
    data.mkdir(exist_ok=True)
    pg = f"{args.pg.rstrip('/')}#{args.pg_prefix}" if args.pg else ""
    backends = [("sqlite", "")] + ([("postgres", pg)] if pg else [])
    if args.backends:
        chosen = {b.strip() for b in args.backends.split(",") if b.strip()}
        if chosen - {"sqlite", "postgres"} or ("postgres" in chosen and not pg):
            parser.error("--backends: sqlite and/or postgres (postgres needs --pg)")
        backends = [(b, base) for b, base in backends if b in chosen]
    with run.phase("city"):
        everything_direct = all(b in direct for b, _ in backends)
        # the residents' files feed ingest and MLLP only: lookups and start-up need the
        # hospitals file (a lookups-only run at 10m generated 15 GB of city before)
        readers = bool({"ingest", "mllp"} & only) and not args.skip_ingest
        city = _city(
            data,
            args.size,
            patients=patients if readers and not everything_direct else 0,
            hospitals=hospitals,
        )
        probe = _city(
            data, args.size, patients=plan.probe_patients, hospitals=hospitals, first=patients
        )
    run.dataset = {
        k: v
        for k, v in json.loads((city / "city.json").read_text()).items()
        if k
        in (
            "patients",
            "hospitals",
            "bundles",
            "results",
            "corrections",
            "cancellations",
            "studies",
        )
    }
    try:
        for backend, base in backends:
            _backend(run, plan, args, only, direct, backend, base, data, city, probe)
    except BaseException as exc:  # keep the figures measured so far: write them, then fail
        run.notes.append(f"the run stopped early: {type(exc).__name__}: {exc}")
        run.seconds = time.perf_counter() - started
        run.write(out)
        raise
    run.seconds = time.perf_counter() - started
    md, _ = run.write(out)
    print(md.read_text())
    return md


if __name__ == "__main__":
    main()
