"""Compile a StructureDefinition's ``differential`` into an :class:`Element` tree.

hie reads only the differential: the base resource's own rules are fhir.resources' job,
which runs first. Every ElementDefinition property that could constrain an instance is
either enforced here or refused with a ProfileError, so editing a profile always changes
what is validated — or stops the exchange from starting, never silently does nothing.

Enforced: ``min``/``max``; ``type`` (allowed choice types; Reference targetProfile);
``binding`` (required → error, extensible → warning; preferred/example are advice);
``fixed[x]``/``pattern[x]``; ``constraint`` (FHIRPath subset, see invariant.py);
``maxLength``; ``slicing`` with ``value``/``pattern`` discriminators, open or closed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from hie.profile import rules
from hie.profile.element import Check, Element, Match
from hie.profile.errors import ProfileError
from hie.profile.invariant import compile_invariant
from hie.profile.terminology import Expansion, Terminology

CORE_PREFIX = "http://hl7.org/fhir/StructureDefinition/"

# Documentation-only ElementDefinition properties: present or not, validation is the same.
_DOC_KEYS = frozenset(
    {
        "id", "path", "sliceName", "short", "definition", "comment", "requirements", "alias",
        "label", "code", "mustSupport", "isModifier", "isModifierReason", "isSummary",
        "meaningWhenMissing", "orderMeaning", "example", "mapping", "extension", "condition",
        "base",
    }
)  # fmt: skip
_RULE_KEYS = frozenset({"min", "max", "type", "binding", "constraint", "slicing", "maxLength"})
_CHECKED_BINDINGS = frozenset({"required", "extensible"})
_ADVISORY_BINDINGS = frozenset({"preferred", "example"})
_CODED = ("code", "Coding", "CodeableConcept")


@dataclass(frozen=True)
class Profile:
    """One compiled hie profile: validate a resource of ``type`` by walking ``root``."""

    url: str
    name: str
    type: str
    root: Element


def compile_profile(
    sd: dict[str, Any],
    terminology: Terminology,
    profile_type: Callable[[str], str | None],
    waive: frozenset[str] = frozenset(),
) -> Profile:
    """``profile_type`` maps a targetProfile canonical to its resource type (for Reference
    checks); ``waive`` lists element ids whose own rules are skipped (their children stay)."""
    url, rtype = sd.get("url"), sd.get("type")
    name = sd.get("id") or sd.get("name")
    if not (isinstance(url, str) and isinstance(rtype, str) and isinstance(name, str)):
        raise ProfileError("a StructureDefinition lacks url, type or id")
    if sd.get("derivation") != "constraint":
        raise ProfileError(f"{name}: only constraint profiles are supported (derivation)")
    elements = (sd.get("differential") or {}).get("element")
    if not isinstance(elements, list) or not elements:
        raise ProfileError(f"{name}: no differential.element list")
    builder = _Builder(name, rtype, terminology, profile_type)
    for ed in elements:
        if not isinstance(ed, dict):
            raise ProfileError(f"{name}: a differential element is not an object")
        builder.add(ed, waive)
    builder.finish()
    builder.root.freeze()
    return Profile(url=url, name=name, type=rtype, root=builder.root)


class _Builder:
    def __init__(
        self,
        profile: str,
        rtype: str,
        terminology: Terminology,
        profile_type: Callable[[str], str | None],
    ):
        self.profile, self.rtype = profile, rtype
        self.terminology, self.profile_type = terminology, profile_type
        self.root = Element(eid=rtype, key=rtype, profile=profile)
        self.nodes: dict[str, Element] = {rtype: self.root}
        self.values: dict[str, tuple[str, Any]] = {}  # eid → ("fixed"|"pattern", value)
        self.bound: dict[str, Expansion] = {}  # eid → required ValueSet, for value slicing
        self.slicing: dict[str, dict[str, Any]] = {}

    def add(self, ed: dict[str, Any], waive: frozenset[str]) -> None:
        eid = ed.get("id") or ed.get("path")
        if not isinstance(eid, str) or not (eid == self.rtype or eid.startswith(self.rtype + ".")):
            raise ProfileError(f"{self.profile}: element id {eid!r} is not under {self.rtype}")
        unknown = [
            k for k in ed if k not in _DOC_KEYS and k not in _RULE_KEYS and not _value_key(k)
        ]
        if unknown:
            raise ProfileError(
                f"{self.profile}: {eid} uses {', '.join(sorted(unknown))}, which hie's "
                "validator does not enforce"
            )
        node = self.node(eid)
        if eid in waive:
            return
        self.rules(node, ed)

    def node(self, eid: str) -> Element:
        found = self.nodes.get(eid)
        if found is not None:
            return found
        parent_id, _, segment = eid.rpartition(".")
        parent = self.node(parent_id)
        base, _, slice_name = segment.partition(":")
        choice = base.endswith("[x]")
        key = base[:-3] if choice else base
        if not key.isidentifier():
            raise ProfileError(f"{self.profile}: cannot read element id {eid!r}")
        if slice_name:
            if choice:
                raise ProfileError(f"{self.profile}: type slicing ({eid}) is not supported")
            sliced = self.node(f"{parent_id}.{base}")
            made = Element(eid=eid, key=key, profile=self.profile, slice_name=slice_name)
            sliced.slices.append(made)
        else:
            made = Element(eid=eid, key=key, profile=self.profile, choice=choice)
            parent.children.append(made)
        self.nodes[eid] = made
        return made

    def rules(self, node: Element, ed: dict[str, Any]) -> None:
        where = f"profile {self.profile}, element {node.eid}"
        if node is not self.root:
            node.min, node.max = _cardinality(ed, where)
        declared = self.types(node, ed.get("type"), where)
        binding = ed.get("binding")
        if binding is not None:
            check = self.binding(node.eid, binding, declared, where)
            if check is not None:
                node.checks.append(check)
        for key, value in ed.items():
            kind = _value_key(key)
            if kind:
                self.values[node.eid] = (kind, value)
                node.checks.append(rules.fixed(value, kind, where))
        limit = ed.get("maxLength")
        if limit is not None:
            if not isinstance(limit, int) or limit < 1:
                raise ProfileError(f"{where}: maxLength must be a positive integer")
            node.checks.append(rules.max_length(limit, where))
        for constraint in ed.get("constraint") or []:
            node.checks.append(self.constraint(constraint, where))
        if "slicing" in ed:
            self.slicing[node.eid] = ed["slicing"]

    def types(self, node: Element, types: Any, where: str) -> str | None:
        """Apply ``type``; return the declared coded type (code/Coding/CodeableConcept) if one."""
        if types is None:
            return None
        if not isinstance(types, list) or not all(
            isinstance(t, dict) and isinstance(t.get("code"), str) for t in types
        ):
            raise ProfileError(f"{where}: type must be a list of objects with a code")
        codes = [t["code"] for t in types]
        if node.choice:
            node.types = frozenset(c[:1].upper() + c[1:] for c in codes)
        targets: set[str] = set()
        for t in types:
            if "profile" in t or "aggregation" in t or "versioning" in t:
                raise ProfileError(f"{where}: type profile/aggregation/versioning not supported")
            for canonical in t.get("targetProfile") or []:
                target = _core_type(canonical) or self.profile_type(canonical)
                if target is None:
                    raise ProfileError(f"{where}: unknown targetProfile {canonical}")
                targets.add(target)
        if targets:
            node.checks.append(rules.reference(frozenset(targets), where))
        coded = [c for c in codes if c in _CODED]
        return coded[0] if len(coded) == 1 and len(codes) == 1 else None

    def binding(self, eid: str, binding: Any, declared: str | None, where: str) -> Check | None:
        strength = binding.get("strength") if isinstance(binding, dict) else None
        if strength in _ADVISORY_BINDINGS:
            return None
        if strength not in _CHECKED_BINDINGS:
            raise ProfileError(f"{where}: binding strength {strength!r} is not a FHIR strength")
        url = binding.get("valueSet")
        if not isinstance(url, str):
            raise ProfileError(f"{where}: a {strength} binding needs a valueSet")
        expansion = self.terminology.expand(url)
        if strength == "required":
            self.bound[eid] = expansion
        return rules.binding(expansion, strength, declared, where)

    def constraint(self, constraint: Any, where: str) -> Check:
        if not isinstance(constraint, dict):
            raise ProfileError(f"{where}: a constraint is not an object")
        key, expression = constraint.get("key"), constraint.get("expression")
        if not isinstance(key, str) or not isinstance(expression, str):
            raise ProfileError(f"{where}: a constraint needs key and expression")
        severity = constraint.get("severity", "error")
        if severity not in ("error", "warning"):
            raise ProfileError(f"{where}: constraint {key} severity must be error or warning")
        human = str(constraint.get("human") or expression)
        return rules.invariant(compile_invariant(key, expression), severity, human, where)

    def finish(self) -> None:
        for eid, node in self.nodes.items():
            if node.slices and eid not in self.slicing:
                raise ProfileError(f"{self.profile}: {eid} has slices but no slicing")
        for eid, slicing in self.slicing.items():
            self.slice(self.nodes[eid], slicing)

    def slice(self, node: Element, slicing: Any) -> None:
        where = f"profile {self.profile}, element {node.eid}"
        if not isinstance(slicing, dict):
            raise ProfileError(f"{where}: slicing must be an object")
        if slicing.get("ordered"):
            raise ProfileError(f"{where}: ordered slicing is not supported")
        rules_ = slicing.get("rules", "open")
        if rules_ not in ("open", "closed", "openAtEnd"):
            raise ProfileError(f"{where}: slicing rules {rules_!r} unknown")
        node.closed = rules_ == "closed"
        discriminators = slicing.get("discriminator")
        if not isinstance(discriminators, list) or not discriminators:
            raise ProfileError(f"{where}: slicing needs a discriminator")
        for piece in node.slices:
            tests: list[tuple[list[str], Match]] = []
            texts: list[str] = []
            for d in discriminators:
                dtype, path = (
                    (d.get("type"), d.get("path")) if isinstance(d, dict) else (None, None)
                )
                if dtype not in ("value", "pattern") or not isinstance(path, str):
                    raise ProfileError(
                        f"{where}: only value/pattern discriminators with a path are supported"
                    )
                target = piece.eid if path == "$this" else f"{piece.eid}.{path}"
                steps = [] if path == "$this" else path.split(".")
                if target in self.values:
                    kind, value = self.values[target]
                    tests.append((steps, _value_test(kind, value)))
                    sign = "=" if kind == "fixed" else "matches"
                    texts.append(f"{path} {sign} {rules.brief(value)}")
                elif dtype == "value" and target in self.bound:
                    # FHIR R5 (discriminator-type 'value') spells out what R4 validators do: a value
                    # discriminator may rest on a required binding
                    expansion = self.bound[target]
                    tests.append((steps, partial(rules.member, expansion)))
                    texts.append(f"{path} in {expansion.url} ({expansion.describe()})")
                else:
                    raise ProfileError(
                        f"{where}: slice {piece.slice_name} has no fixed/pattern value or "
                        f"required binding at {path}"
                    )
            piece.match = _matcher(tests)
            piece.match_text = " and ".join(texts)


def _value_test(kind: str, value: Any) -> Match:
    if kind == "fixed":
        return lambda item: rules.equal(value, item)
    return lambda item: rules.contains(item, value)


def _matcher(tests: list[tuple[list[str], Match]]) -> Match:
    def match(instance: Any) -> bool:
        for steps, test in tests:
            found = [instance]
            for step in steps:
                found = [
                    v for item in found if isinstance(item, dict) for v in _as_list(item.get(step))
                ]
            if not any(test(item) for item in found):
                return False
        return True

    return match


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _cardinality(ed: dict[str, Any], where: str) -> tuple[int, int | None]:
    low, high = ed.get("min", 0), ed.get("max", "*")
    if not isinstance(low, int) or isinstance(low, bool) or low < 0:
        raise ProfileError(f"{where}: min must be a non-negative integer")
    if high == "*":
        return low, None
    if not (isinstance(high, str) and high.isdigit()) or int(high) < low:
        raise ProfileError(f"{where}: max must be '*' or an integer string not below min")
    return low, int(high)


def _value_key(key: str) -> str | None:
    for kind in ("fixed", "pattern"):
        if key.startswith(kind) and len(key) > len(kind) and key[len(kind)].isupper():
            return kind
    return None


def _core_type(canonical: str) -> str | None:
    if canonical.startswith(CORE_PREFIX):
        rest = canonical[len(CORE_PREFIX) :]
        return rest if rest.isidentifier() and rest[:1].isupper() else None
    return None
