"""Benchmark figures: each a value, the floor measured in the same run, their ratio, a target.

Machines here are shared and noisy (±20% between runs), so absolute numbers are reported
but judged through ratios: a figure 1.8× its floor stays 1.8× on a busier or faster box.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Figure:
    area: str  # ingest | lookup | memory | start-up | scale-out
    name: str
    backend: str  # sqlite | postgres | -
    value: float
    unit: str
    floor: float
    floor_what: str
    higher_is_better: bool
    target: str = ""
    met: bool | None = None  # None: no target or not judged
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.value / self.floor if self.floor else float("nan")


@dataclass
class Run:
    size: str
    command: str
    started: str = field(default_factory=lambda: time.strftime("%Y-%m-%d %H:%M:%S %Z"))
    machine: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time one step of the run (reported, so a slow step is visible)."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.phases[name] = round(time.perf_counter() - started, 1)

    def add(self, fig: Figure) -> Figure:
        self.figures.append(fig)
        return fig

    def machine_info(self) -> None:
        self.machine = {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_avg_at_start": os.getloadavg(),
        }

    def write(self, out: Path) -> tuple[Path, Path]:
        out.mkdir(parents=True, exist_ok=True)
        self.machine["load_avg_at_end"] = os.getloadavg()
        data = asdict(self)
        for f, d in zip(self.figures, data["figures"], strict=True):
            d["ratio"] = round(f.ratio, 6)
        js = out / f"results-{self.size}.json"
        js.write_text(json.dumps(data, indent=1, ensure_ascii=False))
        md = out / f"results-{self.size}.md"
        md.write_text(markdown(self), encoding="utf-8")
        return md, js


def _num(x: float) -> str:
    if x != x:  # NaN
        return "–"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def _load(run: Run, key: str) -> tuple[float, ...]:
    return tuple(round(x, 1) for x in run.machine.get(key, ()))


def markdown(run: Run) -> str:
    data = ", ".join(
        f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in run.dataset.items()
    )
    lines = [
        f"# hie benchmarks — size `{run.size}`",
        "",
        f"- date: {run.started}; total {run.seconds:.0f} s",
        f"- command: `{run.command}`",
        f"- machine: {run.machine.get('cpus')} CPUs, Python {run.machine.get('python')}, "
        f"load average at start {_load(run, 'load_avg_at_start')}, "
        f"at end {_load(run, 'load_avg_at_end')}",
        f"- data set: {data}",
        "",
        "| area | figure | backend | value | floor | floor is | ratio | target | met |",
        "|---|---|---|---:|---:|---|---:|---|:-:|",
    ]
    for f in run.figures:
        met = {True: "yes", False: "**no**", None: "–"}[f.met]
        lines.append(
            f"| {f.area} | {f.name} | {f.backend} | {_num(f.value)} {f.unit} "
            f"| {_num(f.floor)} {f.unit} | {f.floor_what} | {_num(f.ratio)}× | {f.target} | {met} |"
        )
    if run.notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in run.notes]
    if run.phases:
        lines += [
            "",
            "Time per step: " + "; ".join(f"{k} {v:.0f} s" for k, v in run.phases.items()),
        ]
    notes = [f for f in run.figures if f.note]
    if notes:
        lines += [""] + [f"- *{f.name} ({f.backend})*: {f.note}" for f in notes]
    return "\n".join(lines) + "\n"
