"""resource_version carries the exchange patient

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25 22:40:00

Every other per-patient table has ``patient_id``; history did not, so past one PostgreSQL
(Citus, docs/scaling.md step 4) a patient's superseded versions could not live on the
patient's shard. The column is filled from the resource's current row and moved with it on
link, unlink and merge (``Store.repoint_patient``, ``Store.set_patient``). Cheap since 0006:
history holds only superseded versions.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "resource_version",
        sa.Column("patient_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    )
    op.execute(
        "UPDATE resource_version SET patient_id = (SELECT r.patient_id FROM resource r"
        " WHERE r.type = resource_version.type AND r.id = resource_version.id)"
    )


def downgrade() -> None:
    op.drop_column("resource_version", "patient_id")
