"""Settings are read once from the environment and refused with a message naming the fix."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tracker.config import DEFAULT_QUERY, Settings, folder_problem, redact_url
from tracker.errors import ConfigError


def test_an_empty_environment_gives_the_documented_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.base_url == "https://clinicaltrials.gov/api/v2"
    assert settings.database_url == "sqlite:///data/tracker.db"
    assert settings.page_size == 1000
    assert settings.request_interval == 1.0


def test_blank_values_mean_default() -> None:
    assert Settings.from_env({"TRACKER_PAGE_SIZE": "  ", "CTGOV_BASE_URL": ""}) == Settings()


def test_values_are_parsed_and_trailing_slashes_dropped() -> None:
    settings = Settings.from_env({
        "CTGOV_BASE_URL": "http://127.0.0.1:8080/api/v2/",
        "TRACKER_PAGE_SIZE": "250",
        "TRACKER_REQUEST_INTERVAL": "2.5",
        "TRACKER_MAX_RETRIES": "0",
        "TRACKER_OVERLAP_DAYS": "7",
        "TRACKER_QUERY": '"inclusion body myositis"',
    })
    assert settings.base_url == "http://127.0.0.1:8080/api/v2"
    assert (settings.page_size, settings.request_interval) == (250, 2.5)
    assert (settings.max_retries, settings.overlap_days) == (0, 7)
    assert settings.query == '"inclusion body myositis"'


@pytest.mark.parametrize(("name", "value"), [
    ("CTGOV_BASE_URL", "clinicaltrials.gov/api/v2"),
    ("CTGOV_BASE_URL", "ftp://example.org"),
    ("TRACKER_DATABASE_URL", "mysql://localhost/db"),
    ("TRACKER_DATABASE_URL", "data/tracker.db"),
    ("TRACKER_PAGE_SIZE", "0"),
    ("TRACKER_PAGE_SIZE", "5000"),
    ("TRACKER_REQUEST_INTERVAL", "-1"),
    ("TRACKER_TIMEOUT", "soon"),
    ("TRACKER_MAX_RETRIES", "2.5"),
    ("TRACKER_RETRY_AFTER_CAP", "99999"),
    ("TRACKER_OVERLAP_DAYS", "-3"),
    ("TRACKER_QUERY", '"dermatomyositis'),
])
def test_an_invalid_value_is_refused_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({name: value})
    message = str(caught.value)
    assert message.startswith(f"{name}={value!r} is not valid: ")
    assert "\n" not in message


def test_plain_postgresql_urls_use_psycopg_3() -> None:
    settings = Settings.from_env({"TRACKER_DATABASE_URL": "postgresql://u:p@db/tracker"})
    assert settings.database_url == "postgresql+psycopg://u:p@db/tracker"


def test_passwords_never_appear_in_printed_urls() -> None:
    assert redact_url("postgresql+psycopg://user:s3cret@db:5432/x") == \
        "postgresql+psycopg://user:***@db:5432/x"
    assert redact_url("sqlite:///data/tracker.db") == "sqlite:///data/tracker.db"


@pytest.mark.parametrize("term", [
    "myositis", "dermatomyositis", "polymyositis", '"inclusion body myositis"',
    '"necrotizing myopathy"', '"inflammatory myopathy"', '"myopathy, inflammatory"', "JDM",
    "sIBM", "IMNM", '"anti-MDA5"', '"anti-synthetase"', "antisynthetase", '"DM-ILD"',
    '"anti-ARS"',
])
def test_the_default_query_names_every_myositis_subtypes_wording(term: str) -> None:
    # Whether each wording is reached, as the registry reads it: test_subtypes.py.
    assert term in DEFAULT_QUERY.split(" OR ")


def test_the_default_query_is_a_valid_setting_without_not_clauses() -> None:
    assert Settings.from_env({"TRACKER_QUERY": DEFAULT_QUERY}).query == DEFAULT_QUERY
    assert " NOT " not in DEFAULT_QUERY and " AND " not in DEFAULT_QUERY


def test_the_schedule_settings_are_parsed_in_their_time_zone() -> None:
    settings = Settings.from_env({
        "TRACKER_TIMEZONE": "Europe/Paris", "TRACKER_SYNC_SCHEDULE": "15  14 * * 1-5",
        "TRACKER_WEEKLY_DAY": "Friday", "TRACKER_ADMIN_EMAIL": "ops@example.org",
        "TRACKER_ALERT_AFTER": "5", "TRACKER_STOP_TIMEOUT": "12.5",
        "TRACKER_REPORT_DIR": "site/reports"})

    assert settings.timezone.key == "Europe/Paris"
    assert settings.sync_schedule == "15 14 * * 1-5"  # spaces normalised
    assert (settings.digest_schedule, settings.report_schedule) == ("0 7 * * *", "0 6 * * mon")
    assert settings.weekly_day == 4
    assert (settings.admin_email, settings.alert_after, settings.stop_timeout) == (
        "ops@example.org", 5, 12.5)
    assert str(settings.report_dir) == "site/reports"
    assert Settings.from_env({}).timezone.key == "UTC"


@pytest.mark.parametrize(("name", "value", "hint"), [
    ("TRACKER_TIMEZONE", "Mars/Olympus", "IANA time zone"),
    ("TRACKER_TIMEZONE", "../../etc/passwd", "IANA time zone"),
    ("TRACKER_SYNC_SCHEDULE", "every 6 hours", "crontab line of 5 fields"),
    ("TRACKER_DIGEST_SCHEDULE", "0 25 * * *", "crontab line of 5 fields"),
    ("TRACKER_REPORT_SCHEDULE", "0 6 * * 8", "crontab line of 5 fields"),
    ("TRACKER_WEEKLY_DAY", "someday", "day of the week"),
    ("TRACKER_ADMIN_EMAIL", "ops at example", "address"),
    ("TRACKER_ALERT_AFTER", "0", "from 1 to 100"),
])
def test_bad_schedule_settings_are_refused_with_the_fix(name: str, value: str,
                                                        hint: str) -> None:
    with pytest.raises(ConfigError, match=name) as refused:
        Settings.from_env({name: value})
    assert hint in str(refused.value)


def test_a_templates_folder_must_exist(tmp_path: Path) -> None:
    assert Settings.from_env({}).templates_dir is None
    assert Settings.from_env({"TRACKER_TEMPLATES_DIR": str(tmp_path)}).templates_dir == tmp_path
    with pytest.raises(ConfigError, match=r"TRACKER_TEMPLATES_DIR=.* folder of templates"):
        Settings.from_env({"TRACKER_TEMPLATES_DIR": str(tmp_path / "nope")})


OUTPUT_FOLDERS = ["TRACKER_DIGEST_DIR", "TRACKER_REPORT_DIR"]


@pytest.mark.parametrize("name", OUTPUT_FOLDERS)
def test_an_output_folder_under_a_file_is_refused_naming_the_file(name: str,
                                                                  tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a folder\n")
    folder = notes / "out"

    with pytest.raises(ConfigError) as refused:
        Settings.from_env({name: str(folder)})

    assert str(refused.value) == (f"{name}={folder} cannot be used: "
                                  f"{notes} is a file, not a folder.")


@pytest.mark.parametrize("name", OUTPUT_FOLDERS)
def test_an_output_folder_that_is_a_file_is_refused(name: str, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a folder\n")

    with pytest.raises(ConfigError, match=f"^{name}=.* {notes} is a file, not a folder.$"):
        Settings.from_env({name: str(notes)})


@pytest.mark.parametrize("name", OUTPUT_FOLDERS)
def test_an_output_folder_this_user_cannot_write_is_refused(
        name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    # The tests run as root, for whom every folder is writable; a read-only one is faked.
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != locked
                        and real_access(path, mode))

    with pytest.raises(ConfigError) as existing:
        Settings.from_env({name: str(locked)})
    with pytest.raises(ConfigError) as to_create:
        Settings.from_env({name: str(locked / "new" / "folder")})

    assert str(existing.value) == f"{name}={locked} cannot be used: {locked} is not " \
                                  "writable by this user."
    assert str(to_create.value).endswith(f": {locked} is not writable by this user.")


def test_output_folders_may_not_exist_yet_and_reading_settings_creates_nothing(
        tmp_path: Path) -> None:
    settings = Settings.from_env({"TRACKER_DIGEST_DIR": str(tmp_path / "mail" / "digests"),
                                  "TRACKER_REPORT_DIR": str(tmp_path / "site" / "reports")})

    assert settings.digest_dir == tmp_path / "mail" / "digests"
    assert settings.report_dir == tmp_path / "site" / "reports"
    assert list(tmp_path.iterdir()) == []


def test_a_writable_folder_or_a_relative_one_has_no_problem(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)

    assert folder_problem(tmp_path) is None
    assert folder_problem(Path("reports")) is None
    assert folder_problem(Path("site/reports")) is None
