"""A raw asyncio HTTP/1.1 client that POSTs transaction Bundles over keep-alive connections.

httpx tops out near 250 requests/s on this machine and would measure itself; this client
does nothing but write a request and read the status line, headers and body, so the time is
the server's. Bodies are sent as they are read from the city's NDJSON (one line each).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass
class PostStats:
    requests: int = 0
    failed: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    first_error: str | None = None


async def _one(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes, body: bytes
) -> tuple[int, bytes]:
    writer.write(head + str(len(body)).encode() + b"\r\n\r\n" + body)
    await writer.drain()
    status_line = await reader.readline()
    status = int(status_line.split(b" ", 2)[1])
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value.strip())
    payload = await reader.readexactly(length) if length else b""
    return status, payload


async def _post_all(
    port: int, path: str, token: str, bodies: Iterator[bytes], concurrency: int
) -> PostStats:
    stats = PostStats()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        "Content-Type: application/fhir+json\r\nPrefer: return=minimal\r\nContent-Length: "
    ).encode()

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for body in bodies:  # a shared iterator: each body is taken once
                t = time.perf_counter()
                status, payload = await _one(reader, writer, head, body)
                stats.latencies_ms.append((time.perf_counter() - t) * 1000)
                stats.requests += 1
                if status >= 300:
                    stats.failed += 1
                    stats.first_error = stats.first_error or payload[:500].decode(
                        "utf-8", "replace"
                    )
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    stats.seconds = time.perf_counter() - started
    return stats


def post_bundles(
    port: int, token: str, bodies: Iterator[bytes], *, path: str = "/fhir", concurrency: int = 4
) -> PostStats:
    return asyncio.run(_post_all(port, path, token, bodies, concurrency))
