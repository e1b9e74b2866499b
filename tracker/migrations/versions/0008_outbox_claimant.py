"""Several senders share one outbox: each message a sender has taken carries that sender's
number (`claimant`) until it is delivered or given back, so another sender neither takes it
nor mistakes it for the leftovers of a sender that died.

The step looks first, so a database that already has the column is left as it is.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    columns = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("outbox")}
    if "claimant" not in columns:
        op.add_column("outbox", sa.Column("claimant", sa.Integer(), nullable=True))


def downgrade() -> None:
    raise NotImplementedError("the tracker's migrations only go forward")
