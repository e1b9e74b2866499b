"""Sign-up on the site: a subscriber can pause digests and keeps the name of the place they
chose; sign-ups are counted for the rate limits."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Each step looks first: a development database may already hold any part of this.
    inspector = sa.inspect(op.get_bind())
    columns = {c["name"] for c in inspector.get_columns("subscriber")}
    if "paused_until" not in columns:
        op.add_column("subscriber", sa.Column("paused_until", sa.DateTime(timezone=True)))
    if "near_label" not in columns:
        op.add_column("subscriber", sa.Column("near_label", sa.Text()))
    if "signup_attempt" not in set(inspector.get_table_names()):
        op.create_table(
            "signup_attempt",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("kind", sa.String(length=10), nullable=False),
            sa.Column("key", sa.String(length=64), nullable=False),
            sa.Column("at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("id"),
        )
        op.create_index("ix_signup_attempt_key", "signup_attempt", ["kind", "key", "at"])


def downgrade() -> None:
    raise NotImplementedError("the tracker's migrations only go forward")
