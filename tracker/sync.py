"""One sync, as a pipeline: fetch -> prove the fetch complete -> diff -> save, all or nothing.

A full sync pages through every study the query matches. An incremental sync (the default
once a baseline exists) lists the matching IDs with their update dates (cheap), fetches the
studies updated since the last successful sync (with an overlap) and fills any gap the listing
reveals by ID. If `/version` says the registry has not refreshed since the last successful
sync, nothing is fetched at all.

A study missing from the listing is removed only on the registry's own word, asked by ID
(`_removals`); a mass removal waits for a later refresh to confirm it. A record that cannot
be read is kept as received, reported, and left out of the diff; the others sync.

Pages are diffed as they arrive and staged in short transactions (`tracker.staging`); the
snapshot changes only at the end, in one short transaction, after the pages are proven
complete. Any error before that leaves the snapshot exactly as it was, and no write lock is
held while the registry is being read.
"""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from tracker import diff as differ
from tracker import runs
from tracker.config import Settings
from tracker.ctgov import CtGovClient, PageStudy, nct_id_of
from tracker.errors import IncompleteSync, Stopped, TrackerError
from tracker.lock import Lock, hold
from tracker.models import ChangeEvent, ChangeKind, RunStatus, SyncMode
from tracker.plain import explain
from tracker.record import (
    Record,
    content_hash,
    last_update_posted,
    received_hash,
    summarise,
)
from tracker.shape import problems
from tracker.staging import Known, Staged, Staging
from tracker.store import BATCH, Store, Transaction, compress, compress_json
from tracker.tags import Tagger
from tracker.tags import columns as tag_columns
from tracker.tagworker import TagWorker, spare_core
from tracker.times import utcnow
from tracker.treatments import known_names
from tracker.vocabulary import load_vocabulary

IDS_PER_REQUEST = 100
WORKER_MIN_PAGE_SIZE = 100  # smaller pages: tagging in the sync's own process costs less
STAGE_EVERY = 100  # studies staged per short transaction: what a page holds beside its bytes
MASS_REMOVAL = 0.05  # removing more than this share of the tracked trials at once is suspect
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
    held: int = 0  # removals held back: too many at once (see `mass_removal`)
    unreadable: list[list[str]] = field(default_factory=list)  # [nct_id, problem]

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
    unreadable: list[list[str]] = field(default_factory=list)  # [nct_id, problem]


def sync(settings: Settings, store: Store, client: CtGovClient, tagger: Tagger | None = None,
         *, full: bool = False, progress: Progress | None = None,
         clock: Callable[[], float] = time.monotonic) -> SyncResult:
    """Run one sync under the sync lock; raises TrackerError subclasses on failure.

    Before fetching, studies tagged with another vocabulary are re-tagged from their stored
    records, so an edited vocabulary takes effect at the next sync.
    """
    tagger = tagger or Tagger(load_vocabulary(settings.vocabulary))
    with hold(store.db, Lock.SYNC), _older_objects_left_alone():
        runs.mark_syncs_interrupted(store.db)
        refresh_derived(store, tagger)
        return _sync_locked(settings, store, client, full, progress or _quiet, clock, tagger)


@contextmanager
def _older_objects_left_alone() -> Iterator[None]:
    """Keep the garbage collector off the objects that were alive before the sync (modules,
    the ORM's tables, the tagger's patterns) while the sync runs: each decoded record makes
    thousands of new objects, and every full collection walked all the old ones again (two
    such collections cost 55 ms of a 1,000-study baseline). They are handed back after."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


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
    staging = Staging(db)
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
            staging.clear()  # what a sync that died left behind
            stager = _Stager(store, staging, tagger, baseline, run_id)
            if mode is SyncMode.BASELINE and _worth_a_worker(settings, tagger):
                stager.worker = TagWorker(settings.vocabulary, tagger.vocabulary.digest)
            elif mode is not SyncMode.FULL:  # a full sync mostly finds studies unchanged
                tagger.prepare()  # compiled while the first page is on its way
            try:
                _fetch(settings, staging, client, since, stager, progress)
            finally:
                if stager.worker is not None:
                    stager.worker.close()
            removals = _removals(settings, staging, client, baseline, version.data_timestamp)
            after = client.version()
            if after.data_timestamp != version.data_timestamp:
                raise IncompleteSync(
                    f"ClinicalTrials.gov refreshed its data during the sync "
                    f"({version.data_timestamp} -> {after.data_timestamp}). Nothing was "
                    "changed; run the sync again."
                )
            listed, now = staging.listed_count(), utcnow()
            with store.transaction() as tx:  # short: everything was fetched and checked
                staging.apply(tx, run_id, now)
                _apply_removals(tx, staging, removals, stager, run_id, now,
                                version.data_timestamp)
                staging.finish(tx)
            _count(result, stager, listed, removals)
        result.requests = client.requests_made - requests_before
        result.seconds = round(clock() - started, 2)
        counts = {k: v for k, v in result.as_dict().items()
                  if k in ("fetched", "new", "changed", "removed", "unchanged", "reformatted",
                           "events", "requests", "since", "data_timestamp", "held")}
        runs.finish_sync(db, run_id, result.status, mode=result.mode,
                         unreadable=json.dumps(result.unreadable) if result.unreadable
                         else None, **counts)
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


def _worth_a_worker(settings: Settings, tagger: Tagger) -> bool:
    """A baseline tags every study: with pages of hundreds and a core to spare, tagging runs
    beside the rest in a worker process (`tracker.tagworker`), started now so that it is
    ready when the first page arrives. Only for the stock Tagger, which the worker runs."""
    return (type(tagger) is Tagger and settings.page_size >= WORKER_MIN_PAGE_SIZE
            and spare_core())


def _since(last_ok: Any, overlap_days: int) -> date:
    stamp = last_ok.data_timestamp
    try:
        base = datetime.fromisoformat(stamp).date() if stamp else last_ok.started_at.date()
    except ValueError:
        base = last_ok.started_at.date()
    return base - timedelta(days=overlap_days)


def _fetch(settings: Settings, staging: Staging, client: CtGovClient, since: date | None,
           stager: _Stager, progress: Progress) -> None:
    """Read every page the sync needs into the staging tables, proving each set complete."""
    counts = stager.counts
    query = {"query.cond": settings.query}
    total: int | None = None
    if since is None:
        # Full: the full pages are the listing.
        for page in client.pages(query):
            staging.add_listing([_listing_row(s) for s in page.studies])
            stager.page(page.studies)
            total = page.total_count if page.total_count is not None else total
            progress("Fetching studies", len(counts.seen), total)
            del page  # let it go before the next one downloads
        return
    listed = 0
    for page in client.pages({**query, "fields": LISTING_FIELDS}):
        staging.add_listing([_listing_row(s) for s in page.studies])
        listed += len(page.studies)
        total = page.total_count if page.total_count is not None else total
        progress("Listing matching studies", listed, total)
    updated = {**query,
               "filter.advanced": f"AREA[LastUpdatePostDate]RANGE[{since.isoformat()},MAX]"}
    for page in client.pages(updated):
        stager.page(page.studies)
        total = page.total_count if page.total_count is not None else total
        progress("Fetching updated studies", counts.fetched, total)
        del page
    gaps = [nct_id for nct_id in staging.stale_listed() if nct_id not in counts.seen]
    for start in range(0, len(gaps), IDS_PER_REQUEST):
        chunk = gaps[start:start + IDS_PER_REQUEST]
        got: set[str] = set()
        for page in client.pages({"filter.ids": ",".join(chunk)}):
            got.update(s.nct_id for s in page.studies)
            stager.page(page.studies)
        missing = sorted(set(chunk) - got)
        if missing:
            raise IncompleteSync(
                f"{len(missing)} listed studies could not be fetched by ID "
                f"({', '.join(missing[:5])}). Nothing was changed; run the sync again."
            )
        progress("Fetching studies missing from the snapshot",
                 min(start + IDS_PER_REQUEST, len(gaps)), len(gaps))


@dataclass
class Removals:
    """What to do with tracked studies the listing no longer shows."""

    remove: dict[str, str] = field(default_factory=dict)  # study -> why, in plain words
    hold: list[str] = field(default_factory=list)  # too many at once: wait for confirmation
    release: list[str] = field(default_factory=list)  # held before, listed again


def mass_removal(count: int, tracked: int) -> bool:
    """Whether removing `count` of `tracked` studies at once is more likely a registry or
    network fault than real withdrawals: all of them, or more than MASS_REMOVAL of them
    (and at least three)."""
    return tracked > 0 and (count >= tracked
                            or (count >= 3 and count > tracked * MASS_REMOVAL))


def _removals(settings: Settings, staging: Staging, client: CtGovClient, baseline: bool,
              data_timestamp: str | None) -> Removals:
    """Corroborate every removal by ID before believing it.

    A study missing from the listing is fetched by ID, with the query and without. If the
    query still finds it, the listing was wrong: the sync fails and changes nothing. If it
    exists but no longer matches, or is gone from the registry, that is the registry's own
    word. Even so, a mass removal is held back until a sync on a later registry refresh finds
    the same studies missing, since a registry fault can make every request look empty.
    """
    held = staging.held()
    missing = staging.unlisted_active()
    out = Removals(release=[n for n in held if n not in set(missing)])
    if not missing:
        return out
    if baseline:  # a new query: whatever it no longer matches leaves, without events
        out.remove = {n: "no longer matches the tracked query" for n in missing}
        return out
    still = _fetch_ids(client, missing, {"query.cond": settings.query})
    if still:
        raise IncompleteSync(
            f"The registry's listing left out {len(still)} tracked trial(s) that its search "
            f"still finds ({', '.join(sorted(still)[:5])}). Nothing was changed; run the sync "
            "again."
        )
    exists = _fetch_ids(client, missing, {})
    why = {n: ("no longer matches the tracked query on ClinicalTrials.gov" if n in exists
               else "no longer on ClinicalTrials.gov") for n in missing}
    confirmed = [n for n in missing if n in held and held[n] != data_timestamp]
    fresh = [n for n in missing if n not in confirmed]
    if mass_removal(len(fresh), staging.tracked_count()):
        out.hold = fresh
        out.remove = {n: why[n] for n in confirmed}
    else:
        out.remove = why
    return out


def _fetch_ids(client: CtGovClient, nct_ids: list[str], params: dict[str, str]) -> set[str]:
    """Which of these studies the registry returns for `params` (their records unread)."""
    found: set[str] = set()
    for start in range(0, len(nct_ids), IDS_PER_REQUEST):
        chunk = nct_ids[start:start + IDS_PER_REQUEST]
        for page in client.pages({**params, "filter.ids": ",".join(chunk),
                                  "fields": LISTING_FIELDS}):
            found.update(s.nct_id for s in page.studies)
    return found & set(nct_ids)


def _apply_removals(tx: Transaction, staging: Staging, removals: Removals, stager: _Stager,
                    run_id: int, now: datetime, data_timestamp: str | None) -> None:
    gone = sorted(removals.remove)
    if gone:
        tx.mark_removed(gone, now)
        if not stager.baseline:
            rows = []
            posted = removal_posted(data_timestamp, now)
            for nct_id in gone:
                change = differ.removed_study(nct_id, removals.remove[nct_id])
                rows.append({**_event_row(nct_id, posted, change, explain(change)),
                             "sync_run_id": run_id, "detected_at": now, "version_id": None})
            tx.add_events(rows)
            stager.counts.events += len(rows)
    staging.release(tx, [*removals.release, *gone])
    if removals.hold:
        staging.hold(tx, removals.hold, data_timestamp, run_id, now)


def removal_posted(data_timestamp: str | None, now: datetime) -> str:
    """The registry date of a removal: the day of the registry data that no longer had the
    study ("2026-11-21T09:00:05" -> "2026-11-21"), or the detection day if that is unreadable."""
    try:
        return date.fromisoformat((data_timestamp or "")[:10]).isoformat()
    except ValueError:
        return now.date().isoformat()


def _count(result: SyncResult, stager: _Stager, listed: int, removals: Removals) -> None:
    counts = stager.counts
    result.listed = listed
    result.fetched = counts.fetched
    result.new = counts.new
    result.changed = counts.changed
    result.reformatted = counts.reformatted
    result.removed = len(removals.remove)
    result.held = len(removals.hold)
    result.events = counts.events
    result.unreadable = counts.unreadable
    result.unchanged = max(0, result.listed - counts.new - counts.changed - counts.reformatted
                           - len(counts.unreadable))


@dataclass
class _Stager:
    """Diffs pages against the snapshot and stages their writes (see tracker.staging)."""

    store: Store
    staging: Staging
    tagger: Tagger
    baseline: bool
    run_id: int
    counts: _Counts = field(default_factory=_Counts)
    worker: TagWorker | None = None  # tags the studies of a page beside the sync

    def page(self, studies: list[PageStudy]) -> None:
        """One page, one study at a time: each is decoded, hashed and dropped, so one record
        is alive at once; an unchanged one costs that and nothing else, and one whose JSON is
        what its stored content was computed from (`record.received_hash`) is not even
        decoded. A record that cannot be read is kept as received and reported; the others
        go on."""
        counts = self.counts
        fresh = [s for s in studies if s.nct_id not in counts.seen]
        counts.fetched += len(studies)
        if not fresh:
            return
        known = self.staging.known([s.nct_id for s in fresh])
        staged: list[Staged] = []
        confirmed: list[tuple[str, str]] = []
        if self.worker is not None:
            self.worker.submit((s.nct_id, s.raw, s.unsafe) for s in fresh
                               if s.nct_id not in known)
        for item in fresh:
            counts.seen.add(item.nct_id)
            raw = bytes(item.raw)
            before = known.get(item.nct_id)
            if (before is not None and not before.removed and before.received_hash is not None
                    and received_hash(raw) == before.received_hash):
                continue
            study = item.record()
            digest = content_hash(study)
            if before and before.content_hash == digest and not before.removed:
                fingerprint = received_hash(raw, study)
                if fingerprint is not None and fingerprint != before.received_hash:
                    confirmed.append((item.nct_id, fingerprint))  # read it once, not each time
                continue
            one = self._one(item, raw, study, digest, before)
            if one is not None:
                staged.append(one)
            if len(staged) >= STAGE_EVERY:
                self.staging.stage(staged)
                staged = []
        self.staging.stage(staged)
        self.staging.confirm(confirmed)
        if self.worker is not None:
            self.worker.drain()  # the page's bytes are let go after this

    def _one(self, item: PageStudy, raw: bytes, study: Record, digest: str,
             before: Known | None) -> Staged | None:
        """A changed or new study's writes; an unreadable one's record alone (None if that
        version is already kept)."""
        found = problems(study)
        if not found:
            try:
                return self._readable(item, raw, study, digest, before)
            except Exception as error:  # a shape the checks missed: still one record
                found = [f"{type(error).__name__}: {error}"]
        self.counts.unreadable.append([item.nct_id, "; ".join(found)])
        if self.staging.has_version(item.nct_id, digest):
            return None
        return Staged(item.nct_id, digest, item.last_update_posted, _stored(item, raw, study),
                      None, before is None, None, [])

    def _readable(self, item: PageStudy, raw: bytes, study: Record, digest: str,
                  before: Known | None) -> Staged:
        tags = self.worker.tags(item.nct_id) if self.worker is not None else None
        if tags is None:  # no worker, or it could not tag this one
            tags = self.tagger.tag(study)
        row = {**summarise(study), **tag_columns(tags, study),
               "vocabulary": self.tagger.vocabulary.digest, "content_hash": digest,
               "received_hash": received_hash(raw, study)}
        events = self._events(study, before, digest)
        return Staged(item.nct_id, digest, last_update_posted(study),
                      _stored(item, raw, study), row, before is None, None, events)

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
                old = self.store.record(before.version_id)
                changes.extend(differ.diff(old, study))
            if not before.removed:
                if before.last_update_posted != last_update_posted(study):
                    counts.changed += 1
                else:
                    counts.reformatted += 1
            if self.baseline:
                changes = []
        nct_id, posted = nct_id_of(study), last_update_posted(study)
        rows = [_event_row(nct_id, posted, change,
                           explain(change, old, study, known_names=known_names()))
                for change in changes]
        counts.events += len(rows)
        return rows


def _listing_row(study: PageStudy) -> tuple[str, str | None]:
    return study.nct_id, study.last_update_posted


def _stored(item: PageStudy, raw: bytes, study: Record) -> bytes:
    """The record as stored: the bytes as received, unless cleaning changed the record."""
    return compress(study) if item.unsafe else compress_json(raw)


def _event_row(nct_id: str, posted: str | None, change: differ.Change,
               plain: str) -> dict[str, Any]:
    """An event as staged; the sync run, version and time are added when it is applied."""
    return {"nct_id": nct_id, "kind": change.kind, "field": change.field,
            "old_value": _json(change.old), "new_value": _json(change.new),
            "summary": change.summary, "plain": plain, "last_update_posted": posted}


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)


def _quiet(_stage: str, _done: int, _total: int | None) -> None:
    pass
