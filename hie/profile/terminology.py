"""CodeSystems and ValueSets shipped in ``fhir_profiles/``, expanded to plain code sets at load.

Required bindings are checked against these expansions and nothing else: hie has no
terminology server, so a ValueSet that cannot be expanded from the shipped files is a load
error, never a silent pass. Supported compose forms (FHIR R4 valueset.html, compose):
``include``/``exclude`` of a whole shipped CodeSystem, of listed ``concept``s (any system,
shipped or not), or of other ValueSets (``valueSet``, union only). ``filter`` is not
supported. Concepts marked ``notSelectable`` (abstract grouping codes such as
``_ObservationInterpretationNormality``) are left out of whole-system includes, since a
resource may not carry them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from hie.profile.errors import ProfileError


@dataclass(frozen=True)
class Expansion:
    """The codes of one ValueSet: ``(system, code)`` pairs, plus the bare codes for ``code``
    elements (whose system is implied by the element, e.g. ``Observation.status``)."""

    url: str
    pairs: frozenset[tuple[str, str]]
    codes: frozenset[str]
    systems: frozenset[str]

    def describe(self, limit: int = 12) -> str:
        """A short human list of the allowed codes, for diagnostics."""
        shown = sorted(self.codes)
        text = ", ".join(shown[:limit])
        return text + (", ..." if len(shown) > limit else "")


def canonical(url: str) -> str:
    """Drop a ``|version`` suffix: hie ships one version of each ValueSet."""
    return url.split("|", 1)[0]


class Terminology:
    """The CodeSystems and ValueSets of one ``fhir_profiles/`` folder, indexed by canonical URL."""

    def __init__(
        self, code_systems: Iterable[dict[str, Any]], value_sets: Iterable[dict[str, Any]]
    ):
        self._code_systems: dict[str, dict[str, Any]] = {}
        self._value_sets: dict[str, dict[str, Any]] = {}
        for doc in code_systems:
            self._code_systems[_url_of(doc, "CodeSystem")] = doc
        for doc in value_sets:
            self._value_sets[_url_of(doc, "ValueSet")] = doc
        self._expansions: dict[str, Expansion] = {}

    def expand(self, url: str, _seen: frozenset[str] = frozenset()) -> Expansion:
        """The expansion of a shipped ValueSet; ProfileError if not shipped or not expandable."""
        url = canonical(url)
        if url in self._expansions:
            return self._expansions[url]
        if url in _seen:
            raise ProfileError(f"ValueSet {url} includes itself")
        doc = self._value_sets.get(url)
        if doc is None:
            raise ProfileError(
                f"ValueSet {url} is bound in a profile but not shipped in fhir_profiles/"
            )
        compose = doc.get("compose")
        if not isinstance(compose, dict) or not isinstance(compose.get("include"), list):
            raise ProfileError(f"ValueSet {url} has no compose.include to expand")
        seen = _seen | {url}
        pairs = set(self._part_pairs(url, compose["include"], seen))
        pairs -= set(self._part_pairs(url, compose.get("exclude") or [], seen))
        expansion = Expansion(
            url=url,
            pairs=frozenset(pairs),
            codes=frozenset(code for _, code in pairs),
            systems=frozenset(system for system, _ in pairs),
        )
        self._expansions[url] = expansion
        return expansion

    def _part_pairs(self, url: str, parts: Any, seen: frozenset[str]) -> Iterator[tuple[str, str]]:
        if not isinstance(parts, list):
            raise ProfileError(f"ValueSet {url}: compose include/exclude must be a list")
        for part in parts:
            if not isinstance(part, dict):
                raise ProfileError(
                    f"ValueSet {url}: compose include/exclude entries must be objects"
                )
            if "filter" in part:
                raise ProfileError(f"ValueSet {url}: compose filters are not supported by hie")
            system = part.get("system")
            nested = part.get("valueSet")
            if nested is not None:
                if system is not None or not isinstance(nested, list):
                    raise ProfileError(
                        f"ValueSet {url}: only a plain union of valueSet includes is supported"
                    )
                for other in nested:
                    yield from self.expand(str(other), seen).pairs
                continue
            if not isinstance(system, str):
                raise ProfileError(f"ValueSet {url}: compose include without a system")
            concepts = part.get("concept")
            if concepts is not None:
                if not isinstance(concepts, list):
                    raise ProfileError(f"ValueSet {url}: compose concept must be a list")
                for concept in concepts:
                    code = concept.get("code") if isinstance(concept, dict) else None
                    if not isinstance(code, str):
                        raise ProfileError(f"ValueSet {url}: a listed concept has no code")
                    yield system, code
                continue
            yield from ((system, code) for code in self._whole_system(url, system))

    def _whole_system(self, url: str, system: str) -> Iterator[str]:
        doc = self._code_systems.get(system)
        if doc is None:
            raise ProfileError(
                f"ValueSet {url} includes all of CodeSystem {system}, which is not shipped"
            )
        if doc.get("content") != "complete":
            raise ProfileError(
                f"CodeSystem {system} has content {doc.get('content')!r}; only 'complete' "
                "code systems can be included whole"
            )
        yield from _selectable(doc.get("concept") or [], system)


def _selectable(concepts: Any, system: str) -> Iterator[str]:
    """Codes of a nested concept list, without abstract ones (R4 codesystem.html notSelectable)."""
    if not isinstance(concepts, list):
        raise ProfileError(f"CodeSystem {system}: concept must be a list")
    for concept in concepts:
        if not isinstance(concept, dict) or not isinstance(concept.get("code"), str):
            raise ProfileError(f"CodeSystem {system}: a concept has no code")
        abstract = any(
            isinstance(p, dict) and p.get("code") == "notSelectable" and p.get("valueBoolean")
            for p in concept.get("property") or []
        )
        if not abstract:
            yield concept["code"]
        yield from _selectable(concept.get("concept") or [], system)


def _url_of(doc: dict[str, Any], kind: str) -> str:
    url = doc.get("url")
    if doc.get("resourceType") != kind or not isinstance(url, str):
        raise ProfileError(f"a {kind} file lacks resourceType {kind} or a url")
    return canonical(url)
