"""Poll a hospital's FHIR R4 server for results changed since the last run.

Two searches, DiagnosticReport first and then Observation, each::

    GET [base]/DiagnosticReport?_lastUpdated=gt{cursor}&_sort=_lastUpdated&_count=N
        &_include=DiagnosticReport:subject&_include=DiagnosticReport:result
    GET [base]/Observation?_lastUpdated=gt{cursor}&_sort=_lastUpdated&_count=N
        &_include=Observation:subject

following ``next`` links one page at a time: each page becomes one :class:`Batch` and the
next page is fetched only after the runner resumes the generator, so memory holds one page
however large the result set (FHIR R4 search §3.1.1.5.6 paging). Patients or results a server
did not ``_include`` are fetched for the page in one ``_id=a,b,c`` search per type, never one
request per resource. Observations already delivered inside a report during this run are not
sent again on their own (a bounded memory of their versions).

The cursor holds one ``_lastUpdated`` per resource type, as compact JSON
(``{"DiagnosticReport": "...", "Observation": "..."}``), because the two searches advance
separately. After a page that has a ``next`` link it is the newest ``lastUpdated`` on the page
*strictly below* the page's last one: resources sharing that last instant may continue on the
next page, and ``gt`` would skip them after a crash. Re-reading that boundary costs a few
unchanged upserts; skipping it would lose results. The last page moves it to its newest value.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from adapters.base import BadMessage, Batch, Cursor, DeadLetter, SourceUnavailable, Unit
from adapters.fhir_rest.client import FHIR_JSON, FhirClient, RetryPolicy
from adapters.fhir_rest.searchset import (
    Page,
    SourceServer,
    build_unit,
    dead_resource,
    last_updated,
    read_page,
    subject_key,
    version_key,
)
from hie.hospitals import FhirRestAdapter

JSON = dict[str, Any]
CURSOR_NAME = "fhir-rest"
INCLUDES = {
    "DiagnosticReport": ("DiagnosticReport:subject", "DiagnosticReport:result"),
    "Observation": ("Observation:subject",),
}


@dataclass
class FhirRestSource:
    hospital_id: str
    name: str
    client: FhirClient
    server: SourceServer
    page_size: int = 100
    resource_types: tuple[str, ...] = ("DiagnosticReport", "Observation")
    remember: int = 10_000  # Observation versions sent inside reports, kept to skip repeats
    ids_per_search: int = 50  # _id=a,b,... values per fallback search (URL length)
    cursor_name: str = field(default=CURSOR_NAME)

    @classmethod
    def from_config(
        cls,
        hospital_id: str,
        adapter: FhirRestAdapter,
        *,
        http: httpx.Client | None = None,
        sleep: Callable[[float], None] | None = None,
        random: Callable[[], float] | None = None,
    ) -> FhirRestSource:
        """The source for one configured adapter; ``http`` defaults to :func:`http_client`."""
        policy = RetryPolicy(
            max_attempts=adapter.max_attempts, base=adapter.backoff_base, cap=adapter.backoff_max
        )
        kwargs: dict[str, Any] = {}
        if sleep is not None:
            kwargs["sleep"] = sleep
        if random is not None:
            kwargs["random"] = random
        client = FhirClient(http or http_client(adapter), policy=policy, **kwargs)
        server = SourceServer(
            hospital_id, adapter.base_url, adapter.mrn_system, adapter.national_id_system
        )
        return cls(hospital_id, adapter.name, client, server, page_size=adapter.page_size)

    def close(self) -> None:
        self.client.http.close()

    # -- the PullSource protocol ---------------------------------------------------------
    def batches(self, cursor: str | None) -> Iterator[Batch]:
        state = parse_cursor(cursor)
        seen: OrderedDict[str, None] = OrderedDict()
        for rtype in self.resource_types:
            params = [("_sort", "_lastUpdated"), ("_count", str(self.page_size))]
            params += [("_include", inc) for inc in INCLUDES.get(rtype, ())]
            if state.get(rtype):
                params.append(("_lastUpdated", f"gt{state[rtype]}"))
            url: str | None = f"{self.server.root}/{rtype}"
            query: list[tuple[str, str]] | None = params
            while url is not None:
                batch, url = self._page(rtype, url, query, state, seen)
                query = None  # a next link carries its own query
                yield batch
                del batch  # hold no page while fetching the next one

    # -- one page ------------------------------------------------------------------------
    def _page(
        self,
        rtype: str,
        url: str,
        query: list[tuple[str, str]] | None,
        state: dict[str, str],
        seen: OrderedDict[str, None],
    ) -> tuple[Batch, str | None]:
        page = read_page(self.client.get(url, query), rtype, url)
        self._complete(page, rtype)
        units: list[Unit] = []
        dead: list[DeadLetter] = list(page.dead_letters)
        for resource in page.matches:
            try:
                unit = self._unit(resource, rtype, page, seen)
            except BadMessage as exc:
                dead.append(dead_resource(resource, exc.reason))
                continue
            if unit is not None:
                units.append(unit)
        _advance(state, rtype, page)
        next_url = self._checked_next(page.next_url, url)
        cursor = Cursor(self.cursor_name, dump_cursor(state))
        return Batch(self.hospital_id, self.name, units, dead, cursor), next_url

    def _unit(
        self, resource: JSON, rtype: str, page: Page, seen: OrderedDict[str, None]
    ) -> Unit | None:
        if rtype == "Observation" and version_key(resource) in seen:
            return None  # already delivered inside its report during this run
        patient = self._patient(resource, page)
        related: list[JSON] = [patient]
        if rtype == "DiagnosticReport":
            for ref in resource.get("result") or []:
                key = (
                    self.server.key_of(ref.get("reference", "")) if isinstance(ref, dict) else None
                )
                found = page.included.get(key) if key else None
                if found is not None and found.get("resourceType") == "Observation":
                    related.append(found)
                    self._remember(seen, version_key(found))
        return build_unit(resource, related, self.server)

    def _patient(self, resource: JSON, page: Page) -> JSON:
        key = subject_key(resource, self.server)
        if key is None or not key.startswith("Patient/"):
            ref = (resource.get("subject") or {}).get("reference")
            raise BadMessage(
                f"subject {ref!r} is not a Patient on this server"
                if ref
                else "no subject: a result must name its patient"
            )
        patient = page.included.get(key)
        if patient is None:
            raise BadMessage(f"subject {key} was not returned by the server")
        return patient

    def _complete(self, page: Page, rtype: str) -> None:
        """Fetch the patients and results a server left out of ``_include``, one search each."""
        wanted: dict[str, set[str]] = {"Patient": set(), "Observation": set()}
        for res in page.matches:
            keys = [subject_key(res, self.server)]
            if rtype == "DiagnosticReport":
                keys += [
                    self.server.key_of(r["reference"])
                    for r in res.get("result") or []
                    if isinstance(r, dict) and isinstance(r.get("reference"), str)
                ]
            for key in keys:
                if key and key not in page.included and key.split("/")[0] in wanted:
                    wanted[key.split("/")[0]].add(key.split("/")[1])
        for kind, ids in wanted.items():
            ordered = sorted(ids)
            for start in range(0, len(ordered), self.ids_per_search):
                chunk = ordered[start : start + self.ids_per_search]
                url = f"{self.server.root}/{kind}"
                found = self.client.get(
                    url, [("_id", ",".join(chunk)), ("_count", str(len(chunk)))]
                )
                for entry in found.get("entry") or []:
                    got = entry.get("resource") if isinstance(entry, dict) else None
                    if isinstance(got, dict) and got.get("resourceType") == kind and got.get("id"):
                        page.included[f"{kind}/{got['id']}"] = got

    def _checked_next(self, next_url: str | None, current: str) -> str | None:
        """A next link must stay on the configured server: credentials go nowhere else."""
        if next_url is None:
            return None
        target = httpx.URL(current).join(next_url)
        base = httpx.URL(self.server.base_url)
        if (target.scheme, target.host, target.port) != (base.scheme, base.host, base.port):
            raise SourceUnavailable(
                f"next link {next_url} leaves {self.server.base_url}; refusing to follow it"
            )
        return str(target)

    def _remember(self, seen: OrderedDict[str, None], key: str) -> None:
        seen[key] = None
        seen.move_to_end(key)
        while len(seen) > self.remember:
            seen.popitem(last=False)


def parse_cursor(value: str | None) -> dict[str, str]:
    """``{"Observation": instant, ...}``; a bare instant (older cursors) applies to both."""
    if not value:
        return {}
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        return {"DiagnosticReport": value, "Observation": value}
    if not isinstance(parsed, dict):
        return {}
    return {str(k): str(v) for k, v in parsed.items() if isinstance(v, str)}


def dump_cursor(state: dict[str, str]) -> str:
    return json.dumps(state, sort_keys=True, separators=(",", ":"))


def _advance(state: dict[str, str], rtype: str, page: Page) -> None:
    stamps: list[tuple[datetime, str]] = []
    for res in page.matches:
        when = last_updated(res)
        if when is not None:
            stamps.append((when, res["meta"]["lastUpdated"]))
    if not stamps:
        return
    top = max(stamps)
    if page.next_url is not None:
        below = [s for s in stamps if s[0] < top[0]]
        if not below:
            return
        top = max(below)
    old = state.get(rtype)
    old_when = last_updated({"meta": {"lastUpdated": old}}) if old else None
    if old_when is None or top[0] > old_when:
        state[rtype] = top[1]


def http_client(adapter: FhirRestAdapter) -> httpx.Client:
    """An httpx client with the adapter's timeouts and credentials (resolved at config load)."""
    headers = {"Accept": FHIR_JSON}
    auth: httpx.Auth | None = None
    if adapter.auth is not None and adapter.auth.secret is not None:
        if adapter.auth.password_env:
            auth = httpx.BasicAuth(adapter.auth.username or "", adapter.auth.secret)
        else:
            headers["Authorization"] = f"Bearer {adapter.auth.secret}"
    timeout = httpx.Timeout(adapter.timeout, connect=adapter.connect_timeout)
    return httpx.Client(headers=headers, auth=auth, timeout=timeout, follow_redirects=False)
