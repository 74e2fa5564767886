"""The QIDO-RS client and the DICOMweb source against httpx.MockTransport PACS doubles."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from imaging_support import RecordingSink

from adapters.base import SourceUnavailable
from adapters.dicom import json_model as dj
from adapters.dicomweb.qido import DateRange, QidoClient, RetryPolicy
from adapters.dicomweb.source import DicomWebSource

BASE = "http://pacs.test/dicom-web"
DATA = Path(__file__).resolve().parent / "data"
JSON = dict[str, Any]


def study(uid: str, day: str, patient_id: str | None = "P1") -> JSON:
    out: JSON = {
        dj.STUDY_INSTANCE_UID: {"vr": "UI", "Value": [uid]},
        dj.STUDY_DATE: {"vr": "DA", "Value": [day]},
        dj.MODALITIES_IN_STUDY: {"vr": "CS", "Value": ["CT"]},
    }
    if patient_id:
        out[dj.PATIENT_ID] = {"vr": "LO", "Value": [patient_id]}
    return out


def series_of(uid: str) -> list[JSON]:
    return [
        {
            dj.SERIES_INSTANCE_UID: {"vr": "UI", "Value": [f"{uid}.1"]},
            dj.MODALITY: {"vr": "CS", "Value": ["CT"]},
            dj.BODY_PART_EXAMINED: {"vr": "CS", "Value": ["CHEST"]},
            dj.NUMBER_OF_SERIES_RELATED_INSTANCES: {"vr": "IS", "Value": [3]},
        }
    ]


INSTANCE_METADATA: JSON = {
    dj.PATIENT_ID: {"vr": "LO", "Value": ["P1"]},
    dj.OTHER_PATIENT_IDS_SEQUENCE: {
        "vr": "SQ",
        "Value": [
            {
                dj.PATIENT_ID: {"vr": "LO", "Value": ["440305198003151231"]},
                dj.ISSUER_OF_PATIENT_ID: {"vr": "LO", "Value": ["CN-RESIDENT-ID"]},
            }
        ],
    },
    dj.STUDY_DESCRIPTION: {"vr": "LO", "Value": ["from the instance"]},
}


class FakePacs:
    """A QIDO-RS server over a list of studies; ``script`` can replace answers per request."""

    def __init__(self, studies: list[JSON]) -> None:
        self.studies = studies
        self.requests: list[httpx.Request] = []
        self.script: list[Callable[[httpx.Request], httpx.Response] | None] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.script:
            step = self.script.pop(0)
            if step is not None:
                return step(request)
        path = request.url.path.removeprefix("/dicom-web")
        query = dict(part.split("=", 1) for part in request.url.query.decode().split("&") if part)
        if path == "/studies":
            low, _, high = query.get("StudyDate", "-").partition("-")
            found = [
                s
                for s in self.studies
                if (not low or dj.text(s, dj.STUDY_DATE) >= low)  # type: ignore[operator]
                and (not high or dj.text(s, dj.STUDY_DATE) <= high)  # type: ignore[operator]
            ]
            offset, limit = int(query.get("offset", 0)), int(query.get("limit", 1000))
            return httpx.Response(200, json=found[offset : offset + limit])
        parts = path.split("/")  # ["", "studies", uid, "series" | "instances", ...]
        uid = parts[2]
        if not any(dj.text(s, dj.STUDY_INSTANCE_UID) == uid for s in self.studies):
            return httpx.Response(404)
        if parts[3] == "instances":
            instance = {
                dj.SERIES_INSTANCE_UID: {"vr": "UI", "Value": [f"{uid}.1"]},
                dj.SOP_INSTANCE_UID: {"vr": "UI", "Value": [f"{uid}.1.1"]},
            }
            return httpx.Response(200, json=[instance])
        if path.endswith("/metadata"):
            return httpx.Response(200, json=[INSTANCE_METADATA])
        return httpx.Response(200, json=series_of(uid))

    def study_queries(self) -> list[dict[str, str]]:
        return [
            dict(p.split("=", 1) for p in r.url.query.decode().split("&"))
            for r in self.requests
            if r.url.path.endswith("/studies")
        ]


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def client_for(pacs: FakePacs, sleeps: Sleeps | None = None, **kwargs: Any) -> QidoClient:
    http = httpx.Client(transport=httpx.MockTransport(pacs))
    options: dict[str, Any] = {
        "username": "hie",
        "password": "s3cret",
        "sleep": sleeps if sleeps is not None else Sleeps(),
        "rng": random.Random(5),
        "retry": RetryPolicy(attempts=4, backoff_base=0.5, backoff_max=4.0),
    }
    options.update(kwargs)
    return QidoClient(http, BASE + "/", **options)


def web_source(pacs: FakePacs, **kwargs: Any) -> DicomWebSource:
    options: dict[str, Any] = {
        "today": lambda: date(2026, 11, 30),
        "start_date": date(2026, 9, 1),
        "page_size": 2,
        "window_days": 30,
        "metadata_fallback": False,
    }
    options.update(kwargs)
    return DicomWebSource("szph", client_for(pacs), **options)


# -- the client ------------------------------------------------------------------------------


def test_query_string_is_sent_without_percent_encoding() -> None:
    pacs = FakePacs([])
    client_for(pacs).search_studies(DateRange(date(2026, 11, 1), None), limit=50, offset=100)
    (request,) = pacs.requests
    assert request.url.path == "/dicom-web/studies"
    query = request.url.query.decode()
    assert query.startswith("StudyDate=20261101-&limit=50&offset=100&includefield=00081030,")
    assert "%" not in query
    assert request.headers["Accept"] == "application/dicom+json"
    assert request.headers["Authorization"] == "Basic aGllOnMzY3JldA=="


def test_values_that_would_need_encoding_are_refused() -> None:
    pacs = FakePacs([])
    with pytest.raises(ValueError, match="is not a UID"):
        client_for(pacs).series("1.2.3/../../admin")
    with pytest.raises(ValueError, match="percent-encoding"):
        client_for(pacs).search_studies(DateRange(None, None), limit=1, fields=("Doe^Jane*",))
    assert pacs.requests == []


def test_pages_until_a_short_page() -> None:
    pacs = FakePacs([study(f"1.2.{n}", "20261101") for n in range(5)])
    pages = list(client_for(pacs).study_pages(DateRange(None, None), page_size=2))
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [q["offset"] for q in pacs.study_queries()] == ["0", "2", "4"]


def test_an_exact_multiple_ends_with_an_empty_page() -> None:
    pacs = FakePacs([study(f"1.2.{n}", "20261101") for n in range(4)])
    pages = list(client_for(pacs).study_pages(DateRange(None, None), page_size=2))
    assert [len(p) for p in pages] == [2, 2, 0]


def test_a_server_ignoring_limit_is_taken_as_complete() -> None:
    everything = [study(f"1.2.{n}", "20261101") for n in range(5)]
    pacs = FakePacs(everything)
    pacs.script = [lambda r: httpx.Response(200, json=everything)]
    pages = list(client_for(pacs).study_pages(DateRange(None, None), page_size=2))
    assert [len(p) for p in pages] == [5]


def test_a_server_ignoring_offset_is_an_error_not_a_loop() -> None:
    two = [study("1.2.1", "20261101"), study("1.2.2", "20261101")]
    pacs = FakePacs(two)
    pacs.script = [lambda r: httpx.Response(200, json=two)] * 3
    with pytest.raises(SourceUnavailable, match="ignores offset"):
        list(client_for(pacs).study_pages(DateRange(None, None), page_size=2))


def test_repeats_across_pages_are_dropped() -> None:
    a, b, c = (study(f"1.2.{n}", "20261101") for n in range(3))
    pacs = FakePacs([])
    pacs.script = [
        lambda r: httpx.Response(200, json=[a, b]),
        lambda r: httpx.Response(200, json=[b, c]),  # the PACS reordered between pages
        lambda r: httpx.Response(200, json=[]),
    ]
    pages = list(client_for(pacs).study_pages(DateRange(None, None), page_size=2))
    uids = [dj.text(s, dj.STUDY_INSTANCE_UID) for page in pages for s in page]
    assert uids == ["1.2.0", "1.2.1", "1.2.2"]


def test_server_errors_are_retried_with_jittered_backoff() -> None:
    pacs = FakePacs([study("1.2.1", "20261101")])
    pacs.script = [lambda r: httpx.Response(503), lambda r: httpx.Response(502), None]
    sleeps = Sleeps()
    found = client_for(pacs, sleeps).search_studies(DateRange(None, None), limit=10)
    assert len(found) == 1 and len(pacs.requests) == 3
    assert len(sleeps) == 2
    assert 0 <= sleeps[0] <= 0.5 and 0 <= sleeps[1] <= 1.0  # full jitter under 0.5·2^(n-1)


def test_timeouts_end_in_source_unavailable_after_the_last_attempt() -> None:
    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("PACS too slow", request=request)

    pacs = FakePacs([])
    pacs.script = [timeout] * 4
    sleeps = Sleeps()
    with pytest.raises(SourceUnavailable, match=r"ReadTimeout: PACS too slow \(gave up after 4"):
        client_for(pacs, sleeps).search_studies(DateRange(None, None), limit=10)
    assert len(pacs.requests) == 4 and len(sleeps) == 3
    assert all(s <= 4.0 for s in sleeps)  # capped by backoff_max


def test_429_waits_for_retry_after_seconds() -> None:
    pacs = FakePacs([study("1.2.1", "20261101")])
    pacs.script = [lambda r: httpx.Response(429, headers={"Retry-After": "7"}), None]
    sleeps = Sleeps()
    client_for(pacs, sleeps).search_studies(DateRange(None, None), limit=10)
    assert sleeps == [7.0]


def test_429_waits_until_a_retry_after_date() -> None:
    now = datetime(2026, 11, 30, 8, 0, 0, tzinfo=UTC)
    when = format_datetime(now + timedelta(seconds=30), usegmt=True)
    pacs = FakePacs([])
    pacs.script = [lambda r: httpx.Response(429, headers={"Retry-After": when}), None]
    sleeps = Sleeps()
    client_for(pacs, sleeps, now=lambda: now).search_studies(DateRange(None, None), limit=10)
    assert sleeps == [30.0]


def test_429_asking_for_too_long_a_wait_ends_the_run() -> None:
    pacs = FakePacs([])
    pacs.script = [lambda r: httpx.Response(429, headers={"Retry-After": "3600"})]
    with pytest.raises(SourceUnavailable, match="Retry-After 3600 s"):
        client_for(pacs).search_studies(DateRange(None, None), limit=10)


def test_client_errors_are_not_retried() -> None:
    pacs = FakePacs([])
    pacs.script = [lambda r: httpx.Response(401, text="bad credentials")]
    with pytest.raises(SourceUnavailable, match="401 Unauthorized: bad credentials"):
        client_for(pacs).search_studies(DateRange(None, None), limit=10)
    assert len(pacs.requests) == 1


def test_an_answer_that_is_not_dicom_json_is_source_unavailable() -> None:
    pacs = FakePacs([])
    pacs.script = [lambda r: httpx.Response(200, text="<html>login</html>")]
    with pytest.raises(SourceUnavailable, match="not JSON"):
        client_for(pacs).search_studies(DateRange(None, None), limit=10)
    pacs.script = [lambda r: httpx.Response(200, json={"error": "x"})]
    with pytest.raises(SourceUnavailable, match="not a DICOM JSON array"):
        client_for(pacs).search_studies(DateRange(None, None), limit=10)
    pacs.script = [lambda r: httpx.Response(204)]
    assert client_for(pacs).search_studies(DateRange(None, None), limit=10) == []


# -- the source ------------------------------------------------------------------------------


def test_first_run_walks_date_windows_and_commits_each(sink: RecordingSink) -> None:
    pacs = FakePacs(
        [study("1.2.1", "20260905"), study("1.2.2", "20261010"), study("1.2.3", "20261129")]
    )
    result = web_source(pacs).run(sink)
    assert [q["StudyDate"] for q in pacs.study_queries()] == [
        "20260901-20260930",
        "20261001-20261030",
        "20261031-20261129",
        "20261130-",
    ]
    assert [b.cursor.value for b in sink.batches if b.cursor] == [
        "2026-09-30",
        "2026-10-30",
        "2026-11-29",
        "2026-11-30",
    ]
    assert sorted(u.key for u in sink.units) == ["1.2.1", "1.2.2", "1.2.3"]
    assert (result.received, result.cursor_after, result.error) == (3, "2026-11-30", None)


def test_next_run_rereads_from_the_cursor_minus_the_overlap(sink: RecordingSink) -> None:
    pacs = FakePacs([study("1.2.1", "20261128")])
    sink.cursors[("szph", "dicomweb", "qido:StudyDate")] = "2026-11-29"
    web_source(pacs).run(sink)
    assert [q["StudyDate"] for q in pacs.study_queries()] == ["20261128-"]
    assert [u.key for u in sink.units] == ["1.2.1"]  # arrived late, still caught


def test_batch_per_page_cursor_on_the_last(sink: RecordingSink) -> None:
    pacs = FakePacs([study(f"1.2.{n}", "20261130") for n in range(5)])
    web_source(pacs, start_date=date(2026, 11, 30)).run(sink)
    assert [len(b.units) for b in sink.batches] == [2, 2, 1]
    assert [b.cursor is not None for b in sink.batches] == [False, False, True]
    series_calls = [r for r in pacs.requests if r.url.path.endswith("/series")]
    assert len(series_calls) == 5
    assert series_calls[0].url.query.decode().startswith("includefield=0008103E,00180015")


def test_a_bad_study_is_a_dead_letter_and_the_rest_lands(sink: RecordingSink) -> None:
    pacs = FakePacs([study("1.2.1", "20261130"), study("1.2.2", "20261130", patient_id=None)])
    web_source(pacs, start_date=date(2026, 11, 30)).run(sink)
    assert [u.key for u in sink.units] == ["1.2.1"]
    (dead,) = sink.dead_letters
    assert dead.key == "1.2.2"
    assert dead.reason.startswith("study 1.2.2: PatientID (0010,0020) is missing")
    assert json.loads(dead.raw)["series"][0]["0020000E"]["Value"] == ["1.2.2.1"]


def test_dicomweb_client_answers_are_dead_letters_not_guessed_patients(
    sink: RecordingSink,
) -> None:
    studies = json.loads((DATA / "dicomweb-client" / "search_for_studies.json").read_bytes())
    pacs = FakePacs([])
    no_series: list[Callable[[httpx.Request], httpx.Response] | None] = [
        lambda r: httpx.Response(200, json=[])
    ] * 4
    pacs.script = [lambda r: httpx.Response(200, json=studies), *no_series]
    web_source(pacs, start_date=date(2026, 11, 30), page_size=10).run(sink)
    assert sink.units == [] and len(sink.dead_letters) == 4


def test_a_study_gone_before_its_series_were_read_is_skipped(sink: RecordingSink) -> None:
    pacs = FakePacs([study("1.2.1", "20261130")])
    pacs.script = [None, lambda r: httpx.Response(404)]
    web_source(pacs, start_date=date(2026, 11, 30)).run(sink)
    assert sink.units == [] and sink.dead_letters == []
    assert sink.batches[-1].cursor is not None


def test_pacs_down_mid_run_keeps_the_last_committed_cursor(sink: RecordingSink) -> None:
    pacs = FakePacs([study("1.2.1", "20260905"), study("1.2.2", "20261010")])
    pacs.script = [None, None, *[lambda r: httpx.Response(500)] * 4]  # dies in window 2
    result = web_source(pacs).run(sink)
    assert result.error is not None and "500" in result.error
    assert result.cursor_after == "2026-09-30"
    assert sink.cursors[("szph", "dicomweb", "qido:StudyDate")] == "2026-09-30"
    assert [u.key for u in sink.units] == ["1.2.1"]


def test_wado_base_defaults_to_the_qido_base(sink: RecordingSink) -> None:
    pacs = FakePacs([study("1.2.1", "20261130")])
    web_source(pacs, start_date=date(2026, 11, 30)).run(sink)
    endpoint = next(
        e.resource for e in sink.units[0].entries if e.resource["resourceType"] == "Endpoint"
    )
    assert endpoint["address"] == BASE


def test_metadata_fallback_fills_sequences_qido_left_out(sink: RecordingSink) -> None:
    pacs = FakePacs([study("1.2.1", "20261130")])
    web_source(pacs, start_date=date(2026, 11, 30), metadata_fallback=True).run(sink)
    paths = [r.url.path.removeprefix("/dicom-web") for r in pacs.requests]
    assert paths == [
        "/studies",
        "/studies/1.2.1/series",
        "/studies/1.2.1/instances",
        "/studies/1.2.1/series/1.2.1.1/instances/1.2.1.1.1/metadata",
    ]
    unit = sink.units[0]
    patient = next(e.resource for e in unit.entries if e.resource["resourceType"] == "Patient")
    assert ("https://hie.example.org/sid/cn-resident-id", "440305198003151231") in {
        (i["system"], i["value"]) for i in patient["identifier"]
    }
    imaging = next(e.resource for e in unit.entries if e.resource["resourceType"] == "ImagingStudy")
    assert imaging["description"] == "from the instance"  # absent from the QIDO answer
    assert json.loads(unit.raw)["study"][dj.OTHER_PATIENT_IDS_SEQUENCE]  # replayable as is


def test_no_fallback_when_the_server_answered_the_sequences(sink: RecordingSink) -> None:
    answered = study("1.2.1", "20261130")
    for tag in (dj.OTHER_PATIENT_IDS_SEQUENCE, dj.REQUESTED_PROCEDURE_CODE_SEQUENCE):
        answered[tag] = {"vr": "SQ"}
    answered[dj.PROCEDURE_CODE_SEQUENCE] = {"vr": "SQ"}
    pacs = FakePacs([answered])
    web_source(pacs, start_date=date(2026, 11, 30), metadata_fallback=True).run(sink)
    assert len(pacs.requests) == 2  # studies + series only
