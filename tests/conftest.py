"""Shared fixtures: real (myositis-edited) records, a local fake API, and real databases.

Storage and sync tests run against SQLite always, and against PostgreSQL when
TRACKER_TEST_POSTGRES_URL names a server (`.ci/run` starts one; under CI it is required).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import socket
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import MetaData, create_engine

from tests.fakeapi import FakeApi, Registry
from tracker.config import Settings
from tracker.ctgov import CtGovClient
from tracker.database import Database
from tracker.store import Store

DATA = Path(__file__).parent / "data" / "studies"
POSTGRES_URL = os.environ.get("TRACKER_TEST_POSTGRES_URL", "")


def free_port() -> int:
    """A port nothing listens on (the kernel's next ephemeral one, released at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def interruptible() -> None:
    """For Popen(preexec_fn=...): Ctrl-C works in the child as in a terminal, even when the
    tests themselves run in the background, where SIGINT is ignored and children inherit that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def load_study(nct_id: str) -> dict[str, Any]:
    return json.loads((DATA / f"{nct_id}.json").read_text())


def all_studies() -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(DATA.glob("NCT*.json"))}


def updated(study: dict[str, Any], days: int = 1) -> dict[str, Any]:
    """A copy of `study` as the sponsor's next update would post it: lastUpdatePostDate moves."""
    new = copy.deepcopy(study)
    status = new["protocolSection"]["statusModule"]
    posted = date.fromisoformat(status["lastUpdatePostDateStruct"]["date"])
    status["lastUpdatePostDateStruct"]["date"] = (posted + timedelta(days=days)).isoformat()
    status["lastUpdateSubmitDate"] = (posted + timedelta(days=days - 1)).isoformat()
    return new


SERVERS = {"fake_api"}  # fixtures that start a server: their tests are slow


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("CI") and not POSTGRES_URL:
        raise pytest.UsageError("CI must set TRACKER_TEST_POSTGRES_URL (see .ci/run)")
    for item in items:
        if SERVERS & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty SQLite database at the newest schema, made once and copied for each test:
    migrating from nothing is the slowest part of a small test."""
    path = tmp_path_factory.mktemp("template") / "tracker.db"
    Database.open(f"sqlite:///{path}", create=True).close()
    return path


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path,
                 migrated_sqlite: Path) -> Iterator[str]:
    """A fresh, empty database of each kind."""
    if request.param == "sqlite":
        shutil.copyfile(migrated_sqlite, tmp_path / "tracker.db")
        yield f"sqlite:///{tmp_path / 'tracker.db'}"
        return
    if not POSTGRES_URL:
        pytest.skip("set TRACKER_TEST_POSTGRES_URL to run against PostgreSQL")
    engine = create_engine(POSTGRES_URL)
    leftovers = MetaData()  # every table, whatever state an earlier run left
    leftovers.reflect(engine)
    leftovers.drop_all(engine)
    engine.dispose()
    yield POSTGRES_URL


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'tracker.db'}"


@pytest.fixture
def registry() -> Registry:
    reg = Registry()
    reg.put(*all_studies().values())
    return reg


@pytest.fixture
def fake_api(registry: Registry) -> Iterator[FakeApi]:
    with FakeApi(registry) as api:
        yield api


@pytest.fixture
def settings(fake_api: FakeApi, database_url: str) -> Settings:
    return Settings(base_url=fake_api.base_url, database_url=database_url, page_size=3,
                    request_interval=0, max_retries=2, timeout=5)


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    s = Store.open(settings.database_url, create=True)
    yield s
    s.close()


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def client(settings: Settings, sleeps: Sleeps) -> Iterator[CtGovClient]:
    c = CtGovClient(settings, sleep=sleeps)
    yield c
    c.close()
