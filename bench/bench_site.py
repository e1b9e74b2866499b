"""Benchmark: the site under load on loopback.

Measures how the reader's pages (`/`, `/trials` with and without a search, `/trials/NCT...`)
hold up under many concurrent readers. Prints figures; asserts nothing.

It builds a snapshot of N trials without network: copies of the real records in
tests/data/studies/*.json, each with its own nctId (NCT9xxxxxxx) and, for three rounds of the
records in five, overallStatus RECRUITING (one round keeps the record's own, one is COMPLETED),
served by tests.fakeapi.FakeApi on 127.0.0.1 and stored by a real `sync()` into a SQLite file
in a temporary folder, so the rows are exactly what production writes. It then serves the site with
uvicorn (`tracker.web.server`) in a child process (a fresh interpreter, so its CPU time and peak
RSS are the server's own) and drives it for T seconds with C concurrent clients (asyncio, one
httpx.AsyncClient with a pool of C connections) against a fixed mix of URLs.

Run: .venv/bin/python bench/bench_site.py [--trials 2000] [--clients 50] [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import resource
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "data" / "studies"
ID_BASE = 90_000_000  # copies get NCT90000000, NCT90000001, ...: clear of the fixtures' IDs
SECRET = "bench-site-secret-key-not-used-for-anything"
# (kind, weight): the share of requests that go to each kind of URL.
MIX = (
    ("trials", 50),
    ("trials?subtype", 15),
    ("trials?near", 10),
    ("trial page", 20),
    ("home", 5),
)

Record = dict[str, Any]

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_sync import _get, _with  # noqa: E402  (one way to read and edit a real record)


@dataclass
class Sample:
    kind: str
    seconds: float
    status: int  # 0 for a transport error
    error: str = ""


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.serve:
        return _serve(json.loads(args.serve))
    sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory(prefix="bench-site-") as tmp:
        folder = Path(tmp)
        db_url = f"sqlite:///{folder / 'tracker.db'}"
        ids, recruiting = _snapshot(args.trials, db_url)
        db_mb = (folder / "tracker.db").stat().st_size / 2**20
        print(f"Snapshot: {len(ids)} trials ({recruiting} RECRUITING) from "
              f"{len(list(FIXTURES.glob('NCT*.json')))} fixture records; SQLite {db_mb:.1f} MB.",
              flush=True)
        port = _free_port()
        (folder / "reports").mkdir()
        spec = {"database_url": db_url, "port": port, "report_dir": str(folder / "reports")}
        server = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--serve", json.dumps(spec)],
            cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_ready(base, server)
            urls = _urls(ids, args.seed)
            asyncio.run(_load(base, urls, args.clients, 2.0, args.seed, warmup=True))
            cpu_before = _proc_cpu(server.pid)
            client_cpu_before = _cpu_self()
            samples, wall = asyncio.run(_load(base, urls, args.clients, args.seconds,
                                              args.seed, warmup=False))
            server_cpu = _proc_cpu(server.pid) - cpu_before
            client_cpu = _cpu_self() - client_cpu_before
            rss_now, rss_peak = _proc_rss_kb(server.pid)
        finally:
            server.terminate()
            try:
                _, stderr = server.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                _, stderr = server.communicate()
        if stderr.strip():
            print("Server stderr (last lines):")
            for line in stderr.strip().splitlines()[-10:]:
                print(f"  {line}")
    _report(args, samples, wall, server_cpu, client_cpu, rss_now, rss_peak)
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=2000, metavar="N",
                        help="trials in the snapshot (default 2000)")
    parser.add_argument("--clients", type=int, default=50, metavar="C",
                        help="concurrent clients (default 50)")
    parser.add_argument("--seconds", type=float, default=30.0, metavar="T",
                        help="how long to drive the site (default 30)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the URL mix (default 1)")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.trials < 1 or args.clients < 1 or args.seconds <= 0:
        parser.error("--trials, --clients and --seconds take positive numbers")
    return args


# --- the snapshot: copies of real records, stored by a real sync -----------------------------


def _snapshot(n: int, db_url: str) -> tuple[list[str], int]:
    from tests.fakeapi import FakeApi, Registry
    from tracker.config import Settings
    from tracker.ctgov import CtGovClient
    from tracker.database import Database
    from tracker.store import Store
    from tracker.sync import sync

    templates = [json.loads(p.read_text()) for p in sorted(FIXTURES.glob("NCT*.json"))]
    if not templates:
        raise SystemExit(f"No fixture records in {FIXTURES}")
    registry = Registry()
    recruiting = 0
    for i in range(n):
        template = templates[i % len(templates)]
        nct_id = f"NCT{ID_BASE + i:08d}"
        record = _with(template, ("protocolSection", "identificationModule", "nctId"), nct_id)
        # Each round of the templates gets one status: 3 rounds in 5 RECRUITING, 1 the
        # record's own, 1 COMPLETED. Only overallStatus changes; no field is invented.
        turn = (i // len(templates)) % 5
        status = _get(template, ("protocolSection", "statusModule", "overallStatus"))
        status = "RECRUITING" if turn < 3 else status if turn == 3 else "COMPLETED"
        record = _with(record, ("protocolSection", "statusModule", "overallStatus"), status)
        recruiting += status == "RECRUITING"
        registry.studies[nct_id] = record  # not put(): it deep-copies, and nothing is mutated

    with FakeApi(registry) as api:
        settings = Settings(base_url=api.base_url, database_url=db_url, request_interval=0.0,
                            page_size=1000)
        db = Database.open(db_url, create=True)
        client = CtGovClient(settings)
        try:
            started = time.perf_counter()
            result = sync(settings, Store(db), client)
            seconds = time.perf_counter() - started
        finally:
            client.close()
            db.close()
    print(f"Sync: {result.as_dict()['new']} new trials in {seconds:.1f}s.", flush=True)
    return sorted(registry.studies), recruiting


# --- the server: a child process ------------------------------------------------------------


def _serve(spec: dict[str, Any]) -> int:
    sys.path.insert(0, str(ROOT))
    from tracker import web
    from tracker.config import Settings
    from tracker.database import Database
    from tracker.jobs import Context

    settings = Settings(database_url=spec["database_url"], secret_key=SECRET,
                        report_dir=Path(spec["report_dir"]), web_port=spec["port"])
    ctx = Context(settings, Database.open(settings.database_url))
    web.server(ctx, "127.0.0.1", spec["port"]).run()
    return 0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_ready(base: str, server: subprocess.Popen[str], timeout: float = 30.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"The server exited ({server.returncode}):\n{server.stderr.read()}"
                             if server.stderr else "The server exited.")
        try:
            if httpx.get(f"{base}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"The server did not answer /healthz within {timeout:.0f}s")


# --- the load -------------------------------------------------------------------------------


def _urls(ids: list[str], seed: int) -> dict[str, list[str]]:
    rng = random.Random(seed)
    pages = [f"/trials/{nct_id}" for nct_id in rng.sample(ids, min(len(ids), 200))]
    return {
        "trials": ["/trials"],
        "trials?subtype": ["/trials?subtype=dermatomyositis"],
        "trials?near": ["/trials?near=Lyon&radius=500"],
        "trial page": pages,
        "home": ["/"],
    }


async def _load(base: str, urls: dict[str, list[str]], clients: int, seconds: float,
                seed: int, warmup: bool) -> tuple[list[Sample], float]:
    import httpx

    kinds = [kind for kind, _ in MIX]
    weights = [weight for _, weight in MIX]
    samples: list[Sample] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    timeout = httpx.Timeout(120.0, pool=120.0)

    async def one(client: httpx.AsyncClient, kind: str, url: str) -> None:
        started = time.perf_counter()
        try:
            response = await client.get(url)
            await response.aread()
            samples.append(Sample(kind, time.perf_counter() - started, response.status_code))
        except httpx.HTTPError as error:
            samples.append(Sample(kind, time.perf_counter() - started, 0,
                                  f"{type(error).__name__}: {error}"))

    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=timeout) as client:
        if warmup:  # every kind once, then a short burst: connections open, caches warm
            for kind in kinds:
                await one(client, kind, urls[kind][0])
        started = time.perf_counter()
        deadline = started + seconds

        async def worker(number: int) -> None:
            rng = random.Random(seed * 1000 + number)
            while time.perf_counter() < deadline:
                kind = rng.choices(kinds, weights)[0]
                await one(client, kind, rng.choice(urls[kind]))

        await asyncio.gather(*(worker(i) for i in range(clients)))
        wall = time.perf_counter() - started
    return samples, wall


# --- measures of the server process and of this one -----------------------------------------


def _proc_cpu(pid: int) -> float:
    """utime + stime of `pid` in seconds, from /proc/<pid>/stat (0 if unavailable)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state is fields[0]
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _proc_rss_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of `pid` in kB, from /proc/<pid>/status (0 if unavailable)."""
    found = {"VmRSS": 0, "VmHWM": 0}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name = line.split(":", 1)[0]
            if name in found:
                found[name] = int(line.split()[1])
    except OSError:
        pass
    return found["VmRSS"], found["VmHWM"]


def _cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- the figures ----------------------------------------------------------------------------


def _report(args: argparse.Namespace, samples: list[Sample], wall: float, server_cpu: float,
            client_cpu: float, rss_kb: int, peak_kb: int) -> None:
    print()
    print(f"{args.trials} trials, {args.clients} clients, {args.seconds:g}s asked, "
          f"{wall:.1f}s until the last answer; {os.cpu_count()} cores shared by server "
          "and clients.")
    print()
    header = (f"{'URL kind':<15} {'requests':>8} {'req/s':>7} {'p50 ms':>8} {'p90 ms':>8} "
              f"{'p99 ms':>8} {'max ms':>8} {'non-200':>7} {'errors':>6}")
    print(header)
    print("-" * len(header))
    for kind, _ in MIX:
        _row(kind, [s for s in samples if s.kind == kind], wall)
    print("-" * len(header))
    _row("all", samples, wall)
    print()
    print(f"Server process: {server_cpu:.1f} s CPU during the run "
          f"({100 * server_cpu / max(wall, 1e-9):.0f}% of one core), RSS {rss_kb / 1024:.1f} MB "
          f"at the end, peak RSS (VmHWM) {peak_kb / 1024:.1f} MB.")
    print(f"Client (this process): {client_cpu:.1f} s CPU during the run "
          f"({100 * client_cpu / max(wall, 1e-9):.0f}% of one core).")
    statuses: dict[int, int] = {}
    errors: dict[str, int] = {}
    for s in samples:
        if s.status == 0:
            errors[s.error.split(":")[0]] = errors.get(s.error.split(":")[0], 0) + 1
        elif s.status != 200:
            statuses[s.status] = statuses.get(s.status, 0) + 1
    if statuses or errors:
        print("!! Not every answer was a 200:"
              + "".join(f" {n} x HTTP {code};" for code, n in sorted(statuses.items()))
              + "".join(f" {n} x {name};" for name, n in sorted(errors.items())))
    else:
        print("Every answer was a 200; no transport errors.")


def _row(kind: str, samples: list[Sample], wall: float) -> None:
    ms = sorted(s.seconds * 1000 for s in samples)
    non_200 = sum(1 for s in samples if s.status not in (0, 200))
    errors = sum(1 for s in samples if s.status == 0)
    p50, p90, p99 = (_pct(ms, q) for q in (50, 90, 99))
    print(f"{kind:<15} {len(ms):>8} {len(ms) / max(wall, 1e-9):>7.1f} {p50:>8.0f} {p90:>8.0f} "
          f"{p99:>8.0f} {(ms[-1] if ms else 0):>8.0f} {non_200:>7} {errors:>6}")


def _pct(ordered: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of an ascending list; 0 for an empty one."""
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


if __name__ == "__main__":
    sys.exit(main())
