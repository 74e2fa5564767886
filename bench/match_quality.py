"""Match quality of ``hie.identity`` on the synthetic population of ``bench/population.py``.

Each record, in arrival order, goes through ``from_patient`` and ``decide`` against an
``InMemoryDirectory`` holding the patients so far; the decision is filed like ingest would:

* ``link``: the record joins that patient;
* ``new``: the record starts a patient;
* ``review``: with ``--reviewer oracle`` (default) a reviewer who knows the truth accepts a
  correct candidate and rejects a wrong one (the record then starts its own patient): the
  steady state of an exchange whose queue is worked; with ``--reviewer none`` every
  reviewed record starts its own patient (the queue is never worked).

A link is correct when the patient was founded by a record of the same person. Reported:

* precision of automatic links (overall and per rule) = correct links / links;
* recall of automatic links = correct links / records whose person already had a patient;
* the review queue: size, and how many items hold a true match;
* records rejected for an invalid national ID, and whether an error was injected there;
* time per match (``from_patient`` + ``decide``): mean and p99.

Markdown on stdout; ``--json PATH`` writes the same figures as JSON. Exit status 1 when the
auto-link precision is below ``--min-precision`` (default 0.999).

    python bench/match_quality.py --persons 100000 --seed 6 --json bench/out/identity.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from population import TODAY, Population, Record

from hie.identity import (
    InMemoryDirectory,
    InvalidIdentifier,
    Link,
    MatchSettings,
    NewPatient,
    Review,
    decide,
    from_patient,
)


def run(
    persons: int, seed: int, settings: MatchSettings, reviewer: str = "oracle"
) -> dict[str, Any]:
    started = time.perf_counter()
    population = Population(persons, seed)
    generated = time.perf_counter() - started

    directory = InMemoryDirectory()
    founder: dict[str, str] = {}  # exchange patient → person of its first record
    has_patient: set[str] = set()
    links: Counter[str] = Counter()
    wrong_links: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    by_error: dict[str, Counter[str]] = {}
    rejected: Counter[str] = Counter()
    rejected_clean = 0
    reviews_true = reviews_false = 0
    linkable = correct_links = 0
    false_examples: list[dict[str, Any]] = []
    review_examples: Counter[str] = Counter()
    timings: list[int] = []
    cpu: list[int] = []

    for record in population.records:
        t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
        try:
            traits = from_patient(record.patient, today=TODAY)
        except InvalidIdentifier as exc:
            timings.append(time.perf_counter_ns() - t0)
            cpu.append(time.thread_time_ns() - c0)
            rejected[exc.kind] += 1
            if not {"id-typo", "id-contradicts-record"} & set(record.errors):
                rejected_clean += 1
            continue
        decision = decide(traits, directory, settings)
        timings.append(time.perf_counter_ns() - t0)
        cpu.append(time.thread_time_ns() - c0)

        person = record.person
        known = person in has_patient
        linkable += known
        if isinstance(decision, Link):
            pid = decision.patient_id
            links[decision.rule] += 1
            if founder[pid] == person:
                correct_links += 1
                outcome = "linked"
            else:
                wrong_links[decision.rule] += 1
                outcome = "wrong-link"
                if len(false_examples) < 25:
                    false_examples.append(_example(record, decision, founder[pid], population))
        elif isinstance(decision, Review):
            right = founder[decision.candidate_patient_id] == person
            reviews_true += right
            reviews_false += not right
            for reason in decision.reasons:
                review_examples[reason.split("(")[0].split(" → ")[0][:60]] += 1
            outcome = "review-true" if right else "review-false"
            if reviewer == "oracle" and right:
                pid = decision.candidate_patient_id
            else:
                pid = f"P{len(directory) + 1}"
                founder[pid] = person
        else:
            assert isinstance(decision, NewPatient)
            outcome = "missed" if known else "new"
            pid = f"P{len(directory) + 1}"
            founder[pid] = person
        outcomes[outcome] += 1
        for tag in record.errors or ("clean",):
            by_error.setdefault(tag, Counter())[outcome] += 1
        directory.add(pid, traits)
        has_patient.add(person)

    total_links = sum(links.values())
    wrong = sum(wrong_links.values())
    timings_us = sorted(t / 1000 for t in timings)
    cpu_us = sorted(t / 1000 for t in cpu)
    return {
        "persons": len(population.people),
        "records": len(population.records),
        "seed": seed,
        "reviewer": reviewer,
        "settings": {"auto_link": settings.auto_link, "review_floor": settings.review_floor},
        "exchange_patients": len(directory),
        "auto_links": total_links,
        "auto_links_wrong": wrong,
        "precision": (total_links - wrong) / total_links if total_links else 1.0,
        "linkable_records": linkable,
        "recall": correct_links / linkable if linkable else 1.0,
        "recall_with_review": (correct_links + reviews_true) / linkable if linkable else 1.0,
        "by_rule": {
            rule: {"links": n, "wrong": wrong_links[rule], "precision": (n - wrong_links[rule]) / n}
            for rule, n in sorted(links.items())
        },
        "review_queue": reviews_true + reviews_false,
        "review_true_match": reviews_true,
        "review_not_match": reviews_false,
        "review_reasons": dict(review_examples.most_common(12)),
        "missed": outcomes["missed"],
        "new": outcomes["new"],
        "rejected": dict(rejected),
        "rejected_without_injected_error": rejected_clean,
        "by_error": {tag: dict(c) for tag, c in sorted(by_error.items())},
        "time_per_match_us": _percentiles(timings_us),
        "cpu_per_match_us": _percentiles(cpu_us),
        "seconds": {"generate": generated, "match": sum(timings) / 1e9},
        "false_link_examples": false_examples,
    }


def _percentiles(sorted_us: list[float]) -> dict[str, float]:
    n = len(sorted_us)
    return {
        "mean": statistics.fmean(sorted_us) if n else 0.0,
        "p50": sorted_us[n // 2] if n else 0.0,
        "p99": sorted_us[min(n - 1, int(n * 0.99))] if n else 0.0,
    }


def _example(
    record: Record, decision: Link, true_founder: str, population: Population
) -> dict[str, Any]:
    people = {p.pid: p for p in population.people if p.pid in (record.person, true_founder)}
    return {
        "record": record.record_id,
        "errors": list(record.errors),
        "rule": decision.rule,
        "score": decision.score,
        "record_person": asdict(people[record.person]) if record.person in people else None,
        "linked_to_person": asdict(people[true_founder]) if true_founder in people else None,
    }


def markdown(r: dict[str, Any]) -> str:
    t, c = r["time_per_match_us"], r["cpu_per_match_us"]
    lines = [
        f"### Identity match quality: {r['persons']:,} persons, {r['records']:,} records "
        f"(seed {r['seed']}, reviewer {r['reviewer']})",
        "",
        f"Thresholds: auto-link ≥ {r['settings']['auto_link']:g}, "
        f"review ≥ {r['settings']['review_floor']:g}.",
        "",
        "| Measure | Value |",
        "|---|---|",
        f"| Auto-link precision | **{r['precision']:.5f}** "
        f"({r['auto_links'] - r['auto_links_wrong']:,} of {r['auto_links']:,} correct) |",
        f"| Auto-link recall | **{r['recall']:.4f}** (of {r['linkable_records']:,} records "
        "whose person already had a patient) |",
        f"| Recall counting true matches in review | {r['recall_with_review']:.4f} |",
        f"| Review queue | {r['review_queue']:,} ({r['review_queue'] / r['records']:.2%} of "
        f"records; {r['review_true_match']:,} true matches, {r['review_not_match']:,} not) |",
        f"| Missed (new patient although one existed) | {r['missed']:,} |",
        f"| Rejected (invalid national ID) | {sum(r['rejected'].values()):,} "
        f"{r['rejected']}; without an injected error: {r['rejected_without_injected_error']} |",
        f"| Exchange patients at the end | {r['exchange_patients']:,} |",
        f"| Time per match (from_patient + decide), wall clock | mean {t['mean']:.0f} µs, "
        f"p50 {t['p50']:.0f} µs, p99 {t['p99']:.0f} µs |",
        f"| Same, CPU time of the thread | mean {c['mean']:.0f} µs, "
        f"p50 {c['p50']:.0f} µs, p99 {c['p99']:.0f} µs |",
        "",
        "| Rule | Links | Wrong | Precision |",
        "|---|---|---|---|",
    ]
    for rule, v in r["by_rule"].items():
        lines.append(f"| {rule} | {v['links']:,} | {v['wrong']} | {v['precision']:.5f} |")
    lines += ["", "| Injected error / tag | linked | wrong-link | review (true) | review (false) "
              "| missed | new |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for tag, c in r["by_error"].items():
        lines.append(
            f"| {tag} | {c.get('linked', 0):,} | {c.get('wrong-link', 0)} | "
            f"{c.get('review-true', 0):,} | {c.get('review-false', 0):,} | "
            f"{c.get('missed', 0):,} | {c.get('new', 0):,} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--auto-link", type=float, default=MatchSettings.auto_link)
    parser.add_argument("--review-floor", type=float, default=MatchSettings.review_floor)
    parser.add_argument("--reviewer", choices=["oracle", "none"], default="oracle")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    parser.add_argument("--min-precision", type=float, default=0.999)
    args = parser.parse_args(argv)
    settings = MatchSettings(auto_link=args.auto_link, review_floor=args.review_floor)
    result = run(args.persons, args.seed, settings, args.reviewer)
    sys.stdout.write(markdown(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, ensure_ascii=False, indent=2, default=str))
    return 0 if result["precision"] >= args.min_precision else 1


if __name__ == "__main__":
    raise SystemExit(main())
