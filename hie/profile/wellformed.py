"""FHIR JSON rules that hold for every resource, profiled or not, and that fhir.resources
(8.3, R4B models) lets through.

- No empty arrays, empty objects or ``null`` property values (FHIR R4 JSON representation,
  json.html, and invariant ele-1 "All FHIR elements must have a @value or children"); ``null``
  is allowed only inside a primitive array that has a parallel ``_name`` array of
  extensions, to keep the two aligned.
- No empty strings (ele-1 again: ``""`` is an element without a value).
- Resource ids match ``[A-Za-z0-9\\-\\.]{1,64}`` (FHIR R4 datatypes.html, type ``id``);
  fhir.resources checks the characters but not the length.

The walk visits every node once and reports, never raises, whatever the shape.
"""

from __future__ import annotations

import re
from typing import Any

from hie.outcome import Issue

_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_ELE1 = "(FHIR R4 json.html and invariant ele-1)"


def check(resource: dict[str, Any], resource_type: str) -> list[Issue]:
    if _clean(resource):  # the common case, without building a single expression
        return []
    issues: list[Issue] = []
    _resource(resource, resource_type, issues)
    return issues


def _clean(node: Any) -> bool:
    """True when nothing below ``node`` breaks a rule (a conservative pre-check: any doubt,
    such as any null, sends the resource to the full walk that explains it). Exact type
    tests: this runs on every node of every resource ingested."""
    kind = type(node)
    if kind is dict:
        if not node:
            return False
        if "resourceType" in node and "id" in node:
            rid = node["id"]
            if not (type(rid) is str and _ID.fullmatch(rid)):
                return False
        values = node.values()
    elif kind is list:
        if not node:
            return False
        values = node
    else:
        return False  # an unusual container (a dict subclass...): let the full walk judge
    for value in values:
        kind = type(value)
        if kind is dict:
            if not _clean(value):
                return False
        elif kind is list:
            if kind is type(node) or not _clean(value):  # an array in an array is never FHIR
                return False
        elif kind is str:
            if not value:
                return False
        elif kind is not int and kind is not float and kind is not bool:
            return False  # null, or anything unusual: the full walk explains or accepts it
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
