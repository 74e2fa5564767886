"""A hospital PACS over DICOMweb as a pull source: QIDO-RS studies → ImagingStudy units.

Incremental by StudyDate. The cursor is the last study date fully read (``YYYY-MM-DD``); a
run asks for ``StudyDate >= cursor - overlap`` so studies that reach the PACS a little after
they were acquired (a late send from a modality, an outside study imported the next day) are
still picked up. Re-reading is harmless: ingest upserts by StudyInstanceUID. A study that
arrives later than ``overlap`` after its StudyDate is missed until a full re-read (cursor
cleared); PACS with a change feed (Orthanc ``/changes``) could close that gap.

Work is cut in StudyDate windows of ``window_days`` (a first run from ``start_date`` reads
years), paged with ``limit``/``offset``, one batch per page. Each window's last batch carries
the window's end as the cursor, so a crash mid-way resumes at the last finished window. The
final window is open-ended (``StudyDate=YYYYMMDD-``), which also catches studies dated in the
future by a wrong modality clock; its cursor is today, never later.

QIDO-RS returns series only per study, so each study costs one more request; that is the
protocol's shape (PS3.18 §10.6.1), not a per-patient fan-out. A server that leaves sequences
out of its QIDO answers (Orthanc does, whatever ``includefield`` asks) costs two more: one
instance's WADO-RS metadata supplies OtherPatientIDsSequence and the procedure codes, so a
study reads the same through DICOMweb as through the folder adapter.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

import httpx

from adapters.base import BadMessage, Batch, Cursor, DeadLetter, Sink, SyncResult, Unit
from adapters.dicom import json_model as dj
from adapters.dicom.body_site import BodySiteMap, default_body_sites
from adapters.dicom.dates import SHANGHAI_OFFSET
from adapters.dicom.study import PAYLOAD_CONTENT_TYPE, Pacs, study_payload, study_unit
from adapters.runner import run_pull

from .qido import DateRange, QidoClient, RetryPolicy

log = logging.getLogger(__name__)

SHANGHAI = timezone(timedelta(hours=8))
SEQUENCE_TAGS = (
    dj.OTHER_PATIENT_IDS_SEQUENCE,
    dj.REQUESTED_PROCEDURE_CODE_SEQUENCE,
    dj.PROCEDURE_CODE_SEQUENCE,
)


def today_in_shanghai() -> date:
    return datetime.now(SHANGHAI).date()


@dataclass
class DicomWebSource:
    """Pull source over a PACS's QIDO-RS; images are then reached at ``wado_base_url``.

    ``wado_base_url`` defaults to the QIDO base: one DICOMweb root serves both (PS3.18 §8.2),
    as Orthanc's ``/dicom-web`` does.
    """

    hospital_id: str
    qido: QidoClient
    wado_base_url: str | None = None
    name: str = "dicomweb"
    start_date: date = date(2000, 1, 1)
    page_size: int = 100
    window_days: int = 365
    overlap: timedelta = timedelta(days=1)
    today: Callable[[], date] = today_in_shanghai
    body_sites: BodySiteMap = field(default_factory=default_body_sites)
    issuer_systems: Mapping[str, str] = field(default_factory=dict)
    default_offset: str = SHANGHAI_OFFSET
    cursor_name: str = "qido:StudyDate"
    # Fetch one instance's WADO-RS metadata when the QIDO answer leaves out the sequences the
    # mapping reads (OtherPatientIDsSequence carries resident ID numbers; Orthanc's QIDO-RS
    # never returns sequences). Two more requests per such study.
    metadata_fallback: bool = True

    @property
    def pacs(self) -> Pacs:
        return Pacs(
            hospital_id=self.hospital_id,
            wado_base_url=self.wado_base_url or self.qido.base_url,
            body_sites=self.body_sites,
            issuer_systems=self.issuer_systems,
            default_offset=self.default_offset,
        )

    def run(self, sink: Sink) -> SyncResult:
        """One pull run into ``sink`` (``adapters.runner.run_pull``, as ``hie sync`` does)."""
        return run_pull(self, sink, self.hospital_id, self.name)

    def _windows(self, cursor: str | None) -> Iterator[tuple[DateRange, date]]:
        """(query range, cursor value once the range is read), oldest first."""
        today = self.today()
        covered: date | None = None
        if cursor:
            try:
                covered = date.fromisoformat(cursor)
            except ValueError:
                log.warning("unreadable cursor %r: reading from %s", cursor, self.start_date)
        low = covered - self.overlap if covered else self.start_date
        step = timedelta(days=max(1, self.window_days))
        while low + step <= today:
            high = low + step - timedelta(days=1)
            yield DateRange(low, high), high
            low = high + timedelta(days=1)
        yield DateRange(low, None), max(today, covered) if covered else today

    def batches(self, cursor: str | None) -> Iterator[Batch]:
        pacs = self.pacs
        for window, covered in self._windows(cursor):
            # One page of look-ahead, so the window's last page can carry its cursor.
            pending: list[dj.JSON] | None = None
            for page in self.qido.study_pages(window, self.page_size):
                if pending is not None:
                    yield self._batch(pending, pacs, None)
                pending = page
            yield self._batch(pending or [], pacs, Cursor(self.cursor_name, covered.isoformat()))

    def _batch(self, page: list[dj.JSON], pacs: Pacs, cursor: Cursor | None) -> Batch:
        units: list[Unit] = []
        dead: list[DeadLetter] = []
        for study in page:
            outcome = self._study(study, pacs)
            if isinstance(outcome, Unit):
                units.append(outcome)
            elif outcome is not None:
                dead.append(outcome)
        return Batch(self.hospital_id, self.name, units, dead, cursor)

    def _with_instance_attributes(self, uid: str, study: dj.JSON) -> dj.JSON:
        """The study answer with study-level attributes it lacked, from one instance."""
        try:
            metadata = self.qido.instance_metadata(uid)
        except ValueError:
            return study
        return study if metadata is None else _fill_from(study, metadata)

    def _study(self, study: dj.JSON, pacs: Pacs) -> Unit | DeadLetter | None:
        uid = dj.text(study, dj.STUDY_INSTANCE_UID)
        series: list[dj.JSON] = []
        if uid is not None:
            try:
                found = self.qido.series(uid)
            except ValueError:  # a UID with characters no QIDO path may carry
                found = []
            if found is None:
                log.info("%s: study %s vanished between searches", self.hospital_id, uid)
                return None
            series = found
            if self.metadata_fallback and any(tag not in study for tag in SEQUENCE_TAGS):
                study = self._with_instance_attributes(uid, study)
        try:
            return study_unit(study, series, pacs)
        except BadMessage as exc:
            return DeadLetter(
                key=uid or "(no StudyInstanceUID)",
                raw=study_payload(study, series, self.pacs.wado_base_url),
                reason=f"study {uid or '?'}: {exc.reason}",
                content_type=PAYLOAD_CONTENT_TYPE,
                location=exc.location,
            )


def _fill_from(study: dj.JSON, metadata: dj.JSON) -> dj.JSON:
    filled = dict(study)
    for tag in dj.STUDY_TAGS:
        if tag not in filled and tag in metadata:
            filled[tag] = metadata[tag]
    return filled


def dicomweb_source(
    hospital_id: str,
    base_url: str,
    *,
    name: str = "dicomweb",
    username: str | None = None,
    password: str | None = None,
    page_size: int = 100,
    timeout: float = 30.0,
    connect_timeout: float = 10.0,
    retry: RetryPolicy | None = None,
    wado_base_url: str | None = None,
    start_date: date = date(2000, 1, 1),
    issuer_systems: Mapping[str, str] | None = None,
) -> tuple[DicomWebSource, httpx.Client]:
    """A source with its own ``httpx.Client``; the caller closes the client after the run."""
    client = httpx.Client(timeout=httpx.Timeout(timeout, connect=connect_timeout))
    qido = QidoClient(client, base_url, username=username, password=password, retry=retry)
    source = DicomWebSource(
        hospital_id=hospital_id,
        qido=qido,
        wado_base_url=wado_base_url,
        name=name,
        start_date=start_date,
        page_size=page_size,
        issuer_systems=issuer_systems or {},
    )
    return source, client
