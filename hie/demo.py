"""``hie demo``: the demo hospitals in fixtures/ loaded through the real adapters.

Drop-folder adapters move what they have read to ``done/``; the demo therefore works on a
copy of ``fixtures/`` next to its database, so the repository's fixtures never change.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from hie.exchange import Exchange
from hie.feeds import run_all_once
from hie.hospitals import HospitalsConfig, load_hospitals
from hie.organizations import sync_hospitals
from hie.services import attach_recognition, build_exchange
from hie.settings import Settings


def stage_fixtures(fixtures: Path, work: Path) -> Path:
    """A fresh copy of the fixtures to read from; returns the copied hospitals file."""
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(fixtures, work, ignore=shutil.ignore_patterns("done", "__pycache__"))
    return work / "hospitals.toml"


def load_demo(
    settings: Settings, work: Path, exchange: Exchange | None = None
) -> tuple[str, HospitalsConfig]:
    """Load every enabled demo feed once; returns a console summary and the config used."""
    own = exchange is None
    exchange = exchange or build_exchange(settings)
    config_file = stage_fixtures(settings.fixtures_dir, work)
    config = load_hospitals(config_file, os.environ)
    exchange.hospitals = config
    attach_recognition(exchange)
    lines = [f"hospitals: {sync_hospitals(exchange.store, config)} registered"]
    lines += list(run_all_once(exchange, config, demo=True))
    if own:
        exchange.store.engine.dispose()
    return "\n".join(lines), config
