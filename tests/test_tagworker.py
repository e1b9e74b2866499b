"""Specification of `tracker.tagworker`: tagging in a second process gives the tags the sync's
own process would, and any failure of the worker only sends the sync back to tagging itself.

Every record is a real (myositis-edited) one from tests/data/studies/, sent as its JSON bytes,
as a page's study is. These tests start processes, so they are marked slow.
"""

from __future__ import annotations

import copy
import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.conftest import all_studies
from tests.fakeapi import FakeApi, Registry
from tracker import sync as sync_module
from tracker.config import Settings
from tracker.ctgov import CtGovClient
from tracker.record import loads
from tracker.shape import clean
from tracker.store import STUDY, Store
from tracker.sync import sync
from tracker.tags import Tagger
from tracker.tagworker import TagWorker
from tracker.vocabulary import load_vocabulary

pytestmark = pytest.mark.slow

VOCABULARY = load_vocabulary()
REAL_WORKER = sync_module.TagWorker


def as_received(record: dict[str, Any]) -> bytes:
    return json.dumps(record, ensure_ascii=False).encode()


def with_control_character() -> dict[str, Any]:
    """A record whose subtype is only read once a control character is cleaned out."""
    record = copy.deepcopy(all_studies()["NCT02803307"])
    protocol = record["protocolSection"]
    protocol["conditionsModule"]["conditions"] = ["Inclusion Body\u0001 Myositis"]
    protocol["identificationModule"]["briefTitle"] = "Arimoclomol in Inclus\u0001ion Body Myositis"
    return record


def test_the_worker_tags_every_record_as_the_sync_would() -> None:
    records = [*all_studies().values(), with_control_character()]
    worker = TagWorker(None, VOCABULARY.digest)
    try:
        worker.submit((i, as_received(r), i == len(records) - 1) for i, r in enumerate(records))
        answers = [worker.tags(i) for i in range(len(records))]
    finally:
        worker.close()

    tagger = Tagger(VOCABULARY)
    expected = [tagger.tag(clean(loads(as_received(r)))) for r in records]
    assert answers == expected
    assert "ibm" in answers[-1].subtypes  # read only once cleaned: the flag was followed


def test_a_study_the_worker_cannot_read_is_left_to_the_sync() -> None:
    worker = TagWorker(None, VOCABULARY.digest)
    try:
        worker.submit([("bad", b'{"protocolSection": {', False),
                       ("good", as_received(all_studies()["NCT04078230"]), False)])
        assert worker.tags("bad") is None
        assert worker.tags("good") is not None and worker.working
    finally:
        worker.close()


def test_a_study_never_sent_to_the_worker_is_left_to_the_sync_at_once() -> None:
    """A baseline sends the worker the studies new to the snapshot; one it already holds
    (the query changed) and that changed is tagged by the sync itself, without waiting."""
    worker = TagWorker(None, VOCABULARY.digest)
    try:
        worker.submit([("new", as_received(all_studies()["NCT04078230"]), False)])
        started = time.monotonic()
        assert worker.tags("known") is None
        assert time.monotonic() - started < 1
        assert worker.tags("new") is not None and worker.working
    finally:
        worker.close()


def test_a_study_is_not_sent_twice_before_it_is_answered() -> None:
    """Answers are matched to studies by order, so a key sent twice would shift them."""
    worker = TagWorker(None, VOCABULARY.digest)
    record = as_received(all_studies()["NCT04078230"])
    try:
        with pytest.raises(ValueError, match="twice"):
            worker.submit([("one", record, False), ("one", record, False)])
        worker.submit([("one", record, False)])
        with pytest.raises(ValueError, match="twice"):
            worker.submit([("one", record, False)])
        assert worker.tags("one") is not None
        worker.submit([("one", record, False)])  # answered: it may go again
        assert worker.tags("one") is not None
    finally:
        worker.close()


def test_a_worker_with_another_vocabulary_stops_and_leaves_everything_to_the_sync(
        tmp_path: Path) -> None:
    extra = tmp_path / "extra.toml"
    extra.write_text('[subtypes.dm]\nterms = ["dermatomyositis sine dermatitis"]\n')
    started = time.monotonic()
    worker = TagWorker(extra, VOCABULARY.digest)  # the digest of the shipped words alone
    try:
        worker.submit([("one", as_received(all_studies()["NCT04078230"]), False)])
        assert worker.tags("one") is None
    finally:
        worker.close()
    assert not worker.working
    assert time.monotonic() - started < 10  # it said so at once; nobody waited it out


def test_the_worker_reads_the_operators_extra_vocabulary(tmp_path: Path) -> None:
    extra = tmp_path / "extra.toml"
    extra.write_text('[therapies.arimoclomol]\nlabel = "Arimoclomol"\nterms = ["arimoclomol"]\n')
    vocabulary = load_vocabulary(extra)
    record = all_studies()["NCT02803307"]
    worker = TagWorker(extra, vocabulary.digest)
    try:
        worker.submit([("ibm", as_received(record), False)])
        answer = worker.tags("ibm")
    finally:
        worker.close()
    assert answer is not None and "arimoclomol" in answer.therapies
    assert answer == Tagger(vocabulary).tag(record)


def test_a_worker_that_dies_leaves_the_rest_to_the_sync() -> None:
    worker = TagWorker(None, VOCABULARY.digest)
    record = as_received(all_studies()["NCT04078230"])
    try:
        worker.submit([("first", record, False)])
        assert worker.tags("first") is not None
        assert worker._process is not None
        worker._process.kill()
        worker.submit([("second", record, False)])
        assert worker.tags("second") is None
        assert not worker.working
    finally:
        worker.close()


def test_closing_with_studies_outstanding_stops_the_worker_at_once() -> None:
    worker = TagWorker(None, VOCABULARY.digest)
    record = as_received(all_studies()["NCT02210780"])
    worker.submit((n, record, False) for n in range(2000))
    started = time.monotonic()
    worker.close()

    assert time.monotonic() - started < 5
    assert worker._process is None or worker._process.poll() is not None


# --- in a sync --------------------------------------------------------------------------

def study_rows(store: Store) -> list[dict[str, Any]]:
    """Every study row, less the times (two syncs run at different moments)."""
    with store.engine.connect() as conn:
        rows = conn.execute(select(STUDY).order_by(STUDY.c.nct_id)).mappings().all()
    return [{k: v for k, v in row.items() if not isinstance(v, datetime)} for row in rows]


def baseline(api: FakeApi, folder: Path, worker: bool,
             monkeypatch: pytest.MonkeyPatch) -> tuple[list[dict[str, Any]], list[TagWorker]]:
    """A baseline into a new SQLite file, pages of 3, with or without the worker."""
    monkeypatch.setattr(sync_module, "WORKER_MIN_PAGE_SIZE", 1 if worker else 10**6)
    started: list[TagWorker] = []

    def recorded(*args: Any) -> TagWorker:
        started.append(REAL_WORKER(*args))
        return started[-1]

    monkeypatch.setattr(sync_module, "TagWorker", recorded)
    folder.mkdir()
    settings = Settings(base_url=api.base_url, database_url=f"sqlite:///{folder / 'tracker.db'}",
                        page_size=3, request_interval=0, timeout=5)
    store = Store.open(settings.database_url, create=True)
    client = CtGovClient(settings)
    try:
        sync(settings, store, client)
        return study_rows(store), started
    finally:
        client.close()
        store.close()


def test_a_baseline_with_the_worker_stores_what_one_without_it_stores(
        fake_api: FakeApi, registry: Registry, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    registry.put(with_control_character() | {"protocolSection": {
        **with_control_character()["protocolSection"],
        "identificationModule": {**with_control_character()["protocolSection"][
            "identificationModule"], "nctId": "NCT09000001"}}})
    without, none_started = baseline(fake_api, tmp_path / "alone", False, monkeypatch)
    tagged_here: list[str] = []
    real_tag = Tagger.tag

    def counted(self: Tagger, study: dict[str, Any]) -> Any:
        tagged_here.append(study["protocolSection"]["identificationModule"]["nctId"])
        return real_tag(self, study)

    monkeypatch.setattr(Tagger, "tag", counted)
    beside, workers = baseline(fake_api, tmp_path / "worker", True, monkeypatch)

    assert none_started == [] and len(workers) == 1
    assert tagged_here == []  # the sync's own process tagged nothing
    assert workers[0].tagged == len(registry.studies)  # it tagged the whole baseline
    assert beside == without
    assert len(without) == len(registry.studies)


def test_a_worker_that_dies_during_a_baseline_leaves_the_sync_to_tag_the_rest(
        fake_api: FakeApi, registry: Registry, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    without, _ = baseline(fake_api, tmp_path / "alone", False, monkeypatch)

    class Dying(TagWorker):
        def tags(self, key: Any) -> Any:
            answer = super().tags(key)
            if self._process is not None:
                self._process.kill()  # after its first answer
            return answer

    monkeypatch.setattr(sync_module, "TagWorker", Dying)
    monkeypatch.setattr(sync_module, "WORKER_MIN_PAGE_SIZE", 1)
    folder = tmp_path / "dying"
    folder.mkdir()
    settings = Settings(base_url=fake_api.base_url, request_interval=0, timeout=5,
                        database_url=f"sqlite:///{folder / 'tracker.db'}", page_size=3)
    store = Store.open(settings.database_url, create=True)
    client = CtGovClient(settings)
    try:
        result = sync(settings, store, client)
        assert study_rows(store) == without
        assert result.fetched == len(registry.studies)
    finally:
        client.close()
        store.close()
