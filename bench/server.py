"""The benchmark's HTTP server: the product app plus a trivial 2 KB endpoint (floor only).

    python -m bench.server --port 18080 [--workers 2] [--bare]

Settings come from the ``HIE_*`` environment, as for ``hie serve``. ``/bench/trivial`` exists
only in this process: it is the floor for every HTTP figure (same uvicorn, same httptools
and uvloop, same FastAPI app and exception handlers, no database, no auth), so a lookup's
cost can be read as "the web stack's own cost" plus "hie's". ``--bare`` serves a FastAPI app
with nothing but that route (the floor for start-up time).
"""

from __future__ import annotations

import argparse
import os
import socket
import time

import orjson
from fastapi import FastAPI
from fastapi.responses import Response

FHIR_JSON = "application/fhir+json; charset=utf-8"


def trivial_payload(size: int = 2048) -> bytes:
    """A 2 KB FHIR-shaped JSON body (a one-entry searchset), padded to ``size`` bytes."""
    doc = {"resourceType": "Bundle", "type": "searchset", "total": 1, "entry": [], "pad": ""}
    bare = len(orjson.dumps(doc))
    doc["pad"] = "x" * max(size - bare, 0)
    return orjson.dumps(doc)


def add_trivial(app: FastAPI) -> None:
    payload = trivial_payload()

    @app.get("/bench/trivial")
    async def trivial() -> Response:
        return Response(payload, media_type=FHIR_JSON)


def app_factory() -> FastAPI:
    """uvicorn --factory target: the product app from the environment, plus the floor route."""
    from hie.api.app import create_app
    from hie.settings import Settings

    app = create_app(Settings())
    add_trivial(app)
    return app


def bare_factory() -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    add_trivial(app)
    return app


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--bare", action="store_true")
    parser.add_argument("--fd", type=int, help=argparse.SUPPRESS)  # a socket _processes made
    args = parser.parse_args()
    os.environ.setdefault("HIE_BASE_URL", f"http://{args.host}:{args.port}/fhir")
    if args.workers > 1:
        _processes(args.host, args.port, args.workers, bare=args.bare)
        return
    config = uvicorn.Config(
        "bench.server:bare_factory" if args.bare else "bench.server:app_factory",
        factory=True,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )
    server = uvicorn.Server(config)
    if args.fd is not None:
        server.run(sockets=[socket.socket(fileno=args.fd)])
    else:
        server.run()


def _processes(host: str, port: int, count: int, *, bare: bool = False) -> None:
    """``count`` server processes on one port, each with a listening socket of its own
    (SO_REUSEPORT): the kernel shares connections among them by their addresses, as a load
    balancer shares them among single-process containers.

    ``uvicorn --workers`` shares one socket instead, and a client's keep-alive connections
    can all land on whichever process accepts first: wrk's 32 connections gave two workers
    1,298 and then 732 requests/s against one worker's 678-764, run after run on the same
    index (the benchmark's 2-worker figure went from 2.14x to 0.94x between two runs).
    """
    import signal
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "bench.server", "--host", host, "--port", str(port)]
    cmd += ["--bare"] if bare else []
    # Every socket is listening before any process starts: a connection the kernel gives to
    # a process still starting waits in its socket's queue, and none are given only to the
    # first process up.
    sockets = [_shared_port(host, port) for _ in range(count)]
    children = [
        subprocess.Popen([*cmd, "--fd", str(sock.fileno())], pass_fds=(sock.fileno(),))
        for sock in sockets
    ]
    for sock in sockets:
        sock.close()  # the children hold them

    def stop(*_: object) -> None:
        for child in children:
            child.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # One process gone (it could not start, or died) ends them all, so the caller sees a
    # dead server instead of measuring half of one.
    while all(child.poll() is None for child in children):
        time.sleep(0.2)
    stop()
    codes = [child.wait() for child in children]
    raise SystemExit(next((c for c in codes if c), 0))


def _shared_port(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


if __name__ == "__main__":
    main()
