"""Monthly time partitions on PostgreSQL, made by the exchange itself.

Migration 0004 turns the append-only, time-keyed tables below into ``PARTITION BY RANGE``
tables; this module keeps them supplied with partitions: one per calendar month (UTC, the
index stores naive UTC times) from ``since`` to ``months_ahead`` months after today, and a
DEFAULT partition so that a row dated outside the made range is stored, never refused.

Rows that reached DEFAULT (the daily job did not run for months; a back-fill of old data)
are moved out to their month's partition by the next :func:`ensure_partitions`. PostgreSQL
refuses ``CREATE TABLE ... PARTITION OF`` for a range that DEFAULT already holds rows of, so
such a month is made as a plain table, filled from DEFAULT (``DELETE ... RETURNING``) and then
attached, all in one transaction. After the call DEFAULT holds no dated row.

Which tables and why (docs/scaling.md, "Partitioning"):

- ``resource_version`` by ``last_updated``: every superseded version of every resource, a full
  body each (the current one is in ``resource``), written only by INSERT. History reads name
  (type, id) without a time, so they probe each partition's primary key; they are rare next to
  searches.
- ``audit_event`` by ``recorded``: append-only, grows with every read; old months can be
  detached and archived whole (``ALTER TABLE ... DETACH PARTITION``) instead of DELETEd.

SQLite has no partitioning: every function here is a no-op there.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import Connection, Engine, text

from hie.fhirtime import now_utc

# partitioned table → its partition key (a NOT NULL timestamp column)
PARTITIONED: dict[str, str] = {
    "resource_version": "last_updated",
    "audit_event": "recorded",
}
_LOCK = 0x68_69_65_70  # pg_advisory_xact_lock key ("hiep"): one partition maker at a time
_EARLIEST = datetime.min.replace(tzinfo=UTC)
_BOUND = re.compile(r"FROM \('([^']+)'\) TO \('([^']+)'\)")


@dataclass(frozen=True)
class Partition:
    """One partition: its month range ([start, end) in UTC, None for DEFAULT), rows, bytes."""

    table: str
    name: str
    start: datetime | None
    end: datetime | None
    rows: int
    bytes: int

    @property
    def is_default(self) -> bool:
        return self.start is None


def month_start(d: date | datetime) -> date:
    return date(d.year, d.month, 1)


def add_months(d: date, n: int) -> date:
    m = d.year * 12 + d.month - 1 + n
    return date(m // 12, m % 12 + 1, 1)


def partition_name(table: str, month: date) -> str:
    return f"{table}_p{month.year:04d}{month.month:02d}"


def default_name(table: str) -> str:
    return f"{table}_default"


def is_partition(table: str) -> bool:
    """Whether ``table`` names one of the partitions this module makes."""
    return any(
        table == default_name(parent) or re.fullmatch(rf"{parent}_p\d{{6}}", table) is not None
        for parent in PARTITIONED
    )


def _utc(d: datetime) -> datetime:
    return d.replace(tzinfo=UTC) if d.tzinfo is None else d.astimezone(UTC)


def _at(month: date) -> datetime:
    """The first instant of ``month`` in UTC (bounds are written with their offset, so the
    session's TimeZone setting cannot shift them)."""
    return datetime(month.year, month.month, 1, tzinfo=UTC)


def _is_partitioned(conn: Connection, table: str) -> bool:
    kind = conn.execute(
        text("SELECT relkind FROM pg_class WHERE oid = to_regclass(:t)"), {"t": table}
    ).scalar()
    return kind == "p"


def _bounds(conn: Connection, table: str) -> list[tuple[str, datetime | None, datetime | None]]:
    """(partition, from, to) of each partition of ``table``; DEFAULT has (None, None)."""
    rows = conn.execute(
        text(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass(:t) "
            "ORDER BY c.relname"
        ),
        {"t": table},
    ).all()
    out: list[tuple[str, datetime | None, datetime | None]] = []
    for name, bound in rows:
        found = _BOUND.search(bound or "")
        if found:
            lo, hi = (_utc(datetime.fromisoformat(v)) for v in found.groups())
            out.append((name, lo, hi))
        else:
            out.append((name, None, None))
    return out


def _columns(conn: Connection, table: str) -> str:
    names = conn.execute(
        text(
            "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(:t) "
            "AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
        ),
        {"t": table},
    ).scalars()
    return ", ".join(f'"{n}"' for n in names)


def _make_month(conn: Connection, table: str, key: str, month: date) -> bool:
    """Create ``month``'s partition of ``table``; rows of it in DEFAULT move there first."""
    name, dflt = partition_name(table, month), default_name(table)
    lo, hi = _at(month), _at(add_months(month, 1))
    has_default = conn.execute(text("SELECT to_regclass(:t)"), {"t": dflt}).scalar() is not None
    stranded = (
        has_default
        and conn.execute(
            text(f'SELECT EXISTS (SELECT 1 FROM "{dflt}" WHERE "{key}" >= :lo AND "{key}" < :hi)'),
            {"lo": lo, "hi": hi},
        ).scalar()
    )
    if not stranded:
        conn.execute(
            text(
                f'CREATE TABLE IF NOT EXISTS "{name}" PARTITION OF "{table}" '
                f"FOR VALUES FROM ('{lo.isoformat()}') TO ('{hi.isoformat()}')"
            )
        )
        return True
    # PostgreSQL will not create a partition over rows DEFAULT holds: build it apart, move
    # the rows, attach (which builds the partition's indexes and re-checks DEFAULT).
    cols = _columns(conn, table)
    conn.execute(text(f'CREATE TABLE "{name}" (LIKE "{table}" INCLUDING DEFAULTS)'))
    conn.execute(
        text(
            f'WITH moved AS (DELETE FROM "{dflt}" WHERE "{key}" >= :lo AND "{key}" < :hi '
            f"RETURNING {cols}) "
            f'INSERT INTO "{name}" ({cols}) SELECT {cols} FROM moved'
        ),
        {"lo": lo, "hi": hi},
    )
    conn.execute(
        text(
            f'ALTER TABLE "{table}" ATTACH PARTITION "{name}" '
            f"FOR VALUES FROM ('{lo.isoformat()}') TO ('{hi.isoformat()}')"
        )
    )
    return True


def _stranded_months(conn: Connection, table: str, key: str) -> list[date]:
    dflt = default_name(table)
    if conn.execute(text("SELECT to_regclass(:t)"), {"t": dflt}).scalar() is None:
        return []
    found = conn.execute(
        text(
            f"SELECT DISTINCT date_trunc('month', \"{key}\" AT TIME ZONE 'UTC')::date "
            f'FROM "{dflt}" WHERE "{key}" IS NOT NULL'
        )
    ).scalars()
    return [month_start(m) for m in found]


def ensure_in(
    conn: Connection,
    *,
    months_ahead: int = 3,
    since: date | None = None,
    today: date | None = None,
    tables: Iterable[str] = PARTITIONED,
) -> list[str]:
    """:func:`ensure_partitions` inside the caller's transaction; returns partitions made."""
    if conn.dialect.name != "postgresql":
        return []
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK})
    this_month = month_start(today or now_utc())
    first = month_start(since) if since else this_month
    made: list[str] = []
    for table in tables:
        key = PARTITIONED[table]
        if not _is_partitioned(conn, table):
            continue  # not converted yet (a database below migration 0004)
        dflt = default_name(table)
        if conn.execute(text("SELECT to_regclass(:t)"), {"t": dflt}).scalar() is None:
            conn.execute(text(f'CREATE TABLE "{dflt}" PARTITION OF "{table}" DEFAULT'))
        existing = _bounds(conn, table)
        wanted = {first}
        while max(wanted) < add_months(this_month, months_ahead):
            wanted.add(add_months(max(wanted), 1))
        wanted.update(_stranded_months(conn, table, key))
        for month in sorted(wanted):
            lo, hi = _at(month), _at(add_months(month, 1))
            if any(s is not None and e is not None and s < hi and lo < e for _, s, e in existing):
                continue  # covered already (by this month's partition or a wider one)
            _make_month(conn, table, key, month)
            made.append(partition_name(table, month))
    return made


def ensure_partitions(
    engine: Engine,
    months_ahead: int = 3,
    since: date | None = None,
    *,
    today: date | None = None,
) -> list[str]:
    """Make the missing monthly partitions (and DEFAULT); idempotent; names of those made.

    ``since`` is the first month to cover (default: this month); months with rows stranded
    in DEFAULT are made whatever ``since`` says, and their rows moved there.
    """
    if engine.dialect.name != "postgresql":
        return []
    with engine.begin() as conn:
        return ensure_in(conn, months_ahead=months_ahead, since=since, today=today)


def partition_job(engine: Engine) -> list[str]:
    """The daily job: the scheduler calls this (a cron trigger, once a day, on the leader)."""
    return ensure_partitions(engine)


def list_partitions(engine: Engine, *, exact: bool = True) -> list[Partition]:
    """Every partition of the partitioned tables, oldest first, DEFAULT last.

    ``exact`` counts rows (``count(*)``, a scan of each partition); otherwise the planner's
    estimate (``pg_class.reltuples``, as of the last ANALYZE), which costs nothing.
    """
    if engine.dialect.name != "postgresql":
        return []
    out: list[Partition] = []
    with engine.connect() as conn:
        for table in PARTITIONED:
            if not _is_partitioned(conn, table):
                continue
            parts = sorted(
                _bounds(conn, table),
                key=lambda b: (b[1] is None, b[1] or datetime.min.replace(tzinfo=UTC)),
            )
            for name, lo, hi in parts:
                if exact:
                    rows = int(conn.execute(text(f'SELECT count(*) FROM "{name}"')).scalar_one())
                else:
                    rows = max(
                        0,
                        int(
                            conn.execute(
                                text("SELECT reltuples FROM pg_class WHERE oid = to_regclass(:t)"),
                                {"t": name},
                            ).scalar_one()
                        ),
                    )
                size = conn.execute(
                    text("SELECT pg_total_relation_size(to_regclass(:t))"), {"t": name}
                ).scalar_one()
                out.append(Partition(table, name, lo, hi, rows, int(size)))
    return out


__all__ = [
    "PARTITIONED",
    "Partition",
    "ensure_in",
    "ensure_partitions",
    "is_partition",
    "list_partitions",
    "partition_job",
]
