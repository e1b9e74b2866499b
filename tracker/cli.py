"""The `tracker` command line: each command parses its arguments, calls one job or query, and
prints the result (exit codes in `tracker.cli_app`). The e-mail commands are in `cli_mail`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import click

from tracker import cli_mail, jobs, views
from tracker.cli_app import EXIT_PIPE, App, Failure, cli, study_filters
from tracker.config import folder_problem
from tracker.database import Database
from tracker.diff import KINDS
from tracker.errors import BadInput, ConfigError, NotFound, WriteError
from tracker.times import as_utc, utcnow


@cli.command("sync")
@click.option("--full", is_flag=True, help="Refetch every study, not only those updated.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_obj
def sync_command(app: App, full: bool, as_json: bool) -> None:
    """Fetch myositis studies, record what changed, and print a summary.

    The first sync records a baseline without reporting every study as new. Later syncs ask
    only for studies updated since the last one, and do nothing at all if the registry has
    not refreshed its data.

    \b
    Examples:
      tracker sync
      tracker sync --full --json
    """
    ctx = app.context(write=True)
    progress = _ProgressBars() if sys.stderr.isatty() and not as_json else None
    if progress:
        ctx.warn = progress.warn
    try:
        outcome = jobs.sync(ctx, full=full, progress=progress.update if progress else None)
    finally:
        if progress:
            progress.close()
    if outcome.error is not None:
        raise Failure(outcome.summary, outcome.error.exit_code)
    assert outcome.result is not None
    if as_json:
        click.echo(json.dumps(outcome.result.as_dict(), indent=2))
    else:
        click.echo(outcome.summary)


@cli.command("changes")
@click.option("--since", help="Only changes the registry posted on or after this day "
                              "(2026-11-01) or this many days ago (7d).")
@click.option("--seen-since", help="Only changes the tracker recorded on or after this date "
                                   "(2026-12-01) or this many days ago (7d).")
@click.option("--nct", "nct_id", help="Only changes to this study (NCT number).")
@click.option("--kind", "kinds", multiple=True, type=click.Choice(KINDS),
              help="Only changes of this kind; repeat for several.")
@study_filters
@click.option("--limit", type=click.IntRange(min=1), help="At most this many, newest first.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_obj
def changes_command(app: App, since: str | None, seen_since: str | None, nct_id: str | None,
                    kinds: tuple[str, ...], subtypes: tuple[str, ...],
                    therapies: tuple[str, ...], recruiting: bool, children: bool,
                    countries: tuple[str, ...], limit: int | None, as_json: bool) -> None:
    """List recorded changes, newest first, each in plain words with its technical form.

    Each change is dated by the registry: the day ClinicalTrials.gov posted the update (for a
    trial that left, the day of the registry data that no longer had it). When the tracker
    recorded it on a later day, that day follows: "2026-11-21 (seen 2026-12-03)". JSON gives
    both, as posted_on and detected_at.

    \b
    Examples:
      tracker changes --since 7d
      tracker changes --seen-since 2026-12-01
      tracker changes --subtype jdm --recruiting --country France
      tracker changes --nct NCT01234567 --kind status --json
    """
    posted_from = _parse_since(since, "--since").date() if since else None
    after = _parse_since(seen_since, "--seen-since") if seen_since else None
    nct_id = _nct(nct_id) if nct_id else None
    app.check_tags(subtypes, therapies)
    ctx = app.context()
    where = app.study_filter(ctx, subtypes, therapies, recruiting, children, countries)
    events = ctx.store.changes(since=after, posted_from=posted_from, nct_id=nct_id,
                               kinds=kinds, limit=limit, where=where)
    studies = ctx.store.studies(e.nct_id for e in events)
    if as_json:
        click.echo(json.dumps([views.event_dict(e, studies.get(e.nct_id)) for e in events],
                              indent=2, ensure_ascii=False))
        return
    if not events:
        filtered = since or seen_since or nct_id or kinds or where.active
        click.echo("No changes recorded" + (" for these filters." if filtered else " yet."))
        return
    for line in views.event_lines(events, studies):
        click.echo(line)


@cli.command("show")
@click.argument("nct_id")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_obj
def show_command(app: App, nct_id: str, as_json: bool) -> None:
    """Show one study in brief, its tags (and why), and its history of changes, each dated
    by the registry, with the day the tracker recorded it when that was later.

    \b
    Examples:
      tracker show NCT01234567
      tracker show NCT01234567 --json
    """
    nct_id = _nct(nct_id)
    ctx = app.context()
    study = ctx.store.study(nct_id)
    if study is None:
        raise NotFound(f"{nct_id} is not in the snapshot. Run 'tracker sync' first, or check "
                       "the number ('tracker export' lists every tracked study).")
    events = ctx.store.changes(nct_id=nct_id)
    versions = ctx.store.version_count(nct_id)
    today = utcnow().date()
    if as_json:
        click.echo(json.dumps({**views.study_detail(study, today), "versions": versions,
                               "changes": [views.event_dict(e) for e in events]},
                              indent=2, ensure_ascii=False))
        return
    click.echo(f"{study.nct_id}  {study.brief_title}")
    for label, value in views.study_lines(study, ctx.vocabulary, today):
        click.echo(f"{label + ':':<20} {value}")
    click.echo(f"\nHistory: {versions} version(s) stored, {len(events)} change(s) recorded "
               f"(registry history: {views.history_url(nct_id)})")
    for event in events:
        click.echo(f"  {views.event_when(event)}  {event.plain or event.summary}"
                   f"  ({event.kind}: {event.summary})")


@cli.command("tags")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_obj
def tags_command(app: App, as_json: bool) -> None:
    """List every subtype and treatment class, the name filters accept, and how many trials
    carry it.

    \b
    Examples:
      tracker tags
      tracker tags --json
    """
    ctx = app.context()
    vocabulary = ctx.vocabulary
    counts = ctx.store.tag_counts()
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
    """Show where the data is, the last successful sync, the last failure, the data's age,
    counts, the outbox and the scheduler.

    \b
    Examples:
      tracker status
      tracker status --json
    """
    from tracker.status import overview

    ctx = app.context()
    info = overview(ctx)
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
        return
    for line in views.status_lines(info, ctx.settings.timezone):
        click.echo(line)


@cli.command("export")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv",
              show_default=True, help="Output format (CSV cells join lists with |).")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True),
              help="Write to this file instead of standard output.")
@click.option("--include-removed", is_flag=True, help="Also export studies that stopped "
                                                       "matching the query.")
@study_filters
@click.pass_obj
def export_command(app: App, fmt: str, output: str | None, include_removed: bool,
                   subtypes: tuple[str, ...], therapies: tuple[str, ...], recruiting: bool,
                   children: bool, countries: tuple[str, ...]) -> None:
    """Export the current snapshot, one row per study, with its tags and patient facts.

    \b
    Examples:
      tracker export --format csv -o trials.csv
      tracker export --format json --therapy jak --subtype ass --country France
    """
    if output:
        _check_folder(Path(output).parent, f"--output {output}")
    app.check_tags(subtypes, therapies)
    ctx = app.context()
    where = app.study_filter(ctx, subtypes, therapies, recruiting, children, countries)
    today = utcnow().date()
    rows = (views.study_dict(s, today) for s in ctx.store.iter_studies(include_removed, where))
    if output:
        tmp = output + ".part"
        try:
            Path(output).parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w", newline="", encoding="utf-8") as handle:
                count = views.write_export(rows, fmt, handle)
            os.replace(tmp, output)
        except OSError as error:  # e.g. the disk filled up: no half-written file is left
            with contextlib.suppress(OSError):
                os.remove(tmp)
            raise WriteError(f"Cannot write {output}: {error.strerror or error}.") from error
        click.echo(f"Exported {count} studies to {output}.", err=True)
    else:
        views.write_export(rows, fmt, sys.stdout)


@cli.command("report")
@click.option("--week", help="The ISO week, like 2026-W47 (default: the last complete week "
                             "in TRACKER_TIMEZONE).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the pages, the index and the feeds (default: "
                   "TRACKER_REPORT_DIR).")
@click.pass_obj
def report_command(app: App, week: str | None, out: Path | None) -> None:
    """Write the weekly report (HTML, Markdown, JSON), the index of weeks and Atom feeds.

    \b
    Examples:
      tracker report
      tracker report --week 2026-W47 --out site/reports
    """
    from tracker.report import Week

    chosen = Week.parse(week) if week else None
    if out is not None:
        _check_folder(out, f"--out {out}")
    outcome = jobs.report(app.context(), chosen, out)
    assert outcome.week is not None
    click.echo(f"Report for {outcome.week.name} written to {outcome.folder}/ "
               f"({len(outcome.written)} files: {outcome.week.name}.html, .md, .json, "
               "index.html, feed.atom and feeds/).")
    if outcome.rewritten:
        click.echo(f"Rewrote {', '.join(outcome.rewritten)}: the registry posted changes in "
                   "those weeks that were seen after their reports were written.")


@cli.command("run")
@click.option("--no-web", is_flag=True, help="Do not serve the site (TRACKER_WEB=off does the "
                                             "same).")
@click.pass_obj
def run_command(app: App, no_web: bool) -> None:
    """Run unattended: sync, send digests and write the weekly report on schedule, and serve
    the site (recruiting trials, sign-up, the pages behind e-mail links, reports and feeds).

    Schedules (crontab lines) and their time zone come from TRACKER_SYNC_SCHEDULE,
    TRACKER_DIGEST_SCHEDULE, TRACKER_REPORT_SCHEDULE and TRACKER_TIMEZONE. A job whose time
    passed while the tracker was not running runs at once. The site listens on
    TRACKER_WEB_HOST:TRACKER_WEB_PORT. Logs go to stderr. SIGTERM or Ctrl-C stops it after
    the job in flight (at most TRACKER_STOP_TIMEOUT seconds).

    \b
    Example:
      TRACKER_TIMEZONE=Europe/Paris tracker run
    """
    import logging
    import threading

    from tracker import schedule, web

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)-7s %(message)s")
    for noisy in ("apscheduler", "httpx", "httpcore", "alembic", "uvicorn", "uvicorn.error"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    log = logging.getLogger("tracker")
    ctx = app.context(write=True)
    ctx.warn = log.warning
    site = None
    if ctx.settings.web and not no_web:
        try:
            site = web.server(ctx, ctx.settings.web_host, ctx.settings.web_port)
        except ConfigError as error:  # the schedule is the main job: it runs regardless
            log.warning("%s The schedule runs without the site.", error)
        else:
            threading.Thread(target=site.run, name="web", daemon=True).start()
            log.info("Serving the site on http://%s:%s/ (links in e-mails point to %s).",
                     ctx.settings.web_host, ctx.settings.web_port, ctx.settings.public_url)
            if not ctx.settings.secret_key:
                log.warning("TRACKER_SECRET_KEY is not set, so the confirm and unsubscribe "
                            "links cannot be checked; set it before anyone subscribes.")
    clean = schedule.run(ctx, log)
    if site is not None:
        site.should_exit = True  # it stops within a second; the thread is a daemon
    if not clean:
        logging.shutdown()
        sys.stderr.flush()
        os._exit(1)  # the abandoned job's thread would otherwise keep the process alive


@cli.group("db")
def db_group() -> None:
    """Look after the database itself."""


@db_group.command("upgrade")
@click.pass_obj
def db_upgrade_command(app: App) -> None:
    """Create the database, or bring its schema up to date (sync, run and serve do this
    too when they start).

    \b
    Example:
      tracker db upgrade
    """
    db = Database.open(app.settings.database_url, create=True)
    try:
        before, after = db.revisions or (None, "?")
        click.echo(f"Database at {db.where}: schema {after}"
                   + (" (already up to date)." if before == after else
                      f" (upgraded from {before or 'nothing'})."))
    finally:
        db.close()


# --- helpers ---------------------------------------------------------------------------------

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

    def warn(self, message: str) -> None:
        click.echo(f"\nwarning: {message}", err=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


def _check_folder(folder: Path, given: str) -> None:
    """Refuse an output folder that cannot be written, before any work is done."""
    problem = folder_problem(folder)
    if problem:
        raise BadInput(f"{given} cannot be used: {problem}")


def _parse_since(value: str, option: str) -> datetime:
    """A date (or time) as given, or "7d": this many days before now; naive means UTC."""
    days = re.fullmatch(r"(\d+)d", value.strip())
    if days:
        return utcnow() - timedelta(days=int(days.group(1)))
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise click.BadParameter("use a date like 2026-11-01 or a number of days like 7d",
                                 param_hint=option) from None
    return as_utc(parsed)


def _nct(value: str) -> str:
    value = value.strip().upper()
    if not re.fullmatch(r"NCT\d{8}", value):
        raise click.BadParameter(f"{value!r} is not an NCT number like NCT01234567")
    return value


def main() -> None:
    try:
        cli(prog_name="tracker")
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(EXIT_PIPE)


__all__ = ["cli", "cli_mail", "main"]
