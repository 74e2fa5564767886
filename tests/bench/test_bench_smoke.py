"""The benchmark suite at its tiny size: the scripts keep working and every figure carries
its floor and ratio (bench/run.py). The full runs are not part of the test suite.

Written for issue 8. Needs wrk (Debian package) for the lookup figures; without it those are
skipped with a note, the rest still runs.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from bench.run import main

pytestmark = pytest.mark.slow


def test_tiny_run_writes_every_figure_with_floor_and_ratio(tmp_path: Path) -> None:
    md = main(["--size", "tiny", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "results-tiny.json").read_text())
    assert md.exists() and md.read_text().startswith("# hie benchmarks")
    figures = data["figures"]
    names = {(f["area"], f["name"]) for f in figures}
    expected = {
        ("ingest", "bulk NDJSON, in process"),
        ("ingest", "bulk HL7 v2 folder"),
        ("ingest", "FHIR transaction Bundles over HTTP"),
        ("memory", "bulk load peak RSS"),
        ("start-up", "hie serve ready (GET /fhir/metadata)"),
        ("ingest", "HL7 v2 over MLLP, 20 concurrent senders"),
        ("matching", "patient match (from_patient + Mpi.decide), 1k people"),
        ("matching", "patient match p99, 1k people"),
    }
    if shutil.which("wrk"):
        expected.add(("lookup", "Observation?patient&code&date=ge p50, 1 connection"))
        expected.add(("lookup", "Observation?patient&code&date=ge, 32 connections"))
        expected.add(("lookup", "$prior-results, 5 codes p50, 1 connection"))
        expected.add(
            ("lookup", "$prior-results, 5 codes, includeExpired (3 years), 32 connections")
        )
    assert expected <= names
    table = md.read_text()
    for f in figures:
        assert f["value"] > 0 and f["floor"] > 0, f
        assert math.isfinite(f["ratio"]) and f["ratio"] == pytest.approx(
            f["value"] / f["floor"], rel=1e-2
        )
        assert f["floor_what"] and f["name"] in table
    assert "| ratio |" in table and "floor" in table
    assert data["dataset"]["results"] > 200
    mllp = next(f for f in figures if f["name"].startswith("HL7 v2 over MLLP"))
    assert "the index holds exactly the results acknowledged AA" in mllp["note"], mllp["note"]
    assert "AE" not in mllp["note"] and "AR" not in mllp["note"]


@pytest.mark.parametrize("backends", ["postgres", "sqlite,oracle"])
def test_backends_are_sqlite_or_postgres_with_a_server(tmp_path: Path, backends: str) -> None:
    with pytest.raises(SystemExit):
        main(["--size", "tiny", "--out", str(tmp_path), "--backends", backends])
    assert not list(tmp_path.glob("results-*"))
