"""TEMPORARY stand-in until the Alembic migrations land."""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import Engine, inspect, text
from sqlmodel import SQLModel


class SchemaState(StrEnum):
    EMPTY = "empty"
    LEGACY = "legacy"
    BEHIND = "behind"
    CURRENT = "current"
    AHEAD = "ahead"


def state(engine: Engine) -> SchemaState:
    import tracker.models
    import tracker.store  # noqa: F401

    names = set(inspect(engine).get_table_names())
    if "study" not in names:
        return SchemaState.EMPTY
    return SchemaState.CURRENT


def upgrade(engine: Engine) -> tuple[str | None, str]:
    import tracker.models
    import tracker.store  # noqa: F401

    SQLModel.metadata.create_all(engine)
    inspector = inspect(engine)
    with engine.begin() as conn:
        for table in SQLModel.metadata.sorted_tables:
            present = {c["name"] for c in inspector.get_columns(table.name)}
            missing = [c for c in table.columns if c.name not in present]
            for column in missing:
                kind = column.type.compile(dialect=engine.dialect)
                conn.execute(text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}'))
    return None, "head"
