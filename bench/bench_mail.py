"""Benchmark: deliver 10,000 queued messages to a real SMTP server on loopback.

    .venv/bin/python bench/bench_mail.py                  # 10,000 messages, SQLite and
                                                          # TRACKER_TEST_POSTGRES_URL's database
    .venv/bin/python bench/bench_mail.py --messages 2000  # quicker
    .venv/bin/python bench/bench_mail.py --postgres ''    # SQLite only
    .venv/bin/python bench/bench_mail.py --pipelining on  # only with PIPELINING offered

The server is aiosmtpd (`tests.smtp`) in this process; every sender is a real
`tracker digest --send` in its own child process. Runs: one sender with 1, 2 and 4
connections (TRACKER_SMTP_CONNECTIONS), on SQLite and PostgreSQL; then, on PostgreSQL, 2 and
4 senders of 4 connections each draining the same outbox. Each run is made twice in a row,
with the server offering PIPELINING (RFC 2920) and without, unless `--pipelining` says
otherwise. Prints seconds, messages per second and the CPU used by the server and by the
senders (not PostgreSQL's), and checks at the server, by Message-ID, that every message
arrived exactly once, and that commands were grouped exactly when PIPELINING was offered.
The PostgreSQL database named is a scratch one: its outbox is emptied before each run.
"""

from __future__ import annotations

import argparse
import email.policy
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NOW = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)
SECRET = "bench-secret-key-bench-secret-key"
BODY = "A new site is recruiting for a trial of a JAK inhibitor in dermatomyositis.\n" * 50


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--postgres", default=os.environ.get("TRACKER_TEST_POSTGRES_URL", ""),
                        help="a scratch PostgreSQL database (default TRACKER_TEST_POSTGRES_URL)")
    parser.add_argument("--pipelining", choices=["both", "on", "off"], default="both",
                        help="whether the server offers PIPELINING (default: each run both ways)")
    args = parser.parse_args()
    offers = {"both": [False, True], "on": [True], "off": [False]}[args.pipelining]
    from tests.smtp import smtp_server

    runs: list[tuple[str, int, int]] = [("sqlite", 1, n) for n in (1, 2, 4)]
    if args.postgres:
        runs += [("postgres", 1, n) for n in (1, 2, 4)] + [("postgres", s, 4) for s in (2, 4)]
    print(f"{args.messages} messages of {len(message(0)) / 1024:.1f} kB to aiosmtpd on "
          f"127.0.0.1; each sender is a child process (interpreter start included)\n")
    print(f"{'database':>9} {'senders':>8} {'connections':>12} {'pipelining':>11} "
          f"{'seconds':>8} {'msgs/s':>8} {'server CPU s':>13} {'senders CPU s':>14} "
          f"{'sessions':>9} {'check':>6}")
    with tempfile.TemporaryDirectory(prefix="bench-mail-") as tmp, smtp_server() as mailbox:
        for (database, senders, connections), pipelining in (
                (run, offer) for run in runs for offer in offers):
            url = (f"sqlite:///{tmp}/{senders}-{connections}.db" if database == "sqlite"
                   else args.postgres)
            every = fill(url, args.messages)
            mailbox.accepted.clear()
            mailbox.handed_over.clear()
            mailbox.sessions.clear()
            mailbox.grouped.clear()
            mailbox.pipelining = pipelining
            env = environment(url, mailbox.port, connections, Path(tmp))
            server_cpu, senders_cpu = _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            children = [subprocess.Popen([sys.executable, "-m", "tracker", "digest", "--send"],
                                         env=env, cwd=tmp, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, text=True)
                        for _ in range(senders)]
            outputs = [child.communicate(timeout=900) for child in children]
            seconds = time.perf_counter() - started
            server_cpu = _cpu(resource.RUSAGE_SELF) - server_cpu
            senders_cpu = _cpu(resource.RUSAGE_CHILDREN) - senders_cpu
            failed = [err for child, (_, err) in zip(children, outputs, strict=True)
                      if child.returncode != 0]
            received = Counter(mailbox.handed_over_ids())
            grouped = all(bool(behind) == pipelining for behind in mailbox.grouped)
            ok = not failed and received == Counter(every) and grouped
            print(f"{database:>9} {senders:>8} {connections:>12} "
                  f"{'offered' if pipelining else 'no':>11} {seconds:>8.2f} "
                  f"{args.messages / seconds:>8.0f} {server_cpu:>13.1f} {senders_cpu:>14.1f} "
                  f"{mailbox.connections:>9} "
                  f"{'ok' if ok else '!!':>6}")
            if not grouped:
                print("    commands were grouped" if not pipelining else
                      "    some MAIL FROM came without its RCPT TO and DATA")
            for err in failed:
                print("   ", err.strip().splitlines()[-1] if err.strip() else "?")
            if not failed and received != Counter(every):
                twice = sum(1 for n in received.values() if n > 1)
                print(f"    {len(set(every) - set(received))} missing, {twice} twice")
    return 0


def _cpu(who: int) -> float:
    """CPU seconds used so far by this process (the server's thread; the main one only
    waits) or by its finished children (the senders)."""
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def message(n: int) -> bytes:
    mail = EmailMessage()
    mail["From"] = "Myositis trials tracker <tracker@localhost>"
    mail["To"] = f"reader{n}@example.org"
    mail["Subject"] = f"Myositis trials: {n % 7 + 1} update(s)"
    mail["Message-ID"] = f"<bench-{n}@localhost>"
    mail.set_content(BODY)
    mail.add_alternative(f"<html><body><p>{BODY}</p></body></html>", subtype="html")
    return mail.as_bytes(policy=email.policy.SMTP)  # CRLF line ends, as the tracker's own


def fill(url: str, count: int) -> set[str]:
    """An outbox of `count` queued digests, and nothing else."""
    from sqlalchemy import delete, insert

    from tracker import outbox
    from tracker.database import Database
    from tracker.models import MessageKind, MessageStatus

    db = Database.open(url, create=True)
    rows = []
    for n in range(count):
        draft = outbox.Draft(kind=MessageKind.DIGEST, key=f"bench.{n}",
                             recipient=f"reader{n}@example.org", subject="Myositis trials",
                             message_id=f"<bench-{n}@localhost>", message=message(n))
        rows.append({**draft.columns(), "created_at": NOW, "status": MessageStatus.QUEUED})
    with db.engine.begin() as conn:
        conn.execute(delete(outbox.OUTBOX))
        for start in range(0, count, 1000):
            conn.execute(insert(outbox.OUTBOX), rows[start:start + 1000])
    db.close()
    return {row["message_id"] for row in rows}


def environment(url: str, port: int, connections: int, tmp: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKER_", "CTGOV_"))}
    return {**clean, "TRACKER_DATABASE_URL": url, "TRACKER_SMTP_HOST": "127.0.0.1",
            "TRACKER_SMTP_PORT": str(port), "TRACKER_SMTP_SECURITY": "none",
            "TRACKER_SMTP_CONNECTIONS": str(connections), "TRACKER_SECRET_KEY": SECRET,
            "TRACKER_DIGEST_DIR": str(tmp / "digests"), "PYTHONPATH": str(ROOT)}


if __name__ == "__main__":
    sys.exit(main())
