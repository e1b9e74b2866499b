"""The confirmation and unsubscribe pages, served for real on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, make_server

import httpx
import pytest

from tests.conftest import interruptible
from tests.smtp import wait_for
from tracker import subscribers
from tracker.config import Settings
from tracker.jobs import Context
from tracker.models import Subscriber
from tracker.store import Store
from tracker.subscribers import Preferences
from tracker.times import utcnow
from tracker.tokens import make
from tracker.web import App

pytestmark = pytest.mark.slow  # every test serves the pages for real: a thread or a process

SECRET = "s" * 32


class Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[str, Store, int]]:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 't.db'}", secret_key=SECRET)
    store = Store.open(settings.database_url, create=True)
    subscriber, _ = subscribers.subscribe(store.db, "pat@example.org", Preferences(),
                                          confirmed=False, now=utcnow())
    assert subscriber.id is not None
    server = make_server("127.0.0.1", 0, App(Context(settings, store.db)), handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", store, subscriber.id
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
        store.close()
    assert not thread.is_alive()


def stored(store: Store, subscriber_id: int) -> Subscriber:
    found = subscribers.get(store.db, subscriber_id)
    assert found is not None
    return found


def test_opening_a_confirmation_link_only_asks_and_posting_confirms(site) -> None:  # type: ignore[no-untyped-def]
    base, store, sub_id = site
    token = make(SECRET, "confirm", sub_id, "pat@example.org")

    page = httpx.get(f"{base}/confirm", params={"token": token})
    assert page.status_code == 200
    assert "Confirm e-mails to pat@example.org" in page.text
    assert stored(store, sub_id).confirmed_at is None  # a link prefetch changes nothing

    done = httpx.post(f"{base}/confirm", data={"token": token})
    assert done.status_code == 200 and "Subscription confirmed" in done.text
    assert stored(store, sub_id).confirmed_at is not None
    again = httpx.post(f"{base}/confirm", data={"token": token})
    assert again.status_code == 400 and "already been used" in again.text


def test_one_click_unsubscribe_works_as_mail_clients_send_it(site) -> None:  # type: ignore[no-untyped-def]
    base, store, sub_id = site
    token = make(SECRET, "unsubscribe", sub_id, "pat@example.org")

    answer = httpx.post(f"{base}/unsubscribe", params={"token": token},
                        data={"List-Unsubscribe": "One-Click"})

    assert answer.status_code == 200 and answer.text == "Unsubscribed."
    assert stored(store, sub_id).unsubscribed_at is not None


def test_a_tampered_or_misused_token_is_refused_with_an_escaped_page(site) -> None:  # type: ignore[no-untyped-def]
    base, store, sub_id = site
    confirm_token = make(SECRET, "confirm", sub_id, "pat@example.org")

    wrong_purpose = httpx.post(f"{base}/unsubscribe", data={"token": confirm_token})
    tampered = httpx.get(f"{base}/confirm", params={"token": confirm_token[:-2] + "xx"})
    hostile = httpx.get(f"{base}/confirm", params={"token": "<script>alert(1)</script>"})

    assert wrong_purpose.status_code == 400
    assert stored(store, sub_id).unsubscribed_at is None
    assert tampered.status_code == 400 and "not valid" in tampered.text
    assert "<script>" not in hostile.text
    assert hostile.headers["Content-Security-Policy"].startswith("default-src 'none'")


def test_tracker_serve_answers_and_keeps_tokens_out_of_its_log(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "TRACKER_SECRET_KEY": SECRET,
           "TRACKER_DATABASE_URL": f"sqlite:///{tmp_path / 't.db'}"}
    log_file = tmp_path / "serve.log"
    with log_file.open("w") as stderr:
        server = subprocess.Popen([sys.executable, "-m", "tracker", "serve", "--port",
                                   str(port)], env=env, stderr=stderr, text=True,
                                      preexec_fn=interruptible)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)
        httpx.get(f"http://127.0.0.1:{port}/confirm", params={"token": "secret-token-value"})
        # Stop it once it has finished with the request: wsgiref swallows a Ctrl-C that
        # lands while a response is still being written.
        wait_for(lambda: "GET /confirm 400" in log_file.read_text(), timeout=10,
                 what="the request to be logged")
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
            raise
    log = log_file.read_text()
    assert server.returncode == 0, log
    assert answer.status_code == 200 and answer.text == "The tracker is running."
    assert "GET /confirm 400" in log
    assert "secret-token-value" not in log
