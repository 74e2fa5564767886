"""The store: the only code that opens database connections and writes index rows.

Writes go through :meth:`Store.put`, which keeps ``resource`` (the current version),
``resource_version`` (the superseded ones) and the search rows in step inside the caller's
transaction. Reads return stored JSON bytes; nothing
here builds pydantic models.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import (
    Connection,
    Engine,
    and_,
    bindparam,
    delete,
    event,
    insert,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import StaticPool

from hie.fhirtime import instant
from hie.index import tables as t
from hie.index.extract import extract
from hie.recognition.candidates import RESULT_TYPES, facts

JSON = dict[str, Any]

log = logging.getLogger("hie.index.store")

R = t.Resource.__table__  # type: ignore[attr-defined]
RV = t.ResourceVersion.__table__  # type: ignore[attr-defined]
TOKEN = t.SearchToken.__table__  # type: ignore[attr-defined]
STRING = t.SearchString.__table__  # type: ignore[attr-defined]
TYPE_INDEX = {
    "Observation": t.ObservationIndex.__table__,  # type: ignore[attr-defined]
    "DiagnosticReport": t.DiagnosticReportIndex.__table__,  # type: ignore[attr-defined]
    "ImagingStudy": t.ImagingStudyIndex.__table__,  # type: ignore[attr-defined]
    "Patient": t.PatientIndex.__table__,  # type: ignore[attr-defined]
}
HIDDEN_STATUSES = frozenset({"entered-in-error"})

# Statements built once, executed with parameter dicts: SQLAlchemy then reuses the compiled
# form from its cache. Building ``insert(R).values(**row)`` per call costs more Python time
# (coercion, cache keys) than the SQLite write itself; profiles of a bulk load showed it.
_FILL_FACTS = (
    update(R)
    .where(R.c.type == bindparam("_type"), R.c.id == bindparam("_id"), R.c.facts.is_(None))
    .values(facts=bindparam("facts"))
)
# A resource's row as Current holds it: everything but the recognition facts, which only
# $prior-results reads (hie.prior_results). Every read that makes a Current starts here.
CURRENT_ROW = select(*(c for c in R.c if c.name != "facts"))
_CURRENT = CURRENT_ROW.where(R.c.type == bindparam("_type"), R.c.id == bindparam("_id"))
_BY_SOURCE = CURRENT_ROW.where(
    R.c.type == bindparam("_type"),
    R.c.hospital_id == bindparam("_hospital"),
    R.c.source_id == bindparam("_source"),
)
_BY_SOURCE_NO_HOSPITAL = CURRENT_ROW.where(
    R.c.type == bindparam("_type"), R.c.hospital_id.is_(None), R.c.source_id == bindparam("_source")
)


def _column(rows: list[JSON], key: str, process: Callable[[Any], Any] | None) -> list[Any]:
    """One column of ``rows``, bind-processed. A run of rows shares values (a batch's
    ``last_updated``, a resource's date on each of its tokens), and the processors (date
    formatting, UTC conversion) are pure, so a value that is the one before is not
    processed again; on a bulk load that was a fifth of the writer's time."""
    if process is None:
        return [row[key] for row in rows]
    out: list[Any] = []
    last: Any = _NOTHING
    done: Any = None
    for row in rows:
        value = row[key]
        if value is not last:
            last, done = value, process(value)
        out.append(done)
    return out


_NOTHING = object()


class _Fast:
    """A write statement compiled once per dialect and run on the connection's DBAPI cursor.

    Even with a cached compiled form, ``Connection.execute`` spends about 40 µs of Python per
    call on bookkeeping (execution context, parameter processing, result setup), more than
    SQLite takes for the insert itself; a bulk load runs some 30 of these per Bundle. This
    runs the same SQL, with the same bind processing (``DateTime`` formatting, booleans), on
    the same DBAPI connection and so inside the caller's transaction and savepoints. Driver
    errors are re-raised as SQLAlchemy's (``IntegrityError`` for a duplicate source id), so
    callers catch what they always caught. Writes only: reads keep SQLAlchemy's result types.
    """

    def __init__(self, stmt: Any) -> None:
        self.stmt = stmt
        self._compiled: dict[
            tuple[str, tuple[str, ...]], tuple[str, list[tuple[str, Any]], bool]
        ] = {}

    def _form(self, dialect: Any, keys: tuple[str, ...]) -> tuple[str, list[tuple[str, Any]], bool]:
        found = self._compiled.get((dialect.name, keys))
        if found is None:
            comp = self.stmt.compile(dialect=dialect, column_keys=list(keys))
            names = list(comp.positiontup) if comp.positional else list(comp.binds)
            binds = [(n, comp.binds[n].type._cached_bind_processor(dialect)) for n in names]
            found = (comp.string, binds, bool(comp.positional))
            self._compiled[(dialect.name, keys)] = found
        return found

    def __call__(self, conn: Connection, params: JSON | list[JSON]) -> int:
        rows = params if isinstance(params, list) else [params]
        sql, binds, positional = self._form(conn.dialect, tuple(rows[0]))
        columns = [_column(rows, n, f) for n, f in binds]
        if positional:
            args: list[Any] = list(zip(*columns, strict=True))
        else:
            names = [n for n, _ in binds]
            args = [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]
        held = conn.info.get(_HELD)
        if held is not None:
            held.append((sql, args))
            return -1
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            if len(args) == 1:
                cursor.execute(sql, args[0])
            else:
                cursor.executemany(sql, args)
            return int(cursor.rowcount)
        except conn.dialect.loaded_dbapi.Error as exc:
            raise DBAPIError.instance(sql, args, exc, conn.dialect.loaded_dbapi.Error) from exc
        finally:
            cursor.close()


# -- writes held back on PostgreSQL --------------------------------------------------------
# Inside a PostgreSQL write transaction (Store.write) the _Fast writes are held back and sent
# together, in one psycopg pipeline (one round trip), just before the next statement of any
# other kind runs, a COPY starts or the transaction commits. A new patient's record alone is
# a dozen such writes (exchange patient, record, identifiers, traits, blocking keys, link
# event, two Patients and their search rows), and PostgreSQL answered each one before the
# next could go. Order is kept: everything else waits for the held writes. A held write the
# database refuses raises at that next statement, inside the same savepoint or one that
# encloses it, which is where ingest catches it. A rollback (to a savepoint, or of all)
# drops what is held: a SQLAlchemy savepoint starts after a flush (its SAVEPOINT is a
# statement like any other), so what is held belongs to the savepoint being rolled back;
# ingest's own unit savepoints are held too (HeldSavepoint). _Fast returns -1 for a held
# write's row count: no caller reads it. SQLite runs each write at once (no round trips).
_HELD = "hie.held_writes"


def send_held(conn: Any) -> None:
    """Send the writes held on ``conn`` in one pipeline (nothing to do when none are held)."""
    held = conn.info.get(_HELD)
    if not held:
        return
    writes = list(held)
    held.clear()
    driver = conn.connection.driver_connection
    dbapi = conn.dialect.loaded_dbapi
    cursor = driver.cursor()
    sql, args = "", []
    try:
        with driver.pipeline():
            for sql, args in writes:
                if len(args) == 1:
                    cursor.execute(sql, args[0])
                else:
                    cursor.executemany(sql, args)
    except dbapi.Error as exc:
        raise DBAPIError.instance(sql, args, exc, dbapi.Error) from exc
    finally:
        cursor.close()


def _drop_held(conn: Connection, *_: Any) -> None:
    held = conn.info.get(_HELD)
    if held:
        held.clear()


class HeldSavepoint:
    """A savepoint sent with the held writes (PostgreSQL, inside Store.write).

    Ingest opens one per unit that writes at once, so that a unit refused halfway rolls back
    alone. Through SQLAlchemy each cost two round trips (SAVEPOINT, RELEASE) on top of the
    held writes they flushed first; these go out in the same pipelines as the writes. Until
    its SAVEPOINT is sent it is only a mark in the queue: committing drops the mark, rolling
    back drops the mark and what followed it. Once sent, RELEASE (or ROLLBACK TO and RELEASE)
    is queued in turn. A held write the database refuses raises at the next statement; ingest
    then rolls back the enclosing SQLAlchemy savepoint, which drops whatever this one queued
    (the rollback_savepoint hook) and undoes this savepoint with the rest.
    """

    NAME = "hie_unit"

    def __init__(self, held: list[tuple[str, list[Any]]]) -> None:
        self.held = held
        self.mark: tuple[str, list[Any]] = (f"SAVEPOINT {self.NAME}", [()])
        held.append(self.mark)
        self.is_active = True

    def _mark_at(self) -> int | None:
        return next((n for n, w in enumerate(self.held) if w is self.mark), None)

    def commit(self) -> None:
        self.is_active = False
        at = self._mark_at()
        if at is not None:
            del self.held[at]
        else:
            self.held.append((f"RELEASE SAVEPOINT {self.NAME}", [()]))

    def rollback(self) -> None:
        self.is_active = False
        at = self._mark_at()
        if at is not None:
            del self.held[at:]
        else:
            self.held.clear()  # all of it came after the savepoint
            self.held.append((f"ROLLBACK TO SAVEPOINT {self.NAME}", [()]))
            self.held.append((f"RELEASE SAVEPOINT {self.NAME}", [()]))


def savepoint(conn: Connection) -> HeldSavepoint | Any:
    """A savepoint: held with the writes where they are held, else SQLAlchemy's own."""
    held = conn.info.get(_HELD)
    return HeldSavepoint(held) if held is not None else conn.begin_nested()


def _send_held_first(conn: Connection, *_: Any) -> None:
    send_held(conn)


def hold_writes(engine: Engine) -> None:
    """Make ``engine``'s connections send held writes before anything else (PostgreSQL)."""
    if event.contains(engine, "before_cursor_execute", _send_held_first):
        return
    event.listen(engine, "before_cursor_execute", _send_held_first)
    event.listen(engine, "commit", _send_held_first)
    event.listen(engine, "rollback", _drop_held)
    event.listen(engine, "rollback_savepoint", _drop_held)


_INSERT_R = _Fast(insert(R))
_UPDATE_R = _Fast(update(R).where(R.c.type == bindparam("_type"), R.c.id == bindparam("_id")))
_INSERT_RV = _Fast(insert(RV))
_INSERT_TOKEN = _Fast(insert(TOKEN))
_INSERT_STRING = _Fast(insert(STRING))
_INSERT_INDEX = {rtype: _Fast(insert(table)) for rtype, table in TYPE_INDEX.items()}


class WriteBuffer:
    """Inserts of new resources held back and sent as one executemany (SQLite) or one COPY
    (PostgreSQL) per table.

    Ingest keeps one per batch of units: a unit of ten results would otherwise cost some
    forty round trips; PostgreSQL pays each one.
    Only inserts of resources new to the index are buffered (an update must first
    remove the old search rows); the owner flushes inside the same transaction, before
    anything reads the rows back.
    """

    def __init__(self) -> None:
        self.rows: dict[_Fast, list[JSON]] = {}

    def add(self, stmt: _Fast, rows: JSON | list[JSON]) -> None:
        self.rows.setdefault(stmt, []).extend(rows if isinstance(rows, list) else [rows])

    def extend(self, other: WriteBuffer) -> None:
        """Take over another buffer's rows (a unit's, once the unit has landed)."""
        for stmt, rows in other.rows.items():
            self.rows.setdefault(stmt, []).extend(rows)

    def flush(self, conn: Connection) -> None:
        for stmt, rows in self.rows.items():
            # executemany needs one shape of row per call: group by the keys present
            shapes: dict[tuple[str, ...], list[JSON]] = {}
            for row in rows:
                shapes.setdefault(tuple(row), []).append(row)
            for group in shapes.values():
                if conn.dialect.name == "postgresql":
                    _copy(conn, stmt, group)
                else:
                    stmt(conn, group)
        self.rows.clear()


def _copy(conn: Connection, stmt: _Fast, rows: list[JSON]) -> None:
    """New rows into one table with PostgreSQL's COPY, inside the caller's transaction.

    psycopg's ``executemany`` sends each row as its own statement (pipelined, still parsed
    and executed one by one); a batch of 500 Bundles has some 20,000 index rows. COPY
    streams them as one command. Values go through the same bind processing as an INSERT,
    and a refused value (a NUL in text) is raised as SQLAlchemy's ``DataError``, so the
    caller's fallback finds the unit it came from.
    """
    table = stmt.stmt.table
    keys = tuple(rows[0])
    dialect = conn.dialect
    quote = dialect.identifier_preparer
    procs = [table.c[k].type._cached_bind_processor(dialect) for k in keys]
    columns = [_column(rows, k, f) for k, f in zip(keys, procs, strict=True)]
    sql = f"COPY {quote.format_table(table)} ({', '.join(quote.quote(k) for k in keys)}) FROM STDIN"
    send_held(conn)
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        with cursor.copy(sql) as copy:
            for values in zip(*columns, strict=True):
                copy.write_row(values)
    except dialect.loaded_dbapi.Error as exc:
        raise DBAPIError.instance(sql, [], exc, dialect.loaded_dbapi.Error) from exc
    finally:
        cursor.close()


_DELETE_INDEX = {
    rtype: _Fast(delete(table).where(table.c.id == bindparam("_id")))
    for rtype, table in TYPE_INDEX.items()
}
_DELETE_TOKEN = _Fast(
    delete(TOKEN).where(TOKEN.c.type == bindparam("_type"), TOKEN.c.res_id == bindparam("_id"))
)
_DELETE_STRING = _Fast(
    delete(STRING).where(STRING.c.type == bindparam("_type"), STRING.c.res_id == bindparam("_id"))
)
_PATIENT_R = _Fast(
    update(R)
    .where(R.c.type == bindparam("_type"), R.c.id == bindparam("_id"))
    .values(patient_id=bindparam("_patient"))
)
_PATIENT_TOKEN = _Fast(
    update(TOKEN)
    .where(TOKEN.c.type == bindparam("_type"), TOKEN.c.res_id == bindparam("_id"))
    .values(patient_id=bindparam("_patient"))
)
_PATIENT_RV = _Fast(
    update(RV)
    .where(RV.c.type == bindparam("_type"), RV.c.id == bindparam("_id"))
    .values(patient_id=bindparam("_patient"))
)
_PATIENT_INDEX = {
    rtype: _Fast(
        update(table).where(table.c.id == bindparam("_id")).values(patient_id=bindparam("_patient"))
    )
    for rtype, table in TYPE_INDEX.items()
    if "patient_id" in table.c
}


@dataclass(frozen=True)
class Current:
    """The current version of a stored resource."""

    type: str
    id: str
    version_id: int
    last_updated: datetime
    hospital_id: str | None
    source_id: str | None
    patient_id: str | None
    record_id: str | None
    deleted: bool
    content_hash: str
    body: bytes


def result_facts(resource: JSON) -> bytes | None:
    """The recognition facts stored beside a result's body (None for other types)."""
    found = facts(resource)
    return None if found is None else orjson.dumps(found)


def content_hash(resource: JSON) -> str:
    """Hash of the content a client controls: id and server-set meta fields are left out."""
    trimmed = {k: v for k, v in resource.items() if k not in ("id", "meta")}
    meta = resource.get("meta")
    if isinstance(meta, dict):
        rest = {k: v for k, v in meta.items() if k not in ("versionId", "lastUpdated", "source")}
        if rest:
            trimmed["meta"] = rest
    return hashlib.sha256(orjson.dumps(trimmed, option=orjson.OPT_SORT_KEYS)).hexdigest()


def create_engine(url: str, *, pool_size: int = 10, sqlite_cache_kib: int = 8192) -> Engine:
    """An engine with the pragmas and pooling each backend needs.

    ``sqlite_cache_kib`` is SQLite's page cache *per connection*. It was 64 MiB: a bulk load
    grew RSS by 90 MB over its first 40,000 results for it (the target is 50 MB in all),
    with no gain in speed; pages beyond it are read from the OS page cache, which holds the
    database file anyway.
    """
    if url.startswith("sqlite"):
        memory = url in ("sqlite://", "sqlite:///:memory:")
        engine = sa_create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            poolclass=StaticPool if memory else None,
        )

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute(f"PRAGMA cache_size=-{int(sqlite_cache_kib)}")
            cur.close()

        # pysqlite's own transaction handling defers BEGIN; take it over so that a
        # transaction that will write starts with BEGIN IMMEDIATE and never deadlocks.
        @event.listens_for(engine, "connect")
        def _no_autobegin(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None

        @event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            # straight on the driver: through exec_driver_sql this was half the cost of a
            # read transaction (71 -> 45 us of CPU), and a search is one
            if conn.info.get("read"):
                return  # Store.read: each statement is its own read transaction
            dbapi = conn.connection.dbapi_connection
            assert dbapi is not None
            dbapi.execute("BEGIN IMMEDIATE" if conn.info.get("write") else "BEGIN")

        return engine
    # No pre-ping: it cost a round trip on every checkout, a third of a search's time on
    # PostgreSQL. A connection the server dropped (restart, failover) fails its request with a
    # 503 the client retries; SQLAlchemy then invalidates the whole pool, so each process
    # reconnects after one such answer. Recycling bounds a connection's life below the idle
    # timeouts of the proxies and poolers met in front of PostgreSQL.
    return sa_create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800)


# The tables ingest reads while it writes, whose planner statistics Store.grew keeps current.
GROWING_TABLES = (
    "resource",
    "resource_version",
    "search_token",
    "search_string",
    "observation_index",
    "diagnostic_report_index",
    "imaging_study_index",
    "patient_index",
    "exchange_patient",
    "patient_record",
    "patient_identifier",
    "patient_traits",
    "patient_block",
)
ANALYZE_FLOOR = 1_000  # resources written before the first ANALYZE of a fresh index


class Store:
    def __init__(self, engine: Engine, *, tz: str = "Asia/Shanghai") -> None:
        self.engine = engine
        self.tz = tz
        self.dialect = engine.dialect.name
        if self.dialect == "postgresql":
            hold_writes(engine)
        self._growth = threading.Lock()
        self._size: float | None = None  # resources in the index at the last ANALYZE
        self._grown = 0  # resources this process wrote since
        self._analyzer: threading.Thread | None = None  # the latest ANALYZE (see grew)
        self._analyzing = threading.Lock()  # one ANALYZE at a time

    def grew(self, created: int) -> bool:
        """ANALYZE the tables ingest reads each time this process has doubled the index.

        PostgreSQL plans from statistics that autovacuum refreshes at most once a minute, and
        a fresh index under its first load outgrows them within seconds: its plans for
        "empty" tables (a hash of all of exchange_patient, a sequential scan of
        search_string) then stay in the connections' prepared statements. A bulk load of
        44,506 results spent 6 of PostgreSQL's 16 s of statements in one such plan. Doubling
        costs about log2(N / 1,000) ANALYZEs over a load of N resources; an index that is
        already large (its ``pg_class`` estimate) is left to autovacuum. Returns whether it
        started an ANALYZE. SQLite's planner has no statistics to go stale here.

        The ANALYZE runs in a thread of its own (:meth:`analyzed` waits for it): the writer
        waited for each before, 1.3 s of a 30 s load of 44,506 results, the last ones 0.4-0.6 s.
        """
        if self.dialect != "postgresql" or created <= 0:
            return False
        with self._growth:
            if self._size is None:
                with self.read() as conn:
                    estimate = conn.execute(
                        text("SELECT reltuples FROM pg_class WHERE oid = to_regclass('resource')")
                    ).scalar()
                self._size = max(float(estimate or 0), 0.0)  # -1: never analyzed
            self._grown += created
            if self._grown < max(ANALYZE_FLOOR, self._size):
                return False
            self._size += self._grown
            self._grown = 0
            self._analyzer = threading.Thread(target=self._analyze, name="hie-analyze", daemon=True)
            self._analyzer.start()
        return True

    def analyzed(self, timeout: float | None = None) -> None:
        """Wait for the latest ANALYZE :meth:`grew` started, if any."""
        analyzer = self._analyzer
        if analyzer is not None:
            analyzer.join(timeout)

    def _analyze(self) -> None:
        with self._analyzing:
            try:
                with self.read() as conn:
                    conn.execute(text(f"ANALYZE {', '.join(GROWING_TABLES)}"))
            except DBAPIError:  # statistics are an optimisation: autovacuum makes them too
                log.warning("ANALYZE of the growing index failed", exc_info=True)

    # -- transactions -------------------------------------------------------------------
    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction (SQLite: BEGIN IMMEDIATE, so writers queue instead of failing)."""
        with self.engine.connect() as conn:
            conn.info["write"] = True
            if self.dialect == "postgresql":
                conn.info[_HELD] = []
            try:
                with conn.begin():
                    yield conn
            finally:
                conn.info["write"] = False
                conn.info.pop(_HELD, None)

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read, with no transaction around it: each statement sees its own snapshot.

        That is what PostgreSQL's READ COMMITTED gives every statement inside a transaction
        anyway, so BEGIN and COMMIT bought a read nothing but two of its four round trips (a
        search: BEGIN, patient, search, COMMIT); in autocommit the driver sends neither.
        SQLite reads follow the same rule, which saves its BEGIN and COMMIT (~50 us of a
        search's ~1 ms of CPU) and keeps both backends' reads alike.
        """
        with self.engine.connect() as conn:
            if self.dialect == "postgresql":
                conn.execution_options(isolation_level="AUTOCOMMIT")
            else:
                conn.info["read"] = True
            try:
                with conn.begin():
                    yield conn
            finally:
                conn.info.pop("read", None)

    # -- resources ----------------------------------------------------------------------
    def current(self, conn: Connection, rtype: str, rid: str) -> Current | None:
        row = conn.execute(_CURRENT, {"_type": rtype, "_id": rid}).first()
        return Current(**row._mapping) if row else None

    def by_source(
        self, conn: Connection, rtype: str, hospital_id: str | None, source_id: str
    ) -> Current | None:
        if hospital_id is None:
            row = conn.execute(_BY_SOURCE_NO_HOSPITAL, {"_type": rtype, "_source": source_id})
        else:
            row = conn.execute(
                _BY_SOURCE, {"_type": rtype, "_hospital": hospital_id, "_source": source_id}
            )
        found = row.first()
        return Current(**found._mapping) if found else None

    def put(
        self,
        conn: Connection,
        resource: JSON,
        *,
        rid: str,
        prev: Current | None,
        now: datetime,
        hospital_id: str | None,
        source_id: str | None,
        patient_id: str | None,
        record_id: str | None = None,
        digest: str | None = None,
        buffer: WriteBuffer | None = None,
    ) -> tuple[int, bytes]:
        """Store ``resource`` as the next version of ``rid``; returns (version, body bytes).

        With ``buffer``, a resource new to the index is queued there (see WriteBuffer).
        """
        rtype = resource["resourceType"]
        version = (prev.version_id + 1) if prev else 1
        meta = {k: v for k, v in (resource.get("meta") or {}).items() if k != "source"}
        meta["versionId"] = str(version)
        meta["lastUpdated"] = instant(now)
        if hospital_id:
            meta["source"] = f"Organization/{hospital_id}"
        body_json = {"resourceType": rtype, "id": rid, "meta": meta}
        body_json.update((k, v) for k, v in resource.items() if k not in body_json)
        body = orjson.dumps(body_json)
        values = {
            "version_id": version,
            "last_updated": now,
            "hospital_id": hospital_id,
            "source_id": source_id,
            "patient_id": patient_id,
            "record_id": record_id,
            "deleted": False,
            "content_hash": digest or content_hash(resource),
            "body": body,
            "facts": result_facts(body_json),
        }
        queue = buffer if buffer is not None and prev is None else None

        def send(stmt: _Fast, rows: JSON | list[JSON]) -> None:
            if queue is not None:
                queue.add(stmt, rows)
            else:
                stmt(conn, rows)

        if prev:
            # The version being replaced moves to history; the current one lives only in
            # ``resource`` (one copy of each version: history used to hold the current too).
            _INSERT_RV(
                conn,
                {
                    "type": rtype,
                    "id": rid,
                    "version_id": prev.version_id,
                    "last_updated": prev.last_updated,
                    "deleted": prev.deleted,
                    "body": prev.body,
                    "patient_id": patient_id,
                },
            )
            if prev.patient_id != patient_id and prev.version_id > 1 and patient_id:
                _PATIENT_RV(conn, {"_type": rtype, "_id": rid, "_patient": patient_id})
            _UPDATE_R(conn, {"_type": rtype, "_id": rid, **values})
        else:
            send(_INSERT_R, {"type": rtype, "id": rid, **values})
        self._reindex(conn, body_json, rid, prev is not None, now, hospital_id, patient_id, send)
        return version, body

    def _reindex(
        self,
        conn: Connection,
        res: JSON,
        rid: str,
        existed: bool,
        now: datetime,
        hospital_id: str | None,
        patient_id: str | None,
        send: Callable[[_Fast, JSON | list[JSON]], None],
    ) -> None:
        rtype = res["resourceType"]
        table = TYPE_INDEX.get(rtype)
        if existed:
            self.unindex(conn, rtype, rid)
        if res.get("status") in HIDDEN_STATUSES:
            return  # entered-in-error: kept in history and readable, gone from search
        ex = extract(res, self.tz)
        if table is not None:
            row = {"id": rid, "last_updated": now, **ex.row}
            if "patient_id" in table.c:
                row["patient_id"] = patient_id
                row["hospital_id"] = hospital_id
            send(_INSERT_INDEX[rtype], row)
        if ex.tokens:
            send(
                _INSERT_TOKEN,
                [
                    {
                        "type": rtype,
                        "res_id": rid,
                        "param": p,
                        "system": s[:255],
                        "code": c[:255],
                        "patient_id": patient_id,
                        "date": ex.date,
                    }
                    for p, s, c in dict.fromkeys(ex.tokens)
                ],
            )
        if ex.strings:
            send(
                _INSERT_STRING,
                [
                    {"type": rtype, "res_id": rid, "param": p, "value": v[:255]}
                    for p, v in ex.strings
                ],
            )

    def unindex(self, conn: Connection, rtype: str, rid: str) -> None:
        if rtype in _DELETE_INDEX:
            _DELETE_INDEX[rtype](conn, {"_id": rid})
        _DELETE_TOKEN(conn, {"_type": rtype, "_id": rid})
        _DELETE_STRING(conn, {"_type": rtype, "_id": rid})

    def backfill_facts(self, batch: int = 2000) -> Iterator[int]:
        """Store the recognition facts of results written before migration 0009.

        Those rows work without them (``$prior-results`` reads their body instead), only
        slower. Walks the results by primary key, ``batch`` rows a transaction, and yields how
        many each transaction filled: safe to run while the exchange serves, to stop, and to
        run again (it only touches rows that have none).
        """
        for rtype in sorted(RESULT_TYPES):
            last = ""
            while True:
                with self.write() as conn:
                    rows = conn.execute(
                        select(R.c.id, R.c.body)
                        .where(R.c.type == rtype, R.c.id > last, R.c.facts.is_(None))
                        .order_by(R.c.id)
                        .limit(batch)
                    ).all()
                    if not rows:
                        break
                    last = rows[-1].id
                    filled = [
                        {"_type": rtype, "_id": r.id, "facts": result_facts(orjson.loads(r.body))}
                        for r in rows
                    ]
                    conn.execute(_FILL_FACTS, filled)
                yield len(rows)

    def repoint_patient(
        self, conn: Connection, new_patient: str, *, record_ids: Sequence[str]
    ) -> int:
        """Move everything about ``record_ids`` (hospital Patient records) to ``new_patient``.

        Results follow their patient on link, unlink and merge without touching their JSON:
        a result's subject names the hospital's record; only the index's patient column moves.
        """
        if not record_ids:
            return 0
        records = list(record_ids)
        moved = conn.execute(
            update(R).where(R.c.record_id.in_(records)).values(patient_id=new_patient)
        ).rowcount
        # The rows keyed by (type, id) follow in one statement per table, whatever the count
        # of results moved (a merge moves a patient's whole history).
        of_records = select(R.c.type, R.c.id).where(R.c.record_id.in_(records))
        for table, key in ((TOKEN, TOKEN.c.res_id), (RV, RV.c.id)):
            conn.execute(
                update(table)
                .where(tuple_(table.c.type, key).in_(of_records))
                .values(patient_id=new_patient)
            )
        for rtype, table in TYPE_INDEX.items():
            if "patient_id" in table.c:
                ids = select(R.c.id).where(R.c.record_id.in_(records), R.c.type == rtype)
                conn.execute(
                    update(table).where(table.c.id.in_(ids)).values(patient_id=new_patient)
                )
        return int(moved)

    # -- reads --------------------------------------------------------------------------
    def get(self, rtype: str, rid: str) -> Current | None:
        with self.read() as conn:
            return self.current(conn, rtype, rid)

    def version(self, rtype: str, rid: str, vid: int) -> tuple[bytes, datetime, bool] | None:
        with self.read() as conn:
            cur = self.current(conn, rtype, rid)
            if cur is not None and cur.version_id == vid:
                return cur.body, cur.last_updated, cur.deleted
            row = conn.execute(
                select(RV.c.body, RV.c.last_updated, RV.c.deleted).where(
                    and_(RV.c.type == rtype, RV.c.id == rid, RV.c.version_id == vid)
                )
            ).first()
        return (row.body, row.last_updated, row.deleted) if row else None

    def history(self, rtype: str, rid: str, limit: int) -> list[tuple[int, datetime, bytes]]:
        with self.read() as conn:
            return self.history_in(conn, rtype, rid, limit)[:limit]

    def had_content(self, conn: Connection, rtype: str, rid: str, digest: str) -> bool:
        """Whether a superseded version of the resource had content of hash ``digest``
        (:func:`content_hash`; deleted versions left out). Read only when a replay is in
        question: history keeps bodies, not their hashes."""
        rows = conn.execute(
            select(RV.c.body).where(RV.c.type == rtype, RV.c.id == rid, RV.c.deleted.is_(False))
        )
        return any(content_hash(orjson.loads(r.body)) == digest for r in rows)

    def set_patient(self, conn: Connection, rtype: str, rid: str, patient_id: str) -> None:
        """Point one resource's index rows at an exchange patient."""
        params = {"_type": rtype, "_id": rid, "_patient": patient_id}
        _PATIENT_R(conn, params)
        _PATIENT_TOKEN(conn, params)
        _PATIENT_RV(conn, params)
        if rtype in _PATIENT_INDEX:
            _PATIENT_INDEX[rtype](conn, {"_id": rid, "_patient": patient_id})

    def history_in(
        self, conn: Connection, rtype: str, rid: str, limit: int | None = None
    ) -> list[tuple[int, datetime, bytes]]:
        """Every version of a resource, newest first, inside the caller's transaction: the
        current one from ``resource``, the superseded ones from ``resource_version``."""
        cur = self.current(conn, rtype, rid)
        if cur is None:
            return []
        stmt = (
            select(RV.c.version_id, RV.c.last_updated, RV.c.body)
            .where(RV.c.type == rtype, RV.c.id == rid, RV.c.version_id < cur.version_id)
            .order_by(RV.c.version_id.desc())
        )
        if limit is not None:
            stmt = stmt.limit(max(limit - 1, 0))
        rows = conn.execute(stmt).all()
        return [(cur.version_id, cur.last_updated, cur.body)] + [
            (r.version_id, r.last_updated, r.body) for r in rows
        ]
