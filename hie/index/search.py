"""FHIR search parameters → one indexed SELECT over the index tables.

The parameters each type supports are declared in ``PARAMS``; the CapabilityStatement is built
from the same table, so what the server says it supports is what it does. Values are always
bound parameters, never spliced into SQL.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    and_,
    false,
    func,
    not_,
    or_,
    select,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from hie.fhirtime import EPOCH, BadDate, parse_range
from hie.index import tables as t
from hie.index.extract import normalise_name
from hie.index.patients import PatientRegistry
from hie.index.store import STRING, TOKEN, TYPE_INDEX, R
from hie.outcome import Invalid, NotSupported

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # token | date | reference | string
    doc: str
    column: str | None = None  # date: column of the type index; token: search_token param


_RESULT_PARAMS = [
    Param("patient", "reference", "Who the result is about (exchange or hospital patient id)"),
    Param("subject", "reference", "Same as patient (only Patient subjects are stored)"),
    Param("code", "token", "The test: LOINC or the hospital's local code", "code"),
    Param("category", "token", "laboratory, imaging, ...", "category"),
    Param("date", "date", "When the result applies (effective[x])", "effective"),
    Param("status", "token", "final, preliminary, amended, corrected, cancelled", "status"),
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
        Param("status", "token", "available, cancelled, ...", "status"),
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


@dataclass
class Query:
    """A parsed search: what to select, how to sort, where the page starts."""

    rtype: str
    where: list[ColumnElement[bool]] = field(default_factory=list)
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

    def conditions(self) -> list[ColumnElement[bool]]:
        """Every condition, built once the whole query string is read.

        Token conditions are built here, not as each parameter is read, so that they carry
        the patient whatever the parameters' order (``code=`` before ``patient=`` used to
        search the code's rows across the whole city). When a token condition carries the
        patient, the resource row's own patient test is kept off its index on SQLite: the
        token index (patient, type, param, code, date) then drives and resources are read by
        primary key, instead of every one of the patient's resources of the type being read
        and tested against the token list.
        """
        out = list(self.where)
        tokens = [_token_cond(self.rtype, p, v, self.patient_ids) for p, v in self.tokens]
        out += tokens
        if self.by_patient:
            column: Any = R.c.patient_id
            if tokens and self.patient_ids and self.rtype != "Patient":
                column = unindexed(column)
            out.append(column.in_(self.patient_ids))
        return out


def _token(value: str) -> tuple[str | None, str | None]:
    """system|code, |code (no system), system| (any code), code (any system)."""
    if "|" in value:
        system, code = value.split("|", 1)
        return system, (code or None)
    return None, value


def _token_cond(rtype: str, param: str, values: list[str], patient_ids: list[str]) -> Any:
    """``resource.id IN (ids from search_token)``: the token index drives the lookup.

    A correlated EXISTS made both planners walk every resource of the type and probe the
    tokens row by row (Patient?identifier= read all patients); an uncorrelated IN lets them
    start from ix_token_code (or ix_token_patient when the patient is known).
    """
    alts = []
    for raw in values:
        system, code = _token(raw)
        conds = [TOKEN.c.type == rtype, TOKEN.c.param == param]
        if patient_ids and rtype != "Patient":
            conds.append(TOKEN.c.patient_id.in_(patient_ids))
        if code is not None:
            conds.append(TOKEN.c.code == code)
        if system is not None:
            conds.append(TOKEN.c.system == system)
        alts.append(and_(*conds))
    return R.c.id.in_(select(TOKEN.c.res_id).where(or_(*alts)))


def _date_cond(column: Any, raw: str, tz: str, name: str = "date") -> ColumnElement[bool]:
    prefix = raw[:2] if raw[:2] in PREFIXES else "eq"
    value = raw[2:] if raw[:2] in PREFIXES else raw
    try:
        low, high = parse_range(value, tz)
    except BadDate as exc:
        raise Invalid(f"{name}: {exc}", expression=name) from None
    if prefix in ("eq", "ap"):
        return and_(column >= low, column < high)
    if prefix == "ne":
        return or_(column < low, column >= high)
    if prefix in ("gt", "sa"):
        return column >= high
    if prefix == "ge":
        return column >= low
    if prefix in ("lt", "eb"):
        return column < low
    return column < high  # le


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
            q.where.append(R.c.id.in_(value.split(",")))
        elif name == "_lastUpdated":
            q.where.append(_date_cond(R.c.last_updated, value, self.tz, "_lastUpdated"))
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

    def _patients(self, conn: Connection, values: list[str]) -> list[str]:
        out = []
        for v in values:
            rid = v.rsplit("/", 1)[-1]
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
            q.tokens.append((param.column, values))
        elif param.kind == "date":
            col = index.c[param.column] if index is not None else None
            if col is None:
                raise NotSupported(f"{param.name} cannot be searched", expression=param.name)
            # comma = OR for dates too (R4 §3.1.1.5.8); repeating the parameter is AND
            q.where.append(or_(*(_date_cond(col, v, self.tz, param.name) for v in values)))
        elif param.kind == "string":
            alts = []
            for v in values:
                norm = normalise_name(v)
                # A prefix as a range (value >= p AND value < p⁺): both backends walk
                # ix_string_value for it, where LIKE 'p%' reads every name.
                cond = (
                    STRING.c.value == norm
                    if modifier == "exact" or not norm
                    else and_(STRING.c.value >= norm, STRING.c.value < _after_prefix(norm))
                )
                alts.append(and_(STRING.c.type == q.rtype, STRING.c.param == param.name, cond))
            # uncorrelated, like tokens: read ix_string_value, not every resource of the type
            q.where.append(R.c.id.in_(select(STRING.c.res_id).where(or_(*alts))))

    # -- execution -----------------------------------------------------------------------
    def statement(self, q: Query) -> tuple[Select[Any], Callable[[Any], tuple[Any, str]]]:
        index = TYPE_INDEX.get(q.rtype)
        base = select(R.c.id, R.c.body, R.c.last_updated, R.c.patient_id)
        date_col = None
        if q.sort.lstrip("-") in ("date", "started"):
            date_col = _date_column(index)
        if index is not None:
            base = base.add_columns(*(index.c[c] for c in ("effective", "started") if c in index.c))
            base = base.join(index, index.c.id == R.c.id)
        cond = [R.c.type == q.rtype, not_(R.c.deleted), *q.conditions()]
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
            value, rid = q.after
            if desc:
                cond.append(or_(key < value, and_(key == value, R.c.id < rid)))
            else:
                cond.append(or_(key > value, and_(key == value, R.c.id > rid)))
        order = [key.desc(), R.c.id.desc()] if desc else [key.asc(), R.c.id.asc()]
        stmt = base.where(*cond).order_by(*order).limit(q.count + 1)

        def sort_value(row: Any) -> tuple[Any, str]:
            if date_col is not None:
                v = getattr(row, date_col.name)
                return (v or EPOCH, row.id)
            return (row.last_updated, row.id)

        return stmt, sort_value

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
