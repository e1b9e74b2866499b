"""One sync, as a pipeline: fetch -> prove the fetch complete -> diff -> save, all or nothing.

A full sync pages through every study the query matches. An incremental sync (the default
once a baseline exists) lists the matching IDs with their update dates (cheap), fetches the
studies updated since the last successful sync (with an overlap), fills any gap the listing
reveals by ID, and marks studies missing from the listing as removed. If `/version` says the
registry has not refreshed since the last successful sync, nothing is fetched at all.

Every write happens in one transaction; any error rolls it back and the run is recorded as
failed, so a bad page can never corrupt the snapshot or mark trials removed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from tracker import diff as differ
from tracker.config import Settings
from tracker.ctgov import CtGovClient, Study, nct_id_of
from tracker.errors import IncompleteSync, TrackerError
from tracker.lock import sync_lock
from tracker.record import content_hash, last_update_posted, summarise
from tracker.store import Store, Transaction, compress, utcnow

IDS_PER_REQUEST = 100
LISTING_FIELDS = "NCTId|LastUpdatePostDate"

Progress = Callable[[str, int, int | None], None]
"""progress(stage, done, total): called as pages arrive; total is None when unknown."""


@dataclass
class SyncResult:
    run_id: int
    status: str  # ok | skipped
    mode: str  # baseline | full | incremental | skipped
    data_timestamp: str | None
    listed: int = 0
    fetched: int = 0
    new: int = 0
    changed: int = 0
    removed: int = 0
    unchanged: int = 0
    reformatted: int = 0
    events: int = 0
    requests: int = 0
    seconds: float = 0.0
    since: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Counts:
    fetched: int = 0
    new: int = 0
    changed: int = 0
    reformatted: int = 0
    events: int = 0
    seen: set[str] = field(default_factory=set)


def sync(settings: Settings, store: Store, client: CtGovClient, *, full: bool = False,
         progress: Progress | None = None, clock: Callable[[], float] = time.monotonic
         ) -> SyncResult:
    """Run one sync under the sync lock; raises TrackerError subclasses on failure."""
    with sync_lock(store):
        store.mark_interrupted()
        return _sync_locked(settings, store, client, full, progress or _quiet, clock)


def _sync_locked(settings: Settings, store: Store, client: CtGovClient, full: bool,
                 progress: Progress, clock: Callable[[], float]) -> SyncResult:
    started = clock()
    requests_before = client.requests_made
    last_ok = store.last_run("ok", "skipped")
    run_id = store.begin_run(settings.query)
    try:
        version = client.version()
        same_query = last_ok is not None and last_ok.query == settings.query
        if (not full and same_query and last_ok is not None
                and last_ok.data_timestamp == version.data_timestamp):
            result = SyncResult(run_id, "skipped", "skipped", version.data_timestamp)
        else:
            baseline = not same_query
            since = None if (full or baseline) else _since(last_ok, settings.overlap_days)
            mode = "baseline" if baseline else ("full" if since is None else "incremental")
            result = SyncResult(run_id, "ok", mode, version.data_timestamp,
                                since=since.isoformat() if since else None)
            with store.transaction() as tx:
                _fetch_and_save(settings, tx, client, result, since, baseline, progress, run_id)
                after = client.version()
                if after.data_timestamp != version.data_timestamp:
                    raise IncompleteSync(
                        f"ClinicalTrials.gov refreshed its data during the sync "
                        f"({version.data_timestamp} -> {after.data_timestamp}). Nothing was "
                        "changed; run the sync again."
                    )
        result.requests = client.requests_made - requests_before
        result.seconds = round(clock() - started, 2)
        counts = {k: v for k, v in result.as_dict().items()
                  if k in ("fetched", "new", "changed", "removed", "unchanged", "reformatted",
                           "events", "requests", "since", "data_timestamp")}
        store.finish_run(run_id, result.status, mode=result.mode, **counts)
        return result
    except BaseException as error:
        if isinstance(error, TrackerError):
            message = str(error)
        elif isinstance(error, KeyboardInterrupt):
            message = "Interrupted by the user; nothing from this sync was saved."
        else:
            message = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        store.finish_run(run_id, "failed", error=message,
                         requests=client.requests_made - requests_before)
        raise


def _since(last_ok: Any, overlap_days: int) -> date:
    stamp = last_ok.data_timestamp
    try:
        base = datetime.fromisoformat(stamp).date() if stamp else last_ok.started_at.date()
    except ValueError:
        base = last_ok.started_at.date()
    return base - timedelta(days=overlap_days)


def _fetch_and_save(settings: Settings, tx: Transaction, client: CtGovClient,
                    result: SyncResult, since: date | None, baseline: bool,
                    progress: Progress, run_id: int) -> None:
    counts = _Counts()
    now = utcnow()
    tx.clear_listing()
    query = {"query.cond": settings.query}
    total: int | None = None
    if since is None:
        # Full: the full pages are the listing.
        for page in client.pages(query):
            tx.add_listing([_listing_row(s) for s in page.studies])
            _save_page(tx, page.studies, counts, baseline, run_id, now)
            total = page.total_count if page.total_count is not None else total
            progress("Fetching studies", len(counts.seen), total)
            del page  # let it go before the next one downloads
    else:
        listed = 0
        for page in client.pages({**query, "fields": LISTING_FIELDS}):
            tx.add_listing([_listing_row(s) for s in page.studies])
            listed += len(page.studies)
            total = page.total_count if page.total_count is not None else total
            progress("Listing matching studies", listed, total)
        updated = {**query,
                   "filter.advanced": f"AREA[LastUpdatePostDate]RANGE[{since.isoformat()},MAX]"}
        for page in client.pages(updated):
            _save_page(tx, page.studies, counts, baseline, run_id, now)
            total = page.total_count if page.total_count is not None else total
            progress("Fetching updated studies", counts.fetched, total)
            del page
        gaps = tx.stale_listed()
        for start in range(0, len(gaps), IDS_PER_REQUEST):
            chunk = gaps[start:start + IDS_PER_REQUEST]
            got: set[str] = set()
            for page in client.pages({"filter.ids": ",".join(chunk)}):
                got.update(nct_id_of(s) for s in page.studies)
                _save_page(tx, page.studies, counts, baseline, run_id, now)
            missing = sorted(set(chunk) - got)
            if missing:
                raise IncompleteSync(
                    f"{len(missing)} listed studies could not be fetched by ID "
                    f"({', '.join(missing[:5])}). Nothing was changed; run the sync again."
                )
            progress("Fetching studies missing from the snapshot",
                     min(start + IDS_PER_REQUEST, len(gaps)), len(gaps))

    removed = tx.unlisted_active()
    if removed:
        tx.mark_removed(removed, now)
        if not baseline:
            tx.add_events([_event_row(run_id, nct_id, None, None, now,
                                      differ.removed_study(
                                          nct_id, "no longer matches the tracked query on "
                                                  "ClinicalTrials.gov"))
                           for nct_id in removed])
            counts.events += len(removed)
    listed_total = tx.listed_count()
    result.listed = listed_total
    result.fetched = counts.fetched
    result.new = counts.new
    result.changed = counts.changed
    result.reformatted = counts.reformatted
    result.removed = len(removed)
    result.events = counts.events
    result.unchanged = max(0, listed_total - counts.new - counts.changed - counts.reformatted)


def _save_page(tx: Transaction, studies: list[Study], counts: _Counts, baseline: bool,
               run_id: int, now: datetime) -> None:
    """Diff one page against the snapshot and queue its writes; unchanged costs one hash."""
    fresh = [s for s in studies if nct_id_of(s) not in counts.seen]
    counts.fetched += len(studies)
    if not fresh:
        return
    known = tx.known([nct_id_of(s) for s in fresh])
    versions: list[dict[str, Any]] = []
    pending: list[tuple[Study, str, list[differ.Change], bool]] = []
    for study in fresh:
        nct_id = nct_id_of(study)
        counts.seen.add(nct_id)
        digest = content_hash(study)
        before = known.get(nct_id)
        if before and before.content_hash == digest and not before.removed:
            continue
        changes: list[differ.Change] = []
        if before is None:
            counts.new += 1
            if not baseline:
                changes.append(differ.new_study(study))
        else:
            if before.removed:
                counts.new += 1
                changes.append(differ.new_study(study))
            if before.content_hash != digest and before.version_id is not None:
                changes.extend(differ.diff(tx.record(before.version_id), study))
            if not before.removed:
                moved = before.last_update_posted != last_update_posted(study)
                if moved:
                    counts.changed += 1
                else:
                    counts.reformatted += 1
            if baseline:
                changes = []
        versions.append({"nct_id": nct_id, "content_hash": digest,
                         "last_update_posted": last_update_posted(study),
                         "sync_run_id": run_id, "fetched_at": now, "record": compress(study)})
        pending.append((study, digest, changes, before is None))
    version_ids = tx.add_versions(versions)
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for (study, digest, changes, is_new), version_id in zip(pending, version_ids, strict=True):
        row = {**summarise(study), "content_hash": digest, "version_id": version_id,
               "removed_at": None}
        if is_new:
            inserts.append({**row, "first_seen_at": now, "last_changed_at": now})
        else:
            updates.append({**row, "last_changed_at": now})
        events.extend(_event_row(run_id, row["nct_id"], version_id, row["last_update_posted"],
                                 now, change) for change in changes)
    tx.insert_studies(inserts)
    tx.update_studies(updates)
    tx.add_events(events)
    counts.events += len(events)


def _listing_row(study: Study) -> dict[str, Any]:
    return {"nct_id": nct_id_of(study), "last_update_posted": last_update_posted(study)}


def _event_row(run_id: int, nct_id: str, version_id: int | None, posted: str | None,
               now: datetime, change: differ.Change) -> dict[str, Any]:
    return {"sync_run_id": run_id, "nct_id": nct_id, "kind": change.kind, "field": change.field,
            "old_value": _json(change.old), "new_value": _json(change.new),
            "summary": change.summary, "detected_at": now, "last_update_posted": posted,
            "version_id": version_id}


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)


def _quiet(_stage: str, _done: int, _total: int | None) -> None:
    pass
