"""The weekly report's reads: counted and grouped by the database, loading only what the page
shows, so a report of 50,000 trials costs what a report of 500 does.

Each function takes the snapshot and a `StudyFilter` (the report reads myositis studies only)
and returns plain values: counts grouped by a column, a few columns of the rows a figure
needs, or whole rows for the trials the page lists.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import date
from typing import Any

from sqlalchemy import func, select

from tracker.models import Study
from tracker.store import STUDY, VERSION, Store, StudyFilter


def _current(where: StudyFilter) -> list[Any]:
    return [STUDY.c.removed_at.is_(None), *where.clauses()]


def count(store: Store, where: StudyFilter, *extra: Any) -> int:
    query = select(func.count()).select_from(STUDY).where(*_current(where), *extra)
    with store.engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def grouped(store: Store, where: StudyFilter, *columns: str) -> Counter[tuple[Any, ...]]:
    """How many studies share each combination of values in `columns`."""
    cols = [STUDY.c[name] for name in columns]
    query = select(*cols, func.count()).where(*_current(where)).group_by(*cols)
    with store.engine.connect() as conn:
        return Counter({tuple(row[:-1]): int(row[-1]) for row in conn.execute(query)})


def columns(store: Store, where: StudyFilter, names: Sequence[str],
            *extra: Any) -> Iterator[tuple[Any, ...]]:
    """A few columns of every matching study, streamed as tuples."""
    query = (select(*(STUDY.c[name] for name in names)).where(*_current(where), *extra)
             .order_by(STUDY.c.nct_id))
    with store.engine.connect() as conn:
        for row in conn.execution_options(yield_per=1000).execute(query):
            yield tuple(row)


def studies(store: Store, where: StudyFilter, *extra: Any,
            newest: int | None = None) -> list[Study]:
    """Whole rows, for the few studies a section lists; with `newest`, only that many, the
    most recently first posted."""
    query = select(STUDY).where(*_current(where), *extra)
    if newest is not None:
        query = query.order_by(STUDY.c.first_posted.desc(), STUDY.c.nct_id).limit(newest)
    else:
        query = query.order_by(STUDY.c.nct_id)
    with store.engine.connect() as conn:
        return [Study(**row) for row in conn.execute(query).mappings()]


def posted_between(column: str, first: date, end: date) -> Any:
    """A registry posting date (always a full day, "2026-11-18") within [first, end)."""
    return (STUDY.c[column] >= first.isoformat()) & (STUDY.c[column] < end.isoformat())


def revised(store: Store, nct_ids: Sequence[str]) -> list[str]:
    """Those of `nct_ids` with more than one stored version (the others have no history to
    compare with)."""
    out: list[str] = []
    with store.engine.connect() as conn:
        for start in range(0, len(nct_ids), 500):
            chunk = list(nct_ids[start:start + 500])
            query = (select(VERSION.c.nct_id).where(VERSION.c.nct_id.in_(chunk))
                     .group_by(VERSION.c.nct_id).having(func.count() > 1))
            out.extend(row[0] for row in conn.execute(query))
    return sorted(out)
