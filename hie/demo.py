"""``hie demo``: the demo hospitals in fixtures/ loaded through the real adapters."""

from __future__ import annotations

import os
from pathlib import Path

from hie.exchange import Exchange
from hie.hospitals import load_hospitals
from hie.organizations import sync_hospitals
from hie.services import build_exchange
from hie.settings import Settings


def demo_config(settings: Settings) -> Path:
    return settings.config_file or settings.fixtures_dir / "hospitals.toml"


def load_demo(settings: Settings, exchange: Exchange | None = None) -> str:
    """Load every enabled demo feed once; returns a summary for the console."""
    exchange = exchange or build_exchange(settings)
    config = load_hospitals(demo_config(settings), os.environ)
    lines = [f"hospitals: {sync_hospitals(exchange.store, config)} registered"]
    from hie.feeds import run_all_once

    for line in run_all_once(exchange, config, demo=True):
        lines.append(line)
    exchange.store.engine.dispose()
    return "\n".join(lines)
