"""The match-quality benchmark runs end to end at a tiny size and keeps its precision bar."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
BENCH = ROOT / "bench"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


def test_match_quality_at_500_persons(tmp_path: Path) -> None:
    out = tmp_path / "identity.json"
    done = _run(
        str(BENCH / "match_quality.py"), "--persons", "500", "--seed", "6", "--json", str(out)
    )
    assert done.returncode == 0, done.stderr
    assert "Auto-link precision" in done.stdout
    result = json.loads(out.read_text("utf-8"))
    assert result["persons"] >= 500
    assert result["records"] > result["persons"]  # 1-3 records per person
    assert result["auto_links"] > 100
    assert result["precision"] >= 0.999
    assert result["recall"] > 0.7  # not bought by refusing to link
    assert result["rejected_without_injected_error"] == 0
    assert set(result["by_rule"]) >= {"deterministic:national-id", "probabilistic"}
    assert result["time_per_match_us"]["p99"] > 0


def test_population_is_deterministic_for_a_seed() -> None:
    script = str(BENCH / "population.py")
    first = _run(script, "--persons", "200", "--seed", "11")
    second = _run(script, "--persons", "200", "--seed", "11")
    other = _run(script, "--persons", "200", "--seed", "12")
    assert first.returncode == 0, first.stderr
    digest = [hashlib.sha256(p.stdout.encode()).hexdigest() for p in (first, second, other)]
    assert digest[0] == digest[1] != digest[2]
    records = [json.loads(line) for line in first.stdout.splitlines()]
    assert len({r["person"] for r in records}) >= 200
    assert all(r["patient"]["resourceType"] == "Patient" for r in records)
