"""Wiring: settings in, a ready :class:`~hie.exchange.Exchange` out (used by app and CLI)."""

from __future__ import annotations

from hie import migrate
from hie.audit import Auditor
from hie.exchange import Exchange
from hie.index.patients import PatientRegistry
from hie.index.search import Searcher
from hie.index.store import Store, create_engine
from hie.ingest import Ingestor, Validator
from hie.settings import Settings


def profile_validator(settings: Settings) -> Validator | None:
    try:
        from hie.profiles import Profiles
    except ImportError:  # pragma: no cover - the profiles module ships with hie
        return None
    profiles = Profiles.load(settings.profiles_dir)
    return profiles.validate


def build_exchange(settings: Settings, *, run_migrations: bool = True) -> Exchange:
    engine = create_engine(settings.database_url, pool_size=settings.pool_size)
    if run_migrations:
        migrate.upgrade(engine)
    store = Store(engine, tz=settings.timezone)
    registry = PatientRegistry(store)
    ingestor = Ingestor(store, registry, profile_validator(settings))
    searcher = Searcher(
        registry,
        tz=settings.timezone,
        default_count=settings.default_count,
        max_count=settings.max_count,
    )
    exchange = Exchange(settings, store, registry, ingestor, searcher, Auditor(store))
    if settings.config_file is not None:
        import os

        from hie.hospitals import load_hospitals
        from hie.organizations import sync_hospitals

        exchange.hospitals = load_hospitals(settings.config_file, os.environ)
        sync_hospitals(store, exchange.hospitals)
    return exchange
