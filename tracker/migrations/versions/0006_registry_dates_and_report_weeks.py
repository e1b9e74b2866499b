"""Registry time, not sync time: every change event has the registry's date for it, indexed;
studies keep four more facts of their record (the lead sponsor's class, whether the start date
is actual or estimated, when the record was verified and first submitted); and the weeks whose
report was written are remembered, so changes seen after a week's report are listed late.

Events without a registry date (removals, until now) get the day they were detected. The new
study columns are filled from each study's current stored record, read here with a small local
reader rather than the tracker's own, so later changes to the tracker cannot change what this
migration does.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

BATCH = 500
# Study column -> where summarise reads it in the record (from protocolSection).
FACTS = {
    "sponsor_class": ("sponsorCollaboratorsModule", "leadSponsor", "class"),
    "start_date_type": ("statusModule", "startDateStruct", "type"),
    "status_verified": ("statusModule", "statusVerifiedDate"),
    "first_submitted": ("statusModule", "studyFirstSubmitDate"),
}


def upgrade() -> None:
    # Each step looks first: a development database may already hold any part of this.
    inspector = sa.inspect(op.get_bind())
    _date_every_event()
    if "ix_change_event_posted" not in {i["name"] for i in
                                        inspector.get_indexes("change_event")}:
        op.create_index("ix_change_event_posted", "change_event", ["last_update_posted"])
    columns = {c["name"] for c in inspector.get_columns("study")}
    for name in FACTS:
        if name not in columns:
            op.add_column("study", sa.Column(name, sa.String()))
    _fill_study_facts()
    if "report_week" not in set(inspector.get_table_names()):
        op.create_table(
            "report_week",
            sa.Column("week", sa.Text(), nullable=False),
            sa.Column("first_written_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("last_written_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("last_event_id", sa.Integer(), nullable=False, server_default="0"),
            sa.PrimaryKeyConstraint("week"),
        )


def _date_every_event() -> None:
    """An event without a registry date gets the UTC day it was detected, as 'YYYY-MM-DD'."""
    if op.get_bind().dialect.name == "postgresql":
        day = "to_char(detected_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
    else:  # SQLite keeps times as UTC text, "2026-11-21 09:00:05.000000"
        day = "substr(detected_at, 1, 10)"
    op.execute(f"UPDATE change_event SET last_update_posted = {day} "
               "WHERE last_update_posted IS NULL")


def _fill_study_facts() -> None:
    """Read each study's current record, a batch at a time, and store its four facts. Studies
    already holding any of them are left as they are (this step may run twice)."""
    conn = op.get_bind()
    study = sa.table("study", sa.column("nct_id", sa.String()),
                     sa.column("version_id", sa.Integer()),
                     *(sa.column(name, sa.String()) for name in FACTS))
    version = sa.table("study_version", sa.column("id", sa.Integer()),
                       sa.column("record", sa.LargeBinary()))
    empty = sa.and_(*(study.c[name].is_(None) for name in FACTS))
    statement = (sa.update(study).where(study.c.nct_id == sa.bindparam("key"))
                 .values({name: sa.bindparam(f"v_{name}") for name in FACTS}))
    after = ""
    while True:
        rows = conn.execute(
            sa.select(study.c.nct_id, version.c.record)
            .join(version, version.c.id == study.c.version_id)
            .where(empty, study.c.nct_id > after).order_by(study.c.nct_id).limit(BATCH)).all()
        if not rows:
            return
        after = rows[-1][0]
        updates = []
        for nct_id, blob in rows:
            facts = _facts(blob)
            if any(facts.values()):
                updates.append({"key": nct_id, **{f"v_{k}": v for k, v in facts.items()}})
        if updates:
            conn.execute(statement, updates)


def _facts(blob: bytes) -> dict[str, str | None]:
    """The four facts of a stored record (zlib-compressed JSON); None for any that is missing
    or not text, and for all of them if the record cannot be read."""
    try:
        record: Any = json.loads(zlib.decompress(blob))
    except (zlib.error, ValueError):
        return dict.fromkeys(FACTS)
    out: dict[str, str | None] = {}
    for name, path in FACTS.items():
        node = record.get("protocolSection") if isinstance(record, dict) else None
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        out[name] = node if isinstance(node, str) else None
    return out


def downgrade() -> None:
    raise NotImplementedError("the tracker's migrations only go forward")
