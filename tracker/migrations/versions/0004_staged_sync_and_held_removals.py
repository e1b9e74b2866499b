"""A sync stages what it will write (so no write lock is held while the registry is read),
holds back mass removals until a later refresh confirms them, and records the removals it
held and the records it could not read."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Each step looks first: a development database may already hold any part of this.
    inspector = sa.inspect(op.get_bind())
    tables = set(inspector.get_table_names())
    if "sync_stage" not in tables:
        _create_stage()
    if "held_removal" not in tables:
        op.create_table(
            "held_removal",
            sa.Column("nct_id", sa.String(length=11), nullable=False),
            sa.Column("data_timestamp", sa.String()),
            sa.Column("sync_run_id", sa.Integer(), nullable=False),
            sa.Column("held_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("nct_id"),
        )
    columns = {c["name"] for c in inspector.get_columns("sync_run")}
    if "held" not in columns:
        op.add_column("sync_run", sa.Column("held", sa.Integer(), nullable=False,
                                            server_default="0"))
    if "unreadable" not in columns:
        op.add_column("sync_run", sa.Column("unreadable", sa.Text()))


def _create_stage() -> None:
    op.create_table(
        "sync_stage",
        sa.Column("nct_id", sa.String(length=11), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("last_update_posted", sa.String()),
        sa.Column("record", sa.LargeBinary(), nullable=False),
        sa.Column("study", sa.Text()),
        sa.Column("is_new", sa.Boolean(), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True)),
        sa.Column("events", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("nct_id"),
    )
    op.create_index("ix_sync_stage_position", "sync_stage", ["position"])


def downgrade() -> None:
    raise NotImplementedError("the tracker's migrations only go forward")
