"""The `tracker` command line. Every failure is one line on stderr and a non-zero exit.

Exit status: 0 success; 1 a sync or fetch failed; 2 bad settings or arguments; 3 another sync
holds the lock; 4 the study asked for is not in the snapshot; 70 an unexpected bug.
"""

from __future__ import annotations

import csv
import json
import os
import re
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

import click
from dotenv import find_dotenv, load_dotenv

from tracker import __version__
from tracker.config import Settings, redact_url
from tracker.ctgov import CtGovClient
from tracker.diff import KINDS
from tracker.errors import NotFound, TrackerError
from tracker.models import ChangeEvent, Study, SyncRun
from tracker.record import phases_label, status_label
from tracker.store import Store, utcnow
from tracker.sync import SyncResult, sync

STUDY_URL = "https://clinicaltrials.gov/study/{}"
EXPORT_COLUMNS = [
    "nct_id", "brief_title", "official_title", "acronym", "overall_status",
    "last_known_status", "why_stopped", "study_type", "phases", "conditions", "interventions",
    "lead_sponsor", "enrollment", "enrollment_type", "start_date", "primary_completion_date",
    "completion_date", "first_posted", "last_update_posted", "results_first_posted",
    "has_results", "minimum_age", "maximum_age", "sex", "countries", "site_count",
    "first_seen_at", "last_changed_at", "removed_at",
]


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
    """Settings and the store, built once per command on first use."""

    def __init__(self) -> None:
        self.settings = Settings.from_env()
        self._store: Store | None = None

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(self.settings.database_url)
        return self._store


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
                      progress=progress.update if progress else None)
    finally:
        client.close()
        if progress:
            progress.close()
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
    else:
        click.echo(_sync_summary(result))


@cli.command("changes")
@click.option("--since", help="Only changes recorded on or after this date (2026-11-01) or "
                              "this many days ago (7d).")
@click.option("--nct", "nct_id", help="Only changes to this study (NCT number).")
@click.option("--kind", "kinds", multiple=True, type=click.Choice(KINDS),
              help="Only changes of this kind; repeat for several.")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many, newest first.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_obj
def changes_command(app: App, since: str | None, nct_id: str | None, kinds: tuple[str, ...],
                    limit: int | None, as_json: bool) -> None:
    """List recorded changes, newest first."""
    events = app.store.changes(since=_parse_since(since) if since else None,
                               nct_id=_nct(nct_id) if nct_id else None, kinds=kinds,
                               limit=limit)
    titles = app.store.titles(e.nct_id for e in events)
    if as_json:
        click.echo(json.dumps([_event_dict(e, titles.get(e.nct_id)) for e in events], indent=2,
                              ensure_ascii=False))
        return
    if not events:
        click.echo("No changes recorded" + (" for these filters." if since or nct_id or kinds
                                            else " yet."))
        return
    current = None
    for event in events:
        if event.nct_id != current:
            current = event.nct_id
            click.echo(f"\n{event.nct_id}  {_short(titles.get(event.nct_id, ''), 90)}")
        click.echo(f"  {event.detected_at:%Y-%m-%d}  {event.kind:<14} {event.summary}")


@cli.command("show")
@click.argument("nct_id")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_obj
def show_command(app: App, nct_id: str, as_json: bool) -> None:
    """Show one study in brief and its history of changes."""
    nct_id = _nct(nct_id)
    study = app.store.study(nct_id)
    if study is None:
        raise NotFound(f"{nct_id} is not in the snapshot. Run 'tracker sync' first, or check "
                       "the number ('tracker export' lists every tracked study).")
    events = app.store.changes(nct_id=nct_id)
    versions = app.store.version_count(nct_id)
    if as_json:
        click.echo(json.dumps({**_study_dict(study), "versions": versions,
                               "changes": [_event_dict(e) for e in events]},
                              indent=2, ensure_ascii=False))
        return
    click.echo(f"{study.nct_id}  {study.brief_title}")
    for label, value in _study_lines(study):
        click.echo(f"{label + ':':<20} {value}")
    click.echo(f"\nHistory: {versions} version(s) stored, {len(events)} change(s) recorded")
    for event in events:
        click.echo(f"  {event.detected_at:%Y-%m-%d}  {event.kind:<14} {event.summary}")


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
    info = {
        "database": redact_url(app.settings.database_url),
        "api": app.settings.base_url,
        "data_timestamp": data_timestamp,
        "last_success": _run_dict(last_ok),
        "last_data_change": _run_dict(last_data),
        "last_failure": _run_dict(last_failed),
        "last_sync_failed": _failed_since(last_failed, last_ok),
        "counts": counts,
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
                   f"({_run_brief(last_ok)})")
        click.echo(f"{'API data timestamp:':<22} {data_timestamp}")
    else:
        click.echo(f"{'Last successful sync:':<22} never; run 'tracker sync'")
    if last_failed:
        when = last_failed.finished_at or last_failed.started_at
        click.echo(f"{'Last failed sync:':<22} {when:%Y-%m-%d %H:%M} UTC: {last_failed.error}")
    if info["last_sync_failed"]:
        click.echo("Warning: the most recent sync failed; the data may be out of date.")


@cli.command("export")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv",
              show_default=True, help="Output format.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True),
              help="Write to this file instead of standard output.")
@click.option("--include-removed", is_flag=True, help="Also export studies that stopped "
                                                       "matching the query.")
@click.pass_obj
def export_command(app: App, fmt: str, output: str | None, include_removed: bool) -> None:
    """Export the current snapshot, one row per study."""
    rows = (_study_dict(s) for s in app.store.iter_studies(include_removed))
    if output:
        tmp = output + ".part"
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            count = _write_export(rows, fmt, handle)
        os.replace(tmp, output)
        click.echo(f"Exported {count} studies to {output}.", err=True)
    else:
        _write_export(rows, fmt, sys.stdout)


def main() -> None:
    cli(prog_name="tracker")


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


def _sync_summary(r: SyncResult) -> str:
    took = f"{r.requests} request{'s' if r.requests != 1 else ''} in {r.seconds:.1f}s"
    stamp = f"data as of {r.data_timestamp}"
    if r.mode == "skipped":
        return (f"Nothing to do: ClinicalTrials.gov has not refreshed its data since the last "
                f"sync ({stamp}); {took}.")
    if r.mode == "baseline":
        dropped = f", {r.removed} from the previous query dropped" if r.removed else ""
        return (f"Baseline recorded: {r.listed} studies{dropped}; no changes are reported on a "
                f"first sync; {took}; {stamp}.")
    how = f"incremental, updates since {r.since}" if r.mode == "incremental" else "full"
    return (f"Synced {r.listed} studies ({how}): {r.new} new, {r.changed} changed, "
            f"{r.removed} removed, {r.unchanged} unchanged; {r.events} change events; "
            f"{took}; {stamp}.")


def _parse_since(value: str) -> datetime:
    days = re.fullmatch(r"(\d+)d", value.strip())
    if days:
        return utcnow() - timedelta(days=int(days.group(1)))
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise click.BadParameter("use a date like 2026-11-01 or a number of days like 7d",
                                 param_hint="--since") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _nct(value: str) -> str:
    value = value.strip().upper()
    if not re.fullmatch(r"NCT\d{8}", value):
        raise click.BadParameter(f"{value!r} is not an NCT number like NCT01234567")
    return value


def _event_dict(event: ChangeEvent, title: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": event.id, "nct_id": event.nct_id, "kind": event.kind, "field": event.field,
        "summary": event.summary,
        "old": json.loads(event.old_value) if event.old_value else None,
        "new": json.loads(event.new_value) if event.new_value else None,
        "detected_at": event.detected_at.isoformat(),
        "last_update_posted": event.last_update_posted, "sync_run_id": event.sync_run_id,
        "url": STUDY_URL.format(event.nct_id),
    }
    if title is not None:
        out["title"] = title
    return out


def _study_dict(study: Study) -> dict[str, Any]:
    row = {c: getattr(study, c) for c in EXPORT_COLUMNS}
    for key in ("first_seen_at", "last_changed_at", "removed_at"):
        row[key] = row[key].isoformat() if row[key] else None
    row["url"] = STUDY_URL.format(study.nct_id)
    return row


def _study_lines(s: Study) -> Iterator[tuple[str, str]]:
    if s.removed_at:
        yield "Tracking", f"no longer matches the query (since {s.removed_at:%Y-%m-%d})"
    status = status_label(s.overall_status)
    if s.last_known_status:
        status += f" (last known: {status_label(s.last_known_status)})"
    if s.why_stopped:
        status += f"; why stopped: {s.why_stopped}"
    yield "Status", status
    yield "Phase", phases_label(s.phases.split("|") if s.phases else None)
    yield "Conditions", (s.conditions or "").replace("|", "; ") or "none listed"
    yield "Interventions", (s.interventions or "").replace("|", "; ") or "none listed"
    yield "Sponsor", s.lead_sponsor or "not given"
    if s.enrollment is not None:
        kind = f" ({s.enrollment_type.lower()})" if s.enrollment_type else ""
        yield "Enrollment", f"{s.enrollment}{kind}"
    yield "Dates", (f"start {s.start_date or '?'}; primary completion "
                    f"{s.primary_completion_date or '?'}; completion {s.completion_date or '?'}")
    countries = (s.countries or "").replace("|", ", ")
    yield "Sites", f"{s.site_count}" + (f" in {countries}" if countries else "")
    yield "Results", f"posted {s.results_first_posted}" if s.has_results else "none posted"
    yield "Last update posted", s.last_update_posted or "?"
    yield "Link", STUDY_URL.format(s.nct_id)


def _run_dict(run: SyncRun | None) -> dict[str, Any] | None:
    if run is None:
        return None
    return {k: (v.isoformat() if isinstance(v, datetime) else v)
            for k, v in run.model_dump().items() if k != "query"}


def _failed_since(failed: SyncRun | None, ok: SyncRun | None) -> bool:
    if failed is None or failed.id is None:
        return False
    return ok is None or ok.id is None or failed.id > ok.id


def _run_brief(run: SyncRun) -> str:
    if run.status == "skipped":
        return "registry data unchanged"
    return (f"{run.mode}: {run.new} new, {run.changed} changed, {run.removed} removed, "
            f"{run.requests} requests")


def _write_export(rows: Iterator[dict[str, Any]], fmt: str, handle: TextIO) -> int:
    count = 0
    if fmt == "csv":
        writer = csv.DictWriter(handle, fieldnames=[*EXPORT_COLUMNS, "url"])
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
            count += 1
        return count
    handle.write("[")
    for row in rows:
        handle.write(("," if count else "") + "\n  " + json.dumps(row, ensure_ascii=False))
        count += 1
    handle.write("\n]\n" if count else "]\n")
    return count


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
