"""The site as a patient meets it, in a real browser (Debian's chromium driven by Playwright),
served by uvicorn, with e-mails through a real SMTP server on loopback: sign up with a place
name, confirm from the e-mail, get a digest, change what one receives from its link, and
leave with one click. Forms work without JavaScript, on a phone, with no console error and
no request off the host."""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
import threading
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from tests.browser import CHROMIUM_FLAGS, require_chromium
from tests.conftest import free_port, updated
from tests.fakeapi import Registry
from tests.smtp import Mailbox, smtp_server, wait_for
from tracker import jobs, subscribers
from tracker.config import Settings
from tracker.database import Database
from tracker.jobs import Context
from tracker.web import server

pytestmark = pytest.mark.slow  # a browser, a web server and an SMTP server

SECRET = "browser-test-secret-0123456789"
# As for local files, no host name resolves, but the site's own address is reachable.
FLAGS = [f for f in CHROMIUM_FLAGS if not f.startswith("--host-resolver-rules")] + [
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]
PHONE = {"width": 360, "height": 780}


@pytest.fixture
def site(settings: Settings, registry: Registry, tmp_path: Path
         ) -> Iterator[tuple[Context, Mailbox, str]]:
    """A synced snapshot, an SMTP server and the site, all on 127.0.0.1."""
    with smtp_server() as mailbox:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        configured = dataclasses.replace(
            settings, secret_key=SECRET, public_url=base, smtp_host="127.0.0.1",
            smtp_port=mailbox.port, smtp_security="none", mail_from="tracker@example.org",
            report_dir=tmp_path / "reports", digest_dir=tmp_path / "digests")
        db = Database.open(configured.database_url, create=True)
        ctx = Context(configured, db)
        assert jobs.sync(ctx).status == "ok"
        site_server = server(ctx, "127.0.0.1", port)
        thread = threading.Thread(target=site_server.run, daemon=True)
        thread.start()
        wait_for(lambda: site_server.started, what="the site to start")
        try:
            yield ctx, mailbox, base
        finally:
            site_server.should_exit = True
            thread.join(timeout=10)
            db.close()


def _link(message: EmailMessage, path: str) -> str:
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    found = re.search(rf"https?://\S+{path}\?token=\S+", text)
    assert found, f"no {path} link in:\n{text}"
    return found.group(0)


def test_a_patient_signs_up_confirms_gets_news_changes_choices_and_leaves(
        site: tuple[Context, Mailbox, str], registry: Registry, tmp_path: Path) -> None:
    ctx, mailbox, base = site
    executable = require_chromium()
    from playwright.sync_api import sync_playwright

    off_host: list[str] = []
    problems: list[str] = []
    with sync_playwright() as pw, tempfile.TemporaryDirectory(prefix="chromium-") as home:
        browser = pw.chromium.launch(executable_path=str(executable), args=FLAGS,
                                     env={**os.environ, "HOME": home})
        # A phone, with JavaScript off: the forms must work as plain HTML.
        context = browser.new_context(viewport=PHONE, java_script_enabled=False)
        context.route("**/*", lambda route: route.continue_()
                      if route.request.url.startswith(base)
                      else (off_host.append(route.request.url), route.abort()))
        page = context.new_page()
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))

        page.goto(f"{base}/")
        page.click("text=Get e-mail updates")
        page.fill("#email", "pat@example.org")
        page.check("#subtype-dermatomyositis")
        page.fill("#near", "Beijing")
        page.select_option("#radius", "500")
        page.check("#cadence-daily")
        page.screenshot(path=str(tmp_path / "subscribe-phone.png"), full_page=True)
        page.click("button:has-text('Sign up')")
        assert "Check your inbox" in page.content()
        wide = page.evaluate("document.documentElement.scrollWidth")

        wait_for(lambda: mailbox.accepted, what="the confirmation e-mail")
        confirmation = mailbox.accepted[-1].message
        page.goto(_link(confirmation, "/confirm"))
        page.click("button:has-text('Confirm')")
        assert "Subscription confirmed" in page.content()
        stored = subscribers.find(ctx.db, "pat@example.org")
        assert stored.confirmed_at is not None and stored.near_lat is not None
        assert stored.subtypes == "dermatomyositis"

        study = updated(registry.studies["NCT04078230"])  # DM, recruiting in Beijing
        study["protocolSection"]["statusModule"]["overallStatus"] = "ACTIVE_NOT_RECRUITING"
        registry.put(study)
        registry.data_timestamp = "2026-11-21T09:00:05"
        assert jobs.sync(ctx).status == "ok"
        sent = len(mailbox.accepted)
        assert jobs.digests(ctx).status == "ok"
        wait_for(lambda: len(mailbox.accepted) > sent, what="the digest")
        digest = next(m.message for m in mailbox.accepted[sent:]
                      if m.rcpt_tos == ("pat@example.org",))
        assert "Tofacitinib" in digest.get_body(("plain",)).get_content()  # type: ignore[union-attr]

        page.goto(_link(digest, "/manage"))
        assert page.is_checked("#subtype-dermatomyositis")  # the current choices, pre-filled
        page.uncheck("#subtype-dermatomyositis")
        page.check("#subtype-ibm")
        page.click("button:has-text('Save my choices')")
        page.screenshot(path=str(tmp_path / "manage-phone.png"), full_page=True)
        changed = subscribers.find(ctx.db, "pat@example.org")
        assert changed.subtypes == "ibm"
        assert (changed.near_lat, changed.cadence) == (stored.near_lat, stored.cadence)

        page.goto(f"{base}/trials?near=Beijing&radius=1000")
        page.screenshot(path=str(tmp_path / "trials-phone.png"), full_page=True)
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        browser.close()

    one_click = digest["List-Unsubscribe"].split(",")[0].strip("<> ")
    answer = httpx.post(one_click, data={"List-Unsubscribe": "One-Click"})
    assert answer.status_code == 200
    assert subscribers.find(ctx.db, "pat@example.org").unsubscribed_at is not None
    assert wide <= PHONE["width"]  # no sideways scroll on a phone
    assert problems == []
    assert off_host == []
