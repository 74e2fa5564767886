"""FhirClient retry rules: backoff with full jitter, Retry-After, budgets, what is not retried."""

from __future__ import annotations

import socket
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest

from adapters.base import SourceUnavailable
from adapters.fhir_rest.client import FhirClient, RetryPolicy

BUNDLE = {"resourceType": "Bundle", "type": "searchset", "entry": []}
NOW = datetime(2026, 11, 24, 8, 0, 0, tzinfo=UTC)
OUTCOME = {
    "resourceType": "OperationOutcome",
    "issue": [{"severity": "error", "code": "login", "diagnostics": "token expired"}],
}

Answer = httpx.Response | Exception


def scripted(answers: list[Answer]) -> tuple[httpx.Client, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return httpx.Client(transport=httpx.MockTransport(handler)), seen


def make(
    answers: list[Answer], policy: RetryPolicy | None = None, rand: float = 0.5
) -> tuple[FhirClient, list[float], list[httpx.Request]]:
    http, seen = scripted(answers)
    sleeps: list[float] = []
    client = FhirClient(
        http,
        policy=policy or RetryPolicy(max_attempts=5, base=1.0, cap=5.0),
        sleep=sleeps.append,
        random=lambda: rand,
        now=lambda: NOW,
    )
    return client, sleeps, seen


def ok() -> httpx.Response:
    return httpx.Response(200, json=BUNDLE)


def test_success_asks_for_fhir_json_and_passes_repeated_params() -> None:
    client, sleeps, seen = make([ok()])
    params = [("_include", "DiagnosticReport:subject"), ("_include", "DiagnosticReport:result")]
    params.append(("_lastUpdated", "gt2026-11-24T08:00:00+08:00"))
    assert client.get("http://h/fhir/DiagnosticReport", params) == BUNDLE
    assert sleeps == []
    (request,) = seen
    assert request.headers["Accept"] == "application/fhir+json"
    assert request.url.params.get_list("_include") == [
        "DiagnosticReport:subject",
        "DiagnosticReport:result",
    ]
    assert b"_lastUpdated=gt2026-11-24T08%3A00%3A00%2B08%3A00" in request.url.query


@pytest.mark.parametrize(
    "failure",
    [
        lambda: httpx.Response(500),
        lambda: httpx.Response(502, text="<html>bad gateway</html>"),
        lambda: httpx.Response(503),
        lambda: httpx.ReadTimeout("read timed out"),
        lambda: httpx.ConnectTimeout("connect timed out"),
        lambda: httpx.ConnectError("connection refused"),
        lambda: httpx.RemoteProtocolError("server disconnected"),
    ],
)
def test_transient_failures_are_retried_with_full_jitter(failure: Callable[[], Answer]) -> None:
    client, sleeps, seen = make([failure(), failure(), failure(), ok()], rand=0.25)
    assert client.get("http://h/fhir/Observation") == BUNDLE
    # delay = rand * min(cap, base * 2**attempt) = 0.25 * (1, 2, 4)
    assert sleeps == [0.25, 0.5, 1.0]
    assert len(seen) == 4


def test_backoff_is_capped_and_jitter_spans_zero_to_the_cap() -> None:
    policy = RetryPolicy(base=1.0, cap=5.0)
    assert [policy.backoff(n, 1.0) for n in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert policy.backoff(4, 0.0) == 0.0


def test_gives_up_after_the_budget_with_the_last_error() -> None:
    client, sleeps, seen = make([httpx.Response(503)] * 3, RetryPolicy(max_attempts=3))
    with pytest.raises(SourceUnavailable, match=r"HTTP 503 \(gave up after 3 tries\)"):
        client.get("http://h/fhir/Observation")
    assert len(seen) == 3 and len(sleeps) == 2  # no sleep after the last try


def test_429_retry_after_seconds_is_honoured() -> None:
    client, sleeps, _ = make([httpx.Response(429, headers={"Retry-After": "7"}), ok()])
    assert client.get("http://h/fhir/Observation") == BUNDLE
    assert sleeps == [7.0]


def test_429_retry_after_http_date_is_honoured() -> None:
    later = "Tue, 24 Nov 2026 08:00:42 GMT"  # RFC 9110 IMF-fixdate, 42 s after NOW
    client, sleeps, _ = make([httpx.Response(429, headers={"Retry-After": later}), ok()])
    client.get("http://h/fhir/Observation")
    assert sleeps == [42.0]


def test_503_retry_after_and_a_date_in_the_past() -> None:
    past = "Tue, 24 Nov 2026 07:00:00 GMT"
    client, sleeps, _ = make(
        [
            httpx.Response(503, headers={"Retry-After": "3"}),
            httpx.Response(429, headers={"Retry-After": past}),
            httpx.Response(429, headers={"Retry-After": "soon"}),  # unreadable: backoff
            ok(),
        ]
    )
    client.get("http://h/fhir/Observation")
    assert sleeps == [3.0, 0.0, 2.0]


def test_retry_after_beyond_the_limit_ends_the_run_at_once() -> None:
    policy = RetryPolicy(max_retry_after=60)
    client, sleeps, seen = make([httpx.Response(429, headers={"Retry-After": "3600"})], policy)
    with pytest.raises(SourceUnavailable, match="retry after 3600 s"):
        client.get("http://h/fhir/Observation")
    assert sleeps == [] and len(seen) == 1


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410])
def test_client_errors_are_not_retried_and_carry_the_diagnostics(status: int) -> None:
    client, sleeps, seen = make([httpx.Response(status, json=OUTCOME)])
    with pytest.raises(SourceUnavailable, match=f"HTTP {status}: token expired"):
        client.get("http://h/fhir/Observation")
    assert len(seen) == 1 and sleeps == []


def test_a_body_that_is_not_json_is_unavailable() -> None:
    client, _, _ = make([httpx.Response(200, text="<html>login</html>")])
    with pytest.raises(SourceUnavailable, match="not JSON"):
        client.get("http://h/fhir/Observation")


def test_real_connection_refused_is_retried_then_unavailable() -> None:
    with socket.socket() as s:  # a port nobody listens on: the kernel refuses the connection
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sleeps: list[float] = []
    client = FhirClient(
        httpx.Client(timeout=2),
        policy=RetryPolicy(max_attempts=3),
        sleep=sleeps.append,
        random=lambda: 1.0,
    )
    with pytest.raises(SourceUnavailable, match=r"ConnectError.*gave up after 3 tries"):
        client.get(f"http://127.0.0.1:{port}/fhir/Observation")
    assert sleeps == [0.5, 1.0]
