"""Push listeners started with the exchange: one MLLP listener per configured (host, port)."""

from __future__ import annotations

import logging
from zoneinfo import ZoneInfo

from adapters.hl7v2.mllp import MllpConfig, MllpListener, RunningListener, run_in_thread
from hie.exchange import Exchange
from hie.hospitals import HospitalsConfig
from hie.terminology import Terminology

log = logging.getLogger("hie.listeners")


def start_mllp(exchange: Exchange, config: HospitalsConfig) -> list[RunningListener]:
    """Start every enabled MLLP adapter's listener; each hands batches to the one ingest path."""
    terminology = Terminology.load(exchange.settings.profiles_dir)
    running: list[RunningListener] = []
    for (host, port), members in config.mllp_listeners().items():
        facilities: dict[str, str] = {}
        for _, adapter in members:
            facilities.update(adapter.facility)
        hospital, adapter = members[0]
        mllp_config = MllpConfig(
            # With a facility map, MSH-4 decides whose message it is and strangers are
            # refused; without one, a port serves one hospital.
            hospital_id=hospital.id if len(members) == 1 and not facilities else None,
            facilities=facilities,
            adapter=adapter.name,
            idle_timeout=adapter.timeout,
        )
        listener = MllpListener(
            exchange.ingestor.ingest,
            mllp_config,
            terminology=terminology,
            tz=ZoneInfo(config.exchange.timezone),
            handle_many=exchange.ingestor.ingest_many,
            check=exchange.ingestor.checked,
        )
        running.append(run_in_thread(listener, host, port))
        log.info("MLLP listening on %s:%d for %s", host, running[-1].port, sorted(facilities))
    return running
