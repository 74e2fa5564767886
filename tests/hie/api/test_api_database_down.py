"""A database that cannot be reached is a 503 the client may retry, never a 500."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import text

from hie.index.store import create_engine
from tests.conftest import LiveServer


def test_a_lost_database_is_503_with_retry_after_then_recovers(
    database_url: str, live: LiveServer, client: httpx.Client
) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL only: a server whose connections can be cut and refused")
    assert client.get("/Observation", params={"_count": 1}).status_code == 200
    base, _, name = database_url.rpartition("/")
    admin = create_engine(f"{base}/postgres").execution_options(isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:  # what a failover looks like from the exchange
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :n AND pid <> pg_backend_pid()"
                ),
                {"n": name},
            )
        down = client.get("/Observation", params={"_count": 1})
        assert down.status_code == 503, down.text
        assert down.headers["Retry-After"] == "5"
        issue = down.json()["issue"][0]
        assert issue["code"] == "transient" and "Retry" in issue["diagnostics"]
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        admin.dispose()
    assert client.get("/Observation", params={"_count": 1}).status_code == 200


def test_after_a_database_restart_each_process_recovers_by_itself(
    database_url: str, live: LiveServer, client: httpx.Client
) -> None:
    """Pooled connections the server dropped cost at most one 503, then requests succeed."""
    if database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL only: a server whose connections can be cut")
    for _ in range(3):
        assert client.get("/Observation", params={"_count": 1}).status_code == 200
    base, _, name = database_url.rpartition("/")
    admin = create_engine(f"{base}/postgres").execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:  # every server-side connection of the database goes
        cut = conn.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = :n AND pid <> pg_backend_pid()"
            ),
            {"n": name},
        ).scalar_one()
    admin.dispose()
    assert cut >= 1
    first = client.get("/Observation", params={"_count": 1})
    assert first.status_code in (200, 503), first.text  # a stale connection: retry
    statuses = [client.get("/Observation", params={"_count": 1}).status_code for _ in range(3)]
    assert statuses == [200, 200, 200]
