"""resource_version keeps only superseded versions

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 22:20:00

The current version of every resource was stored twice: in ``resource`` (served) and in
``resource_version`` (history). At city-small that second copy was 1.8 KB of the 6.6 KB
stored per result. From this revision ``Store.put`` moves a version to ``resource_version``
only when a newer one replaces it, and history reads the current version from ``resource``.
This migration drops the rows that duplicate a current version; the downgrade copies them
back.
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "DELETE FROM resource_version WHERE EXISTS (SELECT 1 FROM resource r"
        " WHERE r.type = resource_version.type AND r.id = resource_version.id"
        " AND r.version_id = resource_version.version_id)"
    )


def downgrade() -> None:
    op.execute(
        "INSERT INTO resource_version (type, id, version_id, last_updated, deleted, body)"
        " SELECT type, id, version_id, last_updated, deleted, body FROM resource"
    )
