"""The outbox says what each message is about (`key`), so Message-IDs can be random.

Until now a message's Message-ID was built from what it covered ("<digest.7.120.164@host>")
and its uniqueness kept a digest or an alert from being queued twice; it also repeated after a
database reset. The key takes over that job: existing rows get theirs from their Message-ID's
local part, which is exactly the key the tracker now computes for the same message, so nothing
already queued or sent can be queued again.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    if any(c["name"] == "key" for c in inspector.get_columns("outbox")):
        return  # written by a development build that had the key before this migration
    op.add_column("outbox", sa.Column("key", sa.Text()))
    outbox = sa.table("outbox", sa.column("id", sa.Integer()), sa.column("key", sa.Text()),
                      sa.column("message_id", sa.Text()))
    conn = op.get_bind()
    rows = conn.execute(sa.select(outbox.c.id, outbox.c.message_id)).all()
    for row_id, message_id in rows:
        key = message_id.strip().removeprefix("<").removesuffix(">").rpartition("@")[0]
        conn.execute(sa.update(outbox).where(outbox.c.id == row_id)
                     .values(key=key or message_id))
    op.create_index("ix_outbox_key", "outbox", ["key"], unique=True)


def downgrade() -> None:
    raise NotImplementedError("the tracker's migrations only go forward")
