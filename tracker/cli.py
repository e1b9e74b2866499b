"""The `tracker` command line. Every failure is one line on stderr and a non-zero exit.

Exit status: 0 success; 1 a sync or fetch failed; 2 bad settings or arguments; 3 another sync
holds the lock; 4 the study asked for is not in the snapshot; 70 an unexpected bug.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

import click
from dotenv import find_dotenv, load_dotenv

from tracker import __version__, views
from tracker.config import Settings, redact_url
from tracker.ctgov import CtGovClient
from tracker.diff import KINDS
from tracker.errors import NotFound, TrackerError
from tracker.store import Store, StudyFilter, as_utc, utcnow
from tracker.sync import sync
from tracker.tags import Tagger, load_vocabulary


class Failure(click.ClickException):
    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]

    def show(self, file: Any = None) -> None:
        click.echo(f"tracker: error: {self.message}", err=True)


class TrackerGroup(click.Group):
    """Turns every exception into one clear line; TRACKER_DEBUG=1 shows the traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TrackerError as error:
            raise Failure(str(error), error.exit_code) from error
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except BrokenPipeError:
            # The reader went away (`tracker export | head`): stop quietly, as cat would.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise click.exceptions.Exit(1) from None
        except Exception as error:
            if os.environ.get("TRACKER_DEBUG"):
                raise
            raise Failure(f"unexpected {type(error).__name__}: {error} "
                          "(this is a bug; run with TRACKER_DEBUG=1 for details)", 70) from error


class App:
    """Settings, vocabulary and store, built once per command on first use."""

    def __init__(self) -> None:
        self.settings = Settings.from_env()
        self._tagger: Tagger | None = None
        self._store: Store | None = None

    @property
    def tagger(self) -> Tagger:
        if self._tagger is None:
            self._tagger = Tagger(load_vocabulary(self.settings.vocabulary))
        return self._tagger

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(self.settings.database_url)
            self._store.retag(self.tagger)  # a no-op unless the vocabulary changed
        return self._store

    def study_filter(self, subtypes: tuple[str, ...], therapies: tuple[str, ...],
                     recruiting: bool, children: bool, countries: tuple[str, ...]
                     ) -> StudyFilter:
        vocabulary = self.tagger.vocabulary
        for name, given, known in (("--subtype", subtypes, list(vocabulary.subtypes)),
                                   ("--therapy", therapies, vocabulary.therapy_names)):
            for tag in given:
                if tag not in known:
                    raise click.BadParameter(
                        f"{tag!r} is not a known tag; choose from {', '.join(known)} "
                        "(see 'tracker tags')", param_hint=name)
        return StudyFilter(subtypes, therapies, recruiting, children,
                           tuple(COUNTRY_ALIASES.get(c.casefold(), c) for c in countries))


COUNTRY_ALIASES = {"usa": "United States", "us": "United States", "uk": "United Kingdom",
                   "korea": "South Korea", "turkey": "Turkey (Türkiye)",
                   "türkiye": "Turkey (Türkiye)"}


def study_filters(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options `changes` and `export` share for narrowing to the studies one cares about."""
    options = [
        click.option("--subtype", "subtypes", multiple=True, metavar="TAG",
                     help="Only studies of this myositis subtype (e.g. dermatomyositis, ibm, "
                          "jdm); repeat for several. 'tracker tags' lists them."),
        click.option("--therapy", "therapies", multiple=True, metavar="TAG",
                     help="Only studies testing this treatment class (e.g. jak, fcrn, ivig); "
                          "repeat for several."),
        click.option("--recruiting", is_flag=True, help="Only studies recruiting now."),
        click.option("--children", is_flag=True, help="Only studies children can join."),
        click.option("--country", "countries", multiple=True, metavar="NAME",
                     help="Only studies with a site in this country (a recruiting site, with "
                          "--recruiting); repeat for several."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@click.group(cls=TrackerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tracker")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Track myositis clinical trials on ClinicalTrials.gov and report every change.

    Settings come from the environment and from a .env file in the current folder; see
    config.example.env for every one.
    """
    load_dotenv(find_dotenv(usecwd=True), override=False)
    ctx.obj = App()
    ctx.call_on_close(lambda: ctx.obj._store.close() if ctx.obj._store else None)


@cli.command("sync")
@click.option("--full", is_flag=True, help="Refetch every study, not only those updated.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_obj
def sync_command(app: App, full: bool, as_json: bool) -> None:
    """Fetch myositis studies, record what changed, and print a summary.

    The first sync records a baseline without reporting every study as new. Later syncs ask
    only for studies updated since the last one, and do nothing at all if the registry has
    not refreshed its data.
    """
    progress = _ProgressBars() if sys.stderr.isatty() and not as_json else None
    client = CtGovClient(app.settings,
                         on_retry=lambda msg: _warn(msg, progress))
    try:
        result = sync(app.settings, app.store, client, full=full,
                      progress=progress.update if progress else None, tagger=app.tagger)
    finally:
        client.close()
        if progress:
            progress.close()
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
    else:
        click.echo(views.sync_summary(result))


@cli.command("changes")
@click.option("--since", help="Only changes recorded on or after this date (2026-11-01) or "
                              "this many days ago (7d).")
@click.option("--nct", "nct_id", help="Only changes to this study (NCT number).")
@click.option("--kind", "kinds", multiple=True, type=click.Choice(KINDS),
              help="Only changes of this kind; repeat for several.")
@study_filters
@click.option("--limit", type=click.IntRange(min=1), help="At most this many, newest first.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_obj
def changes_command(app: App, since: str | None, nct_id: str | None, kinds: tuple[str, ...],
                    subtypes: tuple[str, ...], therapies: tuple[str, ...], recruiting: bool,
                    children: bool, countries: tuple[str, ...], limit: int | None,
                    as_json: bool) -> None:
    """List recorded changes, newest first, each in plain words with its technical form."""
    where = app.study_filter(subtypes, therapies, recruiting, children, countries)
    events = app.store.changes(since=_parse_since(since) if since else None,
                               nct_id=_nct(nct_id) if nct_id else None, kinds=kinds,
                               limit=limit, where=where)
    studies = app.store.studies(e.nct_id for e in events)
    if as_json:
        click.echo(json.dumps([views.event_dict(e, studies.get(e.nct_id)) for e in events],
                              indent=2, ensure_ascii=False))
        return
    if not events:
        filtered = since or nct_id or kinds or where.active
        click.echo("No changes recorded" + (" for these filters." if filtered else " yet."))
        return
    for line in views.event_lines(events, studies):
        click.echo(line)


@cli.command("show")
@click.argument("nct_id")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_obj
def show_command(app: App, nct_id: str, as_json: bool) -> None:
    """Show one study in brief, its tags (and why), and its history of changes."""
    nct_id = _nct(nct_id)
    study = app.store.study(nct_id)
    if study is None:
        raise NotFound(f"{nct_id} is not in the snapshot. Run 'tracker sync' first, or check "
                       "the number ('tracker export' lists every tracked study).")
    events = app.store.changes(nct_id=nct_id)
    versions = app.store.version_count(nct_id)
    today = utcnow().date()
    if as_json:
        click.echo(json.dumps({**views.study_detail(study, today), "versions": versions,
                               "changes": [views.event_dict(e) for e in events]},
                              indent=2, ensure_ascii=False))
        return
    click.echo(f"{study.nct_id}  {study.brief_title}")
    for label, value in views.study_lines(study, app.tagger.vocabulary, today):
        click.echo(f"{label + ':':<20} {value}")
    click.echo(f"\nHistory: {versions} version(s) stored, {len(events)} change(s) recorded "
               f"(registry history: {views.HISTORY_URL.format(nct_id)})")
    for event in events:
        click.echo(f"  {event.detected_at:%Y-%m-%d}  {event.plain or event.summary}"
                   f"  ({event.kind}: {event.summary})")


@cli.command("tags")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_obj
def tags_command(app: App, as_json: bool) -> None:
    """List every subtype and treatment class, the name filters accept, and how many trials
    carry it."""
    vocabulary = app.tagger.vocabulary
    counts = app.store.tag_counts()
    groups = {"subtypes": list(vocabulary.subtypes), "therapies": vocabulary.therapy_names}
    if as_json:
        click.echo(json.dumps({group: [{"name": t, "label": vocabulary.label(t),
                                        "trials": counts[group].get(t, 0)} for t in names]
                               for group, names in groups.items()}, indent=2,
                              ensure_ascii=False))
        return
    for group, title, option in (("subtypes", "Myositis subtypes", "--subtype"),
                                 ("therapies", "Treatment classes", "--therapy")):
        click.echo(f"{title} (filter with {option} NAME):")
        for tag in groups[group]:
            click.echo(f"  {tag:<18} {counts[group].get(tag, 0):>5}  {vocabulary.label(tag)}")
        click.echo("")
    click.echo("Counts are tracked trials; a trial can carry several tags.")


@cli.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_obj
def status_command(app: App, as_json: bool) -> None:
    """Show the last successful sync, the last failure, the data's age and counts."""
    store = app.store
    last_ok = store.last_run("ok", "skipped")
    last_data = store.last_run("ok")
    last_failed = store.last_run("failed")
    counts = store.counts()
    data_timestamp = last_ok.data_timestamp if last_ok else None
    mail = _mail_counts(store)
    scheduler = _scheduler_info(app)
    failed_in_a_row = len(store.failures_before())
    info: dict[str, Any] = {
        "database": redact_url(app.settings.database_url),
        "api": app.settings.base_url,
        "data_timestamp": data_timestamp,
        "last_success": views.run_dict(last_ok),
        "last_data_change": views.run_dict(last_data),
        "last_failure": views.run_dict(last_failed),
        "last_sync_failed": views.failed_since(last_failed, last_ok),
        "counts": counts,
        "mail": mail,
        "failed_in_a_row": failed_in_a_row,
        "scheduler": scheduler,
    }
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
        return
    click.echo(f"{'Database:':<22} {info['database']}")
    click.echo(f"{'Studies tracked:':<22} {counts['tracked']} ({counts['recruiting']} "
               f"recruiting; {counts['removed']} no longer matching)")
    click.echo(f"{'Change events:':<22} {counts['changes']} ({counts['versions']} record "
               "versions stored)")
    if last_ok:
        click.echo(f"{'Last successful sync:':<22} {last_ok.finished_at:%Y-%m-%d %H:%M} UTC "
                   f"({views.run_brief(last_ok)})")
        click.echo(f"{'API data timestamp:':<22} {data_timestamp}")
    else:
        click.echo(f"{'Last successful sync:':<22} never; run 'tracker sync'")
    if last_failed:
        when = last_failed.finished_at or last_failed.started_at
        click.echo(f"{'Last failed sync:':<22} {when:%Y-%m-%d %H:%M} UTC: {last_failed.error}")
    click.echo(f"{'Subscribers:':<22} {mail['confirmed']} confirmed, {mail['unconfirmed']} "
               f"awaiting confirmation")
    click.echo(f"{'Outbox:':<22} {mail['queued']} queued, {mail['failed']} failed, "
               f"{mail['unknown']} unknown outcome, {mail['sent']} sent")
    click.echo(f"{'Scheduler:':<22} " + (f"running ({info['scheduler']['running']})"
               if info["scheduler"]["running"] else "not running ('tracker run' starts it)")
               + f"; times in {app.settings.timezone.key}")
    for job, row in info["scheduler"]["jobs"].items():
        last = row["last"]
        zone = app.settings.timezone
        done = (f"last {last['status']} {_short(last['started_at'], zone)}: "
                f"{last['summary']}" if last else "never run")
        click.echo(f"  {job:<8} {row['schedule']:<16} next {_short(row['next'], zone)}; "
                   f"{done}")
    if info["failed_in_a_row"] > 1:
        click.echo(f"Warning: the last {info['failed_in_a_row']} syncs failed; the data may be "
                   "out of date.")
    elif info["last_sync_failed"]:
        click.echo("Warning: the most recent sync failed; the data may be out of date.")


@cli.command("export")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv",
              show_default=True, help="Output format.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True),
              help="Write to this file instead of standard output.")
@click.option("--include-removed", is_flag=True, help="Also export studies that stopped "
                                                       "matching the query.")
@study_filters
@click.pass_obj
def export_command(app: App, fmt: str, output: str | None, include_removed: bool,
                   subtypes: tuple[str, ...], therapies: tuple[str, ...], recruiting: bool,
                   children: bool, countries: tuple[str, ...]) -> None:
    """Export the current snapshot, one row per study, with its tags and patient facts."""
    where = app.study_filter(subtypes, therapies, recruiting, children, countries)
    today = utcnow().date()
    rows = (views.study_dict(s, today) for s in app.store.iter_studies(include_removed, where))
    if output:
        tmp = output + ".part"
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            count = views.write_export(rows, fmt, handle)
        os.replace(tmp, output)
        click.echo(f"Exported {count} studies to {output}.", err=True)
    else:
        views.write_export(rows, fmt, sys.stdout)


@cli.command("report")
@click.option("--week", help="The ISO week, like 2026-W47 (default: the last complete week).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("reports"),
              show_default=True, help="Folder for the pages, the index and the feeds.")
@click.pass_obj
def report_command(app: App, week: str | None, out: Path) -> None:
    """Write the weekly report (HTML, Markdown, JSON), the index of weeks and Atom feeds."""
    from tracker import report

    now = utcnow()
    chosen = report.Week.parse(week) if week else report.Week.last_complete(now.date())
    written = report.write(app.store, app.tagger.vocabulary, chosen, out, now,
                           f"{app.settings.public_url}/reports")
    click.echo(f"Report for {chosen.name} written to {out}/ ({len(written)} files: "
               f"{chosen.name}.html, .md, .json, index.html, feed.atom and feeds/).")


@cli.command("run")
@click.pass_obj
def run_command(app: App) -> None:
    """Run unattended: sync, send digests and write the weekly report on schedule.

    Schedules (crontab lines) and their time zone come from TRACKER_SYNC_SCHEDULE,
    TRACKER_DIGEST_SCHEDULE, TRACKER_REPORT_SCHEDULE and TRACKER_TIMEZONE. A job whose time
    passed while the tracker was not running runs at once. Logs go to stderr. SIGTERM or
    Ctrl-C stops it after the job in flight (at most TRACKER_STOP_TIMEOUT seconds).
    """
    import logging

    from tracker import schedule
    from tracker.jobs import Jobs

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)-7s %(message)s")
    for noisy in ("apscheduler", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    log = logging.getLogger("tracker")
    jobs = Jobs(app.settings, app.store, app.tagger, warn=log.warning)
    if not schedule.run(app.settings, app.store, jobs, log):
        logging.shutdown()
        sys.stderr.flush()
        os._exit(1)  # the abandoned job's thread would otherwise keep the process alive


@cli.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.pass_obj
def serve_command(app: App, host: str, port: int) -> None:
    """Serve the confirmation and unsubscribe pages that e-mails link to.

    Put it behind your web server at TRACKER_PUBLIC_URL. Stop with Ctrl-C.
    """
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from tracker.web import App as WebApp

    app.settings.require_secret()

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            # Request lines carry tokens; log the method and path only.
            status = args[1] if len(args) > 1 else ""
            click.echo(f"{self.command} {self.path.split('?')[0]} {status}", err=True)

    try:
        server = make_server(host, port, WebApp(app.settings, app.store),
                             handler_class=QuietHandler)
    except OSError as error:
        raise Failure(f"Cannot listen on {host}:{port}: {error.strerror}", 1) from error
    click.echo(f"Serving confirmation and unsubscribe pages on http://{host}:{port}/ "
               f"(links in e-mails point to {app.settings.public_url}). Ctrl-C stops.", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("Stopped.", err=True)
    finally:
        server.server_close()


def _scheduler_info(app: App) -> dict[str, Any]:
    from tracker import schedule
    from tracker.lock import is_held

    next_runs = schedule.next_runs(app.settings, utcnow())
    jobs = {}
    for job in schedule.JOB_IDS:
        last = app.store.last_job(job)
        upcoming = next_runs[job]
        jobs[job] = {
            "schedule": getattr(app.settings, schedule.SCHEDULES[job]),
            "next": upcoming.isoformat() if upcoming else None,
            "last": {"status": last.status, "started_at": last.started_at.isoformat(),
                     "summary": last.summary} if last else None,
        }
    return {"running": is_held(app.store, "scheduler"), "timezone": app.settings.timezone.key,
            "jobs": jobs}


def _short(iso: str | None, zone: tzinfo) -> str:
    """An ISO time in the schedule's zone, '2026-11-23 06:00 CET'; 'never' for None."""
    from tracker.schedule import when

    return when(datetime.fromisoformat(iso), zone) if iso else "never"


def _mail_counts(store: Store) -> dict[str, int]:
    from tracker import outbox

    people = outbox.subscribers(store)
    counts = {"confirmed": sum(1 for p in people if p.confirmed_at),
              "unconfirmed": sum(1 for p in people if not p.confirmed_at)}
    for status in ("queued", "failed", "unknown", "sent"):
        counts[status] = len(outbox.messages(store, (status,)))
    return counts


def main() -> None:
    cli(prog_name="tracker")


from tracker import cli_mail  # noqa: E402  (registers the e-mail commands on `cli`)

__all__ = ["App", "cli", "cli_mail", "main"]


# --- helpers ------------------------------------------------------------------------------

class _ProgressBars:
    """One click progress bar per stage of the sync, drawn on stderr."""

    def __init__(self) -> None:
        self.stage: str | None = None
        self.bar: Any = None
        self.done = 0

    def update(self, stage: str, done: int, total: int | None) -> None:
        if stage != self.stage:
            self.close()
            self.stage, self.done = stage, 0
            self.bar = click.progressbar(length=max(total or 0, done, 1), label=stage,
                                         file=sys.stderr, show_pos=True).__enter__()
        if self.bar is not None and done > self.done:
            self.bar.update(done - self.done)
            self.done = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


def _warn(message: str, progress: _ProgressBars | None) -> None:
    click.echo(("\n" if progress else "") + f"warning: {message}", err=True)


def _parse_since(value: str) -> datetime:
    days = re.fullmatch(r"(\d+)d", value.strip())
    if days:
        return utcnow() - timedelta(days=int(days.group(1)))
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise click.BadParameter("use a date like 2026-11-01 or a number of days like 7d",
                                 param_hint="--since") from None
    return as_utc(parsed)


def _nct(value: str) -> str:
    value = value.strip().upper()
    if not re.fullmatch(r"NCT\d{8}", value):
        raise click.BadParameter(f"{value!r} is not an NCT number like NCT01234567")
    return value
