"""Lookup benchmarks: what a clinician's "what exists already?" costs, against its floors.

Queries are drawn from the loaded database (random search_token rows → patient, code and
date), so every query asks about a real patient and a code they have. ``$prior-results`` is
asked as at a repeat order: one to six days after that result (at another hospital's desk,
within every lab item's window, so there is something to recognise); the same question with
``includeExpired=true`` reads the patient's three years of those tests (the history view).
Each figure is measured through wrk against the product server; the floors are the same
question as hand-written indexed SQL through the bare driver (read back as far as hie reads),
and ``/bench/trivial`` (2 KB) on the same web stack.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import func, select

from bench import wrk
from bench.processes import cpu_seconds
from hie.index import tables as t
from hie.index.store import create_engine
from hie.prior_results import LATER, Request, related, since
from hie.recognition.catalogue import Catalogue
from hie.recognition.rules import CATALOGUE_FILE

TOKEN = t.SearchToken.__table__  # type: ignore[attr-defined]
SINCE = datetime(2023, 7, 1)  # date=ge: about the last 18 months of the simulated two years
LOINC = "http://loinc.org"
BEIJING = timezone(timedelta(hours=8))
CATALOGUE = Path(__file__).resolve().parents[1] / "fhir_profiles" / CATALOGUE_FILE


@dataclass
class QuerySet:
    patients: list[str]  # exchange patient ids
    codes: list[str]  # one LOINC code per patient that the patient has
    prior_codes: list[list[str]]  # five codes per patient for $prior-results
    prior_at: list[datetime]  # when each is asked: a few days after the drawn result

    def search_paths(self) -> list[str]:
        return [
            f"/fhir/Observation?patient={p}&code={quote(LOINC + '|' + c, safe='')}"
            f"&date=ge{SINCE:%Y-%m-%d}"
            for p, c in zip(self.patients, self.codes, strict=True)
        ]

    def prior_paths(self, *, include_expired: bool = False) -> list[str]:
        more = "&includeExpired=true" if include_expired else ""
        return [
            f"/fhir/Patient/{p}/$prior-results?at={quote(at.isoformat(), safe='')}&"
            + "&".join(f"code={quote(LOINC + '|' + c, safe='')}" for c in codes)
            + more
            for p, codes, at in zip(self.patients, self.prior_codes, self.prior_at, strict=True)
        ]


def draw_queries(url: str, count: int = 200, seed: int = 7) -> QuerySet:
    """``count`` (patient, code) pairs from random token rows (by primary key: no full scan)."""
    rng = random.Random(seed)
    engine = create_engine(url)
    patients: list[str] = []
    codes: list[str] = []
    prior: list[list[str]] = []
    prior_at: list[datetime] = []
    with engine.connect() as conn:
        low, high = conn.execute(select(func.min(TOKEN.c.pk), func.max(TOKEN.c.pk))).one()
        tries = 0
        while len(patients) < count and tries < count * 200 and high:
            tries += 1
            row = conn.execute(
                select(TOKEN.c.patient_id, TOKEN.c.code, TOKEN.c.date).where(
                    TOKEN.c.pk == rng.randint(low, high),
                    TOKEN.c.type == "Observation",
                    TOKEN.c.param == "code",
                    TOKEN.c.system == LOINC,
                    TOKEN.c.patient_id.is_not(None),
                )
            ).first()
            if row is None or row.patient_id in patients or row.date is None:
                continue
            mine = [
                r.code
                for r in conn.execute(
                    select(TOKEN.c.code)
                    .where(
                        TOKEN.c.patient_id == row.patient_id,
                        TOKEN.c.type == "Observation",
                        TOKEN.c.param == "code",
                    )
                    .distinct()
                )
            ]
            patients.append(row.patient_id)
            codes.append(row.code)
            extra = [c for c in ("4548-4", "2345-7", "718-7", "2160-0", "6690-2") if c != row.code]
            prior.append([row.code, *[c for c in mine if c != row.code][:2], *extra][:5])
            done = row.date if row.date.tzinfo else row.date.replace(tzinfo=UTC)
            later = timedelta(days=rng.randint(1, 6), minutes=rng.randint(0, 600))
            prior_at.append((done + later).astimezone(BEIJING))
    engine.dispose()
    return QuerySet(patients, codes, prior, prior_at)


def sql_params(
    url: str, qs: QuerySet, prior: bool = False, *, include_expired: bool = False
) -> list[tuple[Any, ...]]:
    """The floors' parameters. For ``$prior-results``, read back as far as hie reads: the
    longest window of the asked items (or three years with ``include_expired``)."""
    if not prior:
        return [(p, c, _bound(url, SINCE)) for p, c in zip(qs.patients, qs.codes, strict=True)]
    catalogue = Catalogue.load(CATALOGUE)
    out = []
    for p, codes, at in zip(qs.patients, qs.prior_codes, qs.prior_at, strict=True):
        asked = tuple((LOINC, c) for c in codes)
        req = Request(p, asked, "", at, include_expired=include_expired)
        start = {c: s for s, group in since(req, related(catalogue, asked)[0]) for c in group}
        until = _bound(url, (at + LATER).astimezone(UTC).replace(tzinfo=None))
        out.append(
            tuple(
                v for c in codes for v in (p, c, _bound(url, start[c].replace(tzinfo=None)), until)
            )
        )
    return out


def _bound(url: str, value: datetime) -> Any:
    """A naive UTC instant as the driver binds it to the index's date column."""
    return value if not url.startswith("sqlite") else value.strftime("%Y-%m-%d %H:%M:%S.%f")


@dataclass
class Latency:
    p50_ms: float
    p99_ms: float
    rps: float = 0.0
    requests: int = 0
    errors: int = 0
    cpu_ms: float = 0.0  # server CPU per request: independent of the machine's other load

    @classmethod
    def of(cls, r: wrk.WrkResult, cpu_s: float = 0.0) -> Latency:
        per = cpu_s * 1000 / r.requests if r.requests else 0.0
        return cls(r.p50_ms, r.p99_ms, r.rps, r.requests, r.errors + r.non2xx, per)


def _measured(pid: int | None, run: Any) -> Latency:
    before = cpu_seconds(pid) if pid else 0.0
    result = run()
    after = cpu_seconds(pid) if pid else 0.0
    return Latency.of(result, after - before)


def single(
    port: int, paths: list[str], token: str, seconds: float, pid: int | None = None
) -> Latency:
    return _measured(pid, lambda: wrk.run(port, paths, token=token, connections=1, seconds=seconds))


def concurrent(
    port: int,
    paths: list[str],
    token: str,
    seconds: float,
    conns: int = 32,
    pid: int | None = None,
) -> Latency:
    return _measured(
        pid,
        lambda: wrk.run(port, paths, token=token, connections=conns, threads=2, seconds=seconds),
    )


def as_dict(x: Any) -> dict[str, Any]:
    return asdict(x)
