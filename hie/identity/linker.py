"""Which exchange patient a record belongs to: link, new patient, or a human's review.

The order of evidence (issue 6):

1. **Deterministic**: a validated national ID, then a passport (per issuing country), then
   the hospital's own MRN, already held by a patient → that patient. Unless the patient's
   traits contradict the record (same number, other birth date or sex; several identifiers
   pointing at different patients): then review, because a shared number with a different
   birth date is more often a wrong number than a wrong date.
2. **Probabilistic**: candidates from the blocking keys, scored (:mod:`.scoring`). Different
   validated national IDs never match (twins). The best candidate is linked only if its
   score reaches ``auto_link``, nothing in the comparison asks for a human, no other
   candidate could be linked as well, and no other candidate looks like a twin (same birth
   date and home, another name); from ``review_floor`` up it goes to review; below, the
   record starts a new patient. The grey zone is never merged automatically.

The decision is pure data; storing links, their history and the review queue is the index's
job (see :mod:`.events`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from hie import naming
from hie.identity.blocking import query_keys
from hie.identity.directory import Candidate, InMemoryDirectory, PatientDirectory
from hie.identity.scoring import (
    DEFAULT_WEIGHTS,
    NAME_LINKABLE,
    Comparison,
    Weights,
    compare,
    conflicts,
)
from hie.identity.traits import Traits

__all__ = [
    "Candidate",
    "InMemoryDirectory",
    "Link",
    "LinkDecision",
    "MatchSettings",
    "NewPatient",
    "PatientDirectory",
    "Review",
    "Rule",
    "decide",
]

Rule = Literal[
    "deterministic:national-id", "deterministic:passport", "deterministic:mrn", "probabilistic"
]


@dataclass(frozen=True)
class MatchSettings:
    """Thresholds on the Fellegi–Sunter score (bits, log2 of the likelihood ratio).

    The defaults were chosen on the synthetic population (bench/README-identity.md): at
    ``auto_link`` 30 a name and birth date agreeing exactly are not enough on their own
    (namesakes born the same day exist in any city); a phone or address must agree too.
    """

    auto_link: float = 30.0
    review_floor: float = 18.0
    weights: Weights = DEFAULT_WEIGHTS

    def __post_init__(self) -> None:
        if self.review_floor > self.auto_link:
            raise ValueError("review_floor must not exceed auto_link")


@dataclass(frozen=True)
class Link:
    patient_id: str
    rule: Rule
    score: float | None = None
    action: Literal["link"] = "link"


@dataclass(frozen=True)
class NewPatient:
    best_score: float | None = None
    action: Literal["new"] = "new"


@dataclass(frozen=True)
class Review:
    candidate_patient_id: str
    score: float | None
    reasons: tuple[str, ...]
    action: Literal["review"] = "review"


LinkDecision = Link | NewPatient | Review


def _strong_identifiers(record: Traits) -> list[tuple[Rule, str, str]]:
    out: list[tuple[Rule, str, str]] = []
    for nid in sorted(record.national_ids, key=lambda n: n.value):
        out.append(("deterministic:national-id", naming.NATIONAL_ID, nid.value))
    for system, value in sorted(record.passports):
        out.append(("deterministic:passport", system, value))
    for system, value in sorted(record.mrns):
        out.append(("deterministic:mrn", system, value))
    return out


def decide(record: Traits, directory: PatientDirectory, settings: MatchSettings) -> LinkDecision:
    """The link decision for one record's traits (see the module docstring for the rules)."""
    strong = _strong_identifiers(record)
    held = directory.by_identifiers([(system, value) for _, system, value in strong])
    hits = [(rule, held[(s, v)]) for rule, s, v in strong if (s, v) in held]
    candidates = {c.patient_id: c for c in directory.candidates(query_keys(record))}

    if hits:
        return _deterministic(record, hits, candidates, settings)

    compared = [(compare(record, c.traits, settings.weights), pid) for pid, c in candidates.items()]
    scored = [(c, pid) for c, pid in compared if c.hard_nonmatch is None]
    if not scored:
        return NewPatient()
    scored.sort(key=lambda s: (-s[0].score, s[1]))
    best, best_pid = scored[0]
    if best.score < settings.review_floor:
        return NewPatient(best_score=best.score)
    reasons = list(best.review_only)
    rivals = [pid for c, pid in scored[1:] if c.score >= settings.auto_link and not c.review_only]
    if rivals:
        reasons.append(f"patient {rivals[0]} matches as well")
    twins = [pid for c, pid in compared if pid != best_pid and _household_sibling(c)]
    if twins:
        # A one-character typo can turn one twin's name into the other's: only a human (or
        # an ID) can tell which twin this record is.
        reasons.append(f"patient {twins[0]} shares birth date and home under another name (twin?)")
    if best.score >= settings.auto_link and not reasons:
        return Link(best_pid, "probabilistic", best.score)
    if not reasons:
        reasons.append(
            f"score {best.score:.1f} between review floor {settings.review_floor:g} "
            f"and auto-link {settings.auto_link:g}"
        )
    return Review(best_pid, best.score, tuple(reasons))


def _household_sibling(c: Comparison) -> bool:
    """Same birth date and phone or address, different name: the signature of a twin."""
    home = c.levels.get("phone") == "agree" or c.levels.get("address") == "exact"
    return (
        c.levels.get("birth_date") == "exact" and home and c.levels.get("name") not in NAME_LINKABLE
    )


def _deterministic(
    record: Traits,
    hits: list[tuple[Rule, str]],
    candidates: dict[str, Candidate],
    settings: MatchSettings,
) -> LinkDecision:
    rule, pid = hits[0]
    reasons: list[str] = []
    others = sorted({p for _, p in hits if p != pid})
    if others:
        named = ", ".join(f"{r.split(':')[1]} → {p}" for r, p in hits)
        reasons.append(f"identifiers point to different patients ({named})")
    cand = candidates.get(pid)
    score: float | None = None
    if cand is not None:
        score = compare(record, cand.traits, settings.weights).score
        found = conflicts(record, cand.traits)
        if rule == "deterministic:mrn":
            # A hospital correcting a birth date under the same MRN is routine; only a
            # different national ID means the MRN now names someone else.
            found = [r for r in found if "national IDs" in r]
        reasons.extend(found)
    if reasons:
        return Review(pid, score, tuple(reasons))
    return Link(pid, rule, score)
