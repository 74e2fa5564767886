"""Value checks built from one ElementDefinition: bindings, fixed and pattern values,
reference targets, maxLength, invariants. Each is a closure ``(value, expression, run)``
made once at load time, so validation does no lookups in the profile.

Every check reports odd JSON shapes as issues; none raises (the ingest path relies on it).
"""

from __future__ import annotations

import json
import re
from typing import Any

from hie.outcome import Issue
from hie.profile.element import Check, Run
from hie.profile.invariant import Invariant
from hie.profile.terminology import Expansion

_TYPE_NAME = re.compile(r"[A-Z][A-Za-z]+")


def binding(expansion: Expansion, strength: str, declared: str | None, where: str) -> Check:
    """A ``required`` binding is an error when missed; ``extensible`` is a warning (FHIR R4
    terminologies.html#strength: another code may be used only when none in the ValueSet fits,
    which a machine cannot judge). For a CodeableConcept one coding from the ValueSet is
    enough (R4 terminologies.html#codeableconcept)."""
    severity = "error" if strength == "required" else "warning"
    code = "code-invalid"
    vs = f"{strength} ValueSet {expansion.url}"
    pairs, codes, systems = expansion.pairs, expansion.codes, expansion.systems

    def report(text: str, expr: str, run: Run) -> None:
        run.issues.append(Issue(f"{expr}: {text} ({where})", code, severity, expr))

    def check(value: Any, expr: str, run: Run) -> None:
        kind = declared or _infer(value)
        if kind == "code":
            if not isinstance(value, str):
                report(f"expected a code string bound to the {vs}", expr, run)
            elif value not in codes:
                report(f"{value!r} is not in the {vs} (allowed: {expansion.describe()})", expr, run)
        elif kind == "Coding":
            if _pair(value) not in pairs:
                shown = _show(value)
                at = f"{expr}.code" if _system(value) in systems else expr
                report(f"{shown} is not in the {vs} (allowed: {expansion.describe()})", at, run)
        else:
            codings = value.get("coding") if isinstance(value, dict) else None
            if not isinstance(codings, list) or not codings:
                report(f"has no coding, and one from the {vs} is needed", expr, run)
                return
            if any(_pair(c) in pairs for c in codings):
                return
            blame = next(
                (i for i, c in enumerate(codings) if _system(c) in systems),
                None,
            )
            shown = ", ".join(_show(c) for c in codings)
            at = expr if blame is None else f"{expr}.coding[{blame}].code"
            report(
                f"no coding from the {vs} (found {shown}; allowed: {expansion.describe()})", at, run
            )

    return check


def fixed(value: Any, kind: str, where: str) -> Check:
    """``fixed[x]``: the instance equals the value exactly; ``pattern[x]``: the instance
    contains the value (every property present and equal; every array item matched by some
    item) — FHIR R4 ElementDefinition.fixed[x] / pattern[x]."""
    exact = kind == "fixed"
    shown = brief(value)

    def check(instance: Any, expr: str, run: Run) -> None:
        ok = equal(value, instance) if exact else contains(instance, value)
        if not ok:
            what = "must equal the fixed value" if exact else "must match the pattern"
            run.issues.append(Issue(f"{expr}: {what} {shown} ({where})", "value", "error", expr))

    return check


def contains(instance: Any, pattern: Any) -> bool:
    if isinstance(pattern, dict):
        return isinstance(instance, dict) and all(
            k in instance and contains(instance[k], v) for k, v in pattern.items()
        )
    if isinstance(pattern, list):
        return isinstance(instance, list) and all(
            any(contains(item, p) for item in instance) for p in pattern
        )
    return equal(pattern, instance)


def equal(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b  # True must not equal 1


def reference(targets: frozenset[str], where: str) -> Check:
    """Reference(X | Y): the literal reference (``Type/id``, an absolute URL ending in
    ``Type/id[/_history/v]``, or ``#id`` of a contained resource) and ``Reference.type`` must
    name an allowed type. ``urn:uuid:``/``urn:oid:`` references resolve inside a Bundle and
    are left to the core; a logical reference (identifier only) is allowed."""
    allowed = ", ".join(sorted(targets))

    def report(text: str, expr: str, run: Run) -> None:
        run.issues.append(Issue(f"{expr}: {text} ({where})", "value", "error", expr))

    def check(value: Any, expr: str, run: Run) -> None:
        if not isinstance(value, dict):
            report("expected a Reference object", expr, run)
            return
        declared = value.get("type")
        if declared is not None and not (isinstance(declared, str) and declared in targets):
            report(
                f"Reference.type {declared!r} is not allowed; must be {allowed}",
                f"{expr}.type",
                run,
            )
        ref = value.get("reference")
        if ref is None:
            return
        if not isinstance(ref, str):
            report("reference must be a string", f"{expr}.reference", run)
            return
        if ref.startswith("urn:uuid:") or ref.startswith("urn:oid:"):
            return
        if ref.startswith("#"):
            target = _contained_type(run.resource, ref[1:])
            if target is None:
                report(f"no contained resource with id {ref[1:]!r}", f"{expr}.reference", run)
                return
        else:
            target = _literal_type(ref)
            if target is None:
                report(
                    f"{ref!r} is not a reference of the form Type/id, an absolute URL, "
                    "urn:uuid: or #contained (FHIR R4 references.html)",
                    f"{expr}.reference",
                    run,
                )
                return
        if target not in targets:
            report(f"refers to a {target}; must be {allowed}", f"{expr}.reference", run)

    return check


def _literal_type(ref: str) -> str | None:
    parts = ref.split("?", 1)[0].split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) < 2 or not parts[-1]:
        return None
    return parts[-2] if _TYPE_NAME.fullmatch(parts[-2]) else None


def _contained_type(resource: dict[str, Any], rid: str) -> str | None:
    contained = resource.get("contained")
    if not isinstance(contained, list):
        return None
    for item in contained:
        if isinstance(item, dict) and item.get("id") == rid:
            rtype = item.get("resourceType")
            return rtype if isinstance(rtype, str) else None
    return None


def max_length(limit: int, where: str) -> Check:
    def check(value: Any, expr: str, run: Run) -> None:
        if isinstance(value, str) and len(value) > limit:
            run.issues.append(
                Issue(
                    f"{expr}: {len(value)} characters, at most {limit} allowed ({where})",
                    "value",
                    "error",
                    expr,
                )
            )

    return check


def invariant(rule: Invariant, severity: str, human: str, where: str) -> Check:
    holds = rule.holds
    suffix = f".{rule.focus}" if rule.focus else ""
    text = f"constraint {rule.key} failed: {human} [{rule.expression}] ({where})"

    def check(value: Any, expr: str, run: Run) -> None:
        if not holds(value):
            at = expr + suffix
            run.issues.append(Issue(f"{at}: {text}", "invariant", severity, at))

    return check


def member(expansion: Expansion, value: Any) -> bool:
    """Whether a code, Coding or CodeableConcept (one coding suffices) is in the expansion."""
    if isinstance(value, str):
        return value in expansion.codes
    if not isinstance(value, dict):
        return False
    codings = value.get("coding")
    if isinstance(codings, list):
        return any(_pair(c) in expansion.pairs for c in codings)
    return _pair(value) in expansion.pairs


def _infer(value: Any) -> str:
    if isinstance(value, str):
        return "code"
    if isinstance(value, dict) and "coding" not in value and ("code" in value or "system" in value):
        return "Coding"
    return "CodeableConcept"


def _system(coding: Any) -> str | None:
    system = coding.get("system") if isinstance(coding, dict) else None
    return system if isinstance(system, str) else None


def _pair(coding: Any) -> tuple[str, str] | None:
    if isinstance(coding, dict):
        system, code = coding.get("system"), coding.get("code")
        if isinstance(system, str) and isinstance(code, str):
            return system, code
    return None


def _show(coding: Any) -> str:
    if not isinstance(coding, dict):
        return repr(coding)[:60]
    system, code = coding.get("system"), coding.get("code")
    if system is None:
        return f"code {code!r} with no system"
    return f"{system}|{code}"


def brief(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= 120 else text[:117] + "..."
