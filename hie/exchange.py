"""The exchange's services in one object: what the HTTP edge, the CLI and later the CDS Hooks
service and the SMART app call. Reads go through :class:`Exchange` so that one place applies
visibility (consent, later) and records the audit trail.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import orjson
from sqlalchemy import Connection

from hie.audit import Auditor
from hie.auth import Principal
from hie.bundle import searchset
from hie.hospitals import HospitalsConfig
from hie.index.patients import PatientRegistry
from hie.index.search import INCLUDES, Query, Searcher, encode_page
from hie.index.store import HIDDEN_STATUSES, Current, Store
from hie.ingest import Ingestor
from hie.outcome import Gone, Issue, NotFound, operation_outcome
from hie.settings import Settings


@dataclass
class Page:
    body: bytes
    matches: list[tuple[str, str, bytes]]


class Exchange:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        registry: PatientRegistry,
        ingestor: Ingestor,
        searcher: Searcher,
        auditor: Auditor,
    ) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry
        self.ingestor = ingestor
        self.searcher = searcher
        self.auditor = auditor
        self.hospitals: HospitalsConfig | None = None
        self.prior_results: Any = None  # hie.prior_results.PriorResults, with a hospitals config
        self.operations: list[dict[str, str]] = []

    @property
    def base(self) -> str:
        return self.settings.base_url.rstrip("/")

    # -- visibility: the one place a consent filter will apply ---------------------------
    def visible(self, principal: Principal, rows: Iterable[Any]) -> list[Any]:
        return list(rows)

    # -- reads --------------------------------------------------------------------------
    def read(self, principal: Principal, rtype: str, rid: str) -> Current:
        principal.require(rtype, "r")
        cur = self.store.get(rtype, rid)
        if cur is None or not self.visible(principal, [cur]):
            raise NotFound(f"{rtype}/{rid} is not known", expression=f"{rtype}.id")
        self.auditor.record(
            principal, "read", resource_type=rtype, resource_ids=[rid], patient_ids=[cur.patient_id]
        )
        if cur.deleted:
            raise Gone(f"{rtype}/{rid} was deleted")
        return cur

    def vread(self, principal: Principal, rtype: str, rid: str, vid: int) -> tuple[bytes, Any]:
        cur = self.read(principal, rtype, rid)
        found = self.store.version(rtype, rid, vid)
        if found is None:
            raise NotFound(f"{rtype}/{rid} has no version {vid}")
        body, updated, deleted = found
        if deleted:
            raise Gone(f"Version {vid} of {rtype}/{rid} is a deletion")
        del cur
        return body, updated

    def history(self, principal: Principal, rtype: str, rid: str) -> list[tuple[int, Any, bytes]]:
        self.read(principal, rtype, rid)
        return self.store.history(rtype, rid, self.settings.max_count)

    def search(
        self,
        principal: Principal,
        rtype: str,
        params: list[tuple[str, str]],
        *,
        strict: bool,
        path: str | None = None,
    ) -> bytes:
        principal.require(rtype, "s")
        with self.store.read() as conn:
            q = self.searcher.parse(conn, rtype, params, strict=strict)
            total = self.searcher.count(conn, q) if (q.total or q.summary_count) else None
            sort_value = None
            if q.summary_count:
                rows: list[Any] = []
            elif q.impossible:
                rows = []
            else:
                rows, sort_value = self.searcher.run(conn, q)
            has_next = len(rows) > q.count
            rows = self.visible(principal, rows[: q.count])
            matches = [(rtype, r.id, r.body) for r in rows]
            includes = self._includes(conn, principal, q, matches)
        query = urlencode(params)  # the self link and the audit row say the same
        self_params = [(k, v) for k, v in params if k != "_page"]
        url = f"{self.base}/{path or rtype}"
        next_url = None
        if has_next and rows and sort_value is not None:
            next_url = f"{url}?" + urlencode(
                [*self_params, ("_page", encode_page(sort_value(rows[-1])))]
            )
        outcome = None
        if q.ignored:
            outcome = operation_outcome(
                [
                    Issue(
                        f"Ignored unknown search parameter {name!r} (Prefer: handling=lenient)",
                        code="not-supported",
                        severity="warning",
                        expression=name,
                    )
                    for name in q.ignored
                ]
            )
        body = searchset(
            self.base,
            matches,
            self_url=url + ("?" + query if params else ""),
            next_url=next_url,
            total=total,
            includes=includes,
            outcome=outcome,
        )
        patients = {r.patient_id for r in rows if hasattr(r, "patient_id")} | set(q.patient_ids)
        self.auditor.record(
            principal,
            "search",
            resource_type=rtype,
            resource_ids=[m[1] for m in matches],
            patient_ids=patients,
            query=query,
        )
        return body

    def _includes(
        self,
        conn: Connection,
        principal: Principal,
        q: Query,
        matches: list[tuple[str, str, bytes]],
    ) -> list[tuple[str, str, bytes]]:
        out: list[tuple[str, str, bytes]] = []
        seen = {(m[0], m[1]) for m in matches}
        for inc in q.includes:
            element, target = INCLUDES[inc]
            if not principal.allows(target, "r"):
                continue
            for _, _, body in matches:
                value = orjson.loads(body).get(element)
                refs = value if isinstance(value, list) else [value]
                for ref in refs:
                    r = ref.get("reference") if isinstance(ref, dict) else None
                    if not isinstance(r, str) or not r.startswith(f"{target}/"):
                        continue
                    rid = r.split("/", 1)[1]
                    if (target, rid) in seen:
                        continue
                    seen.add((target, rid))
                    cur = self.store.current(conn, target, rid)
                    if cur is None or cur.deleted or _hidden(cur.body):
                        continue  # entered-in-error leaves search results, includes too
                    if self.visible(principal, [cur]):
                        out.append((target, rid, cur.body))
        return out


def _hidden(body: bytes) -> bool:
    status = orjson.loads(body).get("status")
    return status in HIDDEN_STATUSES
