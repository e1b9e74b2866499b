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
from tracker import runs
from tracker.config import Settings
from tracker.ctgov import CtGovClient, nct_id_of
from tracker.errors import IncompleteSync, Stopped, TrackerError
from tracker.lock import Lock, hold
from tracker.models import ChangeEvent, ChangeKind, RunStatus, SyncMode
from tracker.plain import explain
from tracker.record import Record, content_hash, last_update_posted, summarise
from tracker.store import BATCH, Known, Store, Transaction, compress
from tracker.tags import Tagger, load_vocabulary
from tracker.tags import columns as tag_columns
from tracker.times import utcnow

IDS_PER_REQUEST = 100
INTERRUPTED = "Interrupted; nothing from this sync was saved."
LISTING_FIELDS = "NCTId|LastUpdatePostDate"

Progress = Callable[[str, int, int | None], None]
"""progress(stage, done, total): called as pages arrive; total is None when unknown."""


@dataclass
class SyncResult:
    run_id: int
    status: RunStatus  # OK or SKIPPED
    mode: SyncMode
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


def sync(settings: Settings, store: Store, client: CtGovClient, tagger: Tagger | None = None,
         *, full: bool = False, progress: Progress | None = None,
         clock: Callable[[], float] = time.monotonic) -> SyncResult:
    """Run one sync under the sync lock; raises TrackerError subclasses on failure.

    Before fetching, studies tagged with another vocabulary are re-tagged from their stored
    records, so an edited vocabulary takes effect at the next sync.
    """
    tagger = tagger or Tagger(load_vocabulary(settings.vocabulary))
    with hold(store.db, Lock.SYNC):
        runs.mark_syncs_interrupted(store.db)
        refresh_derived(store, tagger)
        return _sync_locked(settings, store, client, full, progress or _quiet, clock, tagger)


def refresh_derived(store: Store, tagger: Tagger) -> int:
    """Re-tag every study tagged with another vocabulary (or none), and give events recorded
    before plain sentences existed theirs; returns how many studies were re-tagged. A no-op
    when everything is current. Call under the sync lock."""
    digest = tagger.vocabulary.digest
    done = 0
    with store.transaction() as tx:
        pending = tx.untagged(digest)
        for start in range(0, len(pending), BATCH):
            rows = []
            for nct_id, version_id in pending[start:start + BATCH]:
                record = tx.record(version_id)
                rows.append({"nct_id": nct_id, **tag_columns(tagger.tag(record), record),
                             "vocabulary": digest})
            tx.update_studies(rows)
            done += len(rows)
        tx.explain_events({e.id: explain(_stored_change(e)) for e in tx.unexplained()
                           if e.id is not None})
    return done


def _stored_change(event: ChangeEvent) -> differ.Change:
    return differ.Change(ChangeKind(event.kind), event.field,
                         json.loads(event.old_value) if event.old_value else None,
                         json.loads(event.new_value) if event.new_value else None,
                         event.summary)


def _sync_locked(settings: Settings, store: Store, client: CtGovClient, full: bool,
                 progress: Progress, clock: Callable[[], float], tagger: Tagger) -> SyncResult:
    started = clock()
    requests_before = client.requests_made
    db = store.db
    last_ok = runs.last_sync(db, *runs.SUCCEEDED)
    run_id = runs.begin_sync(db, settings.query)
    try:
        version = client.version()
        same_query = last_ok is not None and last_ok.query == settings.query
        if (not full and same_query and last_ok is not None
                and last_ok.data_timestamp == version.data_timestamp):
            result = SyncResult(run_id, RunStatus.SKIPPED, SyncMode.SKIPPED,
                                version.data_timestamp)
        else:
            baseline = not same_query
            since = None if (full or baseline) else _since(last_ok, settings.overlap_days)
            mode = SyncMode.BASELINE if baseline else (
                SyncMode.FULL if since is None else SyncMode.INCREMENTAL)
            result = SyncResult(run_id, RunStatus.OK, mode, version.data_timestamp,
                                since=since.isoformat() if since else None)
            with store.transaction() as tx:
                save = _Saver(tx, tagger, baseline, run_id, utcnow())
                _fetch_and_save(settings, tx, client, result, since, save, progress)
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
        runs.finish_sync(db, run_id, result.status, mode=result.mode, **counts)
        return result
    except BaseException as error:
        status = RunStatus.FAILED
        if isinstance(error, Stopped):
            message, status = str(error), RunStatus.INTERRUPTED
        elif isinstance(error, TrackerError):
            message = str(error)
        elif isinstance(error, KeyboardInterrupt):
            message, status = INTERRUPTED, RunStatus.INTERRUPTED
        else:
            message = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        runs.finish_sync(db, run_id, status, error=message,
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
                    result: SyncResult, since: date | None, save: _Saver,
                    progress: Progress) -> None:
    counts = save.counts
    baseline, run_id, now = save.baseline, save.run_id, save.now
    tx.clear_listing()
    query = {"query.cond": settings.query}
    total: int | None = None
    if since is None:
        # Full: the full pages are the listing.
        for page in client.pages(query):
            tx.add_listing([_listing_row(s) for s in page.studies])
            save.page(page.studies)
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
            save.page(page.studies)
            total = page.total_count if page.total_count is not None else total
            progress("Fetching updated studies", counts.fetched, total)
            del page
        gaps = tx.stale_listed()
        for start in range(0, len(gaps), IDS_PER_REQUEST):
            chunk = gaps[start:start + IDS_PER_REQUEST]
            got: set[str] = set()
            for page in client.pages({"filter.ids": ",".join(chunk)}):
                got.update(nct_id_of(s) for s in page.studies)
                save.page(page.studies)
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
            tx.add_events([_event_row(run_id, nct_id, None, None, now, change, explain(change))
                           for nct_id in removed
                           for change in [differ.removed_study(
                               nct_id, "no longer matches the tracked query on "
                                       "ClinicalTrials.gov")]])
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


@dataclass
class _Saver:
    """Diffs pages against the snapshot and queues their writes in the sync's transaction."""

    tx: Transaction
    tagger: Tagger
    baseline: bool
    run_id: int
    now: datetime
    counts: _Counts = field(default_factory=_Counts)

    def page(self, studies: list[Record]) -> None:
        """One page; an unchanged record costs one hash and nothing else."""
        counts, tx = self.counts, self.tx
        fresh = [s for s in studies if nct_id_of(s) not in counts.seen]
        counts.fetched += len(studies)
        if not fresh:
            return
        known = tx.known([nct_id_of(s) for s in fresh])
        versions: list[dict[str, Any]] = []
        pending: list[tuple[Record, str, list[dict[str, Any]], bool]] = []
        for study in fresh:
            nct_id = nct_id_of(study)
            counts.seen.add(nct_id)
            digest = content_hash(study)
            before = known.get(nct_id)
            if before and before.content_hash == digest and not before.removed:
                continue
            events = self._events(study, before, digest)
            versions.append({"nct_id": nct_id, "content_hash": digest,
                             "last_update_posted": last_update_posted(study),
                             "sync_run_id": self.run_id, "fetched_at": self.now,
                             "record": compress(study)})
            pending.append((study, digest, events, before is None))
        version_ids = tx.add_versions(versions)
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        rows: list[dict[str, Any]] = []
        for (study, digest, events, is_new), version_id in zip(pending, version_ids,
                                                                strict=True):
            row = {**summarise(study), **tag_columns(self.tagger.tag(study), study),
                   "vocabulary": self.tagger.vocabulary.digest, "content_hash": digest,
                   "version_id": version_id, "removed_at": None}
            if is_new:
                inserts.append({**row, "first_seen_at": self.now, "last_changed_at": self.now})
            else:
                updates.append({**row, "last_changed_at": self.now})
            rows.extend({**event, "version_id": version_id} for event in events)
        tx.insert_studies(inserts)
        tx.update_studies(updates)
        tx.add_events(rows)
        counts.events += len(rows)

    def _events(self, study: Record, before: Known | None, digest: str) -> list[dict[str, Any]]:
        counts = self.counts
        old: Record | None = None
        changes: list[differ.Change] = []
        if before is None:
            counts.new += 1
            if not self.baseline:
                changes.append(differ.new_study(study))
        else:
            if before.removed:
                counts.new += 1
                changes.append(differ.new_study(study))
            if before.content_hash != digest and before.version_id is not None:
                old = self.tx.record(before.version_id)
                changes.extend(differ.diff(old, study))
            if not before.removed:
                if before.last_update_posted != last_update_posted(study):
                    counts.changed += 1
                else:
                    counts.reformatted += 1
            if self.baseline:
                changes = []
        nct_id, posted = nct_id_of(study), last_update_posted(study)
        return [_event_row(self.run_id, nct_id, None, posted, self.now, change,
                           explain(change, old, study)) for change in changes]


def _listing_row(study: Record) -> dict[str, Any]:
    return {"nct_id": nct_id_of(study), "last_update_posted": last_update_posted(study)}


def _event_row(run_id: int, nct_id: str, version_id: int | None, posted: str | None,
               now: datetime, change: differ.Change, plain: str) -> dict[str, Any]:
    return {"sync_run_id": run_id, "nct_id": nct_id, "kind": change.kind, "field": change.field,
            "old_value": _json(change.old), "new_value": _json(change.new),
            "summary": change.summary, "plain": plain, "detected_at": now,
            "last_update_posted": posted, "version_id": version_id}


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)


def _quiet(_stage: str, _done: int, _total: int | None) -> None:
    pass
