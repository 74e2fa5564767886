"""A compiled profile: a tree of elements, each with its cardinality and value checks,
walked once over a resource's plain JSON.

The tree mirrors the differential's element ids (``Observation.category.coding.code``,
``ImagingStudy.identifier:studyInstanceUid.value``); elements the differential does not
mention are never visited, so a small differential costs little on the ingest hot path.
Cardinality applies per instance of the parent, as in FHIR (R4 profiling.html, cardinality:
a child's min only bites when its parent is present).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hie.outcome import Issue


class Run:
    """What one validation carries down the walk: the resource (to resolve ``#contained``
    references) and the issues found so far."""

    __slots__ = ("issues", "resource")

    def __init__(self, resource: dict[str, Any]):
        self.resource = resource
        self.issues: list[Issue] = []


Check = Callable[[Any, str, Run], None]
Match = Callable[[Any], bool]


@dataclass(eq=False)
class Element:
    """One element of a profile, with the rules the differential gives it.

    ``key`` is the JSON property (for a choice element ``value[x]``, the stem ``value``);
    slices are Elements too, holding the instances their ``match`` accepts."""

    eid: str
    key: str
    profile: str
    choice: bool = False
    min: int = 0
    max: int | None = None
    types: frozenset[str] | None = None  # allowed choice types, as in JSON names: DateTime, Period
    checks: list[Check] = field(default_factory=list)
    children: list[Element] = field(default_factory=list)
    slices: list[Element] = field(default_factory=list)
    slice_name: str | None = None
    match: Match | None = None
    match_text: str = ""
    closed: bool = False
    leaf: bool = False  # set by freeze(): no checks, children or slices, only cardinality
    # set by freeze(), for passes(): the leaf children as (key, min, max), and the others
    leaves: tuple[tuple[str, int, int | None], ...] = ()
    inner: tuple[Element, ...] = ()

    def freeze(self) -> None:
        """Mark cardinality-only elements (after the tree is complete) for the fast path."""
        for child in (*self.children, *self.slices):
            child.freeze()
        self.leaf = not (self.checks or self.children or self.slices or self.choice)
        self.leaves = tuple((c.key, c.min, c.max) for c in self.children if c.leaf)
        self.inner = tuple(c for c in self.children if not c.leaf)

    def rule(self) -> str:
        upper = "*" if self.max is None else str(self.max)
        return f"{self.eid} {self.min}..{upper} in profile {self.profile}"

    def visit(self, parent: dict[str, Any], parent_expr: str, run: Run) -> None:
        """Find this element's instances under one parent instance and check them."""
        instances: list[tuple[Any, str]] = []
        if self.choice:
            stem, cut = self.key, len(self.key)
            for key, value in parent.items():
                if len(key) > cut and key.startswith(stem) and key[cut].isupper():
                    if self.types is not None and key[cut:] not in self.types:
                        allowed = ", ".join(sorted(self.types))
                        run.issues.append(
                            Issue(
                                f"{parent_expr}.{key}: type {key[cut:]} is not allowed for "
                                f"{self.key}[x]; allowed: {allowed} ({self.rule()})",
                                code="structure",
                                expression=f"{parent_expr}.{key}",
                            )
                        )
                    _collect(value, f"{parent_expr}.{key}", instances)
        else:
            value = parent.get(self.key)
            if self.leaf:  # cardinality only: count, build no expressions
                count = 0 if value is None else len(value) if isinstance(value, list) else 1
                if count < self.min or (self.max is not None and count > self.max):
                    self.cardinality(count, f"{parent_expr}.{self.key}", run, "")
                return
            if value is not None:
                _collect(value, f"{parent_expr}.{self.key}", instances)
        expr = f"{parent_expr}.{self.key}"
        self.cardinality(len(instances), expr, run, "")
        self.process(instances, expr, run)

    def cardinality(self, count: int, expr: str, run: Run, what: str) -> None:
        if count < self.min:
            found = "missing" if count == 0 else f"only {count} present"
            run.issues.append(
                Issue(
                    f"{expr}: {what}at least {self.min} required, {found} ({self.rule()})",
                    code="required",
                    expression=expr,
                )
            )
        elif self.max is not None and count > self.max:
            run.issues.append(
                Issue(
                    f"{expr}: {what}at most {self.max} allowed, {count} present ({self.rule()})",
                    code="structure",
                    expression=expr,
                )
            )

    def process(self, instances: list[tuple[Any, str]], expr: str, run: Run) -> None:
        """Run value checks, child elements and slices on instances already found;
        ``expr`` names the element itself, for issues about a slice that is missing."""
        for value, at in instances:
            for check in self.checks:
                check(value, at, run)
            if self.children:
                if isinstance(value, dict):
                    for child in self.children:
                        child.visit(value, at, run)
                else:
                    run.issues.append(
                        Issue(
                            f"{at}: expected a JSON object, found {type(value).__name__} "
                            f"(profile {self.profile})",
                            code="structure",
                            expression=at,
                        )
                    )
        if not self.slices or (not instances and self.min > 0):
            return  # no slices, or the element itself is missing and already reported
        unmatched = list(instances)
        for piece in self.slices:
            match = piece.match
            assert match is not None
            matched = [(v, e) for v, e in instances if match(v)]
            if self.closed:
                unmatched = [(v, e) for v, e in unmatched if not match(v)]
            piece.cardinality(
                len(matched), expr, run, f"slice '{piece.slice_name}' ({piece.match_text}): "
            )
            piece.process(matched, expr, run)
        if self.closed:
            for _, at in unmatched:
                run.issues.append(
                    Issue(
                        f"{at}: matches none of the slices of {self.eid}, and the slicing is "
                        f"closed (profile {self.profile})",
                        code="structure",
                        expression=at,
                    )
                )

    # -- the fast path -------------------------------------------------------------------
    # Most resources on the ingest path are valid, and the walk above spends much of its
    # time naming every instance it visits (``Observation.category[0].coding[1]``) for issues
    # that never come. ``passes`` walks the same tree without naming anything and answers
    # only "would the walk above report nothing at all?" (warnings included). It is
    # conservative: at any doubt it answers False and the caller runs the full walk, which
    # alone writes issues, so what a caller gets back is the same either way.

    def passes(self, parent: dict[str, Any], probe: Run) -> bool:
        """True only if ``visit(parent, ...)`` would report no issue."""
        if self.choice:
            stem, cut = self.key, len(self.key)
            instances: list[Any] = []
            for key, value in parent.items():
                if len(key) > cut and key.startswith(stem) and key[cut].isupper():
                    if self.types is not None and key[cut:] not in self.types:
                        return False
                    if isinstance(value, list):
                        instances.extend(v for v in value if v is not None)
                    else:
                        instances.append(value)
        else:
            value = parent.get(self.key)
            if value is None:
                instances = []
            elif isinstance(value, list):
                if self.leaf:  # the full walk counts a leaf's list as it is, nulls included
                    count = len(value)
                    return self.min <= count and (self.max is None or count <= self.max)
                instances = [v for v in value if v is not None]
            else:
                instances = [value]
        count = len(instances)
        if count < self.min or (self.max is not None and count > self.max):
            return False
        return self.leaf or self.passes_all(instances, probe)

    def passes_all(self, instances: list[Any], probe: Run) -> bool:
        """True only if ``process`` over these instances would report no issue."""
        checks, children, leaves, inner = self.checks, self.children, self.leaves, self.inner
        for value in instances:
            for check in checks:
                check(value, "", probe)
                if probe.issues:
                    return False
            if children:
                if type(value) is not dict:
                    return False
                for key, low, high in leaves:  # leaf.passes(value), without the call
                    found = value.get(key)
                    count = 0 if found is None else len(found) if isinstance(found, list) else 1
                    if count < low or (high is not None and count > high):
                        return False
                for child in inner:
                    if not child.passes(value, probe):
                        return False
        if not self.slices or (not instances and self.min > 0):
            return True
        for piece in self.slices:
            match = piece.match
            assert match is not None
            matched = [v for v in instances if match(v)]
            count = len(matched)
            if count < piece.min or (piece.max is not None and count > piece.max):
                return False
            if not piece.passes_all(matched, probe):
                return False
        if self.closed:  # every instance must fall in some slice
            matches = [piece.match for piece in self.slices if piece.match is not None]
            return all(any(match(v) for match in matches) for v in instances)
        return True


def _collect(value: Any, expr: str, into: list[tuple[Any, str]]) -> None:
    if isinstance(value, list):
        into.extend((v, f"{expr}[{i}]") for i, v in enumerate(value) if v is not None)
    else:
        into.append((value, expr))
