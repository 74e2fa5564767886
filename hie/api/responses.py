"""FHIR responses from bytes: ``application/fhir+json``, ETag and Last-Modified on reads."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response

from hie.outcome import FhirError, Invalid, TooLarge

FHIR_JSON = "application/fhir+json; charset=utf-8"


def fhir(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(content=body, status_code=status, media_type=FHIR_JSON, headers=headers)


def resource_headers(version: int, updated: datetime) -> dict[str, str]:
    return {
        "ETag": f'W/"{version}"',
        "Last-Modified": format_datetime(updated.astimezone(UTC), usegmt=True),
    }


def error(exc: FhirError) -> Response:
    return fhir(orjson.dumps(exc.outcome()), exc.status, exc.headers or None)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused early when it is over ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"The body is {declared} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"The body is over the limit of {limit} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body:
        raise Invalid("The request has no body")
    return body


def check_content_type(request: Request) -> None:
    ctype = request.headers.get("content-type", "application/fhir+json").split(";")[0].strip()
    if ctype not in ("application/fhir+json", "application/json", "application/json+fhir", ""):
        raise Invalid(
            f"Content-Type {ctype!r} is not supported; send application/fhir+json",
            expression="Content-Type",
        )


def prefer(request: Request, key: str) -> str | None:
    for part in request.headers.get("prefer", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name.strip() == key:
            return value.strip().strip('"')
    return None


def query_pairs(request: Request) -> list[tuple[str, Any]]:
    return list(request.query_params.multi_items())
