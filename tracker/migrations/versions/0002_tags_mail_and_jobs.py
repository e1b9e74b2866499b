"""Tags on studies, plain sentences on events, subscribers and their outbox, spent tokens,
scheduled job runs, and time-zone aware times.

Before migrations the tracker upgraded its database in place on every start: it created the
missing tables and added the missing columns, nullable. So a database that tracker.migrate
stamps 0001 may already hold any part of this. Every step looks first and does only what is
missing; the end is the same from any starting point.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TABLES = ("study", "study_version", "change_event", "sync_run", "sync_listing", "subscriber",
          "outbox", "used_token", "job_run")


def upgrade() -> None:
    _add_missing_columns("study", [
        sa.Column("subtypes", sa.Text()),
        sa.Column("therapies", sa.Text()),
        sa.Column("tag_evidence", sa.Text()),
        sa.Column("recruiting", sa.Boolean()),
        sa.Column("children", sa.Boolean()),
        sa.Column("min_age_years", sa.Float()),
        sa.Column("max_age_years", sa.Float()),
        sa.Column("recruiting_countries", sa.Text()),
        sa.Column("recruiting_sites", sa.Text()),
        sa.Column("site_points", sa.Text()),
        sa.Column("vocabulary", sa.String(length=16)),
    ])
    _require_flags("study", ["recruiting", "children"])
    _add_missing_index("ix_study_recruiting", "study", ["recruiting"])
    _add_missing_columns("change_event", [sa.Column("plain", sa.Text())])

    if _has_table("subscriber"):
        _add_missing_columns("subscriber", [
            sa.Column("weekday", sa.Integer()),
            sa.Column("served_at", sa.DateTime(timezone=True)),
        ])
    else:
        op.create_table(
            "subscriber",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("email", sa.Text(), nullable=False),
            sa.Column("subtypes", sa.String()),
            sa.Column("therapies", sa.String()),
            sa.Column("countries", sa.Text()),
            sa.Column("near_lat", sa.Float()),
            sa.Column("near_lon", sa.Float()),
            sa.Column("radius_km", sa.Float()),
            sa.Column("children", sa.Boolean(), nullable=False),
            sa.Column("recruiting_only", sa.Boolean(), nullable=False),
            sa.Column("changes", sa.String(), nullable=False),
            sa.Column("cadence", sa.String(), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("confirmed_at", sa.DateTime(timezone=True)),
            sa.Column("unsubscribed_at", sa.DateTime(timezone=True)),
            sa.Column("last_event_id", sa.Integer(), nullable=False),
            sa.Column("last_digest_at", sa.DateTime(timezone=True)),
            sa.Column("weekday", sa.Integer()),
            sa.Column("served_at", sa.DateTime(timezone=True)),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("email"),
        )

    if not _has_table("outbox"):
        op.create_table(
            "outbox",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("kind", sa.String(length=20), nullable=False),
            sa.Column("subscriber_id", sa.Integer()),
            sa.Column("recipient", sa.Text(), nullable=False),
            sa.Column("subject", sa.Text(), nullable=False),
            sa.Column("message_id", sa.Text(), nullable=False),
            sa.Column("message", sa.LargeBinary(), nullable=False),
            sa.Column("text_body", sa.Text(), nullable=False),
            sa.Column("html_body", sa.Text(), nullable=False),
            sa.Column("status", sa.String(), nullable=False),
            sa.Column("attempts", sa.Integer(), nullable=False),
            sa.Column("error", sa.Text()),
            sa.Column("events", sa.Integer(), nullable=False),
            sa.Column("window_end", sa.Integer(), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("sent_at", sa.DateTime(timezone=True)),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("message_id"),
        )
    _add_missing_index("ix_outbox_subscriber_id", "outbox", ["subscriber_id"])
    _add_missing_index("ix_outbox_status", "outbox", ["status"])

    if not _has_table("used_token"):
        op.create_table(
            "used_token",
            sa.Column("digest", sa.String(length=64), nullable=False),
            sa.Column("used_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("digest"),
        )

    if not _has_table("job_run"):
        op.create_table(
            "job_run",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("job", sa.String(length=20), nullable=False),
            sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("finished_at", sa.DateTime(timezone=True)),
            sa.Column("status", sa.String(), nullable=False),
            sa.Column("summary", sa.Text()),
            sa.PrimaryKeyConstraint("id"),
        )
    _add_missing_index("ix_job_run_job", "job_run", ["job"])

    if op.get_bind().dialect.name == "postgresql":
        _times_with_time_zone()


def downgrade() -> None:
    raise NotImplementedError("The tracker never downgrades; restore a backup instead.")


def _inspector() -> sa.Inspector:
    """A fresh look at the database each time: the steps before may have changed it."""
    return sa.inspect(op.get_bind())


def _has_table(table: str) -> bool:
    return _inspector().has_table(table)


def _add_missing_columns(table: str, columns: list[sa.Column[object]]) -> None:
    present = {c["name"] for c in _inspector().get_columns(table)}
    for column in columns:
        if column.name not in present:
            op.add_column(table, column)


def _add_missing_index(name: str, table: str, columns: list[str]) -> None:
    if name not in {i["name"] for i in _inspector().get_indexes(table)}:
        op.create_index(name, table, columns)


def _require_flags(table: str, names: list[str]) -> None:
    """Flags are NOT NULL in the models; rows from before they existed read as false.

    On SQLite this rebuilds the table (batch mode), as SQLite cannot alter a column.
    """
    nullable = [c["name"] for c in _inspector().get_columns(table)
                if c["name"] in names and c["nullable"]]
    if not nullable:
        return
    for name in nullable:
        column = sa.column(name, sa.Boolean())
        op.execute(sa.table(table, column).update().where(column.is_(None)).values({name: False}))
    with op.batch_alter_table(table) as batch:
        for name in nullable:
            batch.alter_column(name, existing_type=sa.Boolean(), nullable=False)


def _times_with_time_zone() -> None:
    """Naive UTC times (the first release, or tables made by older SQLModel releases) become
    TIMESTAMP WITH TIME ZONE, read as the UTC they always were."""
    inspector = _inspector()
    for table in TABLES:
        for column in inspector.get_columns(table):
            kind = column["type"]
            if isinstance(kind, sa.DateTime) and not kind.timezone:
                name = column["name"]
                op.alter_column(table, name, type_=sa.DateTime(timezone=True),
                                existing_type=kind, existing_nullable=column["nullable"],
                                postgresql_using=f"\"{name}\" AT TIME ZONE 'UTC'")
