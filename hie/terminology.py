"""Local test codes → LOINC, driven by one FHIR ConceptMap per hospital in ``fhir_profiles/``.

Each hospital's LIS has its own codes (``WBC``, ``0101``, ``XCG-01`` …) with Chinese
displays. ``fhir_profiles/ConceptMap-<hospital>-lab-loinc.json`` maps them to LOINC; its
``group.source`` is the hospital's local code system, ``hie.naming.local_codes(hospital_id)``,
which is how a map is tied to a hospital (FHIR R4 ConceptMap: a group maps codes from one
source system to one target system). Groups from other source systems (other kinds of maps
in the same folder) are ignored.

A code no map covers is never dropped: the Observation keeps it under the hospital's own
system, and :meth:`Terminology.unmapped` lists it (hospital, code, display, times seen) so
ops can ask the hospital or extend the map. Targets whose ``equivalence`` says there is no
match (``unmatched``, ``disjoint``) count as unmapped.

Thread-safe: MLLP listeners map messages in worker threads.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hie import naming

_NO_MATCH = frozenset({"unmatched", "disjoint"})


class ConceptMapError(ValueError):
    """A ConceptMap file that cannot be used; the message names the file and the element."""


@dataclass(frozen=True)
class Target:
    system: str
    code: str
    display: str | None


@dataclass(frozen=True)
class UnmappedCode:
    hospital_id: str
    code: str
    display: str | None
    count: int


class Terminology:
    """Lookup tables built from ConceptMaps, plus the record of codes that found no target."""

    def __init__(self, maps: dict[tuple[str, str], Target] | None = None) -> None:
        self._maps: dict[tuple[str, str], Target] = dict(maps or {})
        self._lock = threading.Lock()
        self._unmapped: dict[tuple[str, str], list[Any]] = {}

    @classmethod
    def load(cls, directory: Path | str) -> Terminology:
        """Read every ``ConceptMap-*.json`` in ``directory`` (a missing folder means no maps)."""
        maps: dict[tuple[str, str], Target] = {}
        folder = Path(directory)
        paths = sorted(folder.glob("ConceptMap-*.json")) if folder.is_dir() else []
        for path in paths:
            try:
                resource = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ConceptMapError(f"{path}: not readable JSON: {exc}") from None
            maps.update(_read(resource, str(path)))
        return cls(maps)

    @classmethod
    def from_resources(cls, resources: Iterable[dict[str, Any]]) -> Terminology:
        maps: dict[tuple[str, str], Target] = {}
        for i, resource in enumerate(resources):
            maps.update(_read(resource, f"ConceptMap[{i}]"))
        return cls(maps)

    def map(
        self, hospital_id: str, local_code: str, display: str | None = None
    ) -> tuple[str, str, str | None] | None:
        """The (system, code, display) a hospital's local code maps to, or None (recorded)."""
        target = self._maps.get((hospital_id, local_code))
        if target is not None:
            return target.system, target.code, target.display
        with self._lock:
            seen = self._unmapped.get((hospital_id, local_code))
            if seen is None:
                self._unmapped[(hospital_id, local_code)] = [display, 1]
            else:
                seen[1] += 1
                if display and not seen[0]:
                    seen[0] = display
        return None

    def unmapped(self) -> list[UnmappedCode]:
        """Local codes seen without a mapping, most frequent first."""
        with self._lock:
            rows = [UnmappedCode(h, c, d, n) for (h, c), (d, n) in self._unmapped.items()]
        return sorted(rows, key=lambda r: (-r.count, r.hospital_id, r.code))

    def hospitals(self) -> set[str]:
        return {h for h, _ in self._maps}

    def __len__(self) -> int:
        return len(self._maps)


def _read(resource: dict[str, Any], where: str) -> dict[tuple[str, str], Target]:
    if resource.get("resourceType") != "ConceptMap":
        raise ConceptMapError(f"{where}: resourceType is not ConceptMap")
    if resource.get("status") == "retired":
        return {}
    prefix = naming.local_codes("")
    out: dict[tuple[str, str], Target] = {}
    for g, group in enumerate(resource.get("group") or []):
        source = group.get("source") or ""
        if not source.startswith(prefix):
            continue  # another kind of map (e.g. body parts → SNOMED CT): not ours to read
        hospital = source[len(prefix) :]
        if not hospital or "/" in hospital:
            raise ConceptMapError(
                f"{where}: group[{g}].source {source!r} does not name a hospital "
                f"({prefix}<hospital_id>)"
            )
        target_system = group.get("target")
        if not target_system:
            raise ConceptMapError(f"{where}: group[{g}].target is missing")
        for e, element in enumerate(group.get("element") or []):
            code = element.get("code")
            if not code:
                raise ConceptMapError(f"{where}: group[{g}].element[{e}].code is missing")
            for target in element.get("target") or []:
                if target.get("equivalence") in _NO_MATCH or not target.get("code"):
                    continue
                out[(hospital, code)] = Target(target_system, target["code"], target.get("display"))
                break
    return out
