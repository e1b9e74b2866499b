"""The `tracker` command group and what every command shares: settings, the database opened
for reading or writing, checked filters, and one clear line for every failure.

Exit status: 0 success; 1 a sync, fetch or delivery failed; 2 bad settings or arguments; 3
another process holds the lock; 4 the study, subscriber or message asked for does not exist;
70 an unexpected bug; 130 interrupted (Ctrl-C); 141 the reader closed the pipe.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from functools import cached_property
from typing import Any

import click
from dotenv import find_dotenv, load_dotenv

from tracker import __version__, countries
from tracker.config import Settings
from tracker.database import Database
from tracker.errors import TrackerError
from tracker.jobs import Context
from tracker.store import StudyFilter
from tracker.sync import INTERRUPTED
from tracker.tags import Tagger
from tracker.vocabulary import load_vocabulary

EXIT_INTERRUPTED = 130
EXIT_PIPE = 141


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
        except KeyboardInterrupt:
            said = INTERRUPTED if ctx.invoked_subcommand == "sync" else "Interrupted."
            raise Failure(said, EXIT_INTERRUPTED) from None
        except BrokenPipeError:
            _quiet_pipe()
        except Exception as error:
            if os.environ.get("TRACKER_DEBUG"):
                raise
            raise Failure(f"unexpected {type(error).__name__}: {error} "
                          "(this is a bug; run with TRACKER_DEBUG=1 for details)", 70) from error


def _quiet_pipe() -> None:
    """The reader went away (`tracker export | head`): stop quietly, as Unix tools do."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    raise click.exceptions.Exit(EXIT_PIPE)


class App:
    """Settings, then the database and the jobs' context, opened on first use.

    Commands that only read open the database as it is and never create one; commands that
    write create it, or bring its schema up to date, first.
    """

    def __init__(self) -> None:
        self.settings = Settings.from_env()
        self._context: Context | None = None

    @cached_property
    def tagger(self) -> Tagger:
        return Tagger(load_vocabulary(self.settings.vocabulary))

    def context(self, *, write: bool = False) -> Context:
        if self._context is None:
            db = Database.open(self.settings.database_url, create=write)
            self._context = Context(self.settings, db, warn=warn)
            self._context.tagger = self.tagger
        return self._context

    def close(self) -> None:
        if self._context is not None:
            self._context.db.close()

    def check_tags(self, subtypes: tuple[str, ...], therapies: tuple[str, ...]) -> None:
        """Refuse a tag the vocabulary does not have, naming the ones it has."""
        vocabulary = self.tagger.vocabulary
        for option, given, known in (("--subtype", subtypes, list(vocabulary.subtypes)),
                                     ("--therapy", therapies, vocabulary.therapy_names)):
            for tag in given:
                if tag not in known:
                    raise click.BadParameter(
                        f"{tag!r} is not a known tag; choose from {', '.join(known)} "
                        "(see 'tracker tags')", param_hint=option)

    def study_filter(self, ctx: Context, subtypes: tuple[str, ...],
                     therapies: tuple[str, ...], recruiting: bool, children: bool,
                     names: tuple[str, ...]) -> StudyFilter:
        """Filters as given, checked: tags against the vocabulary, countries against ISO
        3166 names and the snapshot's own spellings."""
        self.check_tags(subtypes, therapies)
        present = ctx.store.countries() if names else []
        chosen = tuple(countries.resolve(name, present) for name in names)
        return StudyFilter(subtypes, therapies, recruiting, children, chosen)


def warn(message: str) -> None:
    click.echo(f"warning: {message}", err=True)


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
                          "--recruiting); an English name or ISO code; repeat for several."),
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

    \b
    Start with:
      tracker sync          the first sync records a baseline
      tracker status        where the data is and how fresh it is
    """
    load_dotenv(find_dotenv(usecwd=True), override=False)
    ctx.obj = App()
    ctx.call_on_close(ctx.obj.close)
