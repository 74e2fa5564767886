"""hie's own profiles, loaded from ``fhir_profiles/`` and applied on the ingest path.

The files are the rules: ``Profiles.load`` compiles each hie StructureDefinition
(``kind: resource``, ``derivation: constraint``) into a tree of check closures, and
``validate`` only walks that tree over the resource's plain JSON — no pydantic, no FHIRPath
engine, no lookups in the profile at request time.

Resource types without a hie profile (Organization, Endpoint, Specimen, ...) get only the
FHIR JSON well-formedness rules (wellformed.py); which types hie accepts at all is the
core's decision, not this module's.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any

from hie.outcome import Issue
from hie.profile import wellformed
from hie.profile.differential import Profile, compile_profile
from hie.profile.element import Run
from hie.profile.errors import ProfileError
from hie.profile.terminology import Expansion, Terminology


class Profiles:
    """The compiled profiles of one ``fhir_profiles/`` folder, one per resource type."""

    def __init__(self, definitions: Iterable[dict[str, Any]], terminology: Terminology):
        self.terminology = terminology
        self._definitions: dict[str, dict[str, Any]] = {}
        self._urls: dict[str, str] = {}
        for sd in definitions:
            rtype, url = sd.get("type"), sd.get("url")
            if not isinstance(rtype, str) or not isinstance(url, str):
                raise ProfileError(f"StructureDefinition {sd.get('id')!r} lacks type or url")
            if rtype in self._definitions:
                first = self._definitions[rtype]["url"]
                raise ProfileError(
                    f"two profiles for {rtype}: {first} and {url}; hie picks the profile by "
                    "resourceType, so there must be one"
                )
            self._definitions[rtype] = sd
            self._urls[url] = rtype
        self._compiled: dict[tuple[str, frozenset[str]], Profile] = {}
        for rtype in self._definitions:
            self._profile(rtype, frozenset())  # compile now: a bad profile fails at start-up

    @classmethod
    def load(cls, directory: Path) -> Profiles:
        """Read ``StructureDefinition-*.json``, ``ValueSet-*.json`` and ``CodeSystem-*.json``.

        StructureDefinitions that are not resource constraints (extensions, logical models)
        are skipped; any file that cannot be read or enforced raises ProfileError."""
        definitions = [
            sd
            for sd in _read(directory, "StructureDefinition")
            if sd.get("kind") == "resource" and sd.get("derivation") == "constraint"
        ]
        terminology = Terminology(_read(directory, "CodeSystem"), _read(directory, "ValueSet"))
        return cls(definitions, terminology)

    def validate(self, resource: Any, *, waive: Collection[str] = ()) -> list[Issue]:
        """Issues (errors and warnings) for one resource as plain JSON; empty means valid.

        Reject only on ``severity == "error"``; warnings (extensible bindings, warning
        constraints) belong in the success OperationOutcome. ``waive`` names element ids
        (``"Observation.identifier"``) whose own rules the caller lifts — for example the
        source-identifier requirement on a plain HTTP create; their child rules still apply.
        Each distinct ``waive`` set is compiled once and cached (pass a few constant sets);
        ids not in the profile waive nothing. Never raises on odd shapes."""
        if not isinstance(resource, dict):
            return [Issue("the resource is not a JSON object", code="structure")]
        rtype = resource.get("resourceType")
        if not isinstance(rtype, str) or not rtype:
            return [Issue("resourceType is missing", code="required", expression="resourceType")]
        issues = wellformed.check(resource, rtype)
        if rtype not in self._definitions:
            return issues
        root = self._profile(rtype, frozenset(waive)).root
        if root.passes_all([resource], Run(resource)):
            return issues  # the common case, walked without naming every element
        run = Run(resource)
        root.process([(resource, rtype)], rtype, run)
        return issues + run.issues

    def profile_url(self, resource_type: str) -> str | None:
        """The canonical URL of hie's profile for a type (for ``meta.profile`` and the
        CapabilityStatement's ``supportedProfile``), or None if the type has none."""
        sd = self._definitions.get(resource_type)
        return sd["url"] if sd is not None else None

    @property
    def resource_types(self) -> frozenset[str]:
        return frozenset(self._definitions)

    def expansion(self, valueset_url: str) -> Expansion:
        """The codes of a shipped ValueSet (ProfileError if it is not shipped)."""
        return self.terminology.expand(valueset_url)

    def _profile(self, rtype: str, waive: frozenset[str]) -> Profile:
        key = (rtype, waive)
        found = self._compiled.get(key)
        if found is None:
            found = compile_profile(
                self._definitions[rtype], self.terminology, self._urls.get, waive
            )
            self._compiled[key] = found
        return found


def _read(directory: Path, kind: str) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(directory.glob(f"{kind}-*.json")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ProfileError(f"{path.name}: cannot read: {exc}") from exc
        if not isinstance(doc, dict) or doc.get("resourceType") != kind:
            raise ProfileError(f"{path.name}: not a {kind}")
        docs.append(doc)
    return docs
