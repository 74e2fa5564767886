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
    args = parser.parse_args()
    os.environ.setdefault("HIE_BASE_URL", f"http://{args.host}:{args.port}/fhir")
    uvicorn.run(
        "bench.server:bare_factory" if args.bare else "bench.server:app_factory",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
