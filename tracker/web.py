"""The two pages behind the links in e-mails: confirm a subscription, unsubscribe.

A small WSGI app (served by `tracker serve` through the standard library's wsgiref, or by any
WSGI server). Opening a link (GET) only shows a page with a button; the change happens on
POST, so mail scanners that prefetch links neither confirm nor cancel anything. A POST with
`List-Unsubscribe=One-Click` (RFC 8058) unsubscribes at once, as mail clients expect.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from tracker import jobs
from tracker.errors import BadToken, DatabaseBusy, TrackerError
from tracker.jobs import Context
from tracker.tokens import Purpose

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
MAX_BODY = 10_000

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title></head>
<body style="font-family:Arial,Helvetica,sans-serif;max-width:560px;margin:40px auto;
padding:0 16px;color:#1f2933;line-height:1.5">
<h1 style="font-size:22px;color:#123c69">{title}</h1>
{body}
</body></html>"""


class App:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def __call__(self, environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        query = parse_qs(environ.get("QUERY_STRING", ""))
        form = _form(environ) if method == "POST" else {}
        token = (form.get("token") or query.get("token") or [""])[0]
        try:
            if path == "/healthz":
                return _send(start, "200 OK", "OK", "The tracker is running.", plain=True)
            if path == "/confirm":
                return self._confirm(start, method, token)
            if path == "/unsubscribe":
                one_click = form.get("List-Unsubscribe") == ["One-Click"]
                return self._unsubscribe(start, method, token, one_click)
            return _send(start, "404 Not Found", "Not found", "<p>There is nothing here.</p>")
        except BadToken as error:
            return _send(start, "400 Bad Request", "This link does not work",
                         f"<p>{html.escape(str(error))}</p>")
        except DatabaseBusy:
            return _send(start, "503 Service Unavailable", "Busy for a moment",
                         "<p>The tracker is busy saving news from the registry. Nothing was "
                         "changed; please try again in a minute.</p>")
        except TrackerError as error:
            return _send(start, "500 Internal Server Error", "Something went wrong",
                         f"<p>{html.escape(str(error))}</p>")

    def _confirm(self, start: StartResponse, method: str, token: str) -> Iterable[bytes]:
        if method != "POST":
            parsed = jobs.read_token(self.ctx, Purpose.CONFIRM, token)
            return _send(start, "200 OK", "Confirm your subscription", _button(
                "/confirm", token, f"Confirm e-mails to {parsed.email}", "Confirm"))
        subscriber = jobs.confirm(self.ctx, token)
        return _send(start, "200 OK", "Subscription confirmed",
                     f"<p>{html.escape(subscriber.email)} will receive {subscriber.cadence} "
                     "digests of myositis trial news. Every e-mail has a link to stop "
                     "them.</p>")

    def _unsubscribe(self, start: StartResponse, method: str, token: str,
                     one_click: bool) -> Iterable[bytes]:
        if method != "POST":
            parsed = jobs.read_token(self.ctx, Purpose.UNSUBSCRIBE, token)
            return _send(start, "200 OK", "Unsubscribe", _button(
                "/unsubscribe", token, f"Stop all e-mails to {parsed.email}", "Unsubscribe"))
        parsed, _ = jobs.unsubscribe_link(self.ctx, token)
        if one_click:
            return _send(start, "200 OK", "Unsubscribed", "Unsubscribed.", plain=True)
        return _send(start, "200 OK", "Unsubscribed",
                     f"<p>{html.escape(parsed.email)} will receive no more e-mails.</p>")


def _form(environ: dict[str, Any]) -> dict[str, list[str]]:
    try:
        length = min(int(environ.get("CONTENT_LENGTH") or 0), MAX_BODY)
    except ValueError:
        length = 0
    body = environ["wsgi.input"].read(length) if length else b""
    return parse_qs(body.decode("utf-8", errors="replace"))


def _button(action: str, token: str, text: str, label: str) -> str:
    return (f"<p>{html.escape(text)}?</p>"
            f'<form method="post" action="{action}">'
            f'<input type="hidden" name="token" value="{html.escape(token, quote=True)}">'
            f'<button type="submit" style="padding:10px 16px;background:#123c69;color:#fff;'
            f'border:0;border-radius:4px;font-size:15px">{html.escape(label)}</button></form>')


def _send(start: StartResponse, status: str, title: str, body: str,
          plain: bool = False) -> list[bytes]:
    if plain:
        data = body.encode()
        kind = "text/plain; charset=utf-8"
    else:
        data = PAGE.format(title=html.escape(title), body=body).encode()
        kind = "text/html; charset=utf-8"
    start(status, [("Content-Type", kind), ("Content-Length", str(len(data))),
                   ("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff"),
                   ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; "
                                               "form-action 'self'")])
    return [data]
