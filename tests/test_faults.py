"""A fault matrix for the incremental sync: every fault kind on every request it makes.

One realistic registry refresh (a status change, a new site, a new trial, a trial gone) is
synced once without faults; its events, study rows and versions are the expected outcome.
Then, for each request of that clean sync and each fault kind, the same sync runs on a copy
of the same baseline with the fault on that one request. Either it succeeds with exactly the
expected outcome, or it fails with a FetchError, leaves the snapshot exactly as the baseline
left it, and the next sync (fault gone) records exactly the expected outcome. Whatever
happens, no trial still in the registry is ever removed, nor held back for removal.

Which cases must fail is pinned in FAILS, so a change in how the sync copes with a fault
shows up here as a changed specification, not only as a passing test.
"""

from __future__ import annotations

import copy
import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.conftest import all_studies, updated
from tests.fakeapi import FakeApi, Registry
from tracker import runs
from tracker.config import Settings
from tracker.ctgov import CtGovClient
from tracker.errors import FetchError
from tracker.models import ChangeKind
from tracker.staging import HELD, Staging
from tracker.store import EVENT, STUDY, VERSION, Store
from tracker.sync import SyncResult, sync

NEXT_DAY = "2026-11-21T09:00:05"
STATUS_CHANGED = "NCT07725679"  # posted inside the window: found by the updated-since pages
SITE_ADDED = "NCT04078230"  # posted one day later, long ago: only the listing shows it
NEWCOMER = "NCT09000001"
DROPPED = "NCT00987428"
TIMEOUT = 1.0  # seconds, for the slow-answer case only
SLOW = 1.5

# The requests of the clean incremental sync, in order (see `step_names`).
STEPS = (
    "version",  # has the registry refreshed since the last sync?
    "listing-1", "listing-2", "listing-3",  # every matching ID and update date, 3 a page
    "updated-1",  # the records posted since the last sync, less the overlap
    "gap-by-id-1",  # the one update the window missed
    "still-found-1",  # the vanished trial, by ID, with the query: does the search find it?
    "still-registered-1",  # ... and without: is it in the registry at all?
    "version-again",  # did the registry refresh during the sync?
)

Rewrite = Callable[[dict[str, Any], dict[str, str]], None]


def _wrong_total(body: dict[str, Any], _params: dict[str, str]) -> None:
    if "totalCount" in body:  # only a first page carries one
        body["totalCount"] += 1


def _repeated_token(body: dict[str, Any], params: dict[str, str]) -> None:
    if "pageToken" in params:  # a first page has no earlier token to repeat
        body["nextPageToken"] = params["pageToken"]


def _duplicate_study(body: dict[str, Any], _params: dict[str, str]) -> None:
    if body.get("studies"):
        body["studies"].append(body["studies"][0])


@dataclass(frozen=True)
class FaultKind:
    """Either a `Registry.fail` fault, or a rewrite of the registry's own JSON answer."""

    fail: dict[str, Any] | None = None
    rewrite: Rewrite | None = None
    timeout: float = 5.0


KINDS = {
    "http-503": FaultKind(fail=dict(status=503)),
    "http-429": FaultKind(fail=dict(status=429, body=b"Too Many Requests",
                                    headers={"Retry-After": "0"})),
    "http-400": FaultKind(fail=dict(status=400, body=b"`filter.ids` is invalid")),
    "truncated": FaultKind(fail=dict(truncate=True)),
    "malformed-json": FaultKind(fail=dict(status=200, body=b"{not json")),
    "empty-page": FaultKind(fail=dict(status=200, body=b'{"studies": [], "totalCount": 0}')),
    "wrong-total": FaultKind(rewrite=_wrong_total),
    "repeated-token": FaultKind(rewrite=_repeated_token),
    "duplicate-study": FaultKind(rewrite=_duplicate_study),
    "slower-than-timeout": FaultKind(fail=dict(delay=SLOW, passthrough=True), timeout=TIMEOUT),
}

# Where each kind must make the sync fail; everywhere else it must succeed. Retried faults
# never fail it (one fault, two retries). An empty answer is believed only where the truth is
# empty (the vanished trial's look-ups) or where the listing makes up for it (updated-since).
# Rewrites that do not apply to a request (no totalCount, no token, no study) change nothing.
FAILS: dict[str, set[str]] = {
    "http-503": set(),
    "http-429": set(),
    "http-400": set(STEPS),
    "truncated": set(),
    "malformed-json": set(),
    "empty-page": {"version", "listing-1", "listing-2", "listing-3", "gap-by-id-1",
                   "version-again"},
    "wrong-total": {"listing-1", "updated-1", "gap-by-id-1", "still-found-1",
                    "still-registered-1"},
    "repeated-token": {"listing-2", "listing-3"},
    "duplicate-study": {"listing-1", "listing-2", "listing-3", "updated-1", "gap-by-id-1"},
    "slower-than-timeout": set(),
}


def move_on(registry: Registry) -> None:
    """The registry's next refresh after the baseline."""
    study = updated(registry.studies[STATUS_CHANGED])
    status = study["protocolSection"]["statusModule"]
    status["overallStatus"] = "RECRUITING"
    status["lastUpdatePostDateStruct"]["date"] = "2026-11-20"
    registry.put(study)

    study = updated(registry.studies[SITE_ADDED])
    study["protocolSection"]["contactsLocationsModule"]["locations"].append(
        {"facility": "Hôpital Édouard Herriot", "status": "RECRUITING", "city": "Lyon",
         "country": "France", "geoPoint": {"lat": 45.74846, "lon": 4.84671}})
    registry.put(study)

    newcomer = copy.deepcopy(registry.studies["NCT02803307"])
    protocol = newcomer["protocolSection"]
    protocol["identificationModule"]["nctId"] = NEWCOMER
    protocol["identificationModule"]["briefTitle"] = "Sirolimus in Inclusion Body Myositis"
    status = protocol["statusModule"]
    status["overallStatus"] = "NOT_YET_RECRUITING"
    status["studyFirstPostDateStruct"] = {"date": "2026-11-19", "type": "ACTUAL"}
    status["lastUpdatePostDateStruct"] = {"date": "2026-11-19", "type": "ACTUAL"}
    status["lastUpdateSubmitDate"] = "2026-11-18"
    registry.put(newcomer)

    registry.drop(DROPPED)
    registry.data_timestamp = NEXT_DAY


def step_names(log: list[tuple[str, dict[str, str], dict[str, str]]]) -> list[str]:
    """Names the sync's requests as STEPS does: what each asks, and its page number."""
    names: list[str] = []
    page = 0
    for path, params, _ in log:
        if path.endswith("/version"):
            names.append("version-again" if "version" in names else "version")
            continue
        if "filter.advanced" in params:
            what = "updated"
        elif "filter.ids" not in params:
            what = "listing"
        elif "fields" not in params:
            what = "gap-by-id"
        else:
            what = "still-found" if "query.cond" in params else "still-registered"
        page = page + 1 if "pageToken" in params else 1
        names.append(f"{what}-{page}")
    return names


def copy_database(source: Path, target: Path) -> str:
    """A copy of a closed SQLite snapshot (WAL and all), as a database URL."""
    src, dst = sqlite3.connect(source), sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()
    return f"sqlite:///{target}"


def snapshot(store: Store) -> dict[str, list[Any]]:
    """Every row of the snapshot's tables and the held removals, for before/after checks."""
    with store.engine.connect() as conn:
        return {t.name: sorted(tuple(r) for r in conn.execute(select(t)))
                for t in (STUDY, VERSION, EVENT, HELD)}


def outcome(store: Store) -> dict[str, list[Any]]:
    """What a sync leaves, without the times and ids that differ from run to run."""
    with store.engine.connect() as conn:
        events = conn.execute(select(EVENT.c.nct_id, EVENT.c.kind, EVENT.c.field,
                                     EVENT.c.summary))
        studies = conn.execute(select(STUDY.c.nct_id, STUDY.c.content_hash,
                                      STUDY.c.overall_status, STUDY.c.removed_at.is_not(None)))
        versions = conn.execute(select(VERSION.c.nct_id, VERSION.c.content_hash))
        return {"events": sorted(map(tuple, events)), "studies": sorted(map(tuple, studies)),
                "versions": sorted(map(tuple, versions))}


def settings_for(base_url: str, database_url: str, timeout: float = 5.0) -> Settings:
    return Settings(base_url=base_url, database_url=database_url, page_size=3,
                    request_interval=0, max_retries=2, timeout=timeout)


def run_sync(settings: Settings) -> SyncResult:
    store = Store.open(settings.database_url)
    client = CtGovClient(settings, sleep=lambda _seconds: None)
    try:
        return sync(settings, store, client)
    finally:
        client.close()
        store.close()


@contextmanager
def opened(database_url: str) -> Iterator[Store]:
    store = Store.open(database_url)
    try:
        yield store
    finally:
        store.close()


class Nth:
    """A `match` for the n-th request (counting from 1) and no other."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.seen = 0

    def __call__(self, _path: str, _params: dict[str, str]) -> bool:
        self.seen += 1
        return self.seen == self.n


def inject(registry: Registry, kind: FaultKind, target: Nth) -> None:
    if kind.fail is not None:
        registry.fail(match=target, **kind.fail)
        return
    assert kind.rewrite is not None
    rewrite, answer = kind.rewrite, registry.answer

    def rewritten(path: str, params: dict[str, str]) -> tuple[int, str, bytes]:
        hit = target(path, params)  # count every request, whatever the answer
        status, content_type, body = answer(path, params)
        if hit and status == 200:
            data = json.loads(body)
            rewrite(data, params)
            body = json.dumps(data).encode()
        return status, content_type, body

    registry.answer = rewritten  # type: ignore[method-assign]


def clear(registry: Registry) -> None:
    registry.faults.clear()
    vars(registry).pop("answer", None)


def assert_no_false_removal(store: Store, registry: Registry) -> None:
    """Only the trial gone from the registry may be removed; none still there may be held."""
    with store.engine.connect() as conn:
        removed_events = set(conn.execute(select(EVENT.c.nct_id)
                                          .where(EVENT.c.kind == ChangeKind.REMOVED)).scalars())
        removed_rows = set(conn.execute(select(STUDY.c.nct_id)
                                        .where(STUDY.c.removed_at.is_not(None))).scalars())
    assert removed_events <= {DROPPED}
    assert removed_rows <= {DROPPED}
    assert not set(Staging(store.db).held()) & set(registry.studies)


def check(kind_name: str, step: str, registry: Registry, settings: Settings,
          before: dict[str, list[Any]], expected: dict[str, list[Any]]) -> None:
    """Sync once with the fault on `step`, then check the outcome as the module says."""
    kind = KINDS[kind_name]
    target = Nth(STEPS.index(step) + 1)
    inject(registry, kind, target)

    try:
        result: SyncResult | None = run_sync(settings)
        error: FetchError | None = None
    except FetchError as raised:
        result, error = None, raised

    assert target.seen >= target.n, "the sync never made the request the fault was meant for"
    with opened(settings.database_url) as store:
        assert_no_false_removal(store, registry)
        if result is not None:
            assert step not in FAILS[kind_name], f"expected a clean failure, got {result}"
            assert (result.removed, result.held) == (1, 0)
            assert outcome(store) == expected
            return
        assert step in FAILS[kind_name], f"expected success, got {error!r}"
        assert snapshot(store) == before
        failed = runs.last_sync(store.db)
        assert failed is not None and failed.status == "failed" and failed.error == str(error)

    clear(registry)
    result = run_sync(settings)

    assert (result.mode, result.removed, result.held) == ("incremental", 1, 0)
    with opened(settings.database_url) as store:
        assert outcome(store) == expected
        assert_no_false_removal(store, registry)


@dataclass(frozen=True)
class Baseline:
    path: Path  # the snapshot after the baseline sync, closed
    snapshot: dict[str, list[Any]]
    expected: dict[str, list[Any]]  # what the clean incremental sync leaves


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory, migrated_sqlite: Path) -> Baseline:
    """One baseline sync for every case, and the clean incremental sync that follows it."""
    folder = tmp_path_factory.mktemp("faults")
    registry = Registry()
    registry.put(*all_studies().values())
    with FakeApi(registry) as api:
        first = copy_database(migrated_sqlite, folder / "baseline.db")
        run_sync(settings_for(api.base_url, first))
        with opened(first) as store:
            before = snapshot(store)
        move_on(registry)
        start = len(registry.log)
        clean = copy_database(folder / "baseline.db", folder / "clean.db")
        result = run_sync(settings_for(api.base_url, clean))
        made = step_names(registry.log[start:])
    assert made == list(STEPS), "the sync's requests changed: update STEPS and FAILS"
    assert (result.mode, result.new, result.changed, result.removed) == ("incremental", 1, 2, 1)
    with opened(clean) as store:
        expected = outcome(store)
    assert [e[:2] for e in expected["events"]] == [
        (DROPPED, "removed"), (SITE_ADDED, "site_added"), (STATUS_CHANGED, "status"),
        (NEWCOMER, "new")]
    return Baseline(folder / "baseline.db", before, expected)


CASES = [pytest.param(kind, step, id=f"{kind}@{step}") for kind in KINDS for step in STEPS]


@pytest.mark.parametrize(("kind", "step"), CASES)
def test_one_fault_on_one_request(kind: str, step: str, baseline: Baseline,
                                  registry: Registry, fake_api: FakeApi,
                                  tmp_path: Path) -> None:
    move_on(registry)
    url = copy_database(baseline.path, tmp_path / "tracker.db")

    check(kind, step, registry, settings_for(fake_api.base_url, url, KINDS[kind].timeout),
          baseline.snapshot, baseline.expected)


# The matrix runs on SQLite, from a copied baseline; these cases check the same promises
# where the staging and the final transaction run on PostgreSQL.
POSTGRES_CASES = [pytest.param(kind, step, id=f"{kind}@{step}") for kind, step in (
    ("http-400", "version-again"),  # everything staged, then refused at the very end
    ("empty-page", "listing-1"),  # every trial seems to vanish
    ("duplicate-study", "gap-by-id-1"),
    ("empty-page", "updated-1"),  # the listing makes up for it
    ("http-503", "updated-1"),
)]


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
@pytest.mark.parametrize(("kind", "step"), POSTGRES_CASES)
def test_one_fault_on_one_request_on_postgres(kind: str, step: str, baseline: Baseline,
                                              registry: Registry, fake_api: FakeApi,
                                              database_url: str) -> None:
    Store.open(database_url, create=True).close()
    settings = settings_for(fake_api.base_url, database_url, KINDS[kind].timeout)
    run_sync(settings)
    with opened(database_url) as store:
        before = snapshot(store)
    move_on(registry)

    check(kind, step, registry, settings, before, baseline.expected)
