"""A database made by an older release upgrades in place and keeps its data."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect, text

from hie import migrate
from hie.index.store import create_engine


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
