"""Bulk loads for initial loads and back-fills: FHIR NDJSON and HL7 v2 folders.

There is no side door: every line or message becomes an :class:`adapters.base.Unit` and goes
through the sink's ``ingest`` (``hie.ingest.Ingestor``), so the same model and profile
checks, the same patient linking and the same upsert-by-source-identifier apply as for an
HTTP transaction or an MLLP message. What bulk adds:

* **Batches** of ``batch_size`` units per transaction (one round of validation, one write
  transaction, one commit per batch instead of per message).
* **Resumable**: the batch carries a :class:`adapters.base.Cursor` that ingest commits in
  the same transaction as the batch's data. For NDJSON the cursor is the byte offset just
  after the last line of the batch; for an HL7 folder it is ``{relative path}#{message
  number}`` of the batch's last message (files are read in sorted order). After a kill the
  next run starts from there; re-reading a line that did land is harmless anyway, because
  ingest is idempotent.
* **Flat memory**: input is streamed line by line (NDJSON) or file by file (HL7), never held
  whole, so a 10-million-result file needs no more memory than a small one.
* **Both cores**: with ``workers`` > 0 the expensive, database-free half of the work runs in
  worker processes while this process writes the previous batch: the FHIR model check
  (``hie.fhir.check_model``, the same function ingest calls) for NDJSON, parse and mapping
  for HL7. A line the workers found valid goes to ingest as a *trusted* unit, so ingest does
  not run the model check a second time; hie's profiles still run in ingest. A line they
  found invalid goes untrusted, so ingest checks it again and rejects it with the usual
  outcome and dead letter. Nothing skips validation; it only moves to another core.

FHIR NDJSON lines are either transaction/batch Bundles (one unit per line: its entries land
together or not at all) or single resources (``$import`` style, one unit per line; a
resource's ``id`` is kept, so references between files by id work). One file is one
hospital's feed: the hospital comes from the caller or from the first line's MRN system
(``hie.naming.mrn``); a later line whose Patient carries another hospital's MRN is refused as
a dead letter, because a hospital only writes its own results.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson

from adapters.base import Batch, Cursor, DeadLetter, Entry, Sink, Unit
from hie import naming

JSON = dict[str, Any]
T = TypeVar("T")
R = TypeVar("R")
NDJSON_ADAPTER = "bulk-ndjson"
HL7_ADAPTER = "bulk-hl7"
HL7_CONTENT_TYPE = "x-application/hl7-v2+er7"
RESULT_TYPES = frozenset({"Observation"})


@dataclass
class LoadStats:
    """What one bulk load did; ``results`` counts Observations in units that landed."""

    source: str
    hospital_id: str
    items: int = 0  # lines or messages read in this run
    units: int = 0
    results: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    dead_letters: int = 0
    batches: int = 0
    resumed_from: str | None = None
    cursor: str | None = None
    seconds: float = 0.0
    bytes_done: int = 0
    bytes_total: int = 0
    errors: list[str] = field(default_factory=list)  # first few rejection reasons

    @property
    def results_per_s(self) -> float:
        return self.results / self.seconds if self.seconds else 0.0


Progress = Callable[[LoadStats], None]


@dataclass
class _Pending:
    units: list[Unit] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.units) + len(self.dead)


def _results_in(unit: Unit) -> int:
    return sum(1 for e in unit.entries if e.resource.get("resourceType") in RESULT_TYPES)


def _flush(
    sink: Sink, hospital: str, adapter: str, pending: _Pending, cursor: Cursor, stats: LoadStats
) -> None:
    batch = Batch(hospital, adapter, pending.units, pending.dead, cursor)
    result = sink.ingest(batch)
    stats.batches += 1
    stats.units += len(pending.units)
    stats.dead_letters += len(pending.dead)
    for unit, item in zip(pending.units, result.items, strict=True):
        if not item.ok:
            stats.rejected += 1
            if len(stats.errors) < 5:
                stats.errors.append(
                    f"{item.key}: {item.issues[0].diagnostics if item.issues else ''}"
                )
            continue
        stats.results += _results_in(unit)
        for w in item.written:
            if w.status == "created":
                stats.created += 1
            elif w.status == "updated":
                stats.updated += 1
            else:
                stats.unchanged += 1
    stats.cursor = cursor.value
    pending.units, pending.dead = [], []


@contextmanager
def worker_pool(workers: int) -> Iterator[Executor | None]:
    """Worker processes for ``load_*(pool=...)``; create one for a whole multi-file load,
    since starting a worker (imports, model build) costs a second or two."""
    if workers <= 0:
        yield None
        return
    # spawn, not fork: the parent holds database connections and may run a progress thread.
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        yield pool


def _pipelined(
    items: Iterable[T], fn: Callable[[T], R], pool: Executor | None, depth: int = 2
) -> Iterator[tuple[T, R]]:
    """``(item, fn(item))`` in input order; with a pool, ``fn`` runs ahead in other processes
    (at most ``depth`` items in flight, so memory stays bounded)."""
    if pool is None:
        for item in items:
            yield item, fn(item)
        return
    pending: deque[tuple[T, Future[R]]] = deque()
    for item in items:
        pending.append((item, pool.submit(fn, item)))
        if len(pending) >= depth:
            head, fut = pending.popleft()
            yield head, fut.result()
    while pending:
        head, fut = pending.popleft()
        yield head, fut.result()


_seen_valid: dict[bytes, bool] = {}


def model_valid(lines: list[bytes]) -> list[bool]:
    """Per line: does every resource in it pass ``hie.fhir.check_model``? (worker side)

    A hospital's export repeats the same Patient in every Bundle, so identical resources are
    checked once per worker (a bounded memo keyed by their bytes).
    """
    from hie.fhir import check_model

    out: list[bool] = []
    for line in lines:
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            out.append(False)
            continue
        if not isinstance(doc, dict):
            out.append(False)
            continue
        if doc.get("resourceType") == "Bundle":
            resources = [e.get("resource") for e in doc.get("entry") or [] if isinstance(e, dict)]
        else:
            resources = [doc]
        ok = True
        for res in resources:
            if isinstance(res, dict) and res.get("resourceType") == "Bundle":
                ok = False
                break
            key = orjson.dumps(res, option=orjson.OPT_SORT_KEYS) if res is not None else b""
            verdict = _seen_valid.get(key)
            if verdict is None:
                verdict = not check_model(res)
                if len(_seen_valid) > 20_000:
                    _seen_valid.clear()
                _seen_valid[key] = verdict
            if not verdict:
                ok = False
                break
        out.append(ok)
    return out


# -- FHIR NDJSON -----------------------------------------------------------------------------


def fingerprint(path: Path) -> str:
    """Names a file by its first 64 KiB, so a renamed copy resumes and a new file does not."""
    with path.open("rb") as f:
        return hashlib.sha256(f.read(65536)).hexdigest()[:16]


def ndjson_cursor_name(path: Path) -> str:
    return f"ndjson:{path.name[:80]}:{fingerprint(path)}"


def line_hospital(doc: Any) -> str | None:
    """The hospital whose MRN a line's Patient carries (None if it names none)."""
    resources: list[Any] = []
    if isinstance(doc, dict) and doc.get("resourceType") == "Bundle":
        resources = [e.get("resource") for e in doc.get("entry") or [] if isinstance(e, dict)]
    elif isinstance(doc, dict):
        resources = [doc]
    for res in resources:
        if isinstance(res, dict) and res.get("resourceType") == "Patient":
            for ident in res.get("identifier") or []:
                if isinstance(ident, dict):
                    found = naming.mrn_hospital(str(ident.get("system") or ""))
                    if found:
                        return found
    return None


def first_hospital(path: Path) -> str | None:
    with path.open("rb") as f:
        for line in f:
            if line.strip():
                try:
                    return line_hospital(orjson.loads(line))
                except orjson.JSONDecodeError:
                    return None
    return None


def _bundle_entries(doc: JSON) -> tuple[Entry, ...]:
    """Entries of a transaction/batch Bundle line, with the FHIR REST meaning of ``request``:
    POST lets the server assign the id (FHIR R4 §3.1.0.8); PUT ``Type/id`` keeps it."""
    kind = doc.get("type")
    if kind not in ("transaction", "batch", "collection"):
        raise ValueError(f"Bundle.type {kind!r}: only transaction, batch or collection Bundles")
    out: list[Entry] = []
    for n, e in enumerate(doc.get("entry") or []):
        if not isinstance(e, dict) or not isinstance(e.get("resource"), dict):
            raise ValueError(f"Bundle.entry[{n}] has no resource")
        res: JSON = e["resource"]
        full_url = e.get("fullUrl") if isinstance(e.get("fullUrl"), str) else None
        req: JSON = e["request"] if isinstance(e.get("request"), dict) else {}
        url = str(req.get("url") or "")
        if req.get("method") == "PUT" and "?" not in url and url.count("/") == 1:
            out.append(Entry(res, full_url if full_url and full_url.startswith("urn:") else url))
        else:
            out.append(Entry({k: v for k, v in res.items() if k != "id"}, full_url))
    if not out:
        raise ValueError("The Bundle has no entries")
    return tuple(out)


def ndjson_unit(
    line: bytes, key: str, hospital: str, *, checked: bool = False
) -> Unit | DeadLetter:
    """One NDJSON line as a unit, or a dead letter saying why it cannot be one."""
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return DeadLetter(key, line, f"not JSON: {exc}", "application/fhir+ndjson")
    if not isinstance(doc, dict) or not isinstance(doc.get("resourceType"), str):
        return DeadLetter(key, line, "a line must be a FHIR resource", "application/fhir+ndjson")
    owner = line_hospital(doc)
    if owner is not None and owner != hospital:
        return DeadLetter(
            key,
            line,
            f"the Patient carries an MRN of hospital {owner}, but this load is for {hospital}",
            "application/fhir+ndjson",
        )
    if doc["resourceType"] == "Bundle":
        try:
            entries = _bundle_entries(doc)
        except ValueError as exc:
            return DeadLetter(key, line, str(exc), "application/fhir+ndjson")
    else:
        rid = doc.get("id")
        entries = (Entry(doc, f"{doc['resourceType']}/{rid}" if isinstance(rid, str) else None),)
    return Unit(key=key, entries=entries, raw=line, trusted=checked)


def _check_batch(batch: list[tuple[int, bytes]]) -> list[bool]:
    return model_valid([line for _, line in batch])


FIRST_BATCH = 32
# Units per transaction of a bulk load. The load's memory is what one batch holds in flight
# (lines, units, their validated copies and rows) and RSS keeps its high-water mark: on
# city-small, 500 units grew the writer by 62 MB, 250 by 39 MB, at the same rate (about 1,600
# results/s either way; the writer's CPU 0.48-0.51 against 0.52-0.56 ms a result).
BATCH_UNITS = 250


def _line_batches(f: Any, start: int, batch_size: int) -> Iterator[list[tuple[int, bytes]]]:
    """Lines as (end offset, bytes), ``batch_size`` non-empty ones at a time.

    The first batches of a file are smaller (32, 64, ... lines, doubling up to
    ``batch_size``): the writer cannot start before the worker has checked the first batch,
    and a whole batch of Bundles kept it idle for a second or more at every file.
    """
    offset = start
    size = min(batch_size, FIRST_BATCH)
    batch: list[tuple[int, bytes]] = []
    for line in f:
        offset += len(line)
        if not line.strip():
            continue
        batch.append((offset, line))
        if len(batch) >= size:
            yield batch
            batch = []
            size = min(batch_size, size * 2)
    if batch:
        yield batch


def load_ndjson(
    sink: Sink,
    path: Path,
    *,
    hospital_id: str | None = None,
    batch_size: int = BATCH_UNITS,
    workers: int = 0,
    pool: Executor | None = None,
    progress: Progress | None = None,
) -> LoadStats:
    """Load one hospital's NDJSON file, resuming from the committed cursor if there is one.

    ``pool`` (from :func:`worker_pool`) runs the model check in other processes; without it,
    ``workers`` > 0 starts a pool for this file alone.
    """
    hospital = hospital_id or first_hospital(path)
    if not hospital:
        raise ValueError(
            f"{path}: cannot tell which hospital sent it (no MRN in the first line); "
            "pass the hospital id"
        )
    name = ndjson_cursor_name(path)
    stats = LoadStats(str(path), hospital, bytes_total=path.stat().st_size)
    start = 0
    committed = sink.cursor(hospital, NDJSON_ADAPTER, name)
    if committed is not None:
        start = int(committed)
        stats.resumed_from = committed
    began = time.perf_counter()
    stats.bytes_done = start

    def unchecked(batch: list[tuple[int, bytes]]) -> list[bool]:
        return [False] * len(batch)  # ingest runs the model check itself

    with ExitStack() as stack, path.open("rb") as f:
        if pool is None:
            pool = stack.enter_context(worker_pool(workers))
        check = _check_batch if pool is not None else unchecked
        if start:
            f.seek(start - 1)
            if f.read(1) != b"\n":
                raise ValueError(f"{path}: cursor {start} is not at a line boundary")
        for batch, valid in _pipelined(_line_batches(f, start, batch_size), check, pool):
            pending = _Pending()
            for (end, line), ok in zip(batch, valid, strict=True):
                stats.items += 1
                key = f"{path.name}@{end - len(line)}"
                item = ndjson_unit(line, key, hospital, checked=ok)
                (pending.units if isinstance(item, Unit) else pending.dead).append(item)  # type: ignore[arg-type]
            end_offset = batch[-1][0]
            _flush(sink, hospital, NDJSON_ADAPTER, pending, Cursor(name, str(end_offset)), stats)
            stats.bytes_done = end_offset
            stats.seconds = time.perf_counter() - began
            if progress:
                progress(stats)
    stats.seconds = time.perf_counter() - began
    return stats


# -- HL7 v2 folders --------------------------------------------------------------------------

MessageMapper = Callable[[bytes, str, str], Iterator[Unit | DeadLetter]]


def hl7_mapper() -> MessageMapper:
    """The HL7 v2 adapter's mapping as (payload, key prefix, hospital) → units/dead letters."""
    from adapters.hl7v2.framing import split_messages

    framed_mapper = _framed_mapper()

    def mapper(payload: bytes, key: str, hospital: str) -> Iterator[Unit | DeadLetter]:
        return framed_mapper(split_messages(payload), key, hospital)

    return mapper


def _framed_mapper() -> Callable[[Iterable[Any], str, str], Iterator[Unit | DeadLetter]]:
    """Messages already cut out of a file (``adapters.hl7v2.framing.Framed``) → items."""
    from adapters.base import BadMessage
    from adapters.hl7v2.coding import Context
    from adapters.hl7v2.oru import map_framed

    contexts: dict[str, Context] = {}

    def mapper(messages: Iterable[Any], key: str, hospital: str) -> Iterator[Unit | DeadLetter]:
        ctx = contexts.get(hospital) or contexts.setdefault(hospital, Context(hospital))
        for framed in messages:
            k = f"{key}#{framed.index}"
            try:
                yield map_framed(framed, ctx, key=k)
            except BadMessage as exc:
                yield DeadLetter(k, framed.raw, exc.reason, HL7_CONTENT_TYPE, exc.location)

    return mapper


def _split_hl7_cursor(value: str | None) -> tuple[str, int]:
    if not value:
        return "", 0
    rel, _, n = value.rpartition("#")
    return rel, int(n)


_worker_mapper: list[Callable[[Iterable[Any], str, str], Iterator[Unit | DeadLetter]]] = []
HL7_CHUNK = 64  # messages per worker job


def _map_chunk(job: tuple[str, str, list[Any]]) -> list[Unit | DeadLetter]:
    """Map some messages of one HL7 file (worker side): (relative path, hospital, messages)."""
    rel, hospital, messages = job
    if not _worker_mapper:
        _worker_mapper.append(_framed_mapper())
    return list(_worker_mapper[0](messages, rel, hospital))


@dataclass
class _Chunk:
    """Messages of one file for a worker; ``size`` is set on a file's last chunk."""

    path: str
    rel: str
    hospital: str
    messages: list[Any]
    size: int | None = None


def _chunks(todo: list[tuple[str, str, str]], done_rel: str, done_n: int) -> Iterator[_Chunk]:
    """Each file cut into messages here (cheap), mapped in chunks there (dear): the writer
    starts after one chunk instead of after a whole file of several hundred messages."""
    from adapters.hl7v2.framing import split_messages

    for path, rel, hospital in todo:
        payload = Path(path).read_bytes()
        messages = [m for m in split_messages(payload) if rel != done_rel or m.index > done_n]
        for at in range(0, max(len(messages), 1), HL7_CHUNK):
            last = at + HL7_CHUNK >= len(messages)
            part = messages[at : at + HL7_CHUNK]
            yield _Chunk(path, rel, hospital, part, len(payload) if last else None)


def _map_job(chunk: _Chunk) -> list[Unit | DeadLetter]:
    return _map_chunk((chunk.rel, chunk.hospital, chunk.messages))


def load_hl7_folder(
    sink: Sink,
    folder: Path,
    *,
    hospital_id: str | None = None,
    batch_size: int = BATCH_UNITS,
    pattern: str = "*.hl7",
    mapper: MessageMapper | None = None,
    workers: int = 0,
    pool: Executor | None = None,
    progress: Progress | None = None,
) -> LoadStats:
    """Load every ``pattern`` file under ``folder`` (sorted) as one hospital's ORU feed.

    With a ``pool`` (or ``workers``) and the default mapper, files are parsed and mapped in
    worker processes, a file or two ahead of the writes.
    """
    hospital = hospital_id or folder.name
    files = sorted(p for p in folder.rglob(pattern) if p.is_file())
    name = f"hl7:{folder.name[:100]}"
    stats = LoadStats(str(folder), hospital, bytes_total=sum(p.stat().st_size for p in files))
    committed = sink.cursor(hospital, HL7_ADAPTER, name)
    done_rel, done_n = _split_hl7_cursor(committed)
    stats.resumed_from = committed
    began = time.perf_counter()
    todo = []
    for path in files:
        rel = path.relative_to(folder).as_posix()
        if rel < done_rel:
            stats.bytes_done += path.stat().st_size
        else:
            todo.append((str(path), rel, hospital))
    with ExitStack() as stack:
        mapped: Iterator[tuple[_Chunk, list[Unit | DeadLetter]]]
        if mapper is None and (workers or pool is not None):
            if pool is None:
                pool = stack.enter_context(worker_pool(workers))
            # deep enough that the worker keeps mapping while the writer writes a batch
            depth = batch_size // HL7_CHUNK + 2
            mapped = _pipelined(_chunks(todo, done_rel, done_n), _map_job, pool, depth)
        else:
            use = mapper or hl7_mapper()
            mapped = (
                (
                    _Chunk(job[0], job[1], job[2], [], Path(job[0]).stat().st_size),
                    list(use(Path(job[0]).read_bytes(), job[1], job[2])),
                )
                for job in todo
            )
        pending = _Pending()
        last = flushed = committed or ""
        size = min(batch_size, FIRST_BATCH)  # small first batches, as for NDJSON
        for chunk, items in mapped:
            rel = chunk.rel
            for item in items:
                n = int(item.key.rpartition("#")[2])
                if rel == done_rel and n <= done_n:
                    continue
                stats.items += 1
                (pending.units if isinstance(item, Unit) else pending.dead).append(item)  # type: ignore[arg-type]
                last = f"{rel}#{n}"
                if len(pending) >= size:
                    _flush(sink, hospital, HL7_ADAPTER, pending, Cursor(name, last), stats)
                    flushed = last
                    size = min(batch_size, size * 2)
                    stats.seconds = time.perf_counter() - began
                    if progress:
                        progress(stats)
            if chunk.size is not None:
                stats.bytes_done += chunk.size
        if last != flushed:
            _flush(sink, hospital, HL7_ADAPTER, pending, Cursor(name, last), stats)
    stats.seconds = time.perf_counter() - began
    if progress:
        progress(stats)
    return stats
