"""Hospitals from the configuration as Organizations (hie/organizations.py), written by every
API process at start: several processes starting at once must all start."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

from sqlalchemy import func, select

from hie.hospitals import load_hospitals
from hie.index.store import R, create_engine
from hie.migrate import upgrade
from hie.organizations import H
from tests.conftest import scratch_postgres, together

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
CONFIG = FIXTURES / "hospitals.toml"


def _sync_together(url: str) -> list[subprocess.CompletedProcess[str]]:
    """Three processes syncing the hospitals into ``url`` at the same moment."""
    setup = (
        "import os\n"
        "from pathlib import Path\n"
        "from hie.hospitals import load_hospitals\n"
        "from hie.index.store import Store, create_engine\n"
        "from hie.organizations import sync_hospitals\n"
        "store = Store(create_engine(sys.argv[2]))\n"
        "config = load_hospitals(Path(sys.argv[3]), os.environ)\n"
    )
    return together(setup, "print(sync_hospitals(store, config))\n", url, str(CONFIG))


def test_processes_syncing_the_hospitals_together_all_start(database_url: str) -> None:
    """Each writes what is missing once: one process registers every hospital, the others
    find them unchanged (a second INSERT of the same ids failed a process's start on
    PostgreSQL before, seen with two API workers on a database with no hospitals yet)."""
    ctx = (
        contextlib.nullcontext(create_engine(database_url))
        if database_url.startswith("sqlite")
        else scratch_postgres(database_url, "orgs")
    )
    with ctx as engine:
        upgrade(engine)
        url = engine.url.render_as_string(hide_password=False)
        done = _sync_together(url)
        assert [p.returncode for p in done] == [0, 0, 0], [p.stderr[-800:] for p in done]
        hospitals = len(load_hospitals(CONFIG, {}).hospitals)
        assert sorted(int(p.stdout) for p in done) == [0, 0, hospitals]
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(H)).scalar() == hospitals
            organizations = select(func.count()).where(R.c.type == "Organization")
            assert conn.execute(organizations).scalar() == hospitals
        engine.dispose()
