"""A study keeps the fingerprint of the JSON its content hash was computed from (the bytes as
received, their versionHolder aside), so a sync that receives the same JSON again knows the
content is unchanged without reading it. The sync's listing gets a column for the
fingerprints it confirms, written to the studies when the sync is applied.

Nothing is filled in: a study without a fingerprint is read as before, and the next sync that
finds its content unchanged stores one. Each step looks first, so a database that already has
a column is left as it is.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    for table in ("study", "sync_listing"):
        if "received_hash" not in {c["name"] for c in inspector.get_columns(table)}:
            op.add_column(table, sa.Column("received_hash", sa.String(length=64),
                                           nullable=True))


def downgrade() -> None:
    raise NotImplementedError("the tracker's migrations only go forward")
