"""The bulk-load memory figure is the loading process's own peak, not its parent's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PARENT = """
import subprocess, sys
big = bytearray(300 * 2**20)
for i in range(0, len(big), 4096):
    big[i] = 1
child = "from bench.loads import peak_rss_mb; print(peak_rss_mb())"
print(subprocess.run([sys.executable, "-c", child], capture_output=True, text=True,
                     check=True).stdout.strip())
"""


def test_a_child_load_does_not_report_its_large_parents_peak() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PARENT],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        timeout=60,
    )
    peak = float(out.stdout.strip())
    assert 5 < peak < 200  # the child's own interpreter, not the 300 MB parent
