"""The site, served for real on 127.0.0.1 by uvicorn: the confirmation and unsubscribe pages,
security headers, error pages, the written reports, and a server that stops at once."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port, interruptible
from tests.smtp import wait_for
from tracker import subscribers
from tracker.config import Settings
from tracker.jobs import Context
from tracker.models import Subscriber
from tracker.store import Store
from tracker.subscribers import Preferences
from tracker.times import utcnow
from tracker.tokens import make
from tracker.web import server

pytestmark = pytest.mark.slow  # every test serves the pages for real: a thread or a process

SECRET = "s" * 32


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[str, Store, int]]:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 't.db'}", secret_key=SECRET)
    store = Store.open(settings.database_url, create=True)
    subscriber, _ = subscribers.subscribe(store.db, "pat@example.org", Preferences(),
                                          confirmed=False, now=utcnow())
    assert subscriber.id is not None
    try:
        with serving(settings, store) as base:
            yield base, store, subscriber.id
    finally:
        store.close()


@contextmanager
def serving(settings: Settings, store: Store) -> Iterator[str]:
    """The site on a free loopback port, in a thread that is gone when the block ends."""
    port = free_port()
    site = server(Context(settings, store.db), "127.0.0.1", port)
    thread = threading.Thread(target=site.run, daemon=True)
    thread.start()
    wait_for(lambda: site.started, timeout=10, what="the site to start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        site.should_exit = True
        thread.join(timeout=10)
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


def test_every_page_has_security_headers_and_errors_are_pages(site) -> None:  # type: ignore[no-untyped-def]
    base, _, _ = site

    missing = httpx.get(f"{base}/nowhere/<script>")
    wrong_method = httpx.put(f"{base}/confirm")
    too_big = httpx.post(f"{base}/confirm", content=b"token=" + b"x" * 20_000,
                         headers={"Content-Type": "application/x-www-form-urlencoded"})

    assert missing.status_code == 404 and "Not found" in missing.text
    assert "<script>" not in missing.text
    assert wrong_method.status_code == 405 and "cannot be used that way" in wrong_method.text
    assert too_big.status_code == 413
    for answer in (missing, wrong_method):
        assert "script-src" not in answer.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert answer.headers["Referrer-Policy"] == "no-referrer"
        assert "Traceback" not in answer.text


def test_the_written_reports_and_feeds_are_served_where_the_feeds_say(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    (reports / "feeds").mkdir(parents=True)
    (reports / "index.html").write_text("<h1>Weekly reports</h1>")
    (reports / "feed.atom").write_text('<feed xmlns="http://www.w3.org/2005/Atom"/>')
    (reports / "feeds" / "ibm.atom").write_text('<feed xmlns="http://www.w3.org/2005/Atom"/>')
    settings = Settings(database_url=f"sqlite:///{tmp_path / 't.db'}", secret_key=SECRET,
                        report_dir=reports)
    store = Store.open(settings.database_url, create=True)
    try:
        with serving(settings, store) as base:
            index = httpx.get(f"{base}/reports/")
            feed = httpx.get(f"{base}/reports/feed.atom")
            subtype = httpx.get(f"{base}/reports/feeds/ibm.atom")
            outside = httpx.get(f"{base}/reports/../t.db")
    finally:
        store.close()

    assert index.status_code == 200 and "Weekly reports" in index.text
    assert feed.status_code == 200 and subtype.status_code == 200
    assert outside.status_code == 404


def test_ctrl_c_stops_tracker_serve_within_a_second_even_mid_request(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "TRACKER_SECRET_KEY": SECRET,
           "TRACKER_DATABASE_URL": f"sqlite:///{tmp_path / 't.db'}"}
    server_process = subprocess.Popen([sys.executable, "-m", "tracker", "serve", "--port",
                                       str(port)], env=env, stderr=subprocess.PIPE, text=True,
                                      preexec_fn=interruptible)
    try:
        wait_for(lambda: _answers(port), timeout=20, what="the site to start")
        with socket.create_connection(("127.0.0.1", port)) as half:
            half.sendall(b"POST /confirm HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\ntok")
            time.sleep(0.2)  # the request is in the server's hands, its body still coming
            server_process.send_signal(signal.SIGINT)
            started = time.monotonic()
            server_process.wait(timeout=10)
            took = time.monotonic() - started
    finally:
        if server_process.poll() is None:
            server_process.kill()
            server_process.wait()

    assert server_process.returncode == 0
    assert took < 2.5, took
    assert "Traceback" not in (server_process.stderr.read() if server_process.stderr else "")


def _answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def test_a_link_that_does_not_work_offers_a_new_one(site) -> None:  # type: ignore[no-untyped-def]
    base, _, _ = site

    answer = httpx.get(f"{base}/confirm", params={"token": "expired-or-altered"})

    assert answer.status_code == 400
    assert 'href="/subscribe"' in answer.text and "Ask for a new link" in answer.text
