"""FHIR search parameters → one indexed SELECT over the index tables.

The parameters each type supports are declared in ``PARAMS``; the CapabilityStatement is built
from the same table, so what the server says it supports is what it does. Values are always
bound parameters, never spliced into SQL.
"""

from __future__ import annotations

import base64
from collections import namedtuple
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    and_,
    bindparam,
    false,
    func,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from hie.fhirtime import EPOCH, BadDate, parse_range
from hie.index import tables as t
from hie.index.extract import normalise_name
from hie.index.patients import PatientRegistry
from hie.index.store import STRING, TOKEN, TYPE_INDEX, R
from hie.outcome import Invalid, NotSupported

EP = t.ExchangePatient.__table__  # type: ignore[attr-defined]
_PATIENT = select(EP.c.id, EP.c.merged_into).where(EP.c.id == bindparam("_v0"))
_SHAPES = 512  # statements kept by query shape; a handful are hot, the cap bounds odd ones
PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # token | date | reference | string
    doc: str
    column: str | None = None  # date: column of the type index; token: search_token param
    # a token served from the type index's column of that name, not from search_token: a
    # single-valued code without a system (status) needs no row per resource there
    row: bool = False


_RESULT_PARAMS = [
    Param("patient", "reference", "Who the result is about (exchange or hospital patient id)"),
    Param("subject", "reference", "Same as patient (only Patient subjects are stored)"),
    Param("code", "token", "The test: LOINC or the hospital's local code", "code"),
    Param("category", "token", "laboratory, imaging, ...", "category"),
    Param("date", "date", "When the result applies (effective[x])", "effective"),
    Param("status", "token", "final, preliminary, amended, corrected, cancelled", "status", True),
    Param("identifier", "token", "The hospital's own identifier of the result", "identifier"),
]
PARAMS: dict[str, list[Param]] = {
    "Observation": _RESULT_PARAMS,
    "DiagnosticReport": _RESULT_PARAMS,
    "ImagingStudy": [
        Param("patient", "reference", "Who the study is about"),
        Param("subject", "reference", "Same as patient"),
        Param("modality", "token", "DICOM modality of any series (CT, MR, DX, US...)", "modality"),
        Param("bodysite", "token", "Body site examined (SNOMED CT)", "bodysite"),
        Param("started", "date", "When the study started", "started"),
        Param("identifier", "token", "StudyInstanceUID (urn:dicom:uid) or accession", "identifier"),
        Param("status", "token", "available, cancelled, ...", "status", True),
    ],
    "Patient": [
        Param("identifier", "token", "National ID, passport, any hospital's MRN", "identifier"),
        Param("name", "string", "Any part of a name: characters, pinyin or Latin; prefix match"),
        Param("birthdate", "date", "Date of birth", "birthdate"),
        Param("gender", "token", "male | female | other | unknown", "gender"),
    ],
    "Organization": [
        Param("identifier", "token", "Identifier of the organisation", "identifier"),
        Param("name", "string", "Chinese or English name, prefix match"),
    ],
    "Endpoint": [Param("identifier", "token", "Identifier of the endpoint", "identifier")],
    "Specimen": [Param("identifier", "token", "Identifier of the specimen", "identifier")],
}
COMMON = ("_id", "_lastUpdated", "_count", "_sort", "_summary", "_include", "_total", "_format")
CHAINS = ("patient.identifier", "subject.identifier", "subject:Patient.identifier")

# _include targets: "Type:param" → (JSON element holding references, target type)
INCLUDES: dict[str, tuple[str, str]] = {
    "DiagnosticReport:result": ("result", "Observation"),
    "DiagnosticReport:subject": ("subject", "Patient"),
    "DiagnosticReport:patient": ("subject", "Patient"),
    "DiagnosticReport:imaging-study": ("imagingStudy", "ImagingStudy"),
    "Observation:subject": ("subject", "Patient"),
    "Observation:patient": ("subject", "Patient"),
    "Observation:specimen": ("specimen", "Specimen"),
    "Observation:performer": ("performer", "Organization"),
    "ImagingStudy:endpoint": ("endpoint", "Endpoint"),
    "ImagingStudy:subject": ("subject", "Patient"),
    "ImagingStudy:patient": ("subject", "Patient"),
}
SORTS = ("date", "-date", "_lastUpdated", "-_lastUpdated", "started", "-started")


# A condition as its shape (hashable, no values), its values, and how to build it from
# stand-ins for the values: the values themselves, or bound parameters of a cached statement.
Build = Callable[[Sequence[Any]], ColumnElement[bool]]
Cond = tuple[Hashable, tuple[Any, ...], Build]


@dataclass
class Query:
    """A parsed search: what to select, how to sort, where the page starts."""

    rtype: str
    where: list[Cond] = field(default_factory=list)
    sort: str = "_lastUpdated"
    count: int = 50
    summary_count: bool = False
    total: bool = False
    includes: list[str] = field(default_factory=list)
    after: tuple[Any, str] | None = None
    ignored: list[str] = field(default_factory=list)
    patient_ids: list[str] = field(default_factory=list)
    by_patient: bool = False  # a patient parameter was given: only patient_ids' rows
    tokens: list[tuple[str, list[str]]] = field(default_factory=list)  # (param, values)
    impossible: bool = False  # e.g. a patient.identifier nobody has: no rows, no SQL

    def shape(self) -> tuple[Hashable, list[Any]]:
        """What the statement depends on besides values, and the values in binding order.

        Two queries of one shape (same parameters, modifiers, value counts, sort, page size)
        run one statement with different bound values, so it is built and compiled once.
        """
        values: list[Any] = []
        where = []
        for key, vals, _ in self.where:
            where.append(key)
            values += vals
        tokens = []
        for param, raw in self.tokens:
            kinds, parts = _token_shape(raw)
            tokens.append((param, kinds))
            values += parts
        values += self.patient_ids
        if self.after is not None:
            values += self.after
        key = (
            self.rtype,
            tuple(where),
            tuple(tokens),
            len(self.patient_ids),
            self.by_patient,
            self.impossible,
            self.sort,
            self.count,
            self.after is not None,
        )
        return key, values

    def conditions(self, args: Sequence[Any] | None = None) -> list[ColumnElement[bool]]:
        """Every condition, built once the whole query string is read.

        ``args`` stands for :meth:`shape`'s values in order (bound parameters for a cached
        statement); by default the values themselves.

        Token conditions are built here, not as each parameter is read, so that they carry
        the patient whatever the parameters' order (``code=`` before ``patient=`` used to
        search the code's rows across the whole city). When a token condition carries the
        patient, the resource row's own patient test is kept off its index on SQLite: the
        token index (patient, type, param, code, date) then drives and resources are read by
        primary key, instead of every one of the patient's resources of the type being read
        and tested against the token list.
        """
        if args is None:
            args = self.shape()[1]
        pos = 0
        out = []
        for _, vals, build in self.where:
            out.append(build(args[pos : pos + len(vals)]))
            pos += len(vals)
        shapes = []
        for param, raw in self.tokens:
            kinds, parts = _token_shape(raw)
            shapes.append((param, kinds, args[pos : pos + len(parts)]))
            pos += len(parts)
        patients = list(args[pos : pos + len(self.patient_ids)])
        tokens = [_token_build(self.rtype, p, k, a, patients) for p, k, a in shapes]
        out += tokens
        if self.by_patient:
            column: Any = R.c.patient_id
            if tokens and patients and self.rtype != "Patient":
                column = unindexed(column)
            out.append(column.in_(patients))
        return out

    def after_args(self, args: Sequence[Any]) -> Sequence[Any]:
        """The stand-ins of the page start (the last two of :meth:`shape`'s values)."""
        return args[-2:]


def _token(value: str) -> tuple[str | None, str | None]:
    """system|code, |code (no system), system| (any code), code (any system)."""
    if "|" in value:
        system, code = value.split("|", 1)
        return system, (code or None)
    return None, value


def _token_shape(values: list[str]) -> tuple[tuple[tuple[bool, bool], ...], list[str]]:
    """Per value whether it has a code and a system; and those parts in binding order."""
    kinds = []
    out: list[str] = []
    for raw in values:
        system, code = _token(raw)
        kinds.append((code is not None, system is not None))
        out += [v for v in (code, system) if v is not None]
    return tuple(kinds), out


def _token_build(
    rtype: str,
    param: str,
    kinds: tuple[tuple[bool, bool], ...],
    args: Sequence[Any],
    patient_ids: Sequence[Any],
) -> Any:
    """``resource.id IN (ids from search_token)``: the token index drives the lookup.

    A correlated EXISTS made both planners walk every resource of the type and probe the
    tokens row by row (Patient?identifier= read all patients); an uncorrelated IN lets them
    start from ix_token_code (or ix_token_patient when the patient is known).
    """
    alts = []
    pos = 0
    for has_code, has_system in kinds:
        conds = [TOKEN.c.type == rtype, TOKEN.c.param == param]
        if patient_ids and rtype != "Patient":
            conds.append(TOKEN.c.patient_id.in_(patient_ids))
        if has_code:
            conds.append(TOKEN.c.code == args[pos])
            pos += 1
        if has_system:
            conds.append(TOKEN.c.system == args[pos])
            pos += 1
        alts.append(and_(*conds))
    return R.c.id.in_(select(TOKEN.c.res_id).where(or_(*alts)))


def _token_cond(rtype: str, param: str, values: list[str], patient_ids: list[str]) -> Any:
    """The token condition with its values written in (conditional writes)."""
    kinds, args = _token_shape(values)
    return _token_build(rtype, param, kinds, args, patient_ids)


def _row_tokens(column: Any, values: list[str]) -> Cond:
    """Token values (OR) matched against a type-index column holding a code without a system.

    ``code`` and ``|code`` match the column; ``system|code`` or ``system|`` with a system
    match nothing (no system is stored), ``|`` matches every row: as the ``search_token``
    rows with an empty system these replace did (migration 0007).
    """
    kinds: list[tuple[bool, bool]] = []  # per value: has a code, can match (no/empty system)
    codes: list[str] = []
    for raw in values:
        system, code = _token(raw)
        kinds.append((code is not None, not system))
        if code is not None:
            codes.append(code)
    shape = tuple(kinds)

    def build(args: Sequence[Any]) -> ColumnElement[bool]:
        alts: list[ColumnElement[bool]] = []
        pos = 0
        for has_code, possible in shape:
            if has_code:
                if possible:
                    alts.append(column == args[pos])
                pos += 1
            elif possible:
                alts.append(true())
        if not alts:
            return false()
        return or_(*alts) if len(alts) > 1 else alts[0]

    return ("row-token", column.table.name, column.name, shape), tuple(codes), build


def _date_shape(raw: str, tz: str, name: str) -> tuple[str, tuple[Any, ...]]:
    """A date search value → its prefix and the bounds the condition compares with."""
    prefix = raw[:2] if raw[:2] in PREFIXES else "eq"
    value = raw[2:] if raw[:2] in PREFIXES else raw
    try:
        low, high = parse_range(value, tz)
    except BadDate as exc:
        raise Invalid(f"{name}: {exc}", expression=name) from None
    if prefix in ("eq", "ap", "ne"):
        return prefix, (low, high)
    if prefix in ("gt", "sa", "le"):
        return prefix, (high,)
    return prefix, (low,)  # ge, lt, eb


def _date_build(column: Any, prefix: str, args: Sequence[Any]) -> ColumnElement[bool]:
    if prefix in ("eq", "ap"):
        return and_(column >= args[0], column < args[1])
    if prefix == "ne":
        return or_(column < args[0], column >= args[1])
    if prefix in ("gt", "sa", "ge"):
        return column >= args[0]
    return column < args[0]  # lt, eb, le


def _dates(column: Any, raws: list[str], tz: str, name: str) -> Cond:
    """Comma-separated date values (OR) on one column, as a shaped condition."""
    shapes = [_date_shape(v, tz, name) for v in raws]
    prefixes = tuple(p for p, _ in shapes)
    values = tuple(v for _, vals in shapes for v in vals)

    def build(args: Sequence[Any]) -> ColumnElement[bool]:
        alts, pos = [], 0
        for prefix, vals in shapes:
            alts.append(_date_build(column, prefix, args[pos : pos + len(vals)]))
            pos += len(vals)
        return or_(*alts) if len(alts) > 1 else alts[0]

    return ("date", column.table.name, column.name, prefixes), values, build


def encode_page(after: tuple[Any, str]) -> str:
    value, rid = after
    v = value.isoformat() if isinstance(value, datetime) else value
    return base64.urlsafe_b64encode(orjson.dumps([v, rid])).decode().rstrip("=")


def decode_page(token: str) -> tuple[Any, str]:
    try:
        v, rid = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        # every sort key is an aware datetime (last_updated or a date column): anything
        # else (a number, null, a naive time) would reach the SQL and fail there
        if not isinstance(v, str) or not isinstance(rid, str):
            raise ValueError
        value = datetime.fromisoformat(v)
        if value.tzinfo is None:
            raise ValueError
        return value, rid
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise Invalid(
            "The paging token is not one this server issued", expression="_page"
        ) from None


class Searcher:
    def __init__(self, registry: PatientRegistry, *, tz: str, default_count: int, max_count: int):
        self.registry = registry
        self.tz = tz
        self.default_count = default_count
        self.max_count = max_count
        self._shapes: dict[Hashable, Select[Any]] = {}
        self._rendered = RenderedCache()  # by query shape, and the patient row

    def parse(
        self, conn: Connection, rtype: str, params: list[tuple[str, str]], *, strict: bool
    ) -> Query:
        q = Query(rtype, count=self.default_count)
        known = {p.name: p for p in PARAMS.get(rtype, [])}
        index = TYPE_INDEX.get(rtype)
        for raw_name, value in params:
            _no_nul(raw_name, value)
            name, _, modifier = raw_name.partition(":")
            if raw_name in CHAINS and "patient" in known:
                self._chain(conn, q, value)
                continue
            if name in ("_page",):
                q.after = decode_page(value)
                continue
            if name in COMMON:
                self._common(q, name, value, index)
                continue
            param = known.get(name)
            if (
                param is None
                or modifier not in ("", "exact", "missing")
                or (modifier and param.kind not in ("string", "token"))
            ):
                if strict:
                    raise NotSupported(
                        f"Unknown or unsupported search parameter {raw_name!r} for {rtype}",
                        expression=raw_name,
                    )
                q.ignored.append(raw_name)
                continue
            values = [v for v in value.split(",") if v != ""]
            if not values:
                raise Invalid(f"Search parameter {raw_name!r} has no value", expression=raw_name)
            self._apply(conn, q, param, modifier, values, index)
        return q

    def _common(self, q: Query, name: str, value: str, index: Any) -> None:
        if name == "_id":
            ids = tuple(value.split(","))
            q.where.append((("_id", len(ids)), ids, lambda args: R.c.id.in_(list(args))))
        elif name == "_lastUpdated":
            q.where.append(_dates(R.c.last_updated, [value], self.tz, "_lastUpdated"))
        elif name == "_count":
            if not (value.isascii() and value.isdigit()):  # "²".isdigit() is True too
                raise Invalid("_count must be a non-negative integer", expression="_count")
            q.count = min(int(value), self.max_count)
        elif name == "_sort":
            if value not in SORTS:
                raise Invalid(f"_sort supports {', '.join(SORTS)}", expression="_sort")
            if value.lstrip("-") in ("date", "started") and _date_column(index) is None:
                raise Invalid(f"{q.rtype} has no date to sort by", expression="_sort")
            q.sort = value
        elif name == "_summary":
            if value == "count":
                q.summary_count = True
            elif value != "false":
                raise NotSupported("Only _summary=count is supported", expression="_summary")
        elif name == "_total":
            q.total = value == "accurate"
        elif name == "_include":
            key = value.removesuffix(":iterate")
            if key not in INCLUDES or not key.startswith(q.rtype + ":"):
                raise NotSupported(f"_include={value} is not supported", expression="_include")
            q.includes.append(key)

    def patient(self, conn: Connection, value: str) -> str | None:
        """The exchange patient ``value`` (a ``Patient/id`` or id) stands for; None: no one."""
        found = self._patients(conn, [value])
        return found[0] if found else None

    def _patients(self, conn: Connection, values: list[str]) -> list[str]:
        """Exchange patients of ``patient=`` values. Nearly always the value is an exchange
        patient that was never merged: that is one rendered read (:class:`Rendered`); any
        other value (a hospital record, a merged patient, no one) goes to the registry."""
        out = []
        for v in values:
            rid = v.rsplit("/", 1)[-1]
            row = self._rendered.get(conn, "patient row", lambda: _PATIENT).rows(conn, (rid,))
            if row and row[0].merged_into is None:
                out.append(rid)
                continue
            found = self.registry.resolve(conn, rid)
            if found:
                out.append(found[0])
        return out

    def _chain(self, conn: Connection, q: Query, value: str) -> None:
        ids = []
        for v in value.split(","):
            system, code = _token(v)
            if system is None or code is None:
                raise Invalid(
                    "patient.identifier needs system|value", expression="patient.identifier"
                )
            found = self.registry.by_identifier(conn, system, code)
            if found:
                ids.append(found)
        self._restrict_patients(q, ids)

    def _restrict_patients(self, q: Query, ids: list[str]) -> None:
        if q.patient_ids:
            ids = [i for i in ids if i in q.patient_ids]
        q.patient_ids = ids
        q.by_patient = True
        if not ids:
            q.impossible = True

    def _apply(
        self, conn: Connection, q: Query, param: Param, modifier: str, values: list[str], index: Any
    ) -> None:
        if modifier == "missing":
            raise NotSupported(":missing is not supported", expression=param.name)
        if param.kind == "reference":
            self._restrict_patients(q, self._patients(conn, values))
        elif param.kind == "token":
            assert param.column
            if param.row and index is not None and param.column in index.c:
                q.where.append(_row_tokens(index.c[param.column], values))
            else:
                q.tokens.append((param.column, values))
        elif param.kind == "date":
            col = index.c[param.column] if index is not None else None
            if col is None:
                raise NotSupported(f"{param.name} cannot be searched", expression=param.name)
            # comma = OR for dates too (R4 §3.1.1.5.8); repeating the parameter is AND
            q.where.append(_dates(col, values, self.tz, param.name))
        elif param.kind == "string":
            q.where.append(_strings(q.rtype, param.name, modifier, values))

    # -- execution -----------------------------------------------------------------------
    def statement(self, q: Query) -> tuple[Select[Any], Callable[[Any], tuple[Any, str]]]:
        """The search's statement with its values written in (one-off use, EXPLAIN)."""
        return self._build(q, q.shape()[1]), self._sort_value(q)

    def prepared(
        self, q: Query
    ) -> tuple[Select[Any], dict[str, Any], Callable[[Any], tuple[Any, str]]]:
        """The statement for the query's shape (built once) and the values to bind.

        Building a SELECT from expression objects cost about as much Python time per search
        as running it; searches of one shape now share the statement and its compiled form.
        """
        key, values = q.shape()
        names = [f"_v{i}" for i in range(len(values))]
        stmt = self._shapes.get(key)
        if stmt is None:
            if len(self._shapes) >= _SHAPES:
                self._shapes.clear()
            stmt = self._shapes[key] = self._build(q, [bindparam(n) for n in names])
        return stmt, dict(zip(names, values, strict=True)), self._sort_value(q)

    def run(self, conn: Connection, q: Query) -> tuple[list[Any], Callable[[Any], tuple[Any, str]]]:
        """The search's rows (one more than the page, to know there is a next page), read by
        the statement of its shape rendered once and run on the connection's DBAPI cursor.

        ``Connection.execute`` of a cached statement still cost about 60 µs of Python per
        search (execution context, parameter and result set-up, events), as much as SQLite
        takes for the query itself. Rows have the columns' names as attributes and the
        values SQLAlchemy would give (the columns' own result processing).
        """
        key, values = q.shape()
        rendered = self._rendered.get(conn, key, lambda: self.prepared(q)[0])
        return rendered.rows(conn, values), self._sort_value(q)

    def _build(self, q: Query, args: Sequence[Any]) -> Select[Any]:
        index = TYPE_INDEX.get(q.rtype)
        base = select(R.c.id, R.c.body, R.c.last_updated, R.c.patient_id)
        date_col = self._date_col(q)
        if index is not None:
            base = base.add_columns(*(index.c[c] for c in ("effective", "started") if c in index.c))
            base = base.join(index, index.c.id == R.c.id)
        cond = [R.c.type == q.rtype, not_(R.c.deleted), *q.conditions(args)]
        if q.impossible:
            cond.append(false())
        desc = q.sort.startswith("-")
        key = func.coalesce(date_col, EPOCH) if date_col is not None else R.c.last_updated
        if q.patient_ids and date_col is None:
            # One patient's rows are few: read them through ix_resource_patient and sort.
            # Without this SQLite walks ix_resource_updated in order over the whole city
            # (to save the sort) and tests every row: O(city) instead of O(the patient).
            key = unindexed(key)
        if q.after is not None:
            value, rid = q.after_args(args)
            if desc:
                cond.append(or_(key < value, and_(key == value, R.c.id < rid)))
            else:
                cond.append(or_(key > value, and_(key == value, R.c.id > rid)))
        order = [key.desc(), R.c.id.desc()] if desc else [key.asc(), R.c.id.asc()]
        return base.where(*cond).order_by(*order).limit(q.count + 1)

    @staticmethod
    def _date_col(q: Query) -> Any:
        if q.sort.lstrip("-") in ("date", "started"):
            return _date_column(TYPE_INDEX.get(q.rtype))
        return None

    def _sort_value(self, q: Query) -> Callable[[Any], tuple[Any, str]]:
        date_col = self._date_col(q)

        def sort_value(row: Any) -> tuple[Any, str]:
            if date_col is not None:
                v = getattr(row, date_col.name)
                return (v or EPOCH, row.id)
            return (row.last_updated, row.id)

        return sort_value

    def count(self, conn: Connection, q: Query) -> int:
        if q.impossible:
            return 0
        index = TYPE_INDEX.get(q.rtype)
        stmt = select(func.count()).select_from(R)
        if index is not None:
            stmt = stmt.join(index, index.c.id == R.c.id)
        return int(
            conn.execute(
                stmt.where(R.c.type == q.rtype, not_(R.c.deleted), *q.conditions())
            ).scalar_one()
        )


class RenderedCache:
    """Rendered statements by (key, dialect), each built and rendered on first use; at most
    ``_SHAPES`` kept (a handful are hot; the cap bounds odd ones)."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[Hashable, str], Rendered] = {}

    def get(self, conn: Connection, key: Hashable, build: Callable[[], Any]) -> Rendered:
        found = self._by_key.get((key, conn.dialect.name))
        if found is None:
            if len(self._by_key) >= _SHAPES:
                self._by_key.clear()
            found = self._by_key[(key, conn.dialect.name)] = Rendered(build(), conn.dialect)
        return found


class Rendered:
    """A read compiled once for a dialect and run on the DBAPI cursor, inside the caller's
    connection: values bound (``_v0``, ``_v1``... in :meth:`Query.shape`'s order, or the
    caller's) with their columns' bind processing, constants (type, param, LIMIT) processed
    once, and result values through the columns' result processing. What
    ``hie.index.store._Fast`` does for writes, for the hot reads (search, ``$prior-results``)."""

    def __init__(self, stmt: Select[Any], dialect: Any) -> None:
        comp = stmt.compile(dialect=dialect)
        # an expanding IN is rendered per execution: such a statement (none is built today,
        # each value is bound on its own) goes through SQLAlchemy
        self.stmt = stmt if "POSTCOMPILE" in comp.string else None
        self.sql = comp.string
        self.positional = bool(comp.positional)
        self.names = list(comp.positiontup or ()) if comp.positional else list(comp.binds)
        self.plan: list[tuple[int, Any, Any]] = []  # (value index or -1, constant, processor)
        for name in self.names:
            bind = comp.binds[name]
            process = bind.type._cached_bind_processor(dialect)
            if name.startswith("_v") and name[2:].isdigit():
                self.plan.append((int(name[2:]), None, process))
            else:
                value = bind.effective_value
                self.plan.append((-1, process(value) if process else value, None))
        self.binary = dialect.name == "postgresql"
        columns = list(stmt.selected_columns)
        self.row: Any = namedtuple("SearchRow", [c.key for c in columns])  # type: ignore[misc]
        self.results = [
            (i, p)
            for i, c in enumerate(columns)
            if (p := c.type._cached_result_processor(dialect, None)) is not None
        ]

    def rows(self, conn: Connection, values: Sequence[Any]) -> list[Any]:
        if self.stmt is not None:
            binds = {f"_v{i}": v for i, v in enumerate(values)}
            return list(conn.execute(self.stmt, binds).all())
        args: list[Any] = [
            const if i < 0 else (process(values[i]) if process else values[i])
            for i, const, process in self.plan
        ]
        params: Any = tuple(args) if self.positional else dict(zip(self.names, args, strict=True))
        dbapi = conn.dialect.loaded_dbapi
        driver: Any = conn.connection.driver_connection
        # PostgreSQL: rows in binary format. Bodies are bytea, which the text format sends as
        # hex (twice the bytes, encoded by the server and decoded here): a $prior-results
        # read of ~28 results (~70 KB) took 0.69-0.89 ms in text, 0.53-0.57 ms in binary
        # (bare psycopg, city-small, 200 questions). Other types load to the same values.
        cursor = driver.cursor(binary=True) if self.binary else driver.cursor()
        listeners = conn.dispatch.before_cursor_execute
        if listeners:  # what watches SQL (logging, the query-plan tests) still sees this one
            for listen in listeners:
                listen(conn, cursor, self.sql, params, None, False)
        try:
            cursor.execute(self.sql, params)
            raw = cursor.fetchall()
        except dbapi.Error as exc:
            raise DBAPIError.instance(self.sql, params, exc, dbapi.Error) from exc
        finally:
            cursor.close()
        make, results = self.row._make, self.results
        if not results:
            return [make(r) for r in raw]
        out = []
        for r in raw:
            row = list(r)
            for i, process in results:
                row[i] = process(row[i])
            out.append(make(row))
        return out


def _strings(rtype: str, name: str, modifier: str, values: list[str]) -> Cond:
    """Name alternatives (OR): exact, or a prefix as a range (value >= p AND value < p⁺).

    Both backends walk ix_string_value for a range, where LIKE 'p%' reads every name.
    Uncorrelated, like tokens: read ix_string_value, not every resource of the type.
    """
    kinds, bounds = [], []
    for v in values:
        norm = normalise_name(v)
        if modifier == "exact" or not norm:
            kinds.append(True)
            bounds.append(norm)
        else:
            kinds.append(False)
            bounds += [norm, _after_prefix(norm)]

    def build(args: Sequence[Any]) -> ColumnElement[bool]:
        alts, pos = [], 0
        for exact in kinds:
            if exact:
                cond = STRING.c.value == args[pos]
                pos += 1
            else:
                cond = and_(STRING.c.value >= args[pos], STRING.c.value < args[pos + 1])
                pos += 2
            alts.append(and_(STRING.c.type == rtype, STRING.c.param == name, cond))
        return R.c.id.in_(select(STRING.c.res_id).where(or_(*alts)))

    return ("string", name, tuple(kinds)), tuple(bounds), build


def _no_nul(name: str, value: str) -> None:
    """NUL cannot be bound to PostgreSQL text (a 500 there, a silent miss on SQLite)."""
    if "\x00" in name or "\x00" in value:
        raise Invalid(
            "Search parameters must not contain the NUL character (U+0000)",
            expression=name.replace("\x00", "") or None,
        )


def _date_column(index: Any) -> Any:
    """The column ``_sort=date`` orders by, or None for a type without one (Patient)."""
    if index is None:
        return None
    for name in ("effective", "started"):
        if name in index.c:
            return index.c[name]
    return None


class unindexed(FunctionElement[Any]):
    """``+column`` on SQLite (the documented way to keep the planner from using an index for
    a term, sqlite.org/optoverview.html §"Disqualifying WHERE Clause Terms Using Unary-+");
    the bare column elsewhere, where the planner weighs the patient index by statistics."""

    inherit_cache = True

    def __init__(self, column: Any) -> None:
        super().__init__(column)
        self.type = column.type


@compiles(unindexed)
def _unindexed_default(element: unindexed, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(element.clauses, **kw))


@compiles(unindexed, "sqlite")
def _unindexed_sqlite(element: unindexed, compiler: Any, **kw: Any) -> str:
    return "+" + str(compiler.process(element.clauses, **kw))


def _after_prefix(value: str) -> str:
    """The least string greater than every string starting with ``value``."""
    return value[:-1] + chr(ord(value[-1]) + 1) if ord(value[-1]) < 0x10FFFF else value + "\uffff"


__all__ = ["INCLUDES", "PARAMS", "Query", "Searcher", "t"]
