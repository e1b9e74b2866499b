"""Runs the migrations on the connection `tracker.migrate` hands over.

The caller owns the connection and its transaction, so every migration of one upgrade commits
or rolls back together. Logging is left as the application set it up.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("Run the migrations through tracker.migrate, which passes a connection.")

context.configure(connection=connection, transaction_per_migration=False)
with context.begin_transaction():
    context.run_migrations()
