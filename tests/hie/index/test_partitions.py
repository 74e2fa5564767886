"""Monthly time partitions on PostgreSQL (hie.index.partitions, migration 0004).

Each PostgreSQL test gets a database of its own, freshly migrated: partitions are schema,
and the conftest's per-worker database keeps whatever partitions an earlier test made.
On SQLite the functions are no-ops, which is tested too.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from hie import migrate, naming
from hie.cli_partitions import partitions_app
from hie.index import partitions
from hie.index.partitions import default_name, ensure_partitions, list_partitions
from hie.index.store import RV, Store, create_engine
from hie.services import build_exchange
from hie.settings import Settings
from tests.conftest import SECRET, scratch_postgres
from tests.hie.api.api_builders import observation
from tests.hie.index.test_index_query_plans import _plan, _record, _seed

TODAY = date(2026, 11, 25)


@pytest.fixture
def pg(database_url: str) -> Iterator[Engine]:
    if database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL only: SQLite has no partitioning")
    with scratch_postgres(database_url, "parts", pool_size=2) as engine:
        migrate.upgrade(engine)
        yield engine


def _put(store: Store, rid: str, when: datetime, prev_version: int = 0) -> None:
    with store.write() as conn:
        prev = store.current(conn, "Observation", rid)
        assert (prev.version_id if prev else 0) == prev_version
        store.put(
            conn,
            observation("Patient/p1", result_id=rid),
            rid=rid,
            prev=prev,
            now=when,
            hospital_id="szph",
            source_id=rid,
            patient_id="p1",
        )


def _audit(engine: Engine, when: datetime, patient: str = "p1") -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO audit_event (recorded, client_id, action, interaction, "
                "resource_ids, patient_id, outcome) VALUES (:w, 'c', 'R', 'read', '', :p, '0')"
            ),
            {"w": when, "p": patient},
        )


def _where(engine: Engine, table: str) -> list[tuple[str, str]]:
    """(row key, partition holding it) for every row of ``table``."""
    key = "id || '/' || version_id" if table == "resource_version" else "id::text"
    with engine.connect() as conn:
        return [
            (str(k), str(p))
            for k, p in conn.execute(
                text(f"SELECT {key}, tableoid::regclass::text FROM {table} ORDER BY 1")
            )
        ]


def _explain(engine: Engine, sql: str, params: dict[str, object]) -> str:
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL enable_seqscan = off"))
        return "\n".join(r[0] for r in conn.execute(text("EXPLAIN " + sql), params))


def test_upgrade_makes_the_months_ahead_and_a_default(pg: Engine) -> None:
    names = {p.name for p in list_partitions(pg)}
    this = partitions.month_start(datetime.now(UTC))
    for table in partitions.PARTITIONED:
        assert default_name(table) in names
        for ahead in range(4):  # this month and three more
            assert partitions.partition_name(table, partitions.add_months(this, ahead)) in names
    with pg.connect() as conn:
        kinds = dict(
            conn.execute(
                text(
                    "SELECT relname, relkind::text FROM pg_class "
                    "WHERE relname IN ('resource_version', 'audit_event')"
                )
            ).all()
        )
    assert kinds == {"resource_version": "p", "audit_event": "p"}


def test_rows_land_in_their_month(pg: Engine) -> None:
    store = Store(pg)
    _put(store, "o1", datetime(2026, 11, 3, 10, tzinfo=UTC))
    _put(store, "o1", datetime(2026, 12, 31, 23, 59, tzinfo=UTC), prev_version=1)
    _put(store, "o1", datetime(2027, 1, 2, tzinfo=UTC), prev_version=2)  # v2 goes to history
    _audit(pg, datetime(2027, 1, 1, 0, 30, tzinfo=UTC))
    # 2027-01-01 00:30 in Shanghai is still 2026-12-31 in UTC: bounds are UTC months
    _audit(pg, datetime.fromisoformat("2027-01-01T00:30:00+08:00"))
    assert _where(pg, "resource_version") == [
        ("o1/1", "resource_version_p202611"),
        ("o1/2", "resource_version_p202612"),
    ]
    assert [p for _, p in _where(pg, "audit_event")] == [
        "audit_event_p202701",
        "audit_event_p202612",
    ]
    # the store reads every version back, newest first, across partitions (and v3 from
    # ``resource``: history holds only the superseded versions)
    assert [v for v, _, _ in store.history("Observation", "o1", 10)] == [3, 2, 1]
    found = store.version("Observation", "o1", 1)
    assert found is not None and found[1] == datetime(2026, 11, 3, 10, tzinfo=UTC)


def test_a_row_outside_the_made_range_goes_to_default_then_to_its_month(pg: Engine) -> None:
    store = Store(pg)
    _put(store, "old", datetime(2015, 6, 9, 8, tzinfo=UTC))
    _put(store, "old", datetime(2015, 6, 10, tzinfo=UTC), prev_version=1)  # v1 to history
    _audit(pg, datetime(2015, 6, 9, 8, tzinfo=UTC))
    _audit(pg, datetime(2015, 7, 1, 1, tzinfo=UTC))
    assert _where(pg, "resource_version") == [("old/1", "resource_version_default")]
    assert {p for _, p in _where(pg, "audit_event")} == {"audit_event_default"}

    made = ensure_partitions(pg)
    assert set(made) == {
        "resource_version_p201506",
        "audit_event_p201506",
        "audit_event_p201507",
    }
    assert _where(pg, "resource_version") == [("old/1", "resource_version_p201506")]
    assert [p for _, p in _where(pg, "audit_event")] == [
        "audit_event_p201506",
        "audit_event_p201507",
    ]
    counts = {p.name: p.rows for p in list_partitions(pg)}
    assert counts["resource_version_default"] == 0 and counts["audit_event_default"] == 0
    # an attached partition gets the parent's indexes, like one made by PARTITION OF
    with pg.connect() as conn:
        indexes = set(
            conn.execute(
                text("SELECT indexdef FROM pg_indexes WHERE tablename = 'audit_event_p201506'")
            ).scalars()
        )
    assert any("(patient_id, recorded)" in i for i in indexes), indexes
    assert any("UNIQUE" in i and "(id, recorded)" in i for i in indexes), indexes
    # the moved version still reads back and can be followed by a new one
    _put(store, "old", datetime(2026, 11, 20, tzinfo=UTC), prev_version=2)
    assert [v for v, _, _ in store.history("Observation", "old", 10)] == [3, 2, 1]


def test_ensure_partitions_is_idempotent(pg: Engine) -> None:
    first = ensure_partitions(pg, months_ahead=6, since=date(2026, 1, 1), today=TODAY)
    assert "resource_version_p202601" in first and "audit_event_p202705" in first
    before = [(p.name, p.start, p.end) for p in list_partitions(pg)]
    assert ensure_partitions(pg, months_ahead=6, since=date(2026, 1, 1), today=TODAY) == []
    assert partitions.partition_job(pg) == []  # the daily job, after the same months
    assert [(p.name, p.start, p.end) for p in list_partitions(pg)] == before
    migrate.upgrade(pg)  # an upgrade at head makes nothing either
    assert [(p.name, p.start, p.end) for p in list_partitions(pg)] == before


def test_history_reads_use_each_partitions_key_and_time_bounds_prune(pg: Engine) -> None:
    ensure_partitions(pg, since=date(2026, 1, 1), today=TODAY)
    history = str(
        RV.select()
        .with_only_columns(RV.c.version_id, RV.c.body)
        .where(RV.c.type == "Observation", RV.c.id == "o1")
        .order_by(RV.c.version_id.desc())
        .compile(compile_kwargs={"literal_binds": True})
    )
    plan = _explain(pg, history, {})
    assert "Seq Scan" not in plan, plan
    assert "resource_version_p202603_pkey" in plan, plan  # every month's key, no table scan
    # a time-bounded read (retention, audit review) touches only the months it names
    plan = _explain(
        pg,
        "SELECT id FROM audit_event WHERE patient_id = :p AND recorded >= :lo AND recorded < :hi",
        {"p": "p1", "lo": datetime(2026, 3, 1, tzinfo=UTC), "hi": datetime(2026, 5, 1, tzinfo=UTC)},
    )
    scanned = sorted(set(re.findall(r"audit_event_p\d{6}", plan)))
    assert scanned == ["audit_event_p202603", "audit_event_p202604"], plan
    assert "audit_event_default" not in plan, plan


def test_the_main_lookup_never_reads_the_partitioned_tables(pg: Engine) -> None:
    """``Observation?patient&code&date=ge`` on a partitioned index: the same plan as before
    (the patient's token range), and no partition of history or audit in it."""
    settings = Settings(
        database_url=pg.url.render_as_string(hide_password=False),
        jwt_secret=SECRET,
        base_url="http://x/fhir",
        pool_size=2,
    )
    exchange = build_exchange(settings, run_migrations=False)
    try:
        _seed(exchange)
        params = [
            ("patient", _record(exchange, 7)),
            ("code", f"{naming.LOINC}|2345-7"),
            ("date", "ge2026-01-01"),
        ]
        plan = "\n".join(_plan(exchange, "Observation", params))
    finally:
        exchange.store.engine.dispose()
    assert "ix_token_patient" in plan, plan
    assert "Seq Scan" not in plan, plan
    assert "resource_version" not in plan and "audit_event" not in plan, plan


def test_the_partitions_commands(pg: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """``hie partitions ensure|list`` (the sub-app hie.cli mounts) against the database."""
    monkeypatch.setenv("HIE_DATABASE_URL", pg.url.render_as_string(hide_password=False))
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps a table to the terminal width
    runner = CliRunner()
    made = runner.invoke(partitions_app, ["ensure", "--since", "2025-01", "--months-ahead", "1"])
    assert made.exit_code == 0, made.output
    assert "resource_version_p202501" in made.output
    again = runner.invoke(partitions_app, ["ensure", "--since", "2025-01", "--months-ahead", "1"])
    assert again.exit_code == 0 and "made 0 partition(s)" in again.output, again.output
    listed = runner.invoke(partitions_app, ["list", "--exact"])
    assert listed.exit_code == 0, listed.output
    assert "audit_event_p202501" in listed.output and "DEFAULT" in listed.output
    bad = runner.invoke(partitions_app, ["ensure", "--since", "January"])
    assert bad.exit_code != 0 and "YYYY-MM" in bad.output


def test_sqlite_has_no_partitions(database_url: str) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("the SQLite half")
    engine = create_engine(database_url)
    try:
        assert ensure_partitions(engine) == []
        assert list_partitions(engine) == []
    finally:
        engine.dispose()
