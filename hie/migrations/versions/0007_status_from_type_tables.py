"""status is searched on the type tables: drop its search_token rows

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 22:30:00

``status`` of Observation, DiagnosticReport and ImagingStudy is one code without a system,
already held by the type tables' ``status`` column (``hie.index.extract``'s row). Its token
rows were 24% of ``search_token`` (about 0.47 KB of the 6.6 KB stored per result at
city-small); ``hie.index.search`` now reads the column and the index writes no such rows.
This deletes the ones written before. SQLite gives the space back to its free list; the
file shrinks only after ``VACUUM``. The downgrade writes the rows again from the type tables.
Self-contained on purpose: a migration must do tomorrow what it does today.
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# resource type → (type table, its main date: what the token rows carried as ``date``)
TYPES = {
    "Observation": ("observation_index", "effective"),
    "DiagnosticReport": ("diagnostic_report_index", "effective"),
    "ImagingStudy": ("imaging_study_index", "started"),
}


def upgrade() -> None:
    # (type, param) leads ix_token_code: one index range per type, not a scan of the table
    for rtype in TYPES:
        op.execute(f"DELETE FROM search_token WHERE type = '{rtype}' AND param = 'status'")


def downgrade() -> None:
    for rtype, (table, date) in TYPES.items():
        op.execute(
            "INSERT INTO search_token (type, res_id, param, system, code, patient_id, date) "
            f"SELECT '{rtype}', id, 'status', '', status, patient_id, {date} FROM {table}"
        )
