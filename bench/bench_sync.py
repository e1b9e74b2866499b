"""Benchmark: speed and memory of a large sync against the local fake API.

Measures the product promise "pages are processed as they arrive, so memory stays flat however
large the query; an unchanged record costs a hash comparison, not a full diff; writes are
batched". Prints figures; asserts nothing (a phase whose counts are not what the scenario
implies is flagged in the table and in the notes under it).

For each size N it copies real records (tests/data/studies/*.json and, when present, the huge
real record tests/data/real/NCT04267848.json with 1,148 sites), giving each copy its own
nctId and briefTitle, serves them with tests.fakeapi.FakeApi on 127.0.0.1 (which gzips each
distinct answer once, as a cache in front of an API does; every page is asked for once,
untimed, before the floor, so that the floor and the syncs are served alike), and runs three
syncs into a fresh SQLite database, each in its own child process so that peak RSS is the
sync's own:

  floor        no tracker code: plain standard-library Python (urllib, json, hashlib, zlib,
               sqlite3) fetches every page, parses it and stores id + compressed JSON + hash;
               every other phase's time is also printed as a ratio to it
  baseline     the first sync (pages through every study)
  full         `sync(full=True)` with nothing changed: every record is fetched and hashed,
               none should be diffed or written
  incremental  after ~1% of the records got a new lastUpdatePostDate and overallStatus and the
               registry's data timestamp moved on by a day

Run: .venv/bin/python bench/bench_sync.py [--studies 1000 5000 20000] (see --help).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "data" / "studies"
HUGE = ROOT / "tests" / "data" / "real" / "NCT04267848.json"
ID_BASE = 90_000_000  # copies get NCT90000000, NCT90000001, ...: clear of the fixtures' IDs
PHASES = ("floor", "baseline", "full", "incremental")
STATUS_NEXT = {
    "NOT_YET_RECRUITING": "RECRUITING",
    "RECRUITING": "ACTIVE_NOT_RECRUITING",
    "ENROLLING_BY_INVITATION": "ACTIVE_NOT_RECRUITING",
    "ACTIVE_NOT_RECRUITING": "COMPLETED",
    "COMPLETED": "TERMINATED",
}

Record = dict[str, Any]


# --- the parent: records, server, table ----------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.child:
        return _child(json.loads(args.child))
    sys.path.insert(0, str(ROOT))
    from tests.fakeapi import FakeApi
    from tracker.config import DEFAULT_QUERY

    templates = _templates(include_huge=not args.no_huge)
    huge = templates.pop("huge", None)
    print(f"Templates: {len(templates)} fixture records"
          + (f" + {HUGE.name} (1,148 sites) once every {args.huge_every} studies"
             if huge is not None else " (no huge record)")
          + f"; page size {args.page_size}; {args.changed_percent}% changed before the "
            "incremental sync.", flush=True)
    rows: list[dict[str, Any]] = []
    for n in args.studies:
        registry = _registry(n, list(templates.values()), huge, args.huge_every)
        # The server's threads run in this process; its CPU time is this process's CPU time
        # while the child runs (the main thread only waits), reported as "server CPU".
        with FakeApi(registry) as api, tempfile.TemporaryDirectory(prefix="bench-sync-") as tmp:
            _warm(api.base_url, DEFAULT_QUERY, args.page_size)
            db = Path(tmp) / "tracker.db"
            floor_seconds, floor_rss = 0.0, 0.0
            for phase in PHASES:
                changed = 0
                if phase == "incremental":
                    changed = _change_some(registry, args.changed_percent)
                target = Path(tmp) / "floor.db" if phase == "floor" else db
                spec = {"base_url": api.base_url, "database_url": f"sqlite:///{target}",
                        "page_size": args.page_size, "full": phase == "full",
                        "floor": phase == "floor", "query": DEFAULT_QUERY}
                cpu_before = _cpu_self()
                out = _run_child(spec, Path(tmp), args.phase_timeout)
                server_cpu = _cpu_self() - cpu_before
                row = {"studies": n, "phase": phase, "changed_in_registry": changed,
                       "server_cpu": server_cpu, "db_mb": _db_mb(target), **out}
                if phase == "floor":
                    floor_seconds, floor_rss = row["seconds"], row["peak_rss_mb"]
                row["floor_rss_mb"] = floor_rss
                row["x_floor"] = row["seconds"] / max(floor_seconds, 1e-9)
                row["check"] = _check(row)
                rows.append(row)
                _print_row(row, header=len(rows) == 1)
        del registry
    _print_summary(rows, args.studies)
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", type=int, nargs="+", default=[1000, 5000, 20000],
                        metavar="N", help="sizes to run (default: 1000 5000 20000)")
    parser.add_argument("--page-size", type=int, default=1000,
                        help="TRACKER_PAGE_SIZE for the sync (default 1000, the API's cap)")
    parser.add_argument("--changed-percent", type=float, default=1.0,
                        help="share of records changed before the incremental sync (default 1)")
    parser.add_argument("--no-huge", action="store_true",
                        help=f"leave out {HUGE.name} even if it is present")
    parser.add_argument("--huge-every", type=int, default=1000, metavar="K",
                        help="one copy of the huge record every K studies (default 1000, "
                             "i.e. about one per page)")
    parser.add_argument("--phase-timeout", type=float, default=900.0, metavar="SECONDS",
                        help="kill a sync child that runs longer than this (default 900)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if any(n < 1 for n in args.studies) or args.huge_every < 1:
        parser.error("--studies and --huge-every take positive numbers")
    if not 1 <= args.page_size <= 1000:
        parser.error("--page-size must be from 1 to 1000")
    if not 0 < args.changed_percent <= 100:
        parser.error("--changed-percent must be more than 0 and at most 100")
    args.studies = sorted(set(args.studies))
    return args


def _templates(include_huge: bool) -> dict[str, Record]:
    out = {p.stem: json.loads(p.read_text()) for p in sorted(FIXTURES.glob("NCT*.json"))}
    if not out:
        raise SystemExit(f"No fixture records in {FIXTURES}")
    if include_huge and HUGE.is_file():
        out["huge"] = json.loads(HUGE.read_text())
    return out


def _registry(n: int, templates: list[Record], huge: Record | None, huge_every: int) -> Any:
    """A fake registry holding n copies of real records, each with its own nctId and title.

    Copies share every part of their template except the dicts on the path to the fields that
    differ, so 20,000 records cost the generator megabytes, not gigabytes. That is also why
    they go straight into `registry.studies`: `Registry.put` deep-copies each record.
    """
    from tests.fakeapi import Registry

    registry = Registry()
    for i in range(n):
        if huge is not None and i % huge_every == huge_every // 2:
            template = huge
        else:
            template = templates[i % len(templates)]
        nct_id = f"NCT{ID_BASE + i:08d}"
        title = template["protocolSection"]["identificationModule"].get("briefTitle") or ""
        record = _with(template, ("protocolSection", "identificationModule", "nctId"), nct_id)
        record = _with(record, ("protocolSection", "identificationModule", "briefTitle"),
                       f"{title} (benchmark copy {i + 1})")
        registry.studies[nct_id] = record
    return registry


def _with(record: Record, path: tuple[str, ...], value: Any) -> Record:
    """A copy of `record` with the (existing) field at `path` set; only that path is copied."""
    top = dict(record)
    node = top
    for key in path[:-1]:
        node[key] = dict(node[key])
        node = node[key]
    if path[-1] not in node:
        raise KeyError(f"{'.'.join(path)} is not in the record; the benchmark invents no fields")
    node[path[-1]] = value
    return top


def _change_some(registry: Any, percent: float) -> int:
    """Move the registry on a day: ~percent% of records get a sponsor update (new
    lastUpdatePostDate after the previous data timestamp, new overallStatus); every record's
    versionHolder moves, as on every real refresh (it must not count as a change)."""
    old_stamp = datetime.fromisoformat(registry.data_timestamp)
    new_stamp = old_stamp + timedelta(days=1)
    posted = new_stamp.date()
    stride = max(1, round(100 / percent))
    changed = 0
    with registry.lock:
        for i, nct_id in enumerate(sorted(registry.studies)):
            record = registry.studies[nct_id]
            holder = ("derivedSection", "miscInfoModule", "versionHolder")
            if _get(record, holder) is not None:
                record = _with(record, holder, posted.isoformat())
            if i % stride == stride // 2:
                status = ("protocolSection", "statusModule")
                current = _get(record, (*status, "overallStatus"))
                record = _with(record, (*status, "overallStatus"),
                               STATUS_NEXT.get(current, "COMPLETED"))
                record = _with(record, (*status, "lastUpdatePostDateStruct"),
                               {**_get(record, (*status, "lastUpdatePostDateStruct")),
                                "date": posted.isoformat()})
                if _get(record, (*status, "lastUpdateSubmitDate")) is not None:
                    record = _with(record, (*status, "lastUpdateSubmitDate"),
                                   (posted - timedelta(days=1)).isoformat())
                changed += 1
            registry.studies[nct_id] = record
        registry.data_timestamp = new_stamp.isoformat()
    return changed


def _get(record: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(record, dict) or key not in record:
            return None
        record = record[key]
    return record


def _warm(base_url: str, query: str, page_size: int) -> None:
    """Ask for every page the floor and the sync will ask for, untimed, so that the fake
    server's cache holds each one gzipped and every phase is served alike (from the cache).
    The sync's first page differs from the floor's only by its totalCount (countTotal=true);
    later pages are the same request for both."""
    import gzip
    import urllib.parse
    import urllib.request

    def page(params: dict[str, str]) -> dict[str, Any]:
        request = urllib.request.Request(f"{base_url}/studies?{urllib.parse.urlencode(params)}",
                                         headers={"Accept-Encoding": "gzip"})
        with urllib.request.urlopen(request, timeout=600) as response:
            body: dict[str, Any] = json.loads(gzip.decompress(response.read()))
            return body

    first = {"query.cond": query, "pageSize": str(page_size)}
    page({**first, "countTotal": "true"})
    token = page(first).get("nextPageToken")
    while token:
        token = page({**first, "pageToken": token}).get("nextPageToken")


def _run_child(spec: dict[str, Any], cwd: Path, timeout: float) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    try:
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired as error:
        raise SystemExit(f"A sync child ran longer than {timeout:.0f}s; stopped it.") from error
    if done.returncode != 0:
        raise SystemExit(f"A sync child failed (exit {done.returncode}):\n{done.stderr.strip()}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _db_mb(db: Path) -> float:
    files = [db, db.with_name(db.name + "-wal")]
    return sum(p.stat().st_size for p in files if p.exists()) / 2**20


def _check(row: dict[str, Any]) -> str:
    """What the scenario implies about the counts; '' when they match."""
    n, result = row["studies"], row["result"]
    problems = []
    expected: dict[str, Any] = {
        "floor": {"fetched": n},
        "baseline": {"mode": "baseline", "new": n, "events": 0, "fetched": n},
        "full": {"mode": "full", "unchanged": n, "changed": 0, "events": 0, "fetched": n,
                 "reformatted": 0},
        "incremental": {"mode": "incremental", "changed": row["changed_in_registry"],
                        "fetched": row["changed_in_registry"]},
    }[row["phase"]]
    for key, value in expected.items():
        if result[key] != value:
            problems.append(f"{key} {result[key]} (expected {value})")
    if row["phase"] == "full" and row["versions_added"]:
        problems.append(f"{row['versions_added']} versions written (expected 0)")
    return "; ".join(problems)


COLUMNS = [  # title, width, format of the value
    ("studies", 7, lambda r: f"{r['studies']}"),
    ("phase", 11, lambda r: r["phase"]),
    ("seconds", 8, lambda r: f"{r['seconds']:.2f}"),
    ("x floor", 7, lambda r: f"{r['x_floor']:.2f}"),
    ("studies/s", 9, lambda r: f"{r['studies'] / max(r['seconds'], 1e-9):.0f}"),
    ("peak RSS MB", 11, lambda r: f"{r['peak_rss_mb']:.1f}"),
    ("worker MB", 9, lambda r: f"{r['worker_rss_mb']:.1f}" if r.get("worker_rss_mb") else "-"),
    ("RSS before MB", 13, lambda r: f"{r['rss_before_mb']:.1f}"),
    ("RSS x floor", 11, lambda r: f"{r['peak_rss_mb'] / r['floor_rss_mb']:.2f}"),
    ("requests", 8, lambda r: f"{r['result']['requests']}"),
    ("DB MB", 7, lambda r: f"{r['db_mb']:.1f}"),
    ("events", 6, lambda r: f"{r['result'].get('events', '-')}"),
    ("fetched", 7, lambda r: f"{r['result']['fetched']}"),
    ("changed", 7, lambda r: f"{r['result'].get('changed', '-')}"),
    ("unchanged", 9, lambda r: f"{r['result'].get('unchanged', '-')}"),
    ("versions+", 9, lambda r: f"{r['versions_added']}"),
    ("server CPU s", 12, lambda r: f"{r['server_cpu']:.1f}"),
    ("check", 5, lambda r: "ok" if not r["check"] else "!!"),
]


def _print_row(row: dict[str, Any], header: bool) -> None:
    if header:
        print()
        print("  ".join(title.rjust(width) for title, width, _ in COLUMNS))
        print("  ".join("-" * width for _, width, _ in COLUMNS))
    print("  ".join(fmt(row).rjust(width) for _, width, fmt in COLUMNS), flush=True)


def _print_summary(rows: list[dict[str, Any]], sizes: list[int]) -> None:
    print()
    for row in rows:
        if row["check"]:
            print(f"!! {row['studies']} studies, {row['phase']}: {row['check']}")
    if len(sizes) < 2:
        print("Run two or more sizes to compare peak RSS across sizes.")
        return
    small, large = sizes[0], sizes[-1]
    print(f"Peak RSS, {large} studies against {small} ({large / small:.0f}x the studies); "
          "'own' is peak minus the RSS before the sync started (interpreter and libraries):")
    for phase in PHASES:
        a = next(r for r in rows if r["studies"] == small and r["phase"] == phase)
        b = next(r for r in rows if r["studies"] == large and r["phase"] == phase)
        own_a = a["peak_rss_mb"] - a["rss_before_mb"]
        own_b = b["peak_rss_mb"] - b["rss_before_mb"]
        print(f"  {phase:<11}  {a['peak_rss_mb']:7.1f} MB -> {b['peak_rss_mb']:7.1f} MB  "
              f"x{b['peak_rss_mb'] / a['peak_rss_mb']:.2f}    own {own_a:6.1f} MB -> "
              f"{own_b:6.1f} MB  x{own_b / max(own_a, 0.1):.2f}")


# --- the child: one sync, measured ---------------------------------------------------------


def _child(spec: dict[str, Any]) -> int:
    if spec["floor"]:
        return _floor(spec)
    sys.path.insert(0, str(ROOT))
    from tracker.config import Settings
    from tracker.ctgov import CtGovClient
    from tracker.store import Store
    from tracker.sync import sync
    from tracker.tagworker import TagWorker

    # A baseline tags in a worker process: its peak RSS is read just before the sync ends it
    # (the kernel's figure for a waited child would count this process's memory at the fork).
    worker_peaks: list[int] = []
    end_worker = TagWorker.close

    def close(worker: TagWorker) -> None:
        if worker._process is not None:
            worker_peaks.append(_proc_status_kb("VmHWM", worker._process.pid))
        end_worker(worker)

    TagWorker.close = close  # type: ignore[method-assign]
    settings = Settings(base_url=spec["base_url"], database_url=spec["database_url"],
                        page_size=spec["page_size"], request_interval=0.0)
    store = Store.open(settings.database_url, create=True)
    client = CtGovClient(settings)
    try:
        versions_before = store.counts().versions
        rss_before = _proc_status_kb("VmRSS")
        started = time.perf_counter()
        result = sync(settings, store, client, full=spec["full"])
        seconds = time.perf_counter() - started
        peak = _proc_status_kb("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        versions_added = store.counts().versions - versions_before
    finally:
        client.close()
        store.close()
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak / 1024,
                      "rss_before_mb": rss_before / 1024, "versions_added": versions_added,
                      "worker_rss_mb": max(worker_peaks, default=0) / 1024,
                      "result": result.as_dict()}))
    return 0


def _floor(spec: dict[str, Any]) -> int:
    """The standard-library floor: fetch every page, parse it, store id + zlib JSON + hash.

    The same query, page size, server and data as the sync; the record is hashed and stored
    the way tracker 0.1 did (canonical JSON, SHA-256; compact JSON, zlib), without any of the
    tracker's checks, diffing, tagging or staging. Nothing but the standard library.
    """
    import gzip
    import hashlib
    import sqlite3
    import urllib.parse
    import urllib.request
    import zlib

    db = sqlite3.connect(spec["database_url"].removeprefix("sqlite:///"))
    db.execute("CREATE TABLE study (nct_id TEXT PRIMARY KEY, record BLOB, content_hash TEXT)")
    rss_before = _proc_status_kb("VmRSS")
    started = time.perf_counter()
    params = {"query.cond": spec["query"], "pageSize": str(spec["page_size"])}
    token: str | None = None
    requests = fetched = 0
    while True:
        query = {**params, **({"pageToken": token} if token else {})}
        request = urllib.request.Request(
            f"{spec['base_url']}/studies?{urllib.parse.urlencode(query)}",
            headers={"Accept-Encoding": "gzip"})
        with urllib.request.urlopen(request, timeout=300) as response:
            raw = response.read()
            if response.headers.get("Content-Encoding") == "gzip":
                raw = gzip.decompress(raw)
        requests += 1
        page = json.loads(raw)
        del raw
        rows = []
        for study in page["studies"]:
            canonical = json.dumps(study, sort_keys=True, separators=(",", ":"),
                                   ensure_ascii=False).encode()
            stored = zlib.compress(json.dumps(study, ensure_ascii=False,
                                              separators=(",", ":")).encode())
            rows.append((study["protocolSection"]["identificationModule"]["nctId"], stored,
                         hashlib.sha256(canonical).hexdigest()))
        with db:
            db.executemany("INSERT INTO study VALUES (?, ?, ?)", rows)
        fetched += len(rows)
        token = page.get("nextPageToken")
        del page, rows
        if not token:
            break
    seconds = time.perf_counter() - started
    peak = _proc_status_kb("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    db.close()
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak / 1024,
                      "rss_before_mb": rss_before / 1024, "versions_added": fetched,
                      "result": {"requests": requests, "fetched": fetched}}))
    return 0


def _proc_status_kb(name: str, pid: int | str = "self") -> int:
    """A line of /proc/PID/status in kB (VmHWM: peak resident set), or 0 if unavailable."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(name + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
