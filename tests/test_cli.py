"""The command line as a user meets it: a real SQLite file and the local fake API, in process
with click's runner; real processes only where a process is what is tested (signals, pipes,
locks across processes, .env files), and those are marked slow."""

from __future__ import annotations

import copy
import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import click
import pytest
import time_machine
from click.testing import CliRunner, Result
from dotenv import dotenv_values

from tests.conftest import interruptible, updated
from tests.fakeapi import FakeApi, Registry
from tracker import jobs, runs
from tracker.cli import cli
from tracker.config import Settings
from tracker.database import Database
from tracker.jobs import Context
from tracker.store import Store

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def env(fake_api: FakeApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.chdir(tmp_path)  # no .env of the developer's, no ./data of the checkout's
    for name in list(os.environ):
        if name.startswith(("TRACKER_", "CTGOV_")):
            monkeypatch.delenv(name)
    return {
        "CTGOV_BASE_URL": fake_api.base_url,
        "TRACKER_DATABASE_URL": f"sqlite:///{tmp_path / 'data' / 'tracker.db'}",
        "TRACKER_REQUEST_INTERVAL": "0",
        "TRACKER_PAGE_SIZE": "3",
        "TRACKER_MAX_RETRIES": "1",
        "TRACKER_TIMEOUT": "5",
    }


def run(env: dict[str, str], *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`tracker ARGS` in a fresh process, as a user's shell would run it."""
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("TRACKER_", "CTGOV_"))}
    return subprocess.run([sys.executable, "-m", "tracker", *args], env={**clean, **env},
                          cwd=cwd, capture_output=True, text=True, timeout=60)


def invoke(env: dict[str, str], *args: str) -> Result:
    """`tracker ARGS` in this process; `.stdout`, `.stderr` and `.exit_code` as a shell sees."""
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def change_status(registry: Registry, nct_id: str, status: str) -> None:
    study = updated(registry.studies[nct_id])
    study["protocolSection"]["statusModule"]["overallStatus"] = status
    registry.put(study)
    registry.data_timestamp = "2026-11-21T09:00:05"


def test_sync_prints_a_baseline_then_the_changes(env: dict[str, str],
                                                 registry: Registry) -> None:
    first = invoke(env, "sync")
    assert first.exit_code == 0, first.stderr
    assert first.stdout.startswith("Baseline recorded: 7 studies")
    assert "data as of 2026-11-20T09:00:05" in first.stdout

    change_status(registry, "NCT07725679", "RECRUITING")
    registry.drop("NCT00987428")
    second = invoke(env, "sync")

    assert second.exit_code == 0, second.stderr
    assert "Synced 6 studies (incremental, updates since 2026-11-17): 0 new, 1 changed, " \
           "1 removed, 5 unchanged; 2 change events" in second.stdout
    assert second.stderr == ""  # no progress bar when stderr is not a terminal


def test_sync_json_summary(env: dict[str, str]) -> None:
    result = invoke(env, "sync", "--json")
    summary = json.loads(result.stdout)
    assert summary["mode"] == "baseline"
    assert summary["listed"] == 7
    assert summary["requests"] >= 4  # version, three pages of three, version again


def test_unchanged_registry_means_nothing_to_do(env: dict[str, str]) -> None:
    invoke(env, "sync")
    again = invoke(env, "sync")
    assert again.exit_code == 0
    assert again.stdout.startswith("Nothing to do: ClinicalTrials.gov has not refreshed")


def test_changes_lists_filters_and_exports_json(env: dict[str, str], registry: Registry) -> None:
    invoke(env, "sync")
    change_status(registry, "NCT07725679", "RECRUITING")
    registry.drop("NCT00987428")
    invoke(env, "sync")

    text = invoke(env, "changes")
    today = datetime.now(UTC).date().isoformat()
    assert "NCT07725679  Efgartigimod in Immune-Mediated Necrotizing Myopathy" in text.output
    # Dated by the registry (the record posted a day after the fixture's 2026-07-24), with
    # the day the tracker saw it; a removal by the day of the registry data that lacked it.
    assert (f"  2026-07-25 (seen {today})  Now recruiting: you can ask the study team about "
            "joining\n") in text.output
    assert f"  2026-11-21 (seen {today})  No longer listed" in text.output
    assert "(status: Status: Not yet recruiting -> Recruiting)" in text.output
    assert "[imnm, fcrn]" in text.output
    only_status = json.loads(invoke(env, "changes", "--kind", "status", "--json").output)
    assert [(e["nct_id"], e["kind"]) for e in only_status] == [("NCT07725679", "status")]
    assert only_status[0]["old"] == "NOT_YET_RECRUITING"
    assert only_status[0]["url"] == "https://clinicaltrials.gov/study/NCT07725679"
    assert (only_status[0]["posted_on"], only_status[0]["last_update_posted"]) == \
        ("2026-07-25", "2026-07-25")
    assert only_status[0]["detected_at"].startswith(today)
    by_study = json.loads(invoke(env, "changes", "--nct", "nct00987428", "--json").output)
    assert [e["kind"] for e in by_study] == ["removed"]

    def posted_since(*options: str) -> list[str]:
        return [e["kind"] for e in json.loads(invoke(env, "changes", *options, "--json")
                                              .output)]

    assert posted_since("--since", "2026-07-25") == ["status", "removed"]
    assert posted_since("--since", "2026-07-26") == ["removed"]
    assert posted_since("--since", "1d") == []  # the registry posted neither yesterday
    assert posted_since("--seen-since", "1d") == ["status", "removed"]
    assert posted_since("--seen-since", "1d", "--since", "2026-11-21") == ["removed"]
    assert invoke(env, "changes", "--seen-since", "2099-01-01").output.startswith(
        "No changes recorded for these filters.")


@pytest.mark.parametrize("option", ["--since", "--seen-since"])
def test_changes_rejects_a_bad_date_with_one_line(env: dict[str, str], option: str) -> None:
    result = invoke(env, "changes", option, "last tuesday")
    assert result.exit_code == 2
    assert "use a date like 2026-11-01" in result.stderr and option in result.stderr
    assert "Traceback" not in result.stderr


def test_show_prints_the_study_and_its_history(env: dict[str, str], registry: Registry) -> None:
    invoke(env, "sync")
    change_status(registry, "NCT07725679", "RECRUITING")
    invoke(env, "sync")

    text = invoke(env, "show", "NCT07725679").output
    assert "Efgartigimod in Immune-Mediated Necrotizing Myopathy" in text
    assert "Recruiting" in text
    assert "History: 2 version(s) stored, 1 change(s) recorded" in text
    today = datetime.now(UTC).date().isoformat()
    assert (f"  2026-07-25 (seen {today})  Now recruiting: you can ask the study team about "
            "joining  (status: Status: Not yet recruiting -> Recruiting)") in text
    assert "https://clinicaltrials.gov/study/NCT07725679" in text
    data = json.loads(invoke(env, "show", "NCT07725679", "--json").output)
    assert data["overall_status"] == "RECRUITING"
    assert data["versions"] == 2
    assert data["changes"][0]["summary"] == "Status: Not yet recruiting -> Recruiting"


def test_show_an_unknown_study_fails_cleanly(env: dict[str, str]) -> None:
    invoke(env, "sync")
    result = invoke(env, "show", "NCT09999999")
    assert result.exit_code == 4
    assert result.stderr.startswith("tracker: error: NCT09999999 is not in the snapshot")
    assert len(result.stderr.strip().splitlines()) == 1


def test_status_reports_the_last_success_and_the_last_failure(env: dict[str, str],
                                                              registry: Registry) -> None:
    invoke(env, "sync")
    registry.data_timestamp = "2026-11-21T09:00:05"
    registry.fail(status=503, times=99)

    failed = invoke(env, "sync")
    assert failed.exit_code == 1
    assert "after 2 attempts (last: HTTP 503)" in failed.stderr

    status = invoke(env, "status")
    assert "Studies tracked:       7" in status.stdout
    assert "API data timestamp:    2026-11-20T09:00:05" in status.stdout
    assert "Last failed sync:" in status.stdout and "HTTP 503" in status.stdout
    assert "Warning: the most recent sync failed" in status.stdout
    assert "Subscribers:           0 confirmed, 0 awaiting confirmation" in status.stdout
    assert "Outbox:                0 queued, 0 failed, 0 unknown outcome, 0 sent" in status.stdout
    info = json.loads(invoke(env, "status", "--json").stdout)
    assert info["last_sync_failed"] is True
    assert info["counts"]["tracked"] == 7


def test_export_writes_csv_and_json(env: dict[str, str], tmp_path: Path) -> None:
    invoke(env, "sync")
    rows = list(csv.DictReader(io.StringIO(invoke(env, "export").output)))
    assert len(rows) == 7
    ibm = next(r for r in rows if r["nct_id"] == "NCT02803307")
    assert ibm["brief_title"] == "Arimoclomol in Inclusion Body Myositis"
    assert ibm["has_results"] == "True"
    target = tmp_path / "trials.json"
    invoke(env, "export", "--format", "json", "-o", str(target))
    studies = json.loads(target.read_text())
    assert {s["nct_id"] for s in studies} == {r["nct_id"] for r in rows}


def test_a_bad_setting_is_named_in_one_line(env: dict[str, str]) -> None:
    result = invoke({**env, "TRACKER_PAGE_SIZE": "lots"}, "sync")
    assert result.exit_code == 2
    assert result.stderr == ("tracker: error: TRACKER_PAGE_SIZE='lots' is not valid: give a "
                             "whole number from 1 to 1000\n")


def test_an_unreachable_api_fails_in_one_line_and_changes_nothing(env: dict[str, str],
                                                                 tmp_path: Path) -> None:
    result = invoke({**env, "CTGOV_BASE_URL": "http://127.0.0.1:9/api/v2"}, "sync")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("tracker: error: Could not fetch the API version")
    assert "Traceback" not in result.stderr
    assert Store.open(env["TRACKER_DATABASE_URL"], create=True).counts().tracked == 0


@pytest.mark.slow
def test_settings_are_read_from_a_dot_env_file(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"CTGOV_BASE_URL={env['CTGOV_BASE_URL']}\n"
                                   "TRACKER_REQUEST_INTERVAL=0\n")
    result = run({}, "sync", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["listed"] == 7
    assert (tmp_path / "data" / "tracker.db").exists()  # the default database location


@pytest.mark.slow
def test_a_second_sync_is_refused_while_the_first_runs(env: dict[str, str],
                                                       registry: Registry) -> None:
    registry.fail(match=lambda path, params: path.endswith("/studies"), status=200, delay=3,
                  body=b"{}", times=1)
    first = subprocess.Popen([sys.executable, "-m", "tracker", "sync"], env={**os.environ, **env},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: registry.requests("/studies"))

    second = run(env, "sync")
    first.communicate(timeout=30)

    assert second.returncode == 3
    assert second.stderr.startswith("tracker: error: Another sync is already running (pid "
                                    f"{first.pid}")


@pytest.mark.slow
def test_killing_a_sync_midway_loses_nothing(env: dict[str, str], registry: Registry) -> None:
    run(env, "sync")
    change_status(registry, "NCT07725679", "RECRUITING")
    registry.fail(match=lambda path, params: "filter.ids" in params, status=200, delay=30,
                  body=b"{}", times=1)
    victim = subprocess.Popen([sys.executable, "-m", "tracker", "sync"],
                              env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    _wait_for(lambda: [p for p in registry.requests("/studies") if "filter.ids" in p])
    time.sleep(0.3)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    store = Store.open(env["TRACKER_DATABASE_URL"], create=True)
    assert store.changes() == []
    assert store.study("NCT07725679").overall_status == "NOT_YET_RECRUITING"

    registry.faults.clear()
    after = run(env, "sync", "--json")

    assert after.returncode == 0, after.stderr
    assert json.loads(after.stdout)["changed"] == 1
    assert "Interrupted" in (runs.last_sync(store.db, "interrupted").error or "")


def test_every_command_has_help() -> None:
    for command in ("sync", "changes", "show", "status", "export"):
        result = CliRunner().invoke(cli, [command, "--help"])
        assert result.exit_code == 0
        assert len(result.output.splitlines()) > 4


def test_config_example_documents_every_setting_with_its_default() -> None:
    values = {k: v or "" for k, v in dotenv_values(ROOT / "config.example.env").items()}
    assert Settings.from_env(values) == Settings()
    documented = set(values)
    read = {name for name in _settings_variables()}
    assert documented == read


def test_readme_starts_with_the_install_and_test_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    commands = [line for line in readme.splitlines() if line.startswith("python3 -m venv")]
    assert commands[0].endswith("tracker run")  # the main job, on the embedded default
    assert commands[1] in ci  # CI runs exactly the README's test command


def _settings_variables() -> list[str]:
    source = (ROOT / "tracker" / "config.py").read_text()
    import re
    return re.findall(r'get\("([A-Z_]+)"', source)


def _wait_for(condition, timeout: float = 15) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


@pytest.mark.slow
def test_export_into_a_closed_pipe_stops_quietly(env: dict[str, str]) -> None:
    run(env, "sync")
    reader = subprocess.Popen([sys.executable, "-m", "tracker", "export"],
                              env={**os.environ, **env}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    assert reader.stdout is not None and reader.stderr is not None
    reader.stdout.close()  # like `tracker export | head -0`
    errors = reader.stderr.read().decode()
    reader.wait(timeout=30)
    assert "Traceback" not in errors
    assert "unexpected" not in errors


def test_tags_lists_every_tag_with_its_filter_name_and_count(env: dict[str, str]) -> None:
    invoke(env, "sync")

    text = invoke(env, "tags").output

    assert "Myositis subtypes (filter with --subtype NAME):" in text
    assert "  dermatomyositis        2  Dermatomyositis" in text
    assert "  ibm                    1  Inclusion body myositis" in text
    assert "  jak                    1  JAK inhibitors" in text
    assert "  cell-therapy           0  CAR-T and other cell therapies" in text
    data = json.loads(invoke(env, "tags", "--json").output)
    assert {"name": "jdm", "label": "Juvenile dermatomyositis", "trials": 1} in data["subtypes"]
    assert data["therapies"][-1]["name"] == "other"


def test_show_explains_each_tag_and_where_patients_can_join(env: dict[str, str]) -> None:
    invoke(env, "sync")

    text = invoke(env, "show", "NCT04078230").output

    assert "Subtypes:            Dermatomyositis [dermatomyositis] (matched " \
           '"dermatomyositis" in conditions' in text
    assert "Treatments:          JAK inhibitors [jak]" in text
    assert "Recruiting at:" in text and "(Baltimore, United States)" in text
    assert "Who can join:        from 18 years up to 80 years (adults only)" in text
    detail = json.loads(invoke(env, "show", "NCT04078230", "--json").output)
    assert detail["tag_evidence"]["therapies"]["jak"] == [
        ["intervention name", "tofacitinib"]]
    assert detail["recruiting_sites"][0]["lat"] == 39.29038


def test_changes_and_export_filter_by_tag(env: dict[str, str], registry: Registry,
                                          tmp_path: Path) -> None:
    invoke(env, "sync")
    change_status(registry, "NCT07725679", "RECRUITING")
    registry.drop("NCT00987428")
    invoke(env, "sync")

    imnm = json.loads(invoke(env, "changes", "--subtype", "imnm", "--json").output)
    assert [(e["nct_id"], e["plain"]) for e in imnm] == [
        ("NCT07725679", "Now recruiting: you can ask the study team about joining")]
    assert imnm[0]["subtypes"] == ["imnm"] and imnm[0]["therapies"] == ["fcrn"]
    assert "No changes recorded for these filters." in \
        invoke(env, "changes", "--therapy", "jak").output

    rows = list(csv.DictReader(io.StringIO(
        invoke(env, "export", "--subtype", "dermatomyositis", "--subtype", "polymyositis").output)))
    assert sorted(r["nct_id"] for r in rows) == ["NCT02210780", "NCT04078230"]
    assert {r["subtypes"] for r in rows} == {"dermatomyositis", "dermatomyositis|polymyositis"}
    recruiting_in_us = json.loads(invoke(env, "export", "--format", "json", "--recruiting",
                                         "--country", "USA").output)
    assert [s["nct_id"] for s in recruiting_in_us] == ["NCT04078230"]
    assert recruiting_in_us[0]["recruiting_countries"] == ["China", "United States"]
    assert recruiting_in_us[0]["subtypes"] == ["dermatomyositis"]
    assert isinstance(recruiting_in_us[0]["enrollment"], int)
    assert recruiting_in_us[0]["recruiting"] is True
    assert json.loads(invoke(env, "export", "--format", "json", "--children").output) == []


def test_an_unknown_tag_is_refused_with_the_choices(env: dict[str, str]) -> None:
    result = invoke(env, "changes", "--subtype", "lupus")
    assert result.exit_code == 2
    assert "'lupus' is not a known tag; choose from dermatomyositis, jdm" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_missing_vocabulary_file_is_named(env: dict[str, str], tmp_path: Path) -> None:
    result = invoke({**env, "TRACKER_VOCABULARY": str(tmp_path / "nope.toml")}, "tags")
    assert result.exit_code == 2
    assert "TRACKER_VOCABULARY=" in result.stderr and "readable TOML file" in result.stderr


def test_overdue_results_are_flagged_in_show_and_export(env: dict[str, str],
                                                       registry: Registry) -> None:
    study = registry.studies["NCT04078230"]
    status = study["protocolSection"]["statusModule"]
    status["overallStatus"] = "COMPLETED"
    status["primaryCompletionDateStruct"] = {"date": "2024-01", "type": "ACTUAL"}
    invoke(env, "sync")

    assert "Results:             overdue: completed over 12 months ago, none posted" in \
        invoke(env, "show", "NCT04078230").output
    rows = {r["nct_id"]: r for r in csv.DictReader(io.StringIO(invoke(env, "export").output))}
    assert rows["NCT04078230"]["results_overdue"] == "True"
    assert rows["NCT02248896"]["results_overdue"] == "False"  # observational registry


READ_ONLY = [["status"], ["changes"], ["show", "NCT04078230"], ["export"], ["tags"],
             ["report"], ["subscribers"], ["outbox"], ["digest", "--dry-run"]]


@pytest.mark.parametrize("args", READ_ONLY, ids=lambda a: " ".join(a))
def test_a_command_that_only_reads_never_creates_a_database(env: dict[str, str],
                                                             tmp_path: Path,
                                                             args: list[str]) -> None:
    database = tmp_path / "data" / "tracker.db"

    result = invoke(env, *args)

    assert result.exit_code == 2
    assert result.stderr == (f"tracker: error: No snapshot at {database}; run 'tracker sync' "
                             "first or set TRACKER_DATABASE_URL.\n")
    assert not database.exists() and not database.parent.exists()


def test_status_says_where_the_data_is(env: dict[str, str], tmp_path: Path) -> None:
    invoke(env, "sync")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.chdir(elsewhere)  # the database URL is relative: it is read from the folder it names

    text = invoke(env, "status").stdout
    info = json.loads(invoke(env, "status", "--json").stdout)

    assert f"Database:              {tmp_path / 'data' / 'tracker.db'}" in text
    assert info["database"] == str(tmp_path / "data" / "tracker.db")


def test_db_upgrade_creates_the_database_then_has_nothing_to_do(env: dict[str, str],
                                                               tmp_path: Path) -> None:
    first = invoke(env, "db", "upgrade")
    again = invoke(env, "db", "upgrade")

    assert first.exit_code == 0 and "upgraded from nothing" in first.stdout
    assert again.exit_code == 0 and again.stdout.endswith("(already up to date).\n")
    assert (tmp_path / "data" / "tracker.db").is_file()
    assert invoke(env, "status").exit_code == 0


def test_a_misspelt_country_is_refused_with_a_suggestion(env: dict[str, str]) -> None:
    invoke(env, "sync")

    typo = invoke(env, "export", "--country", "Frnace")
    alias = invoke(env, "export", "--format", "json", "--country", "usa")
    code = invoke(env, "export", "--format", "json", "--country", "US")

    assert typo.exit_code == 2
    assert typo.stderr == ("tracker: error: 'Frnace' is not a country name we know; did you "
                           "mean France?\n")
    assert alias.exit_code == 0 and json.loads(alias.stdout) == json.loads(code.stdout) != []


def test_json_outputs_use_arrays_numbers_and_booleans(env: dict[str, str]) -> None:
    invoke(env, "sync")

    exported = json.loads(invoke(env, "export", "--format", "json").stdout)
    shown = json.loads(invoke(env, "show", "NCT04078230", "--json").stdout)

    for study in [*exported, shown]:
        for key in ("phases", "conditions", "interventions", "countries", "subtypes",
                    "therapies", "recruiting_countries"):
            assert isinstance(study[key], list), key
        assert isinstance(study["recruiting"], bool) and isinstance(study["site_count"], int)
    assert shown["countries"] == ["China", "United States"]


def test_a_sync_counts_a_study_the_registry_only_reformatted(env: dict[str, str],
                                                            registry: Registry) -> None:
    invoke(env, "sync")
    study = registry.studies["NCT04078230"]
    study["protocolSection"]["descriptionModule"]["briefSummary"] += " "  # no new update date
    registry.put(study)
    registry.data_timestamp = "2026-11-21T09:00:05"

    text = invoke(env, "sync", "--full").stdout

    assert "Synced 7 studies (full): 0 new, 0 changed, 1 reformatted by the registry, " \
           "0 removed, 6 unchanged" in text


def test_every_command_has_help_with_an_example() -> None:
    def walk(group: click.Group, prefix: list[str]) -> list[list[str]]:
        found = []
        for name, command in group.commands.items():
            if isinstance(command, click.Group):
                found.extend(walk(command, [*prefix, name]))
            else:
                found.append([*prefix, name])
        return found

    commands = walk(cli, [])
    assert len(commands) >= 15
    for path in commands:
        result = CliRunner().invoke(cli, [*path, "--help"])
        assert result.exit_code == 0, path
        assert "Example" in result.stdout, f"tracker {' '.join(path)} --help has no example"
        assert f"tracker {' '.join(path)}" in result.stdout.split("Example")[1], path


def test_the_cli_report_and_the_scheduled_report_write_the_same_week(
        env: dict[str, str], tmp_path: Path) -> None:
    zone = {**env, "TRACKER_TIMEZONE": "Pacific/Auckland",
            "TRACKER_REPORT_DIR": str(tmp_path / "by-cli")}
    invoke(zone, "sync")
    # Monday 7 December, 08:00 in Auckland, is still Sunday 6 December in UTC: the last
    # complete week is 2026-W49 there and 2026-W48 in UTC.
    with time_machine.travel(datetime(2026, 12, 6, 19, 0, tzinfo=UTC), tick=False):
        by_cli = invoke(zone, "report")
        settings = Settings.from_env({**zone, "TRACKER_REPORT_DIR": str(tmp_path / "by-job")})
        db = Database.open(settings.database_url)
        try:
            scheduled = jobs.report(Context(settings, db))
        finally:
            db.close()

    assert by_cli.exit_code == 0 and "2026-W49" in by_cli.stdout
    assert scheduled.week is not None and scheduled.week.name == "2026-W49"
    cli_files = sorted(p.relative_to(tmp_path / "by-cli")
                       for p in (tmp_path / "by-cli").rglob("*") if p.is_file())
    job_files = sorted(p.relative_to(tmp_path / "by-job")
                       for p in (tmp_path / "by-job").rglob("*") if p.is_file())
    assert cli_files == job_files and Path("2026-W49.html") in cli_files
    for name in cli_files:
        assert (tmp_path / "by-cli" / name).read_bytes() == \
            (tmp_path / "by-job" / name).read_bytes(), name


def test_a_report_says_which_past_weeks_it_rewrote_for_changes_seen_late(
        env: dict[str, str], registry: Registry, tmp_path: Path) -> None:
    env = {**env, "TRACKER_REPORT_DIR": str(tmp_path / "reports")}
    with time_machine.travel(datetime(2026, 11, 23, 7, 0, tzinfo=UTC), tick=False):
        invoke(env, "sync")
        first = invoke(env, "report")  # Monday: last week, 2026-W47
    study = copy.deepcopy(registry.studies["NCT04078230"])
    study["protocolSection"]["statusModule"]["lastUpdatePostDateStruct"]["date"] = "2026-11-20"
    study["protocolSection"]["statusModule"]["overallStatus"] = "COMPLETED"
    registry.put(study)  # posted on Friday of W47, in the registry's data only on Tuesday
    registry.data_timestamp = "2026-11-24T09:00:05"
    with time_machine.travel(datetime(2026, 11, 24, 10, 0, tzinfo=UTC), tick=False):
        invoke(env, "sync")
    with time_machine.travel(datetime(2026, 11, 30, 7, 0, tzinfo=UTC), tick=False):
        second = invoke(env, "report")

    assert "Report for 2026-W47" in first.stdout and "Rewrote" not in first.stdout
    assert "Report for 2026-W48" in second.stdout
    assert "Rewrote 2026-W47: the registry posted changes in those weeks that were seen " \
           "after their reports were written." in second.stdout
    page = (tmp_path / "reports" / "2026-W47.html").read_text()
    assert "The trial has finished" in page.split('id="changed"')[1].split("</section>")[0]
    assert "Seen late" in (tmp_path / "reports" / "2026-W48.html").read_text()


@pytest.mark.slow
def test_export_into_a_closed_pipe_exits_as_unix_tools_do(env: dict[str, str]) -> None:
    invoke(env, "sync")
    shell = subprocess.run(["bash", "-o", "pipefail", "-c",
                            f"{sys.executable} -m tracker export | head -1"],
                           env={**os.environ, **env}, capture_output=True, text=True,
                           timeout=60)

    assert shell.stdout.startswith("nct_id,")
    assert shell.stderr == ""
    assert shell.returncode in (0, 141)  # 0 if export finished before head closed the pipe


@pytest.mark.slow
def test_ctrl_c_during_a_sync_says_nothing_was_saved(env: dict[str, str],
                                                     registry: Registry) -> None:
    registry.fail(match=lambda path, params: path.endswith("/studies"), status=200, delay=20,
                  body=b"{}", times=1)
    victim = subprocess.Popen([sys.executable, "-m", "tracker", "sync"],
                              env={**os.environ, **env}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, preexec_fn=interruptible)
    _wait_for(lambda: registry.requests("/studies"))

    victim.send_signal(signal.SIGINT)
    _, err = victim.communicate(timeout=30)

    assert victim.returncode == 130
    assert err == "tracker: error: Interrupted; nothing from this sync was saved.\n"
    store = Store.open(env["TRACKER_DATABASE_URL"])
    assert store.counts().tracked == 0
    assert runs.last_sync(store.db).status == "interrupted"  # type: ignore[union-attr]
    store.close()


def test_a_manual_sync_that_keeps_failing_alerts_the_operator_like_a_scheduled_one(
        env: dict[str, str], registry: Registry, tmp_path: Path) -> None:
    alerting = {**env, "TRACKER_ADMIN_EMAIL": "ops@example.org", "TRACKER_ALERT_AFTER": "2",
                "TRACKER_MAX_RETRIES": "0",
                "TRACKER_DIGEST_DIR": str(tmp_path / "mail")}
    invoke(alerting, "sync")
    registry.fail(status=503, times=10_000)
    failures = []
    for day in (21, 22, 23):
        registry.data_timestamp = f"2026-11-{day}T09:00:05"
        failures.append(invoke(alerting, "sync"))

    assert [f.exit_code for f in failures] == [1, 1, 1]
    assert "alert queued for" not in failures[0].stderr
    assert "(2 failed in a row; alert queued for ops@example.org)" in failures[1].stderr
    assert "(3 failed in a row; already alerted: ops@example.org)" in failures[2].stderr
    [alert] = (tmp_path / "mail").glob("*-alert-*.txt")
    assert "failed to update from ClinicalTrials.gov 2 times in a row" in alert.read_text()


# --- output folders ----------------------------------------------------------------------------

DEV_FULL = Path("/dev/full")  # every write to it fails with "No space left on device"


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Settings for commands that never reach the registry, in a folder holding one file."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(("TRACKER_", "CTGOV_")):
            monkeypatch.delenv(name)
    (tmp_path / "notes.txt").write_text("not a folder\n")
    return {"TRACKER_DATABASE_URL": f"sqlite:///{tmp_path / 'data' / 'tracker.db'}"}


@pytest.fixture
def snapshot(offline: dict[str, str], tmp_path: Path, migrated_sqlite: Path) -> dict[str, str]:
    """`offline`, with an empty database at the newest schema."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "tracker.db").write_bytes(migrated_sqlite.read_bytes())
    return offline


def test_report_into_a_folder_under_a_file_is_refused_before_any_work(
        offline: dict[str, str], tmp_path: Path) -> None:
    refused = invoke(offline, "report", "--out", "notes.txt/sub")

    assert refused.exit_code == 2
    assert refused.stderr == ("tracker: error: --out notes.txt/sub cannot be used: notes.txt is "
                              "a file, not a folder.\n")
    assert refused.stdout == ""
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_export_into_a_folder_under_a_file_is_refused_before_any_work(
        offline: dict[str, str], tmp_path: Path) -> None:
    refused = invoke(offline, "export", "-o", "notes.txt/sub/x.csv")

    assert refused.exit_code == 2
    assert refused.stderr == ("tracker: error: --output notes.txt/sub/x.csv cannot be used: "
                              "notes.txt is a file, not a folder.\n")
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_export_creates_the_folder_of_its_file(snapshot: dict[str, str],
                                               tmp_path: Path) -> None:
    exported = invoke(snapshot, "export", "-o", "out/trials/x.csv")

    assert exported.exit_code == 0, exported.stderr
    assert (tmp_path / "out" / "trials" / "x.csv").read_text().startswith("nct_id,")


@pytest.mark.parametrize(("name", "command"), [("TRACKER_DIGEST_DIR", "digest"),
                                               ("TRACKER_REPORT_DIR", "report"),
                                               ("TRACKER_REPORT_DIR", "run")])
def test_a_bad_output_folder_setting_stops_the_command_before_it_starts(
        offline: dict[str, str], tmp_path: Path, name: str, command: str) -> None:
    refused = invoke({**offline, name: "notes.txt/out"}, command)

    assert refused.exit_code == 2
    assert refused.stderr == (f"tracker: error: {name}=notes.txt/out cannot be used: "
                              "notes.txt is a file, not a folder.\n")
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


@pytest.mark.skipif(not DEV_FULL.exists(), reason="needs /dev/full")
def test_a_report_the_disk_refuses_is_one_line_naming_the_file(snapshot: dict[str, str],
                                                                tmp_path: Path) -> None:
    out = tmp_path / "site"
    out.mkdir()
    (out / "2026-W47.html.part").symlink_to(DEV_FULL)

    failed = invoke(snapshot, "report", "--week", "2026-W47", "--out", str(out))

    assert failed.exit_code == 1
    assert failed.stderr == (f"tracker: error: Cannot write {out / '2026-W47.html'}: "
                             "No space left on device.\n")
    assert list(out.iterdir()) == []  # no half-written file, not even the .part


@pytest.mark.skipif(not DEV_FULL.exists(), reason="needs /dev/full")
def test_an_export_the_disk_refuses_is_one_line_naming_the_file(snapshot: dict[str, str],
                                                                 tmp_path: Path) -> None:
    (tmp_path / "x.csv.part").symlink_to(DEV_FULL)

    failed = invoke(snapshot, "export", "-o", "x.csv")

    assert failed.exit_code == 1
    assert failed.stderr == "tracker: error: Cannot write x.csv: No space left on device.\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "notes.txt"]
