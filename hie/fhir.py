"""The one importer of fhir.resources: parse FHIR JSON and check it against the R4 model set.

hie pins ``fhir.resources`` 8.x and uses its ``R4B`` classes. R4B (4.3.0) is R4 (4.0.1) with
a handful of additions that do not touch the element shapes of Patient, Observation,
DiagnosticReport, ImagingStudy, Organization, Endpoint or Specimen, and the 8.x line is the
one maintained on pydantic v2 (the R4-only 5.x line is pydantic v1 and about 5× slower).
What R4B would accept and R4 would not (new elements on other types) cannot reach the index:
the types hie stores are listed in ``SUPPORTED_TYPES`` and each is also checked against hie's
own profiles.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import orjson
import pydantic
from fhir.resources.R4B import get_fhir_model_class

from hie.outcome import Invalid, Issue

JSON = dict[str, Any]

STORED_TYPES = (
    "Patient",
    "Observation",
    "DiagnosticReport",
    "ImagingStudy",
    "Organization",
    "Endpoint",
    "Specimen",
)
SUPPORTED_TYPES = frozenset(STORED_TYPES)


def parse_json(body: bytes, *, max_depth: int = 64) -> Any:
    """Bytes to JSON, with a clear error for anything that is not JSON or nests too deeply."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Invalid(f"The body is not valid JSON: {exc}") from None
    depth = _depth(data, max_depth)
    if depth > max_depth:
        raise Invalid(f"The JSON nests deeper than {max_depth} levels")
    return data


def _depth(value: Any, limit: int) -> int:
    """Nesting depth, iteratively (a 10,000-deep document must not blow the stack)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    deepest = 0
    while stack:
        node, d = stack.pop()
        if d > deepest:
            deepest = d
            if deepest > limit:
                return deepest
        if isinstance(node, dict):
            stack.extend((v, d + 1) for v in node.values() if isinstance(v, dict | list))
        elif isinstance(node, list):
            stack.extend((v, d + 1) for v in node if isinstance(v, dict | list))
    return deepest


@cache
def model_class(resource_type: str) -> type[pydantic.BaseModel]:
    cls: type[pydantic.BaseModel] = get_fhir_model_class(resource_type)
    return cls


def check_model(resource: Any, *, path: str = "") -> list[Issue]:
    """Structural validation against the FHIR R4 model set; an empty list means it is valid.

    ``path`` prefixes each FHIRPath expression (e.g. ``Bundle.entry[3].resource``) so a
    client can find the fault inside a Bundle.
    """
    prefix = f"{path}." if path else ""
    if not isinstance(resource, dict):
        return [Issue("A resource must be a JSON object", expression=path or None)]
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str):
        return [Issue("resourceType is missing", expression=f"{prefix}resourceType")]
    if rtype not in SUPPORTED_TYPES:
        return [
            Issue(
                f"Resource type {rtype!r} is not stored by this exchange "
                f"(supported: {', '.join(STORED_TYPES)})",
                code="not-supported",
                expression=f"{prefix}resourceType",
            )
        ]
    issues = _empty_arrays(resource, f"{path or rtype}")
    try:
        model_class(rtype).model_validate(resource)
    except pydantic.ValidationError as exc:
        for err in exc.errors(include_url=False)[:20]:
            issues.append(
                Issue(
                    _message(err),
                    expression=fhirpath(path if path else rtype, err["loc"]),
                )
            )
    except (ValueError, TypeError) as exc:  # the models raise these for some invariants
        issues.append(Issue(str(exc)[:500], expression=path or rtype))
    return issues


def _message(err: Any) -> str:
    msg = str(err.get("msg", "invalid"))
    if err.get("type") == "extra_forbidden":
        return "Unknown element (not part of FHIR R4)"
    if err.get("type") == "missing":
        return "Required element is missing"
    return msg


def fhirpath(root: str, loc: tuple[Any, ...]) -> str:
    """Turn a pydantic error location into a FHIRPath: ('code','coding',0) → X.code.coding[0]."""
    out = root
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and not part.startswith("function-") and not _union_tag(part):
            out += f".{part.removesuffix('__ext')}"
    return out


def _union_tag(part: str) -> bool:
    """pydantic names the member of a union it tried (``str``, ``list[str]``); FHIR has no
    such element, so ``fhir_comments.list[str][1]`` must read ``fhir_comments[1]``."""
    return "[" in part or part in ("str", "int", "float", "bool", "dict", "list", "none")


def _clean(value: Any) -> bool:
    """No empty array, object or string and no NUL anywhere: :func:`_empty_arrays` would find
    nothing. Nearly every resource is clean, and this walk builds no element paths (building
    them for every node was 4% of a one-process bulk load); only a resource that fails it is
    walked again by :func:`_faults` for the paths of its faults."""
    stack: list[Any] = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for k, v in node.items():
                if isinstance(v, list):
                    if not v:
                        return False
                    stack.extend(v)
                elif isinstance(v, dict):
                    if not v:
                        return False
                    stack.append(v)
                elif isinstance(v, str) and ((v == "" and k != "div") or "\x00" in v):
                    return False
        elif isinstance(node, str) and "\x00" in node:
            return False
    return True


def _empty_arrays(value: Any, path: str) -> list[Issue]:
    """FHIR JSON forbids empty arrays, objects and strings (R4 §2.6.2); the models allow them."""
    return [] if _clean(value) else _faults(value, path)


def _faults(value: Any, path: str) -> list[Issue]:
    """The walk of :func:`_empty_arrays` that names each fault's element path."""
    issues: list[Issue] = []
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack and len(issues) < 20:
        node, p = stack.pop()
        if isinstance(node, dict):
            for k, v in node.items():
                if isinstance(v, list):
                    if not v:
                        issues.append(Issue("Arrays must not be empty", expression=f"{p}.{k}"))
                    for i, item in enumerate(v):
                        stack.append((item, f"{p}.{k}[{i}]"))
                elif isinstance(v, dict):
                    if not v:
                        issues.append(Issue("Objects must not be empty", expression=f"{p}.{k}"))
                    stack.append((v, f"{p}.{k}"))
                elif v == "" and k != "div":
                    issues.append(Issue("Strings must not be empty", expression=f"{p}.{k}"))
                elif isinstance(v, str) and "\x00" in v:
                    issues.append(Issue(_NUL, expression=f"{p}.{k}"))
        elif isinstance(node, str) and "\x00" in node:  # an item of a list of strings
            issues.append(Issue(_NUL, expression=p))
    return issues


# FHIR strings should hold no control characters but tab, CR and LF (R4 §2.24.0.1, string);
# NUL is refused outright: PostgreSQL text cannot hold it, and both backends must agree.
_NUL = "Strings must not contain the NUL character (U+0000)"


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)
