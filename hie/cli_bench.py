"""``hie bench ...`` and ``hie import-bulk``: the synthetic city, the benchmarks, bulk loads.

Mount in ``hie.cli``::

    from hie.cli_bench import bench_app, import_bulk
    app.add_typer(bench_app, name="bench")
    app.command("import-bulk")(import_bulk)

The benchmark commands need the source tree (``bench/`` is not installed with the package);
``import-bulk`` is part of the product.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)

from hie.bulk import BATCH_UNITS, LoadStats, load_hl7_folder, load_ndjson, worker_pool
from hie.identity import names

bench_app = typer.Typer(help="Synthetic city and benchmarks (needs the source tree).")
console = Console(stderr=True)
ROOT = Path(__file__).resolve().parent.parent


def _bench() -> None:
    """Make ``bench`` importable from a source checkout, or explain why it is not."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    try:
        import bench  # noqa: F401
    except ImportError:
        console.print("[red]bench/ is not here:[/red] run from a source checkout of hie.")
        raise typer.Exit(2) from None


@bench_app.command("generate")
def generate(
    out: Annotated[Path, typer.Option(help="Folder to write the city into")],
    size: Annotated[str, typer.Option(help="tiny | small | 1m | 10m")] = "tiny",
    patients: Annotated[int | None, typer.Option(help="Residents (overrides size)")] = None,
    hospitals: Annotated[int | None, typer.Option(help="Hospitals (overrides size)")] = None,
    seed: Annotated[int, typer.Option(help="Same seed, same city")] = 20240601,
    hl7: Annotated[bool, typer.Option(help="Also write HL7 v2 ORU^R01 files")] = True,
) -> None:
    """Write a synthetic city: FHIR transaction Bundles (NDJSON) and HL7 v2 ORU^R01."""
    _bench()
    from bench.city import SIZES
    from bench.city import generate as write_city

    if size not in SIZES:
        console.print(f"[red]size must be one of {', '.join(SIZES)}[/red]")
        raise typer.Exit(2)
    residents, count = SIZES[size]
    summary = write_city(
        out,
        patients=patients or residents,
        hospitals=hospitals or count,
        seed=seed,
        hl7=hl7,
        progress=True,
    )
    console.print(
        f"{summary.patients:,} residents, {summary.hospitals} hospitals: {summary.bundles:,} "
        f"Bundles with {summary.results:,} results ({summary.corrections:,} corrections, "
        f"{summary.cancellations:,} cancellations), {summary.studies:,} imaging studies, "
        f"{summary.hl7_messages:,} ORU^R01 messages in {summary.seconds:.0f} s → {out}"
    )


@bench_app.command("run")
def run(
    size: Annotated[str, typer.Option(help="tiny | small | 1m | 10m")] = "tiny",
    out: Annotated[Path, typer.Option(help="Where results and data go")] = ROOT / "bench" / "out",
    pg: Annotated[str | None, typer.Option(help="PostgreSQL server URL, no database")] = None,
) -> None:
    """Run every benchmark at one size; writes results-SIZE.md and .json."""
    _bench()
    from bench.run import main

    main(["--size", size, "--out", str(out), *(["--pg", pg] if pg else [])])


def _inputs(path: Path) -> list[tuple[str, Path]]:
    """(kind, path) pairs: an .ndjson file, a folder of them, an HL7 folder, or a folder of
    per-hospital HL7 folders (as ``hie bench generate`` writes them)."""
    if path.is_file():
        return [("ndjson", path)]
    ndjson = sorted(path.glob("*.ndjson"))
    if ndjson:
        return [("ndjson", p) for p in ndjson]
    if any(path.glob("*.hl7")):
        return [("hl7", path)]
    subfolders = sorted(p for p in path.iterdir() if p.is_dir() and any(p.rglob("*.hl7")))
    return [("hl7", p) for p in subfolders]


def import_bulk(
    path: Annotated[Path, typer.Argument(help="NDJSON file or folder, or HL7 v2 folder")],
    hospital: Annotated[
        str | None, typer.Option(help="Sending hospital (default: from the MRN / folder name)")
    ] = None,
    batch: Annotated[int, typer.Option(help="Units per transaction")] = BATCH_UNITS,
    workers: Annotated[
        int | None, typer.Option(help="Validation/mapping processes (default: cores - 1)")
    ] = None,
) -> None:
    """Bulk-load FHIR NDJSON or HL7 v2 through the normal ingest rules; safe to re-run after
    a kill (it resumes from the last committed batch)."""
    from hie.services import build_exchange
    from hie.settings import Settings

    if not path.exists():
        console.print(f"[red]{path} does not exist[/red]")
        raise typer.Exit(2)
    inputs = _inputs(path)
    if not inputs:
        console.print(f"[red]{path}: no .ndjson or .hl7 files[/red]")
        raise typer.Exit(2)
    n_workers = workers if workers is not None else max((os.cpu_count() or 1) - 1, 0)
    exchange = build_exchange(Settings())
    names.warm()
    totals = LoadStats(str(path), hospital or "")
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as bar, worker_pool(n_workers) as pool:
        for kind, item in inputs:
            task = bar.add_task(item.name, total=None, rate="")

            def show(stats: LoadStats, task_id: TaskID = task) -> None:
                bar.update(
                    task_id,
                    total=stats.bytes_total or None,
                    completed=stats.bytes_done,
                    rate=f"{stats.results:,} results, {stats.results_per_s:,.0f}/s",
                )

            if kind == "ndjson":
                stats = load_ndjson(
                    exchange.ingestor,
                    item,
                    hospital_id=hospital,
                    batch_size=batch,
                    pool=pool,
                    progress=show,
                )
            else:
                stats = load_hl7_folder(
                    exchange.ingestor,
                    item,
                    hospital_id=hospital,
                    batch_size=batch,
                    pool=pool,
                    progress=show,
                )
            for field in ("results", "units", "created", "updated", "unchanged", "rejected"):
                setattr(totals, field, getattr(totals, field) + getattr(stats, field))
            totals.dead_letters += stats.dead_letters
            totals.seconds += stats.seconds
            totals.errors.extend(stats.errors[: max(0, 5 - len(totals.errors))])
            if stats.resumed_from:
                console.print(f"{item.name}: resumed after {stats.resumed_from}")
    exchange.store.analyzed()  # the planner's statistics of the load, before the command ends
    console.print(
        f"{totals.units:,} units, {totals.results:,} results in {totals.seconds:.0f} s "
        f"({totals.results_per_s:,.0f} results/s): {totals.created:,} created, "
        f"{totals.updated:,} updated, {totals.unchanged:,} unchanged, {totals.rejected:,} "
        f"rejected, {totals.dead_letters:,} dead letters"
    )
    for err in totals.errors:
        console.print(f"  [yellow]{err}[/yellow]")
    if totals.rejected or totals.dead_letters:
        console.print("See `hie dead-letters list` for the rejected items and their reasons.")
