"""resource.facts: what the recognition engine reads of each result

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26 01:20:00

``$prior-results`` parsed every candidate's whole body (about 1 KB of JSON) to read a dozen
fields; the store now keeps those fields beside the body as a short JSON list
(``hie.recognition.candidates.facts``: about 220 bytes for an Observation, 460 for a report
with its members), written with each version. Rows written before this migration keep NULL
and are read from their body as before (``hie backfill-facts`` fills them), so the migration
is a cheap ALTER on any size of database.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("resource", sa.Column("facts", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    op.drop_column("resource", "facts")
