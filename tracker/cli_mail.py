"""The e-mail commands of `tracker`: subscribers, confirmation, digests, the outbox, and the
pages behind the links in e-mails. Each is a few lines around one job (`tracker.jobs`)."""

from __future__ import annotations

import contextlib
import json
import signal
import sys
from pathlib import Path
from typing import Any

import click

from tracker import jobs, outbox, subscribers
from tracker.cli_app import App, cli
from tracker.config import parse_weekday
from tracker.errors import BadAddress, PermanentSendError, TransientSendError
from tracker.matching import describe, digest_day_name
from tracker.models import Cadence, ChangeSet, MessageKind, MessageStatus
from tracker.subscribers import Preferences, parse_point


@cli.command("subscribe")
@click.argument("email")
@click.option("--subtype", "subtypes", multiple=True, metavar="TAG",
              help="Only trials of this subtype (see 'tracker tags'); repeat for several.")
@click.option("--therapy", "therapies", multiple=True, metavar="TAG",
              help="Only trials testing this treatment class; repeat for several.")
@click.option("--country", "countries", multiple=True, metavar="NAME",
              help="Only trials with a site in this country; repeat for several.")
@click.option("--near", metavar="LAT,LON", help="Only trials with a site near this point.")
@click.option("--radius-km", type=click.FloatRange(min=1, max=20000), default=None,
              help="How near, with --near (default 100 km).")
@click.option("--children", is_flag=True, help="Only trials children can join.")
@click.option("--recruiting-only", is_flag=True, help="Only trials recruiting now (and news "
                                                      "of recruitment closing).")
@click.option("--changes", type=click.Choice([c.value for c in ChangeSet]),
              default=ChangeSet.PATIENT.value,
              show_default=True,
              help="patient: new trials, recruitment opening or closing, new sites, results, "
                   "early stops; all: every change.")
@click.option("--cadence", type=click.Choice([c.value for c in Cadence]),
              default=Cadence.WEEKLY.value,
              show_default=True)
@click.option("--day", metavar="DAY", help="Weekly digests: the day they go out, e.g. mon or "
                                           "friday (default TRACKER_WEEKLY_DAY).")
@click.option("--confirmed", is_flag=True, help="Operator only: skip the confirmation e-mail.")
@click.pass_obj
def subscribe_command(app: App, email: str, subtypes: tuple[str, ...],
                      therapies: tuple[str, ...], countries: tuple[str, ...], near: str | None,
                      radius_km: float | None, children: bool, recruiting_only: bool,
                      changes: str, cadence: str, day: str | None, confirmed: bool) -> None:
    """Subscribe EMAIL to digests; a confirmation e-mail is sent first (double opt-in).

    \b
    Examples:
      tracker subscribe pat@example.org --subtype ibm --country France --day fri
      tracker subscribe dr@example.org --therapy jak --changes all --cadence daily
      tracker subscribe family@example.org --subtype jdm --near 45.75,4.85 --radius-km 150
    """
    subscribers.normalise_address(email)  # bad input is refused before anything is written
    app.check_tags(subtypes, therapies)
    weekday = _weekday(day, cadence)
    ctx = app.context(write=True)
    where = app.study_filter(ctx, subtypes, therapies, False, children, countries)
    if radius_km is not None and not near:
        raise click.BadParameter("--radius-km needs --near LAT,LON", param_hint="--radius-km")
    try:
        point = parse_point(near) if near else None
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--near") from None
    preferences = Preferences(where.subtypes, where.therapies, where.countries, point,
                              radius_km, children, recruiting_only, ChangeSet(changes),
                              Cadence(cadence), weekday)
    done = jobs.subscribe(ctx, email, preferences, confirmed=confirmed)
    click.echo(f"{done.outcome.capitalize()}: {done.subscriber.email} "
               f"({describe(done.subscriber, ctx.settings.weekly_day, ctx.vocabulary.label)}).")
    sent = done.confirmation
    if sent is None:
        return
    if sent.sent:
        where_to = "sent" if ctx.settings.smtp_configured else \
            f"written to {ctx.settings.digest_dir}/"
        click.echo(f"A confirmation e-mail was {where_to}; nothing else is sent until it is "
                   "confirmed.")
    elif sent.failed:
        raise PermanentSendError(f"The confirmation e-mail to {done.subscriber.email} was "
                                 f"refused: {sent.errors[-1] if sent.errors else '?'}")
    else:
        click.echo("warning: the confirmation e-mail is queued, not yet sent ("
                   + ("; ".join(e for e in sent.errors if e) or "see 'tracker outbox'")
                   + "); 'tracker digest' will retry it.", err=True)


def _weekday(day: str | None, cadence: str) -> int | None:
    if day is None:
        return None
    if cadence != Cadence.WEEKLY:
        raise click.BadParameter("--day only applies to weekly digests", param_hint="--day")
    try:
        return parse_weekday(day)
    except ValueError:
        raise click.BadParameter(f"{day!r} is not a day of the week; give e.g. mon or monday",
                                 param_hint="--day") from None


@cli.command("confirm")
@click.argument("token")
@click.pass_obj
def confirm_command(app: App, token: str) -> None:
    """Confirm a subscription with the token from its confirmation link.

    \b
    Example:
      tracker confirm 'eyJzIjoxLCJlIjoicGF0QGV4YW1wbGUub3JnIn0.Z...'
    """
    subscriber = jobs.confirm(app.context(write=True), token)
    click.echo(f"Confirmed: {subscriber.email} will receive {subscriber.cadence} digests.")


@cli.command("unsubscribe")
@click.argument("email")
@click.pass_obj
def unsubscribe_command(app: App, email: str) -> None:
    """End EMAIL's subscription; nothing more is sent to it.

    \b
    Example:
      tracker unsubscribe pat@example.org
    """
    # As stored (an IDN domain in its xn-- form); a bad address is simply not subscribed.
    with contextlib.suppress(BadAddress):
        email = subscribers.normalise_address(email)
    subscriber, ended = jobs.unsubscribe(app.context(write=True), email)
    click.echo(f"Unsubscribed: {subscriber.email}." if ended
               else f"{subscriber.email} was already unsubscribed.")


@cli.command("subscribers")
@click.option("--all", "include_ended", is_flag=True, help="Include ended subscriptions.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_obj
def subscribers_command(app: App, include_ended: bool, as_json: bool) -> None:
    """List subscribers, their filters and state.

    \b
    Examples:
      tracker subscribers
      tracker subscribers --all --json
    """
    ctx = app.context()
    rows = subscribers.listing(ctx.db, include_ended)
    weekly_day = ctx.settings.weekly_day
    if as_json:
        labels = app.tagger.vocabulary.label
        click.echo(json.dumps([_subscriber_json(s, weekly_day, labels) for s in rows],
                              indent=2, ensure_ascii=False))
        return
    if not rows:
        click.echo("No subscribers yet; add one with 'tracker subscribe EMAIL'.")
        return
    for s in rows:
        state = "ended" if s.unsubscribed_at else (
            "confirmed" if s.confirmed_at else "awaiting confirmation")
        last = f"last digest {s.last_digest_at:%Y-%m-%d}" if s.last_digest_at else "no digest yet"
        click.echo(f"{s.email:<36} {state:<22} {last:<24} "
                   f"{describe(s, weekly_day, app.tagger.vocabulary.label)}")


def _subscriber_json(s: Any, weekly_day: int, labels: Any) -> dict[str, Any]:
    from tracker.text import split_list

    return {
        "email": s.email, "confirmed": s.confirmed_at is not None,
        "unsubscribed": s.unsubscribed_at is not None,
        "subtypes": split_list(s.subtypes), "therapies": split_list(s.therapies),
        "countries": split_list(s.countries),
        "near": {"lat": s.near_lat, "lon": s.near_lon, "radius_km": s.radius_km}
        if s.near_lat is not None else None,
        "children": bool(s.children), "recruiting_only": bool(s.recruiting_only),
        "changes": s.changes, "cadence": s.cadence, "day": digest_day_name(s, weekly_day),
        "summary": describe(s, weekly_day, labels),
        "created_at": s.created_at.isoformat(),
        "last_digest_at": s.last_digest_at.isoformat() if s.last_digest_at else None,
    }


@cli.command("digest")
@click.option("--send", is_flag=True, help="Send by SMTP (TRACKER_SMTP_HOST).")
@click.option("--write", "folder", type=click.Path(file_okay=False, path_type=Path),
              help="Write .html, .txt and .eml files into this folder instead of sending.")
@click.option("--dry-run", is_flag=True, help="Show who would get what; queue and send nothing.")
@click.pass_obj
def digest_command(app: App, send: bool, folder: Path | None, dry_run: bool) -> None:
    """Queue the digests that are due and deliver everything queued.

    Without --send or --write, digests are sent if SMTP is configured and written to
    TRACKER_DIGEST_DIR otherwise. An operator digest of every change is written too, or
    mailed to TRACKER_ADMIN_EMAIL when sending.

    \b
    Examples:
      tracker digest --dry-run
      tracker digest --write digests/
    """
    if send and folder:
        raise click.BadParameter("choose --send or --write, not both")
    done = jobs.digests(app.context(write=not dry_run), send=send, folder=folder,
                        dry_run=dry_run)
    for planned in done.planned.planned:
        verb = "would get" if dry_run else "queued for"
        what = "Digest" if planned.kind == MessageKind.DIGEST else "Operator digest"
        click.echo(f"{what} {verb} {planned.recipient}: {planned.changes} change(s) on "
                   f"{planned.trials} trial(s): {planned.subject}")
    summary = (f"{len(done.planned.planned)} digest(s) {'planned' if dry_run else 'queued'}; "
               f"{done.planned.nothing_new} subscriber(s) had nothing new; "
               f"{done.planned.not_due} not due")
    delivered = done.delivered
    if delivered is None:
        click.echo(summary + ". Dry run: nothing was queued or sent.")
        return
    how = "written" if done.to_files else "sent"
    click.echo(f"{summary}; {delivered.sent} {how}, {delivered.failed} failed, "
               f"{delivered.unknown} unknown, {delivered.left} still queued.")
    if delivered.recovered:
        click.echo(f"warning: {delivered.recovered} message(s) were interrupted mid-send by an "
                   "earlier run; their delivery is unknown ('tracker outbox' lists them).",
                   err=True)
    if delivered.left:
        raise TransientSendError(f"Not delivered for now "
                                 f"({delivered.errors[-1] if delivered.errors else '?'}); "
                                 f"{delivered.left} message(s) stay queued for the next run.")


@cli.command("outbox")
@click.option("--retry", "retry_id", type=int, help="Queue this failed or unknown message "
                                                    "again and try to deliver it.")
@click.option("--all", "show_all", is_flag=True, help="Also list sent messages.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_obj
def outbox_command(app: App, retry_id: int | None, show_all: bool, as_json: bool) -> None:
    """List messages that are queued, failed or of unknown outcome.

    \b
    Examples:
      tracker outbox
      tracker outbox --retry 12
    """
    if retry_id is not None:
        message, result = jobs.retry(app.context(write=True), retry_id)
        click.echo(f"Message {retry_id} to {message.recipient}: "
                   f"{'delivered' if result.sent else 'still not delivered'}.")
        return
    ctx = app.context()
    rows = outbox.messages(ctx.db, () if show_all else outbox.PENDING)
    if as_json:
        click.echo(json.dumps([{
            "id": m.id, "kind": m.kind, "recipient": m.recipient, "subject": m.subject,
            "status": m.status, "attempts": m.attempts, "error": m.error,
            "message_id": m.message_id, "created_at": m.created_at.isoformat(),
            "sent_at": m.sent_at.isoformat() if m.sent_at else None,
        } for m in rows], indent=2, ensure_ascii=False))
        return
    if not rows:
        click.echo("The outbox is empty: every message was delivered.")
        return
    for m in rows:
        click.echo(f"{m.id:>6}  {m.status:<8} {m.kind:<8} {m.recipient:<32} {m.subject}")
        if m.error:
            click.echo(f"        {m.error}")
    if not show_all and any(m.status == MessageStatus.UNKNOWN for m in rows):
        click.echo("'tracker outbox --retry ID' sends a message of unknown outcome again.")


@cli.command("serve")
@click.option("--host", default=None, help="Address to listen on (default TRACKER_WEB_HOST, "
                                           "127.0.0.1).")
@click.option("--port", default=None, type=click.IntRange(1, 65535),
              help="Port (default TRACKER_WEB_PORT, 8000).")
@click.pass_obj
def serve_command(app: App, host: str | None, port: int | None) -> None:
    """Serve the site alone: recruiting trials, sign-up and manage pages, the pages behind the
    links in e-mails, the weekly reports and their feeds. (`tracker run` serves it too.)

    Put it behind your web server at TRACKER_PUBLIC_URL. Ctrl-C or SIGTERM stops it.

    \b
    Example:
      tracker serve --port 8000
    """
    from tracker import web

    app.settings.require_secret()
    ctx = app.context(write=True)
    host, port = host or ctx.settings.web_host, port or ctx.settings.web_port
    web.log_to_stderr()
    server = web.server(ctx, host, port)
    click.echo(f"Serving the site on http://{host}:{port}/ (links in e-mails point to "
               f"{ctx.settings.public_url}). Ctrl-C stops.", err=True)
    # uvicorn stops on SIGINT or SIGTERM, then raises the signal again: a stop asked for is
    # a clean exit here, not an interruption.
    signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(0))
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        click.echo("Stopped.", err=True)
