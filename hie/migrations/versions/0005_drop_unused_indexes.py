"""drop the search-column indexes no query uses

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 19:55:00

Every read in hie/index/search.py and hie/prior_results.py, run over city-small and
EXPLAINed on SQLite and PostgreSQL, uses none of these: searches put the patient on
``resource.patient_id`` (ix_resource_patient) or ``search_token`` (ix_token_patient), join the
type tables by id (their primary key), and search identifiers (study UIDs too) through
``search_token``; the store updates and deletes these rows by id. Each cost a B-tree insert per
result written; ix_observation_patient_date alone was 5.3 MB of the 470 MB city-small SQLite
index (about 80 bytes per result).
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

UNUSED: list[tuple[str, str, list[str]]] = [
    ("ix_observation_patient_date", "observation_index", ["patient_id", "effective"]),
    ("ix_diagnostic_report_patient_date", "diagnostic_report_index", ["patient_id", "effective"]),
    ("ix_imaging_study_patient_started", "imaging_study_index", ["patient_id", "started"]),
    ("ix_imaging_study_index_study_uid", "imaging_study_index", ["study_uid"]),
    ("ix_patient_index_patient_id", "patient_index", ["patient_id"]),
]


def upgrade() -> None:
    for name, table, _ in UNUSED:
        op.drop_index(name, table_name=table)


def downgrade() -> None:
    for name, table, columns in UNUSED:
        op.create_index(name, table, columns, unique=False)
