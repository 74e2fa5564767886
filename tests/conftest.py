"""Shared fixtures: every database test runs on SQLite and on the real PostgreSQL.

PostgreSQL comes from ``HIE_TEST_PG_URL`` (``scripts/test`` starts a throwaway cluster and
sets it). Without it the PostgreSQL half is skipped, unless ``HIE_REQUIRE_SERVICES=1`` (as in
CI), where a missing service is a failure, not a skip.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from sqlalchemy import Engine, text

from hie import migrate
from hie.api.app import create_app
from hie.auth import ALL_SCOPES, mint
from hie.exchange import Exchange
from hie.index.store import create_engine
from hie.services import build_exchange
from hie.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT.parent / "shared" / "reference-data"
SECRET = "test-secret-" + "x" * 32
REQUIRE = os.environ.get("HIE_REQUIRE_SERVICES") == "1"
PG_URL = os.environ.get("HIE_TEST_PG_URL")

_template: dict[str, Path] = {}


def _sqlite_url(tmp_path: Path) -> str:
    """A fresh migrated SQLite file, copied from one migrated template per session."""
    if "db" not in _template:
        base = Path(os.environ.get("PYTEST_TMPDIR", "/tmp")) / f"hie-template-{os.getpid()}.db"
        base.unlink(missing_ok=True)
        engine = create_engine(f"sqlite:///{base}")
        migrate.upgrade(engine)
        engine.dispose()  # closing the last connection checkpoints the WAL into the file
        _template["db"] = base
    target = tmp_path / "hie.db"
    shutil.copy(_template["db"], target)
    return f"sqlite:///{target}"


_pg_ready: dict[str, bool] = {}


def _worker_pg_url() -> str:
    """One database per pytest-xdist worker, created on first use."""
    assert PG_URL
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    base, _, name = PG_URL.rpartition("/")
    url = f"{base}/{name}_{worker}"
    if url not in _pg_ready:
        admin = create_engine(f"{base}/postgres").execution_options(isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": f"{name}_{worker}"}
            ).first()
            if not exists:
                conn.execute(text(f'CREATE DATABASE "{name}_{worker}"'))
        admin.dispose()
        engine = create_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        _pg_ready[url] = True
    return url


def _pg_url() -> str:
    if not PG_URL:
        if REQUIRE:
            pytest.fail("HIE_TEST_PG_URL is not set but HIE_REQUIRE_SERVICES=1")
        pytest.skip("PostgreSQL not configured (HIE_TEST_PG_URL)")
    url = _worker_pg_url()
    engine = create_engine(url)
    with engine.begin() as conn:
        names = [
            r[0]
            for r in conn.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
            )
            if r[0] != "alembic_version"
        ]
        if names:
            conn.execute(text(f"TRUNCATE {', '.join(names)} RESTART IDENTITY"))
    engine.dispose()
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return _sqlite_url(tmp_path)
    return _pg_url()


@contextmanager
def scratch_postgres(database_url: str, suffix: str, *, pool_size: int = 1) -> Iterator[Engine]:
    """An engine on a new, empty PostgreSQL database beside the test's own (``<name>_<suffix>``),
    dropped afterwards: for tests that build a schema step by step (migrations, partitions)."""
    base, _, name = database_url.rpartition("/")
    fresh = f"{name}_{suffix}"
    admin = create_engine(f"{base}/postgres").execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{fresh}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{fresh}"'))
    engine = create_engine(f"{base}/{fresh}", pool_size=pool_size)
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{fresh}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return _sqlite_url(tmp_path)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        jwt_secret=SECRET,
        base_url="http://testserver/fhir",
        pool_size=4,
    )


@pytest.fixture
def exchange(settings: Settings) -> Iterator[Exchange]:
    ex = build_exchange(settings, run_migrations=False)
    yield ex
    ex.store.engine.dispose()


def token(
    hospital: str | None = "szph",
    scopes: tuple[str, ...] = ALL_SCOPES,
    roles: tuple[str, ...] = (),
) -> str:
    return mint(SECRET, f"client-{hospital}", hospital_id=hospital, scopes=scopes, roles=roles)


def auth(
    hospital: str | None = "szph",
    scopes: tuple[str, ...] = ALL_SCOPES,
    roles: tuple[str, ...] = (),
) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(hospital, scopes, roles)}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class LiveServer:
    """The app on a real socket in a background thread (uvicorn), for real-HTTP tests."""

    def __init__(self, settings: Settings, exchange: Exchange) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}/fhir"
        settings.base_url = self.base
        app = create_app(settings, exchange)
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def live(settings: Settings, exchange: Exchange) -> Iterator[LiveServer]:
    with LiveServer(settings, exchange) as server:
        yield server


@pytest.fixture
def client(live: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.base, headers=auth(), timeout=30) as c:
        yield c


@pytest.fixture
def random_id() -> str:
    return secrets.token_hex(4)


def _fixture_files() -> set[str]:
    return {str(p.relative_to(ROOT)) for p in (ROOT / "fixtures").rglob("*") if p.is_file()}


@pytest.fixture(scope="session", autouse=True)
def fixtures_stay_untouched() -> Iterator[None]:
    """Drop-folder adapters move what they read; a test must run them on a copy."""
    before = _fixture_files()
    yield
    changed = before ^ _fixture_files()
    assert not changed, f"a test moved or created files under fixtures/: {sorted(changed)[:5]}"


def together(
    setup: str, act: str, *args: str, processes: int = 3
) -> list[subprocess.CompletedProcess[str]]:
    """``processes`` Python processes that each run ``setup``, wait for the same instant, then
    run ``act`` (both see ``args`` as ``sys.argv[2:]``): API processes starting together."""
    code = (
        f"import sys, time\n{setup}"
        "while time.time() < float(sys.argv[1]):\n"  # all at the same moment, once set up
        f"    time.sleep(0.001)\n{act}"
    )
    start = f"{time.time() + 4:.3f}"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, start, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    done = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return done
