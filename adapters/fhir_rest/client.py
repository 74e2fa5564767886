"""GET against a hospital's FHIR server, with the retry rules a polite poller needs.

* 5xx answers, timeouts, refused or dropped connections: retried with exponential backoff and
  full jitter (delay drawn uniformly from ``[0, min(cap, base·2^attempt)]``, the AWS
  architecture blog's "full jitter": many pollers retrying a hospital that has just come back
  do not arrive together).
* 429 Too Many Requests (RFC 6585 §4) and 503: ``Retry-After`` is honoured, as delay-seconds
  or an HTTP-date (RFC 9110 §10.2.3); a wait beyond ``max_retry_after`` ends the run instead
  of blocking the scheduler, and the next run tries again.
* Other 4xx (bad credentials, unknown search parameter): not retried; the run ends with the
  server's OperationOutcome diagnostics in the error.

Everything that ends a run raises :class:`~adapters.base.SourceUnavailable`, so the runner
records the error and keeps the cursor. ``sleep``, ``random`` and ``now`` are injected so
tests run instantly and deterministically.
"""

from __future__ import annotations

import random as _random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import orjson

from adapters.base import SourceUnavailable

JSON = dict[str, Any]
FHIR_JSON = "application/fhir+json"
RETRYABLE_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5  # per request, the first try included
    base: float = 0.5  # seconds
    cap: float = 60.0
    max_retry_after: float = 300.0

    def backoff(self, attempt: int, rand: float) -> float:
        """Full-jitter delay before retry number ``attempt + 1`` (``attempt`` from 0)."""
        return float(rand * min(self.cap, self.base * 2.0**attempt))


class FhirClient:
    def __init__(
        self,
        http: httpx.Client,
        *,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        random: Callable[[], float] = _random.random,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.http = http
        self.policy = policy or RetryPolicy()
        self.sleep = sleep
        self.random = random
        self.now = now

    def get(self, url: str, params: Sequence[tuple[str, str]] | None = None) -> JSON:
        """The JSON object at ``url``; retries per the module rules, else SourceUnavailable."""
        last = ""
        for attempt in range(self.policy.max_attempts):
            delay = self.policy.backoff(attempt, self.random())
            try:
                response = self.http.get(
                    url, params=list(params) if params else None, headers={"Accept": FHIR_JSON}
                )
            except RETRYABLE_ERRORS as exc:
                last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            except httpx.HTTPError as exc:
                raise SourceUnavailable(f"GET {url}: {type(exc).__name__}: {exc}") from exc
            else:
                status = response.status_code
                if status < 400:
                    return _json(response, url)
                if status != 429 and status < 500:
                    raise SourceUnavailable(f"GET {url}: HTTP {status}{_diagnostics(response)}")
                last = f"HTTP {status}{_diagnostics(response)}"
                waited = self._retry_after(response) if status in (429, 503) else None
                if waited is not None:
                    if waited > self.policy.max_retry_after:
                        raise SourceUnavailable(
                            f"GET {url}: HTTP {status}, server asks to retry after {waited:.0f} s"
                        )
                    delay = waited
            if attempt + 1 < self.policy.max_attempts:
                self.sleep(delay)
        raise SourceUnavailable(
            f"GET {url}: {last} (gave up after {self.policy.max_attempts} tries)"
        )

    def _retry_after(self, response: httpx.Response) -> float | None:
        value = response.headers.get("Retry-After", "").strip()
        if not value:
            return None
        if value.isdigit():
            return float(value)
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:  # RFC 9110 HTTP-dates are GMT
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - self.now()).total_seconds())


def _json(response: httpx.Response, url: str) -> JSON:
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError as exc:
        raise SourceUnavailable(f"GET {url}: the answer is not JSON ({exc})") from exc
    if not isinstance(body, dict):
        raise SourceUnavailable(f"GET {url}: the answer is not a JSON object")
    return body


def _diagnostics(response: httpx.Response) -> str:
    """The OperationOutcome's first diagnostics, if the error body is one."""
    try:
        body = orjson.loads(response.content)
        issue = body["issue"][0]
        text = issue.get("diagnostics") or issue.get("details", {}).get("text") or ""
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError):
        return ""
    return f": {str(text)[:300]}" if text else ""
