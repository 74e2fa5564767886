"""A synthetic city, streamed to disk: FHIR transaction Bundles (NDJSON) and HL7 v2 ORU^R01.

    python -m bench.city --size small --out bench/out/city-small      (or `hie bench generate`)

Deterministic from the seed; memory is constant whatever the size, because residents are
made one at a time (``bench.people``, ``bench.events``) and every line is written as soon as
it exists. The layout, one feed per hospital as each hospital's back-fill export would be::

    city.json              the plan and what was written (patients, results, ...)
    hospitals.json         id, level, names
    fhir/h001.ndjson       one transaction Bundle per line (Patient + DiagnosticReport +
                           Observations, or Patient + ImagingStudy)
    hl7/h001/00001.hl7     ORU^R01 messages for the same lab orders, 1,000 per file
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO

import orjson

from bench.bundles import bundle
from bench.events import CityPlan, Event, Order, Study, person_events
from bench.messages import oru

# Residents per size: about 43 results each (see CityPlan), so "1m" is about a million.
SIZES: dict[str, tuple[int, int]] = {  # name → (residents, hospitals)
    "tiny": (10, 4),
    "small": (1_500, 20),
    "1m": (23_000, 60),
    "10m": (230_000, 120),
}
HL7_PER_FILE = 1_000


@dataclass
class CitySummary:
    seed: int
    patients: int
    hospitals: int
    bundles: int = 0
    orders: int = 0
    results: int = 0  # Observation resources in all bundles (corrections count again)
    corrections: int = 0
    cancellations: int = 0
    studies: int = 0
    hl7_messages: int = 0
    bytes_ndjson: int = 0
    bytes_hl7: int = 0
    seconds: float = 0.0
    files: dict[str, int] = field(default_factory=dict)  # hospital → lines


def events(plan: CityPlan, patients: int, first: int = 0) -> Iterator[Event]:
    for index in range(first, first + patients):
        yield from person_events(plan, index)


class _Hl7Files:
    """One rolling file per hospital: at most ``HL7_PER_FILE`` messages each."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.open: dict[str, tuple[IO[bytes], int, int]] = {}  # hospital → (file, n, seq)

    def write(self, hospital: str, message: bytes) -> None:
        current = self.open.get(hospital)
        if current is None or current[1] >= HL7_PER_FILE:
            seq = current[2] + 1 if current else 1
            if current is not None:
                current[0].close()
            folder = self.root / hospital
            folder.mkdir(parents=True, exist_ok=True)
            current = ((folder / f"{seq:05d}.hl7").open("wb"), 0, seq)
        f, n, seq = current
        f.write(message + b"\n")
        self.open[hospital] = (f, n + 1, seq)

    def close(self) -> None:
        for f, _, _ in self.open.values():
            f.close()


def generate(
    out: Path,
    *,
    patients: int,
    hospitals: int,
    seed: int = 20240601,
    first: int = 0,
    hl7: bool = True,
    progress: bool = False,
) -> CitySummary:
    """Write residents ``first`` … ``first + patients - 1`` to ``out``; returns what was written.

    ``first`` lets a second, disjoint slice of the same city be written (new people, new
    orders), e.g. to load into an index that already holds the first slice.
    """
    started = time.perf_counter()
    plan = CityPlan(seed=seed, hospitals=hospitals)
    (out / "fhir").mkdir(parents=True, exist_ok=True)
    (out / "hospitals.json").write_text(
        json.dumps([asdict(h) for h in plan.hospital_list], ensure_ascii=False, indent=1),
        encoding="utf-8",
    )
    (out / "hospitals.toml").write_text(hospitals_toml(plan), encoding="utf-8")
    summary = CitySummary(seed, patients, hospitals)
    ndjson: dict[str, IO[bytes]] = {}
    files = _Hl7Files(out / "hl7") if hl7 else None
    tick = max(patients // 100, 1)
    try:
        for n in range(patients):
            for event in person_events(plan, first + n):
                _write(event, out, ndjson, files, summary)
            if progress and n % tick == 0:
                print(f"\r{n / patients:6.1%} {summary.results:,} results", end="", flush=True)
    finally:
        for f in ndjson.values():
            f.close()
        if files is not None:
            files.close()
    if progress:
        print()
    summary.seconds = round(time.perf_counter() - started, 2)
    (out / "city.json").write_text(json.dumps(asdict(summary), indent=1), encoding="utf-8")
    return summary


def _write(
    event: Event,
    out: Path,
    ndjson: dict[str, IO[bytes]],
    files: _Hl7Files | None,
    summary: CitySummary,
) -> None:
    h = event.hospital.id
    f = ndjson.get(h)
    if f is None:
        f = ndjson[h] = (out / "fhir" / f"{h}.ndjson").open("wb")
    doc, results = bundle(event)
    line = orjson.dumps(doc) + b"\n"
    f.write(line)
    summary.bundles += 1
    summary.bytes_ndjson += len(line)
    summary.files[h] = summary.files.get(h, 0) + 1
    summary.results += results
    if isinstance(event, Study):
        summary.studies += 1
        return
    assert isinstance(event, Order)
    summary.orders += event.status == "final"
    summary.corrections += event.status == "corrected"
    summary.cancellations += event.status == "cancelled"
    if files is not None:
        message = oru(event)
        files.write(h, message)
        summary.hl7_messages += 1
        summary.bytes_hl7 += len(message) + 1


# EQA passes by hospital level: tertiary hospitals run every programme, community centres few.
CREDENTIALS = {
    "3A": ("chemistry", "haematology", "coagulation", "urinalysis", "immunology", "imaging"),
    "3B": ("chemistry", "haematology", "coagulation", "urinalysis", "imaging"),
    "2A": ("chemistry", "haematology", "urinalysis"),
    "CHC": ("haematology",),
}


def hospitals_toml(plan: CityPlan) -> str:
    """The city's hospitals as an ``hie serve --config`` file (levels and EQA passes for the
    simulated years), so ``$prior-results`` can judge the city's results."""
    years = range(plan.start.year, plan.start.year + plan.days // 365 + 1)
    out = [
        "# Synthetic city written by bench/city.py (deterministic from the seed).",
        "[exchange]",
        'province_prefix = "粤"',
        'timezone = "Asia/Shanghai"',
        "",
    ]
    for h in plan.hospital_list:
        out += [
            "[[hospital]]",
            f'id = "{h.id}"',
            f'name_zh = "{h.name_zh}"',
            f'name_en = "{h.name_en}"',
            f'level = "{h.level}"',
        ]
        for year in years:
            for discipline in CREDENTIALS[h.level]:
                scheme = "GD-EQA" if discipline == "imaging" else "NCCL-EQA"
                out += [
                    "[[hospital.credential]]",
                    f'scope = "discipline:{discipline}"',
                    f'scheme = "{scheme}"',
                    f"valid_from = {year}-01-01",
                    f"valid_to = {year}-12-31",
                ]
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--patients", type=int, help="override the size's resident count")
    parser.add_argument("--hospitals", type=int)
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--no-hl7", action="store_true")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    residents, hospitals = SIZES[args.size]
    summary = generate(
        args.out,
        patients=args.patients or residents,
        hospitals=args.hospitals or hospitals,
        seed=args.seed,
        hl7=not args.no_hl7,
        progress=True,
    )
    print(json.dumps({k: v for k, v in asdict(summary).items() if k != "files"}, indent=1))


if __name__ == "__main__":
    main()
