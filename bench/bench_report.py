"""Benchmark: writing the weekly report from a large snapshot.

Builds a snapshot of N trials the way bench_site.py does (copies of the real fixture records,
each with its own nctId, three rounds in five RECRUITING, stored by a real `sync()` from the
local fake registry into a SQLite file), then writes one week's report (page, Markdown, JSON,
index, feeds) in a child process, a fresh interpreter, so its wall time and peak RSS are the
report's own. Prints figures; asserts nothing.

Run: .venv/bin/python bench/bench_report.py [--trials 10000 50000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))
from bench_site import _snapshot  # noqa: E402  (the same snapshot as the site's benchmark)
from bench_sync import _proc_status_kb  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, nargs="+", default=[10_000],
                        help="snapshot sizes (default: 10000; 50000 takes a few minutes)")
    args = parser.parse_args(argv)
    rows = []
    for n in args.trials:
        with tempfile.TemporaryDirectory(prefix="bench-report-") as folder:
            db_url = f"sqlite:///{folder}/tracker.db"
            _, recruiting = _snapshot(n, db_url)
            spec = json.dumps({"database_url": db_url, "out": f"{folder}/reports"})
            child = subprocess.run([sys.executable, __file__, "--child", spec],
                                   capture_output=True, text=True, check=False)
            if child.returncode != 0:
                raise SystemExit(f"The report failed:\n{child.stderr}")
            figures = json.loads(child.stdout.strip().splitlines()[-1])
            rows.append((n, recruiting, figures))
    print(f"\n{'trials':>8} {'recruiting':>10} {'seconds':>8} {'peak RSS MB':>12} "
          f"{'RSS before MB':>14} {'page kB':>8}")
    for n, recruiting, f in rows:
        print(f"{n:>8} {recruiting:>10} {f['seconds']:>8.2f} {f['peak_kb'] / 1024:>12.0f} "
              f"{f['before_kb'] / 1024:>14.0f} {f['page_bytes'] / 1024:>8.0f}")
    return 0


def _child(spec: dict[str, str]) -> int:
    from datetime import UTC, datetime

    from tracker.database import Database
    from tracker.report import Week, write
    from tracker.store import Store
    from tracker.vocabulary import load_vocabulary

    vocabulary = load_vocabulary()
    db = Database.open(spec["database_url"])
    before = _proc_status_kb("VmRSS")
    now = datetime.now(UTC)
    week = Week.last_complete(now.date())
    started = time.perf_counter()
    write(Store(db), vocabulary, week, Path(spec["out"]), now, "http://localhost/reports",
          trial_pages="http://localhost/trials")
    seconds = time.perf_counter() - started
    page = Path(spec["out"]) / f"{week.name}.html"
    print(json.dumps({"seconds": seconds, "peak_kb": _proc_status_kb("VmHWM"),
                      "before_kb": before, "page_bytes": page.stat().st_size}))
    db.close()
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        sys.exit(_child(json.loads(sys.argv[2])))
    sys.exit(main())
