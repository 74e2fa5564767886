"""One bulk load in a fresh process, reporting its rate and its memory as it goes.

    python -m bench.loads --db URL --out load.json ndjson FILE...   |   hl7 FOLDER...

Run as a subprocess by ``bench.run`` so its RSS is the load's alone: the baseline is taken
after imports and the exchange are built (what any load costs before the first line), then
after every batch. Flatness compares the RSS at 10% and at 100% of the input bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hie.bulk import BATCH_UNITS, LoadStats, load_hl7_folder, load_ndjson, worker_pool
from hie.identity import names
from hie.services import build_exchange
from hie.settings import Settings

PAGE = os.sysconf("SC_PAGE_SIZE")


def peak_rss_mb() -> float:
    """This process's own high-water RSS (``VmHWM``). Not ``getrusage().ru_maxrss``: Linux
    carries that across fork and exec, so a load started from a large parent (the benchmark
    runner after its matching step, 800 MB) would report the parent's peak as its own."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2**20


@dataclass
class LoadReport:
    kind: str
    inputs: int
    workers: int = 0
    results: int = 0
    units: int = 0
    rejected: int = 0
    dead_letters: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    seconds: float = 0.0
    results_per_s: float = 0.0
    rss_baseline_mb: float = 0.0
    rss_peak_mb: float = 0.0
    rss_at_10pct_mb: float = 0.0
    rss_at_100pct_mb: float = 0.0
    samples: list[tuple[float, float]] = field(default_factory=list)  # (fraction, RSS MB)
    errors: list[str] = field(default_factory=list)


def run_load(
    db: str, kind: str, inputs: list[Path], *, batch: int = BATCH_UNITS, workers: int = 0
) -> LoadReport:
    """One load into ``db``; RSS figures are only meaningful in a fresh process (``main``)."""
    exchange = build_exchange(Settings(database_url=db, jwt_secret="bench-" + "x" * 32))
    names.warm()  # as `hie import-bulk` does: a fixed cost of the process, not of the load
    report = LoadReport(kind, len(inputs), workers=workers)
    report.rss_baseline_mb = rss_mb()
    total = sum(
        p.stat().st_size if p.is_file() else sum(f.stat().st_size for f in p.rglob("*.hl7"))
        for p in inputs
    )
    done_before = 0

    def progress(stats: LoadStats) -> None:
        fraction = (done_before + stats.bytes_done) / total if total else 1.0
        report.samples.append((round(fraction, 4), round(rss_mb(), 1)))

    started = time.perf_counter()
    with worker_pool(workers) as pool:
        for path in inputs:
            if kind == "ndjson":
                stats = load_ndjson(
                    exchange.ingestor, path, batch_size=batch, pool=pool, progress=progress
                )
            else:
                stats = load_hl7_folder(
                    exchange.ingestor, path, batch_size=batch, pool=pool, progress=progress
                )
            done_before += stats.bytes_total
            for name in ("results", "units", "rejected", "dead_letters", "created", "updated"):
                setattr(report, name, getattr(report, name) + getattr(stats, name))
            report.unchanged += stats.unchanged
            report.errors.extend(stats.errors[: max(0, 5 - len(report.errors))])
    exchange.store.analyzed()  # timed: a load ends with its statistics, as `hie import-bulk`
    report.seconds = time.perf_counter() - started
    report.results_per_s = report.results / report.seconds if report.seconds else 0.0
    report.rss_peak_mb = peak_rss_mb()
    if report.samples:
        report.rss_at_10pct_mb = next(r for f, r in report.samples if f >= 0.1)
        report.rss_at_100pct_mb = report.samples[-1][1]
    exchange.store.engine.dispose()
    return report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--batch", type=int, default=BATCH_UNITS)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("kind", choices=("ndjson", "hl7"))
    parser.add_argument("inputs", nargs="+", type=Path)
    args = parser.parse_args()
    report = run_load(args.db, args.kind, args.inputs, batch=args.batch, workers=args.workers)
    args.out.write_text(json.dumps(asdict(report), indent=1))


if __name__ == "__main__":
    main()
