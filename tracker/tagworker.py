"""Tagging in a second process, so a sync with many studies to tag uses a second core.

Tagging is rules in Python (`tags`): in one process it takes a third of a baseline's time,
and threads would wait on each other for the interpreter. So a sync that expects many
studies starts `python -m tracker.tagworker`, streams it each study's JSON as received, and
reads back its tags, in order, while it hashes, compresses and stores the same studies.

The worker is a speed-up, never a dependency: if it cannot start, dies, sends something
unreadable or falls silent, the sync tags in its own process from then on, the same way (the
worker runs the same `Tagger` on the same decoded record). Nothing the worker says is stored
unless the sync would have computed it itself.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
from collections import OrderedDict, deque
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

import msgspec

from tracker.record import loads
from tracker.shape import clean
from tracker.tags import Tagger, Tags
from tracker.vocabulary import load_vocabulary

log = logging.getLogger(__name__)

WAIT_SECONDS = 60.0  # for one study's tags before the worker is given up
_LENGTH = 4  # bytes of each frame's length, big-endian
Json = bytes | memoryview | msgspec.Raw  # a study's JSON as received (a view into its page)
_ANSWER = msgspec.msgpack.Decoder(Tags | None)  # checked as it is read: only tags get in


class TagWorker:
    """One worker process for one sync. `submit` the studies a page may need tagged, then
    `tags(key)` each one the sync does tag (None: tag it yourself); `close` at the end."""

    def __init__(self, extra_vocabulary: Path | None, digest: str) -> None:
        """A worker tagging with the shipped vocabulary plus `extra_vocabulary`, which must
        come out as `digest` (the sync's own): if the file changed since, the worker stops
        and the sync tags everything itself."""
        self._done: dict[Any, Tags | None] = {}
        # Keys sent and not answered yet, in the order the answers come.
        self._waiting: OrderedDict[Any, None] = OrderedDict()
        self._ready = threading.Condition()
        self._broken = False
        self.tagged = 0  # studies the worker sent tags for
        self._writes: deque[list[tuple[Any, Json, bool]]] = deque()
        self._wake_writer = threading.Condition()
        self._closing = False
        self._process: subprocess.Popen[bytes] | None = None
        command = [sys.executable, "-m", "tracker.tagworker", digest]
        if extra_vocabulary is not None:
            command.append(str(Path(extra_vocabulary).resolve()))
        # Started from a thread: starting a process takes tens of milliseconds, which the
        # sync spends sending its first request instead.
        threading.Thread(target=self._start, args=(command,), name="tagworker-write",
                         daemon=True).start()

    def _start(self, command: list[str]) -> None:
        try:
            process = subprocess.Popen(  # noqa: S603 (this interpreter, fixed args)
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL, env=_environment())
        except (OSError, ValueError) as error:
            log.warning("Tagging in this process: the tag worker did not start (%s).", error)
            self._give_up()
            return
        with self._wake_writer:
            self._process = process
            closed = self._closing
        if closed:  # the sync ended while the worker started
            process.kill()
            process.wait()
            self._give_up()
            return
        threading.Thread(target=self._read, name="tagworker-read", daemon=True).start()
        self._write()

    @property
    def working(self) -> bool:
        return not self._broken

    def submit(self, studies: Iterable[tuple[Any, Json, bool]]) -> None:
        """Queue (key, JSON bytes as received, needs cleaning) for tagging; returns at once.
        A key may be sent again only once it is answered: answers are matched by order."""
        batch = list(studies)
        if self._broken or not batch:
            return
        keys = [key for key, _, _ in batch]
        with self._ready:
            if len(set(keys)) < len(keys) or not self._waiting.keys().isdisjoint(keys):
                raise ValueError("a study was sent to the tag worker twice")
            self._waiting.update(dict.fromkeys(keys))
        with self._wake_writer:
            self._writes.append(batch)
            self._wake_writer.notify()

    def tags(self, key: Any) -> Tags | None:
        """The tags of a submitted study, once the worker has sent them; None if the worker
        could not tag it, is gone or was never sent it, so the caller tags it itself."""
        with self._ready:
            while key in self._waiting and not self._broken:
                if not self._ready.wait(WAIT_SECONDS):
                    log.warning("Tagging in this process: the tag worker fell silent.")
                    self._give_up()
            return self._done.pop(key, None)

    def drain(self) -> None:
        """Wait until every submitted study is answered and forget the answers not asked for
        (studies the sync found unchanged), so that no page's bytes are held after it."""
        with self._ready:
            while self._waiting and not self._broken:
                if not self._ready.wait(WAIT_SECONDS):
                    log.warning("Tagging in this process: the tag worker fell silent.")
                    self._give_up()
            self._done.clear()

    def close(self) -> None:
        """Stop the worker: at once if answers are still outstanding (the sync stopped
        early), else once it has read to the end of its input."""
        with self._ready:
            outstanding = bool(self._waiting)
        with self._wake_writer:
            self._closing = True
            self._writes.clear()
            self._wake_writer.notify()
            process = self._process
        if process is None:  # not started yet: `_start` stops it
            return
        if outstanding or self._broken:
            with contextlib.suppress(OSError):
                process.kill()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        self._give_up()

    # --- the threads that talk to the worker -------------------------------------------

    def _write(self) -> None:
        process = self._process
        assert process is not None and process.stdin is not None
        stdin = process.stdin
        while True:
            with self._wake_writer:
                while not self._writes and not self._closing:
                    self._wake_writer.wait()
                if not self._writes:
                    with contextlib.suppress(OSError, ValueError):
                        stdin.close()  # the worker ends when its input does
                    return
                batch = self._writes.popleft()
            try:
                _send(stdin, batch)
            except (OSError, ValueError):
                self._give_up()
                return
            finally:
                del batch  # the page's bytes: no reference may outlive the page

    def _read(self) -> None:
        process = self._process
        assert process is not None and process.stdout is not None
        stdout = process.stdout
        while True:
            try:
                frame = _read_frame(stdout)
                answer = _ANSWER.decode(frame) if frame is not None else None
            except (OSError, ValueError, msgspec.DecodeError):
                frame = None
            if frame is None:
                if not self._closing:
                    log.warning("Tagging in this process: the tag worker stopped.")
                self._give_up()
                return
            with self._ready:
                if self._waiting:
                    key, _ = self._waiting.popitem(last=False)
                    self._done[key] = answer
                    self.tagged += answer is not None
                self._ready.notify_all()

    def _give_up(self) -> None:
        with self._ready:
            self._broken = True
            self._waiting.clear()
            self._ready.notify_all()
        with self._wake_writer:
            self._writes.clear()
            self._wake_writer.notify()
        if self._process is not None and self._process.poll() is None:
            with contextlib.suppress(OSError):
                self._process.kill()


def spare_core() -> bool:
    """Whether this process may run on more than one core (a worker would otherwise only
    take turns with the sync)."""
    try:
        return len(os.sched_getaffinity(0)) > 1
    except AttributeError:  # not on Linux
        return (os.cpu_count() or 1) > 1


def _environment() -> dict[str, str]:
    """The worker imports this very package, installed or not."""
    here = str(Path(__file__).resolve().parent.parent)
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": here + (os.pathsep + path if path else "")}


def _send(stdin: IO[bytes], batch: list[tuple[Any, Json, bool]]) -> None:
    for _, raw, unsafe in batch:
        stdin.write(len(raw).to_bytes(_LENGTH, "big") + (b"\1" if unsafe else b"\0"))
        stdin.write(raw)
    stdin.flush()


def _write_frame(out: IO[bytes], data: bytes) -> None:
    out.write(len(data).to_bytes(_LENGTH, "big") + data)


def _read_frame(source: IO[bytes]) -> bytes | None:
    """One frame, or None at the end of the stream (a frame cut short counts as the end)."""
    header = source.read(_LENGTH)
    if len(header) < _LENGTH:
        return None
    size = int.from_bytes(header, "big")
    data = source.read(size)
    return data if len(data) == size else None


def serve(source: IO[bytes], out: IO[bytes], tagger: Tagger) -> None:
    """The worker: studies in, each answered with its tags (or None if reading or tagging it
    failed: the sync then does it itself, and reports what went wrong)."""
    tagger.prepare()  # compiled while the first study is on its way
    while True:
        header = source.read(_LENGTH + 1)
        if len(header) < _LENGTH + 1:
            return
        raw = source.read(int.from_bytes(header[:_LENGTH], "big"))
        answer: Tags | None
        try:
            record = loads(raw)
            answer = tagger.tag(clean(record) if header[_LENGTH] else record)
        except Exception:
            answer = None
        _write_frame(out, _ENCODER.encode(answer))
        out.flush()


_ENCODER = msgspec.msgpack.Encoder()


def main(argv: list[str]) -> int:
    """`python -m tracker.tagworker DIGEST [EXTRA_VOCABULARY]`: the sync starts it."""
    # Ctrl-C reaches the whole process group: the sync handles it, and closes this.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    vocabulary = load_vocabulary(Path(argv[1]) if len(argv) > 1 else None)
    if vocabulary.digest != argv[0]:
        return 2  # the vocabulary changed on disk: the sync tags with the one it loaded
    with contextlib.suppress(BrokenPipeError):
        serve(sys.stdin.buffer, sys.stdout.buffer, Tagger(vocabulary))
    return 0


if __name__ == "__main__":
    os._exit(main(sys.argv[1:]))  # nothing to clean up: skip the interpreter's teardown
