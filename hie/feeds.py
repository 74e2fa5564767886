"""The configured feeds: build each adapter's source from the hospitals file and run it.

``hie sync``, the demo and (later) the scheduler share :func:`sync_adapter`: one pull run is
one call that returns an :class:`adapters.base.SyncResult` and leaves a ``sync_run`` row, so
ops can see what ran, what it brought and where its cursor stands.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from zoneinfo import ZoneInfo

from sqlalchemy import insert, update

from adapters.base import PullSource, SyncResult
from adapters.runner import run_pull
from hie.exchange import Exchange
from hie.fhirtime import now_utc
from hie.hospitals import (
    DicomFolderAdapter,
    DicomWebAdapter,
    FhirRestAdapter,
    Hl7FolderAdapter,
    Hospital,
    HospitalsConfig,
    LisCsvAdapter,
)
from hie.index import tables as t
from hie.terminology import Terminology

RUN = t.SyncRun.__table__  # type: ignore[attr-defined]
Progress = Callable[[SyncResult], None]


class FeedError(Exception):
    """The adapter cannot be run as configured (unknown name, push-only kind...)."""


def build_source(
    hospital: Hospital,
    adapter: object,
    config: HospitalsConfig,
    terminology: Terminology,
    stack: ExitStack,
) -> PullSource:
    """A pull source for one configured adapter; clients it opens are closed with ``stack``."""
    tz = ZoneInfo(config.exchange.timezone)
    if isinstance(adapter, Hl7FolderAdapter):
        from adapters.hl7v2.drop_folder import Hl7Folder

        return Hl7Folder(
            hospital_id=hospital.id,
            name=adapter.name,
            folder=adapter.path,
            terminology=terminology,
            tz=tz,
            pattern=adapter.pattern,
        )
    if isinstance(adapter, LisCsvAdapter):
        from adapters.lis_csv.source import LisCsvSource

        return LisCsvSource.from_config(
            hospital.id, adapter, config.exchange, lambda h, c: terminology.map(h, c)
        )
    if isinstance(adapter, DicomFolderAdapter):
        from adapters.dicom_folder.source import DicomFolderSource

        return DicomFolderSource(
            hospital_id=hospital.id,
            folder=adapter.path,
            name=adapter.name,
            wado_base_url=adapter.wado_base_url,
            settle_seconds=adapter.settle_seconds,
        )
    if isinstance(adapter, DicomWebAdapter):
        from adapters.dicomweb.qido import RetryPolicy
        from adapters.dicomweb.source import dicomweb_source

        auth = adapter.auth
        source, client = dicomweb_source(
            hospital.id,
            adapter.base_url,
            name=adapter.name,
            username=auth.username if auth else None,
            password=auth.secret if auth else None,
            page_size=adapter.page_size,
            timeout=adapter.timeout,
            connect_timeout=adapter.connect_timeout,
            retry=RetryPolicy(
                attempts=adapter.max_attempts,
                backoff_base=adapter.backoff_base,
                backoff_max=adapter.backoff_max,
            ),
            wado_base_url=adapter.base_url,
        )
        stack.callback(client.close)
        return source
    if isinstance(adapter, FhirRestAdapter):
        from adapters.fhir_rest.source import FhirRestSource, http_client

        http = http_client(adapter)
        stack.callback(http.close)
        return FhirRestSource.from_config(hospital.id, adapter, http=http)
    raise FeedError(f"{hospital.id}/{getattr(adapter, 'name', '?')} is not a pull adapter")


def sync_adapter(
    exchange: Exchange,
    config: HospitalsConfig,
    hospital: Hospital,
    adapter: object,
    *,
    terminology: Terminology | None = None,
    progress: Progress | None = None,
) -> SyncResult:
    """Run one pull now: everything after the stored cursor, recorded as a sync run."""
    name = str(getattr(adapter, "name", "?"))
    terminology = terminology or Terminology.load(exchange.settings.profiles_dir)
    with exchange.store.write() as conn:
        inserted = conn.execute(
            insert(RUN).values(hospital_id=hospital.id, adapter=name, started=now_utc())
        ).inserted_primary_key
        assert inserted is not None
        run_id = inserted[0]
    with ExitStack() as stack:
        try:
            source = build_source(hospital, adapter, config, terminology, stack)
            result = run_pull(source, exchange.ingestor, hospital.id, name, progress=progress)
        except FeedError as exc:
            result = SyncResult(hospital.id, name, error=str(exc))
    with exchange.store.write() as conn:
        conn.execute(
            update(RUN)
            .where(RUN.c.id == run_id)
            .values(
                finished=now_utc(),
                received=result.received,
                indexed=result.indexed,
                unchanged=result.unchanged,
                new_versions=result.new_versions,
                rejected=result.rejected,
                cursor_before=result.cursor_before,
                cursor_after=result.cursor_after,
                error=result.error,
            )
        )
    return result


def summary(result: SyncResult) -> str:
    line = (
        f"{result.hospital_id}/{result.adapter}: received {result.received}, "
        f"indexed {result.indexed}, unchanged {result.unchanged}, "
        f"new versions {result.new_versions}, rejected {result.rejected}"
    )
    return line + (f"  ERROR {result.error}" if result.error else "")


def run_all_once(
    exchange: Exchange, config: HospitalsConfig, *, demo: bool = False
) -> Iterator[str]:
    """Pull every enabled adapter once; yields one summary line per adapter."""
    terminology = Terminology.load(exchange.settings.profiles_dir)
    for hospital, adapter in config.pull_adapters():
        yield summary(sync_adapter(exchange, config, hospital, adapter, terminology=terminology))
