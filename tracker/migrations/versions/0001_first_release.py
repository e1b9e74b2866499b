"""The first released schema: studies, their versions, change events, sync runs.

Times are naive TIMESTAMP columns holding UTC, as the first release stored them; 0002 makes
them time-zone aware on PostgreSQL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "study",
        sa.Column("nct_id", sa.String(length=11), nullable=False),
        sa.Column("brief_title", sa.Text(), nullable=False),
        sa.Column("official_title", sa.Text()),
        sa.Column("acronym", sa.String()),
        sa.Column("overall_status", sa.String()),
        sa.Column("last_known_status", sa.String()),
        sa.Column("why_stopped", sa.Text()),
        sa.Column("study_type", sa.String()),
        sa.Column("phases", sa.String()),
        sa.Column("conditions", sa.Text()),
        sa.Column("interventions", sa.Text()),
        sa.Column("lead_sponsor", sa.Text()),
        sa.Column("enrollment", sa.Integer()),
        sa.Column("enrollment_type", sa.String()),
        sa.Column("start_date", sa.String()),
        sa.Column("primary_completion_date", sa.String()),
        sa.Column("completion_date", sa.String()),
        sa.Column("first_posted", sa.String()),
        sa.Column("last_update_posted", sa.String()),
        sa.Column("results_first_posted", sa.String()),
        sa.Column("has_results", sa.Boolean(), nullable=False),
        sa.Column("minimum_age", sa.String()),
        sa.Column("maximum_age", sa.String()),
        sa.Column("sex", sa.String()),
        sa.Column("countries", sa.Text()),
        sa.Column("site_count", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("version_id", sa.Integer()),
        sa.Column("first_seen_at", sa.DateTime(), nullable=False),
        sa.Column("last_changed_at", sa.DateTime(), nullable=False),
        sa.Column("removed_at", sa.DateTime()),
        sa.PrimaryKeyConstraint("nct_id"),
    )
    op.create_index("ix_study_overall_status", "study", ["overall_status"])
    op.create_index("ix_study_last_update_posted", "study", ["last_update_posted"])
    op.create_index("ix_study_removed_at", "study", ["removed_at"])

    op.create_table(
        "study_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("nct_id", sa.String(length=11), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("last_update_posted", sa.String()),
        sa.Column("sync_run_id", sa.Integer(), nullable=False),
        sa.Column("fetched_at", sa.DateTime(), nullable=False),
        sa.Column("record", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_study_version_nct", "study_version", ["nct_id", "id"])

    op.create_table(
        "change_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sync_run_id", sa.Integer(), nullable=False),
        sa.Column("nct_id", sa.String(length=11), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("field", sa.String(), nullable=False),
        sa.Column("old_value", sa.Text()),
        sa.Column("new_value", sa.Text()),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("detected_at", sa.DateTime(), nullable=False),
        sa.Column("last_update_posted", sa.String()),
        sa.Column("version_id", sa.Integer()),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_change_event_sync_run_id", "change_event", ["sync_run_id"])
    op.create_index("ix_change_event_kind", "change_event", ["kind"])
    op.create_index("ix_change_event_detected_at", "change_event", ["detected_at"])
    op.create_index("ix_change_event_nct", "change_event", ["nct_id", "id"])

    op.create_table(
        "sync_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime()),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("mode", sa.String(), nullable=False),
        sa.Column("query", sa.Text(), nullable=False),
        sa.Column("data_timestamp", sa.String()),
        sa.Column("since", sa.String()),
        sa.Column("error", sa.Text()),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("fetched", sa.Integer(), nullable=False),
        sa.Column("new", sa.Integer(), nullable=False),
        sa.Column("changed", sa.Integer(), nullable=False),
        sa.Column("removed", sa.Integer(), nullable=False),
        sa.Column("unchanged", sa.Integer(), nullable=False),
        sa.Column("reformatted", sa.Integer(), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_sync_run_status", "sync_run", ["status"])

    op.create_table(
        "sync_listing",
        sa.Column("nct_id", sa.String(length=11), nullable=False),
        sa.Column("last_update_posted", sa.String()),
        sa.PrimaryKeyConstraint("nct_id"),
    )


def downgrade() -> None:
    raise NotImplementedError("The tracker never downgrades; restore a backup instead.")
