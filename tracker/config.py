"""Settings: one frozen object, built once from the environment and checked at start-up.

Only the CLI reads `.env` (via python-dotenv) before calling `Settings.from_env`; everything
else receives a `Settings`. A bad value raises `ConfigError` naming the variable and the fix.
"""

from __future__ import annotations

import email.utils
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tracker.errors import ConfigError

DEFAULT_BASE_URL = "https://clinicaltrials.gov/api/v2"
DEFAULT_DATABASE_URL = "sqlite:///data/tracker.db"

# Essie syntax for `query.cond`: every subtype's wording, OR-ed, phrases in quotes. The
# ConditionSearch area also searches conditions' MeSH terms, their ancestors and synonyms, so
# "myositis" reaches most DM/PM/IBM records, and look-alikes too (viral or orbital myositis,
# myositis ossificans): those are told apart by tagging (`tracker.subtypes`), never by NOT.
# The rest catch records whose conditions, titles or keywords are free text without a MeSH
# mapping: "necrotizing myopathy", "inflammatory myopathy", "JDM", "sIBM", "anti-MDA5".
DEFAULT_QUERY = " OR ".join(
    [
        # general and several subtypes
        "myositis", "myositides", '"inflammatory myopathy"', '"inflammatory myopathies"',
        '"myopathy, inflammatory"', '"autoimmune myopathy"', "IIM",
        # dermatomyositis, juvenile and amyopathic forms
        "dermatomyositis", "JDM", "JIIM", "CADM", '"DM-ILD"', '"anti-MDA5"',
        # polymyositis, inclusion body myositis
        "polymyositis", '"inclusion body myositis"', "sIBM",
        # immune-mediated necrotizing myopathy
        '"necrotizing myopathy"', '"necrotising myopathy"', '"necrotizing autoimmune myopathy"',
        '"necrotising autoimmune myopathy"', "IMNM", '"anti-HMGCR"', '"anti-SRP"',
        # antisynthetase syndrome
        "antisynthetase", '"anti-synthetase"', '"anti-ARS"', '"anti-Jo-1"',
        # overlap and checkpoint-inhibitor myositis
        "scleromyositis", "irMyositis",
    ]
)

T = TypeVar("T")
UTC_ZONE = ZoneInfo("UTC")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


@dataclass(frozen=True)
class Settings:
    base_url: str = DEFAULT_BASE_URL
    database_url: str = DEFAULT_DATABASE_URL
    query: str = DEFAULT_QUERY
    page_size: int = 1000
    request_interval: float = 1.0
    timeout: float = 60.0
    max_retries: int = 5
    retry_after_cap: float = 300.0
    overlap_days: int = 3
    vocabulary: Path | None = None
    templates_dir: Path | None = None  # templates here replace the packaged ones of that name
    # E-mail. Secrets never appear in repr() and so never in logs.
    secret_key: str | None = field(default=None, repr=False)
    public_url: str = "http://localhost:8000"
    mail_from: str = "Myositis trials tracker <tracker@localhost>"
    smtp_host: str | None = None
    smtp_port: int | None = None
    smtp_security: str = "starttls"
    smtp_user: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    smtp_timeout: float = 30.0
    smtp_connections: int = 4  # connections a sender opens at once, each with its own thread
    digest_dir: Path = Path("digests")
    confirm_days: int = 7
    outbox_retention_days: int = 90  # sent messages older than this are pruned
    # Running unattended (`tracker run`). Schedules are crontab lines in `timezone`.
    timezone: ZoneInfo = UTC_ZONE
    sync_schedule: str = "0 */6 * * *"
    digest_schedule: str = "0 7 * * *"
    report_schedule: str = "0 6 * * mon"
    weekly_day: int = 0  # weekly digests go out on this day (0 = Monday)
    report_dir: Path = Path("reports")
    admin_email: str | None = None
    alert_after: int = 3
    stop_timeout: float = 30.0
    # The site (`tracker serve`, and `tracker run` unless TRACKER_WEB is off).
    web: bool = True
    web_host: str = "127.0.0.1"
    web_port: int = 8000
    # Sign-up on the site: confirmation e-mails to one address a day, sign-ups from one
    # client (IP address) an hour.
    confirmations_per_address_per_day: int = 3
    signups_per_client_per_hour: int = 20

    @property
    def smtp_configured(self) -> bool:
        return bool(self.smtp_host)

    def require_secret(self) -> str:
        if not self.secret_key:
            raise ConfigError(
                "TRACKER_SECRET_KEY is not set; it signs confirmation and unsubscribe links. "
                "Put a long random value in .env, e.g. from: python -c \"import secrets; "
                "print(secrets.token_urlsafe(32))\""
            )
        return self.secret_key

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from `env` (default: `os.environ`); unset or empty means default.

        Defaults are written once, on the fields: `get` names the field it falls back to.
        """
        env = os.environ if env is None else env
        defaults: dict[str, Any] = {f.name: f.default for f in fields(cls)}

        def get(name: str, setting: str, parse: Callable[[str], T], hint: str) -> T:
            raw = env.get(name, "").strip()
            if not raw:
                default: T = defaults[setting]
                return default
            try:
                return parse(raw)
            except (TypeError, ValueError) as error:
                raise ConfigError(f"{name}={raw!r} is not valid: {hint}") from error

        return cls(
            base_url=get("CTGOV_BASE_URL", "base_url", _http_url,
                         "give an http(s) URL such as https://clinicaltrials.gov/api/v2"),
            database_url=get("TRACKER_DATABASE_URL", "database_url", _database_url,
                             "use sqlite:///path/to/file.db or postgresql+psycopg://user@host/db"),
            query=get("TRACKER_QUERY", "query", _query,
                      "give a ClinicalTrials.gov condition search (Essie syntax)"),
            page_size=get("TRACKER_PAGE_SIZE", "page_size", _int_between(1, 1000),
                          "give a whole number from 1 to 1000"),
            request_interval=get("TRACKER_REQUEST_INTERVAL", "request_interval",
                                 _float_between(0, 60),
                                 "give seconds between requests, from 0 to 60"),
            timeout=get("TRACKER_TIMEOUT", "timeout", _float_between(1, 600),
                        "give seconds from 1 to 600"),
            max_retries=get("TRACKER_MAX_RETRIES", "max_retries", _int_between(0, 20),
                            "give a whole number from 0 to 20"),
            retry_after_cap=get("TRACKER_RETRY_AFTER_CAP", "retry_after_cap",
                                _float_between(0, 3600), "give seconds from 0 to 3600"),
            overlap_days=get("TRACKER_OVERLAP_DAYS", "overlap_days", _int_between(0, 60),
                             "give a whole number of days from 0 to 60"),
            vocabulary=get("TRACKER_VOCABULARY", "vocabulary", _existing_file,
                           "give the path of a readable TOML file"),
            templates_dir=get("TRACKER_TEMPLATES_DIR", "templates_dir", _existing_folder,
                              "give the path of a folder of templates"),
            secret_key=get("TRACKER_SECRET_KEY", "secret_key", _secret,
                           "use at least 16 characters of random text"),
            public_url=get("TRACKER_PUBLIC_URL", "public_url", _http_url,
                           "give the http(s) address where the tracker's links are served"),
            mail_from=get("TRACKER_MAIL_FROM", "mail_from", _address,
                          "give an address like Name <user@example.org>"),
            smtp_host=get("TRACKER_SMTP_HOST", "smtp_host", _host, "give a host name"),
            smtp_port=get("TRACKER_SMTP_PORT", "smtp_port", _int_between(1, 65535),
                          "give a port number from 1 to 65535"),
            smtp_security=get("TRACKER_SMTP_SECURITY", "smtp_security",
                              _one_of("starttls", "tls", "none"), "use starttls, tls or none"),
            smtp_user=get("TRACKER_SMTP_USER", "smtp_user", str, "give the SMTP login name"),
            smtp_password=get("TRACKER_SMTP_PASSWORD", "smtp_password", str,
                              "give the SMTP password"),
            smtp_timeout=get("TRACKER_SMTP_TIMEOUT", "smtp_timeout", _float_between(1, 600),
                             "give seconds from 1 to 600"),
            smtp_connections=get("TRACKER_SMTP_CONNECTIONS", "smtp_connections",
                                 _int_between(1, 32), "give a whole number from 1 to 32"),
            digest_dir=get("TRACKER_DIGEST_DIR", "digest_dir",
                           _writable_folder("TRACKER_DIGEST_DIR"), "give a folder path"),
            confirm_days=get("TRACKER_CONFIRM_DAYS", "confirm_days", _int_between(1, 90),
                             "give a whole number of days from 1 to 90"),
            outbox_retention_days=get("TRACKER_OUTBOX_RETENTION_DAYS", "outbox_retention_days",
                                      _int_between(1, 3650),
                                      "give a whole number of days from 1 to 3650"),
            **_schedule_settings(get),
        )


def _schedule_settings(get: Callable[..., Any]) -> dict[str, Any]:
    timezone = get("TRACKER_TIMEZONE", "timezone", _zone,
                   "give an IANA time zone such as Europe/Paris or America/New_York")
    assert isinstance(timezone, ZoneInfo)
    cron = _cron(timezone)
    hint = ("give a crontab line of 5 fields, minute hour day month weekday, "
            "e.g. '0 */6 * * *' or '0 6 * * mon'")
    return {
        "timezone": timezone,
        "sync_schedule": get("TRACKER_SYNC_SCHEDULE", "sync_schedule", cron, hint),
        "digest_schedule": get("TRACKER_DIGEST_SCHEDULE", "digest_schedule", cron, hint),
        "report_schedule": get("TRACKER_REPORT_SCHEDULE", "report_schedule", cron, hint),
        "weekly_day": get("TRACKER_WEEKLY_DAY", "weekly_day", parse_weekday,
                          "give a day of the week, e.g. monday or mon"),
        "report_dir": get("TRACKER_REPORT_DIR", "report_dir",
                          _writable_folder("TRACKER_REPORT_DIR"), "give a folder path"),
        "admin_email": get("TRACKER_ADMIN_EMAIL", "admin_email", _address,
                           "give an address like ops@example.org"),
        "alert_after": get("TRACKER_ALERT_AFTER", "alert_after", _int_between(1, 100),
                           "give a whole number of failed syncs from 1 to 100"),
        "stop_timeout": get("TRACKER_STOP_TIMEOUT", "stop_timeout", _float_between(0, 3600),
                            "give seconds from 0 to 3600"),
        "web": get("TRACKER_WEB", "web", _switch, "give on or off"),
        "web_host": get("TRACKER_WEB_HOST", "web_host", _host,
                        "give the address to listen on, e.g. 127.0.0.1"),
        "web_port": get("TRACKER_WEB_PORT", "web_port", _int_between(1, 65535),
                        "give a port number from 1 to 65535"),
        "confirmations_per_address_per_day": get("TRACKER_CONFIRMATIONS_PER_ADDRESS_PER_DAY",
                                                 "confirmations_per_address_per_day",
                                                 _int_between(1, 100),
                                                 "give a whole number from 1 to 100"),
        "signups_per_client_per_hour": get("TRACKER_SIGNUPS_PER_CLIENT_PER_HOUR",
                                           "signups_per_client_per_hour",
                                           _int_between(1, 10000),
                                           "give a whole number from 1 to 10000"),
    }


def _switch(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("on", "yes", "true", "1"):
        return True
    if value in ("off", "no", "false", "0"):
        return False
    raise ValueError(raw)


def _zone(raw: str) -> ZoneInfo:
    try:
        return ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(raw) from error


def _cron(timezone: ZoneInfo) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        from tracker.cron import cron_trigger

        cron_trigger(raw, timezone)
        return " ".join(raw.split())

    return parse


def parse_weekday(raw: str) -> int:
    """"monday", "Mon" -> 0 ... "sunday", "sun" -> 6; ValueError for anything else."""
    value = raw.strip().lower()
    for number, name in enumerate(WEEKDAYS):
        if value in (name, name[:3]):
            return number
    raise ValueError(raw)


def _http_url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(raw)
    return raw.rstrip("/")


def _database_url(raw: str) -> str:
    scheme = raw.split("://", 1)[0] if "://" in raw else ""
    if scheme not in ("sqlite", "postgresql", "postgresql+psycopg"):
        raise ValueError(raw)
    if scheme == "postgresql":
        # SQLAlchemy would pick psycopg2 for the bare scheme; psycopg 3 is what we ship.
        raw = "postgresql+psycopg://" + raw.split("://", 1)[1]
    return raw


def _secret(raw: str) -> str:
    if len(raw) < 16:
        raise ValueError("too short")
    return raw


def _address(raw: str) -> str:
    _, address = email.utils.parseaddr(raw)
    if "@" not in address or any(c in raw for c in "\r\n"):
        raise ValueError(raw)
    return raw


def _host(raw: str) -> str:
    if any(c.isspace() for c in raw) or "/" in raw:
        raise ValueError(raw)
    return raw


def _one_of(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw.lower() not in choices:
            raise ValueError(raw)
        return raw.lower()

    return parse


def _existing_file(raw: str) -> Path:
    path = Path(raw).expanduser()
    if not path.is_file():
        raise ValueError(raw)
    return path


def _existing_folder(raw: str) -> Path:
    path = Path(raw).expanduser()
    if not path.is_dir():
        raise ValueError(raw)
    return path


def folder_problem(folder: Path) -> str | None:
    """Why files cannot be written into `folder`, as a sentence; None when they can.

    A folder that does not exist yet is fine if its nearest existing ancestor is a folder
    this user may write to: it is created on first use. Nothing is created or written here.
    """
    for place in (folder, *folder.parents):
        if not os.path.lexists(place):
            continue
        if not place.is_dir():
            return f"{place} is {'a file, not' if place.is_file() else 'not'} a folder."
        if not os.access(place, os.W_OK | os.X_OK):
            return f"{place} is not writable by this user."
        return None
    return None


def _writable_folder(name: str) -> Callable[[str], Path]:
    """A folder setting, refused at start-up rather than at its first write (which, for
    `tracker run`, could be days later)."""

    def parse(raw: str) -> Path:
        folder = Path(raw)
        problem = folder_problem(folder)
        if problem:
            raise ConfigError(f"{name}={raw} cannot be used: {problem}")
        return folder

    return parse


def _query(raw: str) -> str:
    if raw.count('"') % 2:
        raise ValueError("unbalanced quotes")
    return raw


def _int_between(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        value = int(raw)
        if not low <= value <= high:
            raise ValueError(raw)
        return value

    return parse


def _float_between(low: float, high: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        value = float(raw)
        if not low <= value <= high:
            raise ValueError(raw)
        return value

    return parse


def redact_url(url: str) -> str:
    """A database URL safe to print: the password, if any, becomes ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
