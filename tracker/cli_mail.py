"""The e-mail commands of `tracker`: subscribers, confirmation, digests and the outbox."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import click

from tracker import outbox
from tracker.cli import App, cli
from tracker.config import parse_weekday
from tracker.errors import ConfigError
from tracker.mail import (
    DrainResult,
    FileTransport,
    SendError,
    SmtpTransport,
    TransientSendError,
    Transport,
    drain,
)
from tracker.notify import operator_recipient, prepare_digests, queue_confirmation
from tracker.store import utcnow
from tracker.subscribers import (
    CADENCES,
    CHANGE_SETS,
    BadAddress,
    Preferences,
    describe,
    digest_day_name,
    normalise_address,
    parse_point,
)
from tracker.tokens import read


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
@click.option("--changes", type=click.Choice(CHANGE_SETS), default="patient", show_default=True,
              help="patient: new trials, recruitment opening or closing, new sites, results, "
                   "early stops; all: every change.")
@click.option("--cadence", type=click.Choice(CADENCES), default="weekly", show_default=True)
@click.option("--day", metavar="DAY", help="Weekly digests: the day they go out, e.g. mon or "
                                           "friday (default TRACKER_WEEKLY_DAY).")
@click.option("--confirmed", is_flag=True, help="Operator only: skip the confirmation e-mail.")
@click.pass_obj
def subscribe_command(app: App, email: str, subtypes: tuple[str, ...],
                      therapies: tuple[str, ...], countries: tuple[str, ...], near: str | None,
                      radius_km: float | None, children: bool, recruiting_only: bool,
                      changes: str, cadence: str, day: str | None, confirmed: bool) -> None:
    """Subscribe EMAIL to digests; a confirmation e-mail is sent first (double opt-in)."""
    address = normalise_address(email)
    where = app.study_filter(subtypes, therapies, False, children, countries)
    if radius_km is not None and not near:
        raise click.BadParameter("--radius-km needs --near LAT,LON", param_hint="--radius-km")
    try:
        point = parse_point(near) if near else None
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--near") from None
    weekday = _weekday(day, cadence)
    if not confirmed:
        app.settings.require_secret()
    preferences = Preferences(where.subtypes, where.therapies, where.countries, point,
                              radius_km, children, recruiting_only, changes, cadence, weekday)
    now = utcnow()
    subscriber, outcome = outbox.subscribe(app.store, address, preferences, confirmed=confirmed,
                                           now=now)
    click.echo(f"{outcome.capitalize()}: {address} "
               f"({describe(subscriber, app.settings.weekly_day)}).")
    if subscriber.confirmed_at is not None:
        return
    message_id = queue_confirmation(app.settings, app.store, subscriber, now)
    try:
        result = _deliver(app, None, ids=[message_id] if message_id else [])
    except SendError as error:
        result = DrainResult(left=1, errors=[str(error)])
    if result.sent:
        where_to = "sent" if app.settings.smtp_configured else \
            f"written to {app.settings.digest_dir}/"
        click.echo(f"A confirmation e-mail was {where_to}; nothing else is sent until it is "
                   "confirmed.")
    elif result.failed:
        failed = outbox.messages(app.store, ("failed",))
        raise SendError(f"The confirmation e-mail to {address} was refused: "
                        f"{failed[-1].error if failed else 'see tracker outbox'}")
    else:
        click.echo("warning: the confirmation e-mail is queued, not yet sent ("
                   + ("; ".join(e for e in result.errors if e) or "see 'tracker outbox'")
                   + "); 'tracker digest' will retry it.", err=True)


def _weekday(day: str | None, cadence: str) -> int | None:
    if day is None:
        return None
    if cadence != "weekly":
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
    """Confirm a subscription with the token from its confirmation link."""
    parsed = read(app.settings.require_secret(), "confirm", token,
                  max_age=app.settings.confirm_days * 86400)
    subscriber = outbox.confirm(app.store, parsed, utcnow())
    click.echo(f"Confirmed: {subscriber.email} will receive {subscriber.cadence} digests.")


@cli.command("unsubscribe")
@click.argument("email")
@click.pass_obj
def unsubscribe_command(app: App, email: str) -> None:
    """End EMAIL's subscription; nothing more is sent to it."""
    # As stored (an IDN domain in its xn-- form); a bad address is simply not subscribed.
    with contextlib.suppress(BadAddress):
        email = normalise_address(email)
    subscriber = outbox.find(app.store, email)
    assert subscriber.id is not None
    if outbox.unsubscribe(app.store, subscriber.id, utcnow()):
        click.echo(f"Unsubscribed: {subscriber.email}.")
    else:
        click.echo(f"{subscriber.email} was already unsubscribed.")


@cli.command("subscribers")
@click.option("--all", "include_ended", is_flag=True, help="Include ended subscriptions.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_obj
def subscribers_command(app: App, include_ended: bool, as_json: bool) -> None:
    """List subscribers, their filters and state."""
    rows = outbox.subscribers(app.store, include_ended)
    weekly_day = app.settings.weekly_day
    if as_json:
        click.echo(json.dumps([{
            "email": s.email, "filters": describe(s, weekly_day),
            "confirmed": s.confirmed_at is not None,
            "unsubscribed": s.unsubscribed_at is not None, "cadence": s.cadence,
            "day": digest_day_name(s, weekly_day),
            "last_digest_at": s.last_digest_at.isoformat() if s.last_digest_at else None,
        } for s in rows], indent=2))
        return
    if not rows:
        click.echo("No subscribers yet; add one with 'tracker subscribe EMAIL'.")
        return
    for s in rows:
        state = "ended" if s.unsubscribed_at else (
            "confirmed" if s.confirmed_at else "awaiting confirmation")
        last = f"last digest {s.last_digest_at:%Y-%m-%d}" if s.last_digest_at else "no digest yet"
        click.echo(f"{s.email:<36} {state:<22} {last:<24} {describe(s, weekly_day)}")


@cli.command("digest")
@click.option("--send", "mode", flag_value="send", help="Send by SMTP (TRACKER_SMTP_HOST).")
@click.option("--write", "folder", type=click.Path(file_okay=False, path_type=Path),
              help="Write .html, .txt and .eml files into this folder instead of sending.")
@click.option("--dry-run", is_flag=True, help="Show who would get what; queue and send nothing.")
@click.pass_obj
def digest_command(app: App, mode: str | None, folder: Path | None, dry_run: bool) -> None:
    """Queue the digests that are due and deliver everything queued.

    Without --send or --write, digests are sent if SMTP is configured and written to
    TRACKER_DIGEST_DIR otherwise. An operator digest of every change is written too, or
    mailed to TRACKER_ADMIN_EMAIL when sending.
    """
    if mode == "send" and folder:
        raise click.BadParameter("choose --send or --write, not both")
    if mode == "send" and not app.settings.smtp_configured:
        raise ConfigError("--send needs TRACKER_SMTP_HOST (and usually TRACKER_SMTP_USER and "
                          "TRACKER_SMTP_PASSWORD); see config.example.env.")
    to_files = folder is not None or (mode is None and not app.settings.smtp_configured)
    result = prepare_digests(app.settings, app.store, utcnow(),
                             operator=operator_recipient(app.settings, to_files=to_files),
                             dry_run=dry_run)
    for planned in result.planned:
        verb = "would get" if dry_run else "queued for"
        click.echo(f"{'Digest' if planned.kind == 'digest' else 'Operator digest'} {verb} "
                   f"{planned.recipient}: {planned.changes} change(s) on {planned.trials} "
                   f"trial(s): {planned.subject}")
    for error in result.errors:
        click.echo(f"warning: {error}", err=True)
    summary = (f"{len(result.planned)} digest(s) {'planned' if dry_run else 'queued'}; "
               f"{result.nothing_new} subscriber(s) had nothing new; {result.not_due} not due")
    if dry_run:
        click.echo(summary + ". Dry run: nothing was queued or sent.")
        return
    delivered = _deliver(app, folder if folder else (app.settings.digest_dir if to_files
                                                       else None))
    how = "written" if to_files else "sent"
    click.echo(f"{summary}; {delivered.sent} {how}, {delivered.failed} failed, "
               f"{delivered.unknown} unknown, {delivered.left} still queued.")
    if delivered.recovered:
        click.echo(f"warning: {delivered.recovered} message(s) were interrupted mid-send by an "
                   "earlier run; their delivery is unknown ('tracker outbox' lists them).",
                   err=True)
    if delivered.left:
        raise TransientSendError(f"The mail server keeps refusing for now "
                                 f"({delivered.errors[-1]}); {delivered.left} message(s) stay "
                                 "queued for the next run.")


@cli.command("outbox")
@click.option("--retry", "retry_id", type=int, help="Queue this failed or unknown message "
                                                    "again and try to deliver it.")
@click.option("--all", "show_all", is_flag=True, help="Also list sent messages.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_obj
def outbox_command(app: App, retry_id: int | None, show_all: bool, as_json: bool) -> None:
    """List messages that are queued, failed or of unknown outcome."""
    if retry_id is not None:
        message = outbox.retry(app.store, retry_id)
        result = _deliver(app, None, ids=[retry_id])
        click.echo(f"Message {retry_id} to {message.recipient}: "
                   f"{'delivered' if result.sent else 'still not delivered'}.")
        return
    rows = outbox.messages(app.store, () if show_all else ("queued", "sending", "failed",
                                                           "unknown"))
    if as_json:
        click.echo(json.dumps([{
            "id": m.id, "kind": m.kind, "recipient": m.recipient, "subject": m.subject,
            "status": m.status, "attempts": m.attempts, "error": m.error,
            "created_at": m.created_at.isoformat(),
            "sent_at": m.sent_at.isoformat() if m.sent_at else None,
        } for m in rows], indent=2))
        return
    if not rows:
        click.echo("The outbox is empty: every message was delivered.")
        return
    for m in rows:
        click.echo(f"{m.id:>6}  {m.status:<8} {m.kind:<8} {m.recipient:<32} {m.subject}")
        if m.error:
            click.echo(f"        {m.error}")


def _deliver(app: App, folder: Path | None, ids: list[int] | None = None) -> DrainResult:
    transport: Transport
    if folder is not None or not app.settings.smtp_configured:
        transport = FileTransport(folder or app.settings.digest_dir)
    else:
        transport = SmtpTransport(app.settings)
    return drain(app.store, transport, ids=ids)

