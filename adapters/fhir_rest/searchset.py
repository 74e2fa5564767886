"""One page of a hospital FHIR server's search (a ``searchset`` Bundle) → units for ingest.

FHIR R4 search §3.1.1.5: each entry's ``search.mode`` says whether it matched (``match``),
came along through ``_include`` (``include``) or is an OperationOutcome about the search
(``outcome``). A matched DiagnosticReport becomes one unit with its Patient and its result
Observations; a matched Observation becomes a unit with its Patient. Within a unit the source
server's literal references (``Patient/123``, ``https://server/fhir/Patient/123``,
``Patient/123/_history/2``) become ``urn:uuid:`` full URLs (R4 Bundle §3.3.1 resolution),
derived from the source URL so that a replay produces the same unit. References to anything
outside the unit (a Practitioner, a Specimen) cannot be resolved by the exchange: their
``reference`` is removed and any ``display``/``identifier`` kept.

Server-managed ``id``, ``meta.versionId`` and ``meta.lastUpdated`` belong to the source
server, not to the exchange, and are dropped; ``meta.source`` records where the resource came
from. An Observation or DiagnosticReport without identifiers gets one made from the server's
id (``fhir:{id}``), so replays stay idempotent.
"""

from __future__ import annotations

import copy
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from adapters.base import DeadLetter, Entry, SourceUnavailable, Unit
from hie import naming

JSON = dict[str, Any]
FHIR_JSON = "application/fhir+json"
_NAMESPACE = uuid.UUID("0c3c8f0e-54a4-4b8e-bb0c-6a3f1b1f5d22")
_LITERAL = re.compile(
    r"^(?:(?P<base>.+)/)?(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})"
    r"(?:/_history/[A-Za-z0-9\-.]{1,64})?$"
)


@dataclass(frozen=True)
class SourceServer:
    """The hospital server a page came from, and how its identifiers map to the exchange's."""

    hospital_id: str
    base_url: str
    mrn_system: str | None = None
    national_id_system: str | None = None

    def key_of(self, reference: str) -> str | None:
        """``Type/id`` for a literal reference to this server, else None (R4 §2.3.0.1)."""
        match = _LITERAL.match(reference)
        if match is None or reference.startswith(("urn:", "#")):
            return None
        base = match["base"]
        if base is not None and base.rstrip("/") != self.root:
            return None  # another server's resource
        return f"{match['type']}/{match['id']}"

    @property
    def root(self) -> str:
        return self.base_url.rstrip("/")

    def full_url(self, key: str) -> str:
        return f"urn:uuid:{uuid.uuid5(_NAMESPACE, f'{self.root}/{key}')}"


@dataclass
class Page:
    matches: list[JSON] = field(default_factory=list)
    included: dict[str, JSON] = field(default_factory=dict)  # "Type/id" → resource
    next_url: str | None = None
    dead_letters: list[DeadLetter] = field(default_factory=list)


def read_page(bundle: JSON, rtype: str, url: str) -> Page:
    """Sort a searchset's entries; an entry that cannot be read at all is a dead letter."""
    if bundle.get("resourceType") != "Bundle" or bundle.get("type") != "searchset":
        raise SourceUnavailable(f"GET {url}: expected a searchset Bundle")
    page = Page(next_url=next_link(bundle))
    for n, entry in enumerate(bundle.get("entry") or []):
        res = entry.get("resource") if isinstance(entry, dict) else None
        mode = (entry.get("search") or {}).get("mode") if isinstance(entry, dict) else None
        where = f"{url} entry[{n}]"
        if not isinstance(res, dict) or not isinstance(res.get("resourceType"), str):
            page.dead_letters.append(_dead(where, entry, "entry has no resource"))
            continue
        kind = res["resourceType"]
        if mode == "outcome" or kind == "OperationOutcome":
            continue  # warnings about the search itself, not data
        rid = res.get("id")
        if not isinstance(rid, str) or not rid:
            page.dead_letters.append(_dead(where, entry, f"{kind} has no id"))
            continue
        if mode == "include" or (mode is None and kind != rtype):
            page.included[f"{kind}/{rid}"] = res
        elif kind != rtype:
            page.dead_letters.append(
                _dead(f"{kind}/{rid}", entry, f"a {rtype} search matched a {kind}")
            )
        else:
            page.matches.append(res)
    return page


def next_link(bundle: JSON) -> str | None:
    for link in bundle.get("link") or []:
        if isinstance(link, dict) and link.get("relation") == "next" and link.get("url"):
            return str(link["url"])
    return None


def last_updated(resource: JSON) -> datetime | None:
    """``meta.lastUpdated`` as an aware datetime (FHIR instant: always has a zone)."""
    value = (resource.get("meta") or {}).get("lastUpdated")
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def version_key(resource: JSON) -> str:
    """What identifies one version of a source resource (to skip a repeat within a run)."""
    meta = resource.get("meta") or {}
    tag = meta.get("versionId") or meta.get("lastUpdated") or ""
    return f"{resource['resourceType']}/{resource['id']}|{tag}"


def subject_key(resource: JSON, server: SourceServer) -> str | None:
    ref = (resource.get("subject") or {}).get("reference")
    return server.key_of(ref) if isinstance(ref, str) else None


def build_unit(primary: JSON, related: list[JSON], server: SourceServer) -> Unit:
    """``primary`` (the matched resource) and what it pulled in, made self-contained."""
    members = [r for r in related if r is not None]
    order = [*(r for r in members if r["resourceType"] == "Patient"), primary]
    order += [r for r in members if r["resourceType"] != "Patient"]
    urls = {f"{r['resourceType']}/{r['id']}": server.full_url(f"{r['resourceType']}/{r['id']}")
            for r in order}  # fmt: skip
    entries = tuple(Entry(_adopt(r, urls, server), urls[_key(r)]) for r in order)
    raw = orjson.dumps(
        {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"fullUrl": f"{server.root}/{_key(r)}", "resource": r} for r in order],
        }
    )
    return Unit(key=_key(primary), entries=entries, raw=raw, content_type=FHIR_JSON)


def dead_resource(resource: JSON, reason: str) -> DeadLetter:
    return _dead(_key(resource), resource, reason)


def _key(resource: JSON) -> str:
    return f"{resource['resourceType']}/{resource['id']}"


def _dead(key: str, payload: Any, reason: str) -> DeadLetter:
    return DeadLetter(key, orjson.dumps(payload), f"{key}: {reason}", FHIR_JSON, location=key)


def _adopt(resource: JSON, urls: dict[str, str], server: SourceServer) -> JSON:
    res = copy.deepcopy(resource)
    rtype, rid = res["resourceType"], res.pop("id")
    meta = {k: v for k, v in (res.pop("meta", None) or {}).items()
            if k not in ("versionId", "lastUpdated")}  # fmt: skip
    meta.setdefault("source", f"{server.root}/{rtype}/{rid}")
    out: JSON = {"resourceType": rtype, "meta": meta}
    out.update((k, v) for k, v in res.items() if k != "resourceType")
    h = server.hospital_id
    if rtype == "Patient":
        out["identifier"] = [_exchange_system(i, server) for i in out.get("identifier") or []]
    elif rtype in ("Observation", "DiagnosticReport") and not _has_identifier(out):
        system = naming.result_id(h) if rtype == "Observation" else naming.filler_order(h)
        out["identifier"] = [{"system": system, "value": f"fhir:{rid}"}]
    rewritten = _references(out, urls, server)
    assert isinstance(rewritten, dict)
    return rewritten


def _has_identifier(res: JSON) -> bool:
    return any(
        isinstance(i, dict) and i.get("system") and i.get("value")
        for i in res.get("identifier") or []
    )


def _exchange_system(ident: Any, server: SourceServer) -> Any:
    if not isinstance(ident, dict):
        return ident
    system = ident.get("system")
    if server.mrn_system and system == server.mrn_system:
        return {**ident, "system": naming.mrn(server.hospital_id)}
    if server.national_id_system and system == server.national_id_system:
        return {**ident, "system": naming.NATIONAL_ID}
    return ident


_DROP = object()


def _references(node: Any, urls: dict[str, str], server: SourceServer) -> Any:
    """Rewrite literal references inside the unit; strip those pointing outside it."""
    if isinstance(node, list):
        items = [_references(v, urls, server) for v in node]
        return [v for v in items if v is not _DROP]
    if not isinstance(node, dict):
        return node
    out: JSON = {}
    for k, v in node.items():
        if k == "contained":
            out[k] = v  # contained resources reference each other by #id; leave them be
            continue
        new = _references(v, urls, server)
        if new is _DROP or new == []:
            continue
        out[k] = new
    ref = out.get("reference")
    if isinstance(ref, str) and not ref.startswith(("#", "urn:")):
        key = server.key_of(ref)
        if key is not None and key in urls:
            out["reference"] = urls[key]
        else:
            del out["reference"]
            if not (set(out) - {"type", "extension"}):
                return _DROP
    return out
