"""Running the configured feeds: one pull per adapter, as ``hie sync`` and the demo do."""

from __future__ import annotations

from collections.abc import Iterator

from hie.exchange import Exchange
from hie.hospitals import HospitalsConfig


def run_all_once(exchange: Exchange, config: HospitalsConfig, *, demo: bool = False) -> Iterator[str]:
    """Pull every enabled adapter once; yields one summary line per adapter."""
    for hospital, adapter in config.pull_adapters():
        yield f"{hospital.id}/{adapter.name}: not wired yet ({adapter.kind})"
