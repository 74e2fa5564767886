"""Wiring: settings in, a ready :class:`~hie.exchange.Exchange` out (used by app and CLI)."""

from __future__ import annotations

from functools import partial

from hie import migrate
from hie.audit import Auditor
from hie.exchange import Exchange
from hie.identity.linker import MatchSettings
from hie.index.mpi import Mpi, identity_issues
from hie.index.patients import PatientRegistry
from hie.index.search import Searcher
from hie.index.store import Store, create_engine
from hie.ingest import Ingestor, Validator
from hie.profile import Profiles
from hie.settings import Settings

HTTP_WAIVED = frozenset({"Observation.identifier", "DiagnosticReport.identifier"})


def profile_validators(settings: Settings) -> tuple[Validator, Validator]:
    """(for adapters, for plain HTTP creates): a FHIR client may create a result without a
    source identifier (the server's id is then its only identity); adapters may not, since
    their replays must be idempotent."""
    profiles = Profiles.load(settings.profiles_dir)
    return profiles.validate, partial(profiles.validate, waive=HTTP_WAIVED)


def build_exchange(settings: Settings, *, run_migrations: bool = True) -> Exchange:
    engine = create_engine(settings.database_url, pool_size=settings.pool_size)
    if run_migrations:
        migrate.upgrade(engine)
    store = Store(engine, tz=settings.timezone)
    registry = PatientRegistry(
        store,
        Mpi(
            MatchSettings(
                auto_link=settings.identity_auto_link,
                review_floor=settings.identity_review_floor,
            )
        ),
    )
    strict, lenient = profile_validators(settings)
    ingestor = Ingestor(store, registry, strict, [identity_issues], http_profile_check=lenient)
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

        exchange.hospitals = load_hospitals(settings.config_file, os.environ, check_paths=True)
        sync_hospitals(store, exchange.hospitals)
        attach_recognition(exchange)
    return exchange


def attach_recognition(exchange: Exchange) -> None:
    """``$prior-results`` and decisions, once the hospitals (credentials, levels) are known."""
    from hie.decisions import Decisions
    from hie.prior_results import PriorResults
    from hie.recognition import RecognitionRules

    config = exchange.hospitals
    if config is None:
        return
    settings = exchange.settings
    rules = RecognitionRules.load(
        settings.profiles_dir,
        province_prefix=config.exchange.province_prefix,
        timezone=config.exchange.timezone,
    )
    exchange.prior_results = PriorResults(
        exchange.store,
        rules,
        config,
        Decisions(rules.catalogue, rules.decline_reasons),
        settings.timezone,
    )
    exchange.operations = [
        {
            "name": "prior-results",
            "definition": "https://hie.example.org/fhir/OperationDefinition/prior-results",
            "scope": "Patient",
        }
    ]
