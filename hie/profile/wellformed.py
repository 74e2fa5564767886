"""FHIR JSON rules that hold for every resource, profiled or not, and that fhir.resources
(8.3, R4B models) lets through.

- No empty arrays, empty objects or ``null`` property values (FHIR R4 JSON representation
  §2.6.2, and invariant ele-1 "All FHIR elements must have a @value or children"); ``null``
  is allowed only inside a primitive array that has a parallel ``_name`` array of
  extensions, to keep the two aligned.
- No empty strings (ele-1 again: ``""`` is an element without a value).
- Resource ids match ``[A-Za-z0-9\\-\\.]{1,64}`` (FHIR R4 datatypes §2.24.0.1, type ``id``);
  fhir.resources checks the characters but not the length.

The walk visits every node once and reports, never raises, whatever the shape.
"""

from __future__ import annotations

import re
from typing import Any

from hie.outcome import Issue

_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_ELE1 = "(FHIR R4 JSON §2.6.2 and invariant ele-1)"


def check(resource: dict[str, Any], resource_type: str) -> list[Issue]:
    if _clean(resource):  # the common case, without building a single expression
        return []
    issues: list[Issue] = []
    _resource(resource, resource_type, issues)
    return issues


def _clean(node: Any) -> bool:
    """True when nothing below ``node`` breaks a rule (a conservative pre-check: any doubt,
    such as any null, sends the resource to the full walk that explains it)."""
    if isinstance(node, dict):
        if not node:
            return False
        if "resourceType" in node and "id" in node:
            rid = node["id"]
            if not (isinstance(rid, str) and _ID.fullmatch(rid)):
                return False
        for value in node.values():
            if isinstance(value, (dict, list)):
                if not _clean(value):
                    return False
            elif value is None or value == "":
                return False
        return True
    if isinstance(node, list):
        if not node:
            return False
        for item in node:
            if isinstance(item, (dict, list)):
                if not _clean(item) or isinstance(item, list):
                    return False
            elif item is None or item == "":
                return False
        return True
    return True


def _resource(resource: dict[str, Any], expr: str, issues: list[Issue]) -> None:
    rid = resource.get("id")
    if rid is not None and not (isinstance(rid, str) and _ID.fullmatch(rid)):
        issues.append(
            Issue(
                f"{expr}.id: {str(rid)[:80]!r} is not a valid resource id: 1 to 64 characters "
                "from A-Z, a-z, 0-9, '-' and '.' (FHIR R4 datatype id)",
                expression=f"{expr}.id",
            )
        )
    _object(resource, expr, issues)


def _object(obj: dict[str, Any], expr: str, issues: list[Issue]) -> None:
    if not obj:
        issues.append(_empty(expr, "object"))
        return
    for key, value in obj.items():
        if isinstance(value, str):
            if not value:
                issues.append(_empty(f"{expr}.{key}", "string"))
        elif isinstance(value, dict):
            if key == "contained" or (key == "resource" and "resourceType" in value):
                _resource(value, f"{expr}.{key}", issues)
            else:
                _object(value, f"{expr}.{key}", issues)
        elif isinstance(value, list):
            _array(obj, key, value, f"{expr}.{key}", issues)
        elif value is None:
            issues.append(
                Issue(
                    f"{expr}.{key}: null is not a FHIR value; leave the property out {_ELE1}",
                    expression=f"{expr}.{key}",
                )
            )


def _array(
    parent: dict[str, Any], key: str, items: list[Any], expr: str, issues: list[Issue]
) -> None:
    if not items:
        issues.append(_empty(expr, "array"))
        return
    # a null is a placeholder only where a parallel primitive/extension array gives it meaning
    twin = key[1:] if key.startswith("_") else f"_{key}"
    null_ok = isinstance(parent.get(twin), list)
    contained = key == "contained"
    for i, item in enumerate(items):
        at = f"{expr}[{i}]"
        if isinstance(item, dict):
            if contained:
                _resource(item, at, issues)
            else:
                _object(item, at, issues)
        elif isinstance(item, str):
            if not item:
                issues.append(_empty(at, "string"))
        elif isinstance(item, list):
            issues.append(Issue(f"{at}: arrays of arrays are not FHIR JSON", expression=at))
        elif item is None and not null_ok:
            issues.append(
                Issue(
                    f"{at}: null inside an array is allowed only to align a primitive array "
                    f"with its '_{key}' extensions {_ELE1}",
                    expression=at,
                )
            )


def _empty(expr: str, what: str) -> Issue:
    return Issue(
        f"{expr}: empty {what}; FHIR JSON does not allow an empty {what} — leave the property "
        f"out if it has no value {_ELE1}",
        expression=expr,
    )
