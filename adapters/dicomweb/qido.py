"""A small QIDO-RS client (DICOM PS3.18 §10.6): search for studies, then for their series.

Only what the adapter needs: ``GET {base}/studies?...`` with a StudyDate range and
``limit``/``offset`` paging, and ``GET {base}/studies/{uid}/series``. The ``httpx.Client`` is
handed in, so tests drive it with ``httpx.MockTransport`` and the real Orthanc alike; the
username and password are arguments (the CLI reads them from the environment).

Query strings are built by hand, never with ``params=``: httpx percent-encodes ``*``, ``^``
and spaces, and Orthanc 1.10 does not decode ``%xx`` in QIDO values, so an encoded query
silently matches nothing. Every value sent is checked against the characters that need no
encoding at all.

Failures: 5xx, timeouts and transport errors are retried with exponential backoff and full
jitter; 429 waits for ``Retry-After`` (seconds or an HTTP date) when the server sends one.
After ``attempts`` tries, or on a 4xx that retrying cannot fix (401, 403, 400),
:class:`~adapters.base.SourceUnavailable` ends the run with the cursor left where it was.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from adapters.base import SourceUnavailable
from adapters.dicom import json_model as dj

log = logging.getLogger(__name__)

JSON = dict[str, Any]
DICOM_JSON = "application/dicom+json"
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9.,\-]*$")
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")

# Attributes asked for beyond the PS3.18 defaults (Table 10.6.3-3/-4 list what a server must
# return anyway); Orthanc, for one, leaves StudyDescription out unless it is named.
STUDY_FIELDS: tuple[str, ...] = (
    dj.STUDY_DESCRIPTION,
    dj.ISSUER_OF_PATIENT_ID,
    dj.OTHER_PATIENT_IDS,
    dj.OTHER_PATIENT_IDS_SEQUENCE,
    dj.TIMEZONE_OFFSET_FROM_UTC,
    dj.REQUESTED_PROCEDURE_CODE_SEQUENCE,
    dj.REQUESTED_PROCEDURE_DESCRIPTION,
    dj.PROCEDURE_CODE_SEQUENCE,
    dj.PATIENT_BIRTH_DATE,
    dj.PATIENT_SEX,
    dj.REFERRING_PHYSICIAN_NAME,
    dj.NUMBER_OF_STUDY_RELATED_SERIES,
    dj.NUMBER_OF_STUDY_RELATED_INSTANCES,
    dj.MODALITIES_IN_STUDY,
)
SERIES_FIELDS: tuple[str, ...] = (
    dj.SERIES_DESCRIPTION,
    dj.BODY_PART_EXAMINED,
    dj.SERIES_DATE,
    dj.SERIES_TIME,
    dj.TIMEZONE_OFFSET_FROM_UTC,
    dj.NUMBER_OF_SERIES_RELATED_INSTANCES,
)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try one request: ``attempts`` in all, the first one included."""

    attempts: int = 5
    backoff_base: float = 0.5  # seconds; the ceiling doubles per attempt
    backoff_max: float = 60.0
    retry_after_max: float = 120.0  # a longer Retry-After ends the run instead of sleeping


@dataclass(frozen=True)
class DateRange:
    """A StudyDate range (PS3.4 §C.2.2.2.5); ``end=None`` is open-ended (``20261101-``)."""

    start: date | None
    end: date | None

    def query_value(self) -> str:
        low = self.start.strftime("%Y%m%d") if self.start else ""
        high = self.end.strftime("%Y%m%d") if self.end else ""
        return f"{low}-{high}"


def _query(pairs: Iterable[tuple[str, str]]) -> bytes:
    parts = []
    for key, value in pairs:
        if not _SAFE_VALUE.match(key) or not _SAFE_VALUE.match(value):
            raise ValueError(f"QIDO query value {key}={value!r} would need percent-encoding")
        parts.append(f"{key}={value}")
    return "&".join(parts).encode("ascii")


def _retry_after(response: httpx.Response, now: Callable[[], datetime]) -> float | None:
    header = response.headers.get("Retry-After")
    if not header:
        return None
    header = header.strip()
    if header.isdigit():
        return float(header)
    try:
        when = parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now()).total_seconds())


class QidoClient:
    """QIDO-RS at ``base_url`` (the DICOMweb root, e.g. ``http://pacs:8042/dicom-web``)."""

    def __init__(
        self,
        client: httpx.Client,
        base_url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.client = client
        self.base_url = base_url.strip().rstrip("/")
        self.auth = httpx.BasicAuth(username, password or "") if username else None
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.now = now

    # -- searches --------------------------------------------------------------------------
    def search_studies(
        self,
        study_date: DateRange,
        *,
        limit: int,
        offset: int = 0,
        fields: tuple[str, ...] = STUDY_FIELDS,
    ) -> list[JSON]:
        """One page of studies whose StudyDate falls in ``study_date``."""
        query = [
            ("StudyDate", study_date.query_value()),
            ("limit", str(limit)),
            ("offset", str(offset)),
            ("includefield", ",".join(fields)),
        ]
        found = self._get("/studies", query)
        return found if found is not None else []

    def study_pages(self, study_date: DateRange, page_size: int) -> Iterator[list[JSON]]:
        """Pages of studies until a short page (PS3.18 §8.3.4.4 limit/offset paging).

        Offset paging over a result set the PACS may reorder can repeat or skip a study at
        a page edge; repeats are dropped here, and the source's re-read window and
        idempotent ingest absorb the rest. A server that ignores ``limit`` (answers with
        more) is taken to have sent everything; one that ignores ``offset`` (the same page
        again) is an error rather than an endless loop.
        """
        offset = 0
        seen: set[str] = set()
        previous: list[str] | None = None
        while True:
            page = self.search_studies(study_date, limit=page_size, offset=offset)
            uids = [dj.text(s, dj.STUDY_INSTANCE_UID) or "" for s in page]
            if page and uids == previous:
                raise SourceUnavailable(
                    f"{self.base_url}/studies ignores offset: page at offset {offset} repeats "
                    "the previous one"
                )
            previous = uids
            fresh = [s for s, uid in zip(page, uids, strict=True) if not uid or uid not in seen]
            seen.update(uids)
            yield fresh
            if len(page) < page_size or len(page) > page_size:
                return
            offset += len(page)

    def series(self, study_uid: str) -> list[JSON] | None:
        """The series of one study; None when the PACS no longer has it (404)."""
        if not _UID.match(study_uid):
            raise ValueError(f"{study_uid!r} is not a UID; it cannot go into a QIDO path")
        return self._get(
            f"/studies/{study_uid}/series", [("includefield", ",".join(SERIES_FIELDS))]
        )

    def instance_metadata(self, study_uid: str) -> JSON | None:
        """All attributes of one instance of the study (QIDO for it, then WADO-RS metadata).

        Two requests; used only when the study-level answer left out sequences the mapping
        reads (Orthanc's QIDO-RS never returns sequences). None when the study has no
        instance any more.
        """
        if not _UID.match(study_uid):
            raise ValueError(f"{study_uid!r} is not a UID; it cannot go into a QIDO path")
        found = self._get(f"/studies/{study_uid}/instances", [("limit", "1")])
        if not found:
            return None
        series_uid = dj.text(found[0], dj.SERIES_INSTANCE_UID) or ""
        sop_uid = dj.text(found[0], dj.SOP_INSTANCE_UID) or ""
        if not (_UID.match(series_uid) and _UID.match(sop_uid)):
            return None
        # PS3.18 §10.4.1.1.2: .../series/{series}/instances/{instance}/metadata
        path = f"/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}/metadata"
        metadata = self._get(path, [])
        return metadata[0] if metadata else None

    # -- transport -------------------------------------------------------------------------
    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.retry.backoff_max, self.retry.backoff_base * 2 ** (attempt - 1))
        return self.rng.uniform(0, ceiling)

    def _get(self, path: str, query: list[tuple[str, str]]) -> list[JSON] | None:
        if not _SAFE_VALUE.match(path.replace("/", "")):
            raise ValueError(f"QIDO path {path!r} would need percent-encoding")
        url = httpx.URL(self.base_url + path, query=_query(query) if query else None)
        failure = ""
        for attempt in range(1, self.retry.attempts + 1):
            delay: float | None
            try:
                response = self.client.get(url, auth=self.auth, headers={"Accept": DICOM_JSON})
            except httpx.TransportError as exc:  # timeouts, refused connections, resets
                failure = f"{type(exc).__name__}: {exc}"
                delay = self._backoff(attempt)
            else:
                status = response.status_code
                if status == 204:
                    return []
                if status == 200:
                    return self._parse(url, response)
                if status == 404 and path != "/studies":
                    return None
                if status == 429:
                    failure = "429 Too Many Requests"
                    delay = _retry_after(response, self.now)
                    if delay is not None and delay > self.retry.retry_after_max:
                        raise SourceUnavailable(
                            f"{url}: rate limited, Retry-After {delay:.0f} s is longer than "
                            f"{self.retry.retry_after_max:.0f} s; try the next run"
                        )
                    if delay is None:
                        delay = self._backoff(attempt)
                elif status >= 500:
                    failure = f"{status} {response.reason_phrase}"
                    delay = self._backoff(attempt)
                else:
                    raise SourceUnavailable(
                        f"{url} answered {status} {response.reason_phrase}: {response.text[:200]}"
                    )
            if attempt == self.retry.attempts:
                break
            log.info("%s: %s; retry %d in %.1f s", url, failure, attempt, delay)
            self.sleep(delay)
        raise SourceUnavailable(f"{url}: {failure} (gave up after {self.retry.attempts} tries)")

    @staticmethod
    def _parse(url: httpx.URL, response: httpx.Response) -> list[JSON]:
        if not response.content.strip():
            return []
        try:
            body = json.loads(response.content)
        except ValueError as exc:
            raise SourceUnavailable(f"{url}: answer is not JSON: {exc}") from exc
        if not isinstance(body, list) or not all(isinstance(item, dict) for item in body):
            raise SourceUnavailable(f"{url}: answer is not a DICOM JSON array (PS3.18 §F.2)")
        return body
