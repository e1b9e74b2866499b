"""Digests written as files: a folder or a disk that refuses them leaves the messages queued,
with the reason recorded, as an unreachable mail server would."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.conftest import Sleeps
from tracker import outbox
from tracker.database import Database
from tracker.mail import SEND_ATTEMPTS, FileTransport, drain
from tracker.models import MessageKind, OutboxMessage

NOW = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)
DEV_FULL = Path("/dev/full")  # every write to it fails with "No space left on device"


@pytest.fixture
def db(tmp_path: Path, migrated_sqlite: Path) -> Iterator[Database]:
    (tmp_path / "tracker.db").write_bytes(migrated_sqlite.read_bytes())
    database = Database.open(f"sqlite:///{tmp_path / 'tracker.db'}")
    yield database
    database.close()


def queue(db: Database, *recipients: str) -> list[int]:
    ids = []
    for number, recipient in enumerate(recipients):
        queued = outbox.queue(db, outbox.Draft(
            kind=MessageKind.DIGEST, key=f"digest.{number}.0.5", recipient=recipient,
            subject="Myositis trials: 1 update", message_id=f"<{number}@example.org>",
            message=b"Subject: x\r\n\r\nx\r\n"), now=NOW)
        assert queued is not None
        ids.append(queued)
    return ids


def stored(db: Database) -> list[OutboxMessage]:
    return outbox.messages(db)


def test_a_folder_under_a_file_leaves_every_message_queued_with_the_reason(
        db: Database, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a folder\n")
    queue(db, "ana@example.org", "ben@example.org")

    result = drain(db, FileTransport(notes / "digests"), sleep=Sleeps())

    reason = (f"Cannot write messages into {notes / 'digests'}: {notes} is a file, "
              "not a folder.")
    assert (result.sent, result.failed, result.left) == (0, 0, 2)
    assert result.errors == [reason]
    assert [(m.status, m.attempts, m.error) for m in stored(db)] == [("queued", 1, reason)] * 2


@pytest.mark.skipif(not DEV_FULL.exists(), reason="needs /dev/full")
def test_a_full_disk_stops_the_batch_and_leaves_it_queued(db: Database, tmp_path: Path) -> None:
    folder = tmp_path / "digests"
    folder.mkdir()
    first, _ = queue(db, "ana@example.org", "ben@example.org")
    target = folder / f"2026-11-23-digest-{first:06d}-ana@example.org.txt"
    part = folder / f"{target.name}.part"
    part.symlink_to(DEV_FULL)
    sleeps: list[float] = []

    def still_full(seconds: float) -> None:  # the half-written file goes; the full disk stays
        sleeps.append(seconds)
        part.symlink_to(DEV_FULL)

    result = drain(db, FileTransport(folder), sleep=still_full)

    reason = f"Cannot write {target}: No space left on device."
    assert (result.sent, result.failed, result.left) == (0, 0, 2)
    assert [(m.status, m.error) for m in stored(db)] == [("queued", reason)] * 2
    assert len(sleeps) == SEND_ATTEMPTS - 1  # retried like a server that does not answer
    assert list(folder.iterdir()) == []  # nothing half-written; the second message not tried


def test_a_name_too_long_for_the_disk_leaves_that_message_queued_and_the_rest_go(
        db: Database, tmp_path: Path) -> None:
    folder = tmp_path / "digests"
    queue(db, "a" * 250 + "@example.org", "ben@example.org")

    result = drain(db, FileTransport(folder), sleep=Sleeps())

    assert (result.sent, result.left) == (1, 1)
    too_long, written = stored(db)
    assert too_long.status == "queued"
    assert too_long.error is not None and too_long.error.endswith(": File name too long.")
    assert written.status == "sent"
    assert len(list(folder.iterdir())) == 3
