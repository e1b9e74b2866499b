"""The public pages, on Starlette: the links in e-mails (confirm, unsubscribe), the written
weekly reports and their feeds, and a health check.

Pages are Jinja2 templates in templates/site/ (autoescaped: registry text is never markup).
Opening a link (GET) only shows a page with a button; the change happens on POST, so mail
scanners that prefetch links neither confirm nor cancel anything. A POST with
`List-Unsubscribe=One-Click` (RFC 8058) unsubscribes at once, as mail clients expect.

Every answer carries security headers (a Content-Security-Policy without scripts, no framing,
no referrer, no sniffing); request bodies are capped; errors are pages in the site's style,
never tracebacks; the request log names method, path and status, never a token.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from tracker import jobs, pages, signup, templating
from tracker.errors import BadToken, ConfigError, DatabaseBusy, TrackerError
from tracker.jobs import Context
from tracker.tokens import Purpose

MAX_BODY = 10_000  # bytes: the forms here are a token and a few fields
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
log = logging.getLogger("tracker.web")


def create_app(ctx: Context) -> Starlette:
    """The site for `ctx`: what `tracker serve` and `tracker run` serve."""
    env = templating.environment(override=ctx.settings.templates_dir, strict=False)

    def page(title: str, paragraphs: list[str], status: int = 200,
             form: dict[str, str] | None = None,
             link: dict[str, str] | None = None) -> HTMLResponse:
        html = env.get_template("site/message.html").render(title=title, paragraphs=paragraphs,
                                                            form=form, link=link)
        return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})

    async def token_of(request: Request) -> tuple[str, dict[str, str]]:
        form = dict(await request.form()) if request.method == "POST" else {}
        token = str(form.get("token") or request.query_params.get("token") or "")
        return token, {k: str(v) for k, v in form.items()}

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("The tracker is running.")

    async def confirm(request: Request) -> Response:
        token, _ = await token_of(request)
        try:
            if request.method != "POST":
                parsed = jobs.read_token(ctx, Purpose.CONFIRM, token)
                return page("Confirm your subscription",
                            [f"Confirm e-mails to {parsed.email}?"],
                            form={"action": "/confirm", "token": token, "label": "Confirm"})
            subscriber = await _threaded(jobs.confirm, ctx, token)
        except BadToken as error:
            return bad_link(error)
        return page("Subscription confirmed",
                    [f"{subscriber.email} will receive {subscriber.cadence} digests of "
                     "myositis trial news. Every e-mail has a link to stop them."])

    async def unsubscribe(request: Request) -> Response:
        token, form = await token_of(request)
        try:
            if request.method != "POST":
                parsed = jobs.read_token(ctx, Purpose.UNSUBSCRIBE, token)
                return page("Unsubscribe", [f"Stop all e-mails to {parsed.email}?"],
                            form={"action": "/unsubscribe", "token": token,
                                  "label": "Unsubscribe"})
            parsed, _ = await _threaded(jobs.unsubscribe_link, ctx, token)
        except BadToken as error:
            return bad_link(error)
        if form.get("List-Unsubscribe") == "One-Click":
            return PlainTextResponse("Unsubscribed.", headers={"Cache-Control": "no-store"})
        return page("Unsubscribed", [f"{parsed.email} will receive no more e-mails."])

    def bad_link(error: BadToken) -> Response:
        return page("This link does not work", [str(error)], status=400,
                    link={"href": "/subscribe", "text": "Ask for a new link: sign up again "
                                                        "with your e-mail address"})

    async def not_found(request: Request, exc: Exception) -> Response:
        return page("Not found", ["There is nothing at this address."], status=404)

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        if status == 404:
            return await not_found(request, exc)
        if status == 405:
            return page("Not allowed", ["This page cannot be used that way."], status=405)
        if status == 413:
            return page("Too much", ["What was sent is too large for this page."], status=413)
        return page("Something went wrong", ["Please try again later."], status=status)

    async def busy(request: Request, exc: Exception) -> Response:
        return page("Busy for a moment", ["The tracker is busy saving news from the registry. "
                                          "Nothing was changed; please try again in a minute."],
                    status=503)

    async def failed(request: Request, exc: Exception) -> Response:
        if isinstance(exc, TrackerError):
            return page("Something went wrong", [str(exc)], status=500)
        log.exception("%s %s: unexpected error", request.method, request.url.path)
        return page("Something went wrong", ["Please try again later."], status=500)

    routes = [
        Route("/healthz", healthz),
        Route("/confirm", confirm, methods=["GET", "POST"]),
        Route("/unsubscribe", unsubscribe, methods=["GET", "POST"]),
        *pages.routes(ctx, env),
        *signup.routes(ctx, env),
        Mount("/reports", app=StaticFiles(directory=ctx.settings.report_dir, html=True,
                                          check_dir=False)),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(BodyLimit), Middleware(Headers)],
        exception_handlers={HTTPException: http_error, DatabaseBusy: busy,
                            Exception: failed},
    )


async def _threaded(call: Callable[..., Any], *args: Any) -> Any:
    """Database work runs in a worker thread, so the event loop keeps answering."""
    return await run_in_threadpool(call, *args)


class Headers(BaseHTTPMiddleware):
    """Security headers on every answer, and a request log without query strings."""

    async def dispatch(self, request: Request,
                       call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        # Query strings carry tokens: the log names the path only.
        log.info("%s %s %s", request.method, request.url.path, response.status_code)
        return response


class BodyLimit:
    """Refuse a request body over MAX_BODY bytes with 413, whatever it claims."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > MAX_BODY:
            await PlainTextResponse("Too large.", status_code=413)(scope, receive, send)
            return
        seen = 0

        async def limited() -> Any:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > MAX_BODY:
                raise HTTPException(413)
            return message

        await self.app(scope, limited, send)


def server(ctx: Context, host: str, port: int) -> uvicorn.Server:
    """A uvicorn server for the site; ConfigError (one line) if the address is taken.

    It stops within a second of SIGINT or SIGTERM (in the main thread), or of `should_exit`
    being set from another one, even mid-request.
    """
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise ConfigError(f"Cannot serve the site on {host}:{port}: {error.strerror}. "
                              "Set TRACKER_WEB_HOST and TRACKER_WEB_PORT, or --port.") from None
    config = uvicorn.Config(create_app(ctx), host=host, port=port, log_config=None,
                            access_log=False, lifespan="off", timeout_graceful_shutdown=1,
                            server_header=False)
    return uvicorn.Server(config)


def log_to_stderr() -> None:
    """The request log (method, path, status) on stderr; uvicorn's own chatter only if bad."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).setLevel(logging.WARNING)
