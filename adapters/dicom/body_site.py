"""Body Part Examined (0018,0015) → SNOMED CT, as ``fhir_profiles/`` publishes it.

The table (``ConceptMap-bodypart-snomed.json``) lives in a ConceptMap rather than in code,
so the exchange publishes the same mapping it applies (DICOM PS3.16 Annex L). Modalities
write the defined terms loosely (``Chest``, ``L-SPINE``, ``HEAD NECK``), so lookups fold
case and drop spaces, hyphens and underscores. A term the map does not know is kept as text:
the series still says what the PACS said, it is just not searchable by SNOMED code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from hie import naming

JSON = dict[str, Any]

PROFILES = Path(__file__).resolve().parents[2] / "fhir_profiles"
DEFAULT_PATH = PROFILES / "ConceptMap-bodypart-snomed.json"


def _fold(term: str) -> str:
    return "".join(ch for ch in term.upper() if ch not in " -_")


@dataclass(frozen=True)
class BodySiteMap:
    """Folded defined term → SNOMED CT Coding."""

    codings: dict[str, JSON]

    @classmethod
    def from_concept_map(cls, concept_map: JSON) -> BodySiteMap:
        codings: dict[str, JSON] = {}
        for group in concept_map.get("group") or []:
            if group.get("target") != naming.SNOMED:
                continue
            for element in group.get("element") or []:
                targets = [
                    t
                    for t in element.get("target") or []
                    if t.get("code") and t.get("equivalence") not in ("unmatched", "disjoint")
                ]
                if element.get("code") and targets:
                    first = targets[0]
                    coding = {"system": naming.SNOMED, "code": first["code"]}
                    if first.get("display"):
                        coding["display"] = first["display"]
                    codings[_fold(element["code"])] = coding
        return cls(codings)

    @classmethod
    def load(cls, path: Path = DEFAULT_PATH) -> BodySiteMap:
        return cls.from_concept_map(json.loads(path.read_text(encoding="utf-8")))

    def coding(self, body_part: str | None) -> JSON | None:
        """The series bodySite Coding for a Body Part Examined value, or None if empty."""
        if body_part is None or not body_part.strip():
            return None
        found = self.codings.get(_fold(body_part))
        if found is not None:
            return dict(found)
        return {"display": body_part.strip()}


@cache
def default_body_sites() -> BodySiteMap:
    """The map shipped in ``fhir_profiles/``, read once."""
    return BodySiteMap.load()
