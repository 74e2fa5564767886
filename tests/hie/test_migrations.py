"""A database made by an older release upgrades in place and keeps its data."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text
from sqlmodel import SQLModel

import hie.index.tables  # noqa: F401  (registers the tables on SQLModel.metadata)
from hie import migrate
from hie.index.store import Store, create_engine
from tests.conftest import scratch_postgres, together


def test_upgrade_from_first_release_keeps_data(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    migrate.upgrade(engine, "0001")
    assert "recognition_decision" not in inspect(engine).get_table_names()
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO hospital (id, name_zh, name_en, level) "
                "VALUES ('szph', '深圳市人民医院', 'Shenzhen People''s Hospital', '3A')"
            )
        )
    migrate.upgrade(engine)
    assert migrate.current(engine) == migrate.head()
    assert "recognition_decision" in inspect(engine).get_table_names()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT name_zh FROM hospital")).scalar_one() == "深圳市人民医院"
    migrate.upgrade(engine)  # a second upgrade is a no-op
    assert migrate.current(engine) == migrate.head()


def test_partitioning_upgrade_keeps_data_on_postgres(database_url: str) -> None:
    """0003 → 0004 on a PostgreSQL index with rows: tables become partitioned, rows stay."""
    if database_url.startswith("sqlite"):
        pytest.skip("0004 changes nothing on SQLite (covered by the upgrade above)")
    with scratch_postgres(database_url, "0003") as engine:
        migrate.upgrade(engine, "0003")
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO resource_version VALUES "
                    "('Observation', 'o1', 1, '2019-03-31 23:00+00', false, 'v1'), "
                    "('Observation', 'o1', 2, '2026-11-04 10:00+00', false, 'v2')"
                )
            )
            for when in ("2020-01-01 07:00+08", "2026-11-05 09:00+00"):
                conn.execute(
                    text(
                        "INSERT INTO audit_event (recorded, client_id, action, interaction, "
                        "resource_ids, outcome) VALUES (:w, 'c', 'R', 'read', '', '0')"
                    ),
                    {"w": when},
                )
        migrate.upgrade(engine)
        assert migrate.current(engine) == migrate.head()
        with engine.begin() as conn:
            kinds = dict(
                conn.execute(
                    text(
                        "SELECT relname, relkind::text FROM pg_class "
                        "WHERE relname IN ('resource_version', 'audit_event')"
                    )
                ).all()
            )
            assert kinds == {"resource_version": "p", "audit_event": "p"}
            versions = conn.execute(
                text(
                    "SELECT version_id, body, tableoid::regclass::text FROM resource_version "
                    "ORDER BY version_id"
                )
            ).all()
            assert [tuple(r) for r in versions] == [
                (1, b"v1", "resource_version_p201903"),
                (2, b"v2", "resource_version_p202611"),
            ]
            audits = conn.execute(
                text("SELECT id, tableoid::regclass::text FROM audit_event ORDER BY id")
            ).all()
            assert [tuple(r) for r in audits] == [
                (1, "audit_event_p201912"),  # 07:00 in Shanghai on 1 January is 2019 in UTC
                (2, "audit_event_p202611"),
            ]
            # the id sequence survived the swap and goes on from where it was
            conn.execute(
                text(
                    "INSERT INTO audit_event (recorded, client_id, action, interaction, "
                    "resource_ids, outcome) VALUES (now(), 'c', 'R', 'read', '', '0')"
                )
            )
            assert conn.execute(text("SELECT max(id) FROM audit_event")).scalar_one() == 3
            indexes = set(
                conn.execute(
                    text(
                        "SELECT indexname FROM pg_indexes "
                        "WHERE tablename IN ('resource_version', 'audit_event')"
                    )
                ).scalars()
            )
            assert indexes == {"resource_version_pkey", "audit_event_pkey", "ix_audit_patient"}
        migrate.upgrade(engine)  # a second upgrade is a no-op
        assert migrate.current(engine) == migrate.head()


def test_the_migrations_build_what_tables_py_declares(database_url: str) -> None:
    """tables.py and the revisions agree: autogenerate would write an empty revision."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "include_name": migrate.include_name}
            )
            assert compare_metadata(context, SQLModel.metadata) == []
    finally:
        engine.dispose()


def test_the_type_tables_keep_only_their_key(database_url: str) -> None:
    """0005: the type tables are reached by id alone; nothing else is indexed on them."""
    engine = create_engine(database_url)
    try:
        found = inspect(engine)
        for table in ("observation_index", "diagnostic_report_index", "imaging_study_index"):
            assert found.get_indexes(table) == [], table
        assert found.get_indexes("patient_index") == []
    finally:
        engine.dispose()


def test_each_revision_is_named_by_its_file_prefix() -> None:
    """``migrate.newest_revision`` reads the head from file names; that holds only if every
    revision's id is its file's four-digit prefix and the newest file is Alembic's head."""
    for path in migrate.VERSIONS.glob("*.py"):
        source = path.read_text()
        assert f"revision = '{path.name[:4]}'" in source or (
            f'revision = "{path.name[:4]}"' in source
        ), path.name
    assert migrate.newest_revision() == migrate.head()


def test_a_current_schema_is_recognised_without_alembic(tmp_path: Path) -> None:
    """Start-up on a current database answers from ``alembic_version`` and never loads
    Alembic; a fresh or older database is not taken for current."""
    url = f"sqlite:///{tmp_path / 'hie.db'}"
    engine = create_engine(url)
    with engine.connect() as conn:
        assert not migrate.is_current(conn)
    migrate.upgrade(engine, "0001")
    with engine.connect() as conn:
        assert not migrate.is_current(conn)
    migrate.upgrade(engine)
    with engine.connect() as conn:
        assert migrate.is_current(conn)
    engine.dispose()
    probe = (
        "import sys; from hie import migrate; from hie.index.store import Store, create_engine; "
        f"migrate.upgrade(create_engine({url!r})); print('alembic' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "False"


def _superseded_only_upgrade(engine: Engine) -> None:
    migrate.upgrade(engine, "0005")
    v1, v2 = datetime(2026, 11, 3, 10), datetime(2026, 11, 4, 10)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO resource (type, id, version_id, last_updated, hospital_id, "
                "source_id, patient_id, record_id, deleted, content_hash, body) VALUES "
                "('Observation', 'o1', 2, :at, 'szph', 's1', 'p1', 'r1', :no, 'h', :body)"
            ),
            {"at": v2, "no": False, "body": b"v2"},
        )
        conn.execute(
            text("INSERT INTO resource_version VALUES ('Observation', 'o1', :v, :at, :no, :body)"),
            [
                {"v": 1, "at": v1, "no": False, "body": b"v1"},
                {"v": 2, "at": v2, "no": False, "body": b"v2"},
            ],
        )
    migrate.upgrade(engine)
    with engine.connect() as conn:
        kept = conn.execute(text("SELECT version_id, body FROM resource_version")).all()
    assert [tuple(r) for r in kept] == [(1, b"v1")]  # v2 is the current one, in resource
    history = Store(engine).history("Observation", "o1", 10)
    assert [(v, body) for v, _, body in history] == [(2, b"v2"), (1, b"v1")]
    assert Store(engine).history("Observation", "o1", 1) == history[:1]
    with engine.begin() as conn:
        cfg = migrate.alembic_config()
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0005")
    with engine.connect() as conn:
        back = conn.execute(text("SELECT version_id FROM resource_version ORDER BY 1")).all()
    assert [v for (v,) in back] == [1, 2]


def test_history_keeps_only_superseded_versions_after_0006(
    database_url: str, tmp_path: Path
) -> None:
    """0006 drops history rows that copy the current version; history still reads them all."""
    if database_url.startswith("sqlite"):
        engine = create_engine(f"sqlite:///{tmp_path / 'v.db'}")
        try:
            _superseded_only_upgrade(engine)
        finally:
            engine.dispose()
        return
    with scratch_postgres(database_url, "0006") as engine:
        _superseded_only_upgrade(engine)


def test_status_token_rows_are_deleted_and_restored(database_url: str, tmp_path: Path) -> None:
    """0007: status is searched on the type tables; its search_token rows go, other tokens
    stay, and the downgrade writes them again from the type tables."""
    from alembic import command
    from alembic.script import ScriptDirectory

    before = ScriptDirectory.from_config(migrate.alembic_config()).get_revision("0007")
    assert before is not None and isinstance(before.down_revision, str)
    with contextlib.ExitStack() as stack:
        if database_url.startswith("sqlite"):
            engine = create_engine(f"sqlite:///{tmp_path / 'status.db'}")
            stack.callback(engine.dispose)
        else:
            engine = stack.enter_context(scratch_postgres(database_url, "status"))
        migrate.upgrade(engine, before.down_revision)
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO observation_index (id, patient_id, status, effective, "
                    "last_updated) VALUES ('o1', 'p1', 'final', '2026-11-20 00:00', "
                    "'2026-11-20 00:00')"
                )
            )
            for param, system, code in (("status", "", "final"), ("code", "http://loinc.org", "1")):
                conn.execute(
                    text(
                        "INSERT INTO search_token (type, res_id, param, system, code, patient_id,"
                        " date) VALUES ('Observation', 'o1', :p, :s, :c, 'p1', '2026-11-20 00:00')"
                    ),
                    {"p": param, "s": system, "c": code},
                )
        tokens = "SELECT param, system, code, patient_id FROM search_token ORDER BY param"
        migrate.upgrade(engine)
        with engine.connect() as conn:
            assert [tuple(r) for r in conn.execute(text(tokens))] == [
                ("code", "http://loinc.org", "1", "p1")
            ]
        with engine.begin() as conn:
            cfg = migrate.alembic_config()
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, before.down_revision)
        with engine.connect() as conn:
            assert [tuple(r) for r in conn.execute(text(tokens))] == [
                ("code", "http://loinc.org", "1", "p1"),
                ("status", "", "final", "p1"),
            ]


def _migrate_together(url: str) -> list[subprocess.CompletedProcess[str]]:
    """Three processes migrating ``url`` at once, as API processes starting together."""
    setup = (
        "from hie import migrate\n"
        "from hie.index.store import create_engine\n"
        "engine = create_engine(sys.argv[2])\n"
    )
    return together(setup, "migrate.upgrade(engine)\n", url)


def test_processes_starting_together_on_a_fresh_database_all_start(database_url: str) -> None:
    """Several API processes started at once on a new database: one migrates, the others wait
    for it and find the schema current (they failed with "already exists" or "database is
    locked" before)."""
    ctx = (
        contextlib.nullcontext(create_engine(database_url))
        if database_url.startswith("sqlite")
        else scratch_postgres(database_url, "together")
    )
    with ctx as engine:
        url = engine.url.render_as_string(hide_password=False)
        engine.dispose()
        done = _migrate_together(url)
        assert [p.returncode for p in done] == [0, 0, 0], [p.stderr[-800:] for p in done]
        assert migrate.current(engine) == migrate.head()
