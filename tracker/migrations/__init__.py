"""The database schema's history as Alembic migrations, run by `tracker.migrate`.

A change to `tracker.models` (or `store.ListedStudy`) needs a new file in `versions/`:
`000N_what.py` with `revision = "000N"` and `down_revision` the previous one, written with
explicit `op` calls. Migrations never import the models: they describe the schema as it was
when they were written, so they stay true as the models move on. `tests/test_migrate.py`
proves that the last migration ends exactly where the models are.
"""
