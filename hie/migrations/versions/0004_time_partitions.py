"""time partitions: resource_version and audit_event by month on PostgreSQL

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 19:50:00

PostgreSQL only (SQLite has no partitioning: a no-op there). Each table is rebuilt as a
``PARTITION BY RANGE`` table with a DEFAULT partition and one partition per month its rows
fall in; rows are copied, the old table dropped and the new one renamed, in the migration's
single transaction. Its primary key gains the partition key, as PostgreSQL requires of every
unique constraint on a partitioned table. ``hie.migrate.upgrade`` then makes the months
ahead (``hie.index.partitions.ensure_partitions``). Self-contained on purpose: a migration
must do tomorrow what it does today, whatever becomes of the module.
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import text

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# table → (partition key, primary key before, primary key after, other indexes)
TABLES: dict[str, tuple[str, list[str], list[str], dict[str, list[str]]]] = {
    "resource_version": (
        "last_updated",
        ["type", "id", "version_id"],
        ["type", "id", "version_id", "last_updated"],
        {},
    ),
    "audit_event": (
        "recorded",
        ["id"],
        ["id", "recorded"],
        {"ix_audit_patient": ["patient_id", "recorded"]},
    ),
}


def _cols(names: list[str]) -> str:
    return ", ".join(f'"{n}"' for n in names)


def _columns(table: str) -> str:
    names = op.get_bind().execute(
        text(
            "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(:t) "
            "AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
        ),
        {"t": table},
    )
    return _cols([n for (n,) in names])


def _rebuild(
    table: str, partition_key: str | None, pk: list[str], indexes: dict[str, list[str]]
) -> None:
    """Copy ``table`` into a new table (partitioned by ``partition_key`` or plain), swap names."""
    bind = op.get_bind()
    new = f"{table}__new"
    spec = f' PARTITION BY RANGE ("{partition_key}")' if partition_key else ""
    op.execute(f'CREATE TABLE "{new}" (LIKE "{table}" INCLUDING DEFAULTS){spec}')
    if partition_key:
        op.execute(f'CREATE TABLE "{table}_default" PARTITION OF "{new}" DEFAULT')
        utc = f"\"{partition_key}\" AT TIME ZONE 'UTC'"
        months = bind.execute(
            text(
                f"SELECT DISTINCT date_trunc('month', {utc})::date "
                f'FROM "{table}" WHERE "{partition_key}" IS NOT NULL ORDER BY 1'
            )
        ).scalars()
        for m in months:
            nxt = f"{m.year + (m.month == 12):04d}-{m.month % 12 + 1:02d}-01"
            op.execute(
                f'CREATE TABLE "{table}_p{m.year:04d}{m.month:02d}" PARTITION OF "{new}" '
                f"FOR VALUES FROM ('{m.isoformat()} 00:00+00') TO ('{nxt} 00:00+00')"
            )
    cols = _columns(table)
    op.execute(f'INSERT INTO "{new}" ({cols}) SELECT {cols} FROM "{table}"')
    # a serial id's sequence belongs to the old table's column: hand it over before the drop
    seq = bind.execute(text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": table}).scalar()
    if seq:
        op.execute(f'ALTER SEQUENCE {seq} OWNED BY "{new}"."id"')
    op.execute(f'DROP TABLE "{table}"')
    op.execute(f'ALTER TABLE "{new}" RENAME TO "{table}"')
    op.execute(f'ALTER TABLE "{table}" ADD CONSTRAINT "{table}_pkey" PRIMARY KEY ({_cols(pk)})')
    for name, columns in indexes.items():
        op.execute(f'CREATE INDEX "{name}" ON "{table}" ({_cols(columns)})')


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, (key, _, pk, indexes) in TABLES.items():
        _rebuild(table, key, pk, indexes)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, (_, pk, _, indexes) in TABLES.items():
        _rebuild(table, None, pk, indexes)
