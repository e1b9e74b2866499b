"""The outbox stores each e-mail once, compressed: `content` is the zlib-compressed message
as it is handed to the server; the text and HTML bodies, which it already holds, are no longer
stored beside it (the tracker reads them out of the message).

Rows are converted a batch at a time. Each step looks first, so a database that already has
any part of this (a development copy, a run that stopped half way) is finished, not broken.
"""

from __future__ import annotations

import zlib

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

BATCH = 500
DROPPED = ("message", "text_body", "html_body")


def upgrade() -> None:
    columns = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("outbox")}
    if "content" not in columns:
        op.add_column("outbox", sa.Column("content", sa.LargeBinary(), nullable=True))
    if "message" in columns:
        _compress_messages()
    with op.batch_alter_table("outbox") as batch:
        for name in DROPPED:
            if name in columns:
                batch.drop_column(name)
        batch.alter_column("content", existing_type=sa.LargeBinary(), nullable=False)


def _compress_messages() -> None:
    """Fill `content` from `message` for every row that has none yet."""
    conn = op.get_bind()
    outbox = sa.table("outbox", sa.column("id", sa.Integer()),
                      sa.column("message", sa.LargeBinary()),
                      sa.column("content", sa.LargeBinary()))
    statement = (sa.update(outbox).where(outbox.c.id == sa.bindparam("key"))
                 .values(content=sa.bindparam("packed")))
    after = 0
    while True:
        rows = conn.execute(sa.select(outbox.c.id, outbox.c.message)
                            .where(outbox.c.content.is_(None), outbox.c.id > after)
                            .order_by(outbox.c.id).limit(BATCH)).all()
        if not rows:
            return
        after = rows[-1][0]
        conn.execute(statement, [{"key": key, "packed": zlib.compress(bytes(message or b""))}
                                 for key, message in rows])


def downgrade() -> None:
    raise NotImplementedError("the tracker's migrations only go forward")
