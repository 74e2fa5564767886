"""Bundles assembled from stored JSON bytes: the fast path never re-serialises a resource."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from uuid import uuid4

import orjson

from hie.fhirtime import instant, now_utc


def searchset(
    base: str,
    matches: Iterable[tuple[str, str, bytes]],
    *,
    self_url: str,
    next_url: str | None = None,
    total: int | None = None,
    includes: Iterable[tuple[str, str, bytes]] = (),
    outcome: dict[str, Any] | None = None,
    entry_extras: dict[str, bytes] | None = None,
) -> bytes:
    """(type, id, body) triples → a searchset Bundle as bytes.

    ``entry_extras`` maps "Type/id" to extra JSON members (already encoded, without braces)
    spliced into that entry, e.g. a recognition verdict extension.
    """
    head: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": uuid4().hex,
        "meta": {"lastUpdated": instant(now_utc())},
        "type": "searchset",
    }
    if total is not None:
        head["total"] = total
    links = [{"relation": "self", "url": self_url}]
    if next_url:
        links.append({"relation": "next", "url": next_url})
    head["link"] = links
    parts: list[bytes] = []
    extras = entry_extras or {}
    for rtype, rid, body in matches:
        extra = extras.get(f"{rtype}/{rid}")
        parts.append(
            b'{"fullUrl":"'
            + f"{base}/{rtype}/{rid}".encode()
            + b'","resource":'
            + body
            + b',"search":{"mode":"match"}'
            + (b"," + extra if extra else b"")
            + b"}"
        )
    for rtype, rid, body in includes:
        parts.append(
            b'{"fullUrl":"'
            + f"{base}/{rtype}/{rid}".encode()
            + b'","resource":'
            + body
            + b',"search":{"mode":"include"}}'
        )
    if outcome is not None:
        parts.append(b'{"resource":' + orjson.dumps(outcome) + b',"search":{"mode":"outcome"}}')
    encoded = orjson.dumps(head)
    if not parts:
        return encoded
    return encoded[:-1] + b',"entry":[' + b",".join(parts) + b"]}"


def history(base: str, rtype: str, rid: str, versions: list[tuple[int, Any, bytes]]) -> bytes:
    head = {
        "resourceType": "Bundle",
        "id": uuid4().hex,
        "type": "history",
        "total": len(versions),
        "link": [{"relation": "self", "url": f"{base}/{rtype}/{rid}/_history"}],
    }
    parts = [
        b'{"fullUrl":"'
        + f"{base}/{rtype}/{rid}".encode()
        + b'","resource":'
        + body
        + b',"request":{"method":"'
        + (b"POST" if vid == 1 else b"PUT")
        + b'","url":"'
        + f"{rtype}/{rid}".encode()
        + b'"},"response":{"status":"'
        + (b"201" if vid == 1 else b"200")
        + b'","lastModified":"'
        + instant(updated).encode()
        + b'"}}'
        for vid, updated, body in versions
    ]
    encoded = orjson.dumps(head)
    return encoded[:-1] + b',"entry":[' + b",".join(parts) + b"]}" if parts else encoded
