"""Specification of the ClinicalTrials.gov API v2 client (tracker/ctgov.py).

Paging, politeness, retries and /version, checked against the local fake API on 127.0.0.1
(tests/fakeapi.py) and against respx mocks serving real API responses. Study records are the
real fixture records (tests/data/studies) or real captured responses (copied verbatim into
tests/data/responses); page envelopes use only the fields the API documents (`totalCount`,
`studies`, `nextPageToken`). Nothing here touches the network.
"""

from __future__ import annotations

import copy
import gzip
import itertools
import json
import random
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import respx
from hypothesis import given
from hypothesis import settings as examples
from hypothesis import strategies as st

from tests.conftest import Sleeps, all_studies, load_study
from tests.fakeapi import FakeApi, Registry
from tracker import __version__
from tracker.config import DEFAULT_BASE_URL, Settings
from tracker.ctgov import BACKOFF_CAP, ApiVersion, CtGovClient, Page, may_be_unsafe
from tracker.errors import (
    ApiError,
    FetchError,
    IncompleteSync,
    MalformedResponse,
    RetriesExhausted,
)
from tracker.shape import UNSAFE

REAL_RESPONSES = Path(__file__).resolve().parent / "data" / "responses"
PHELAN_PAGE_1 = "biomcp_search_phelan_limit5_20260811.json"  # totalCount 21, 5 studies, token
PHELAN_PAGE_2 = "biomcp_search_phelan_next_20260811.json"  # no totalCount, 5 studies, token
NSCLC_ONLY_PAGE = "biomcp_search_nsclc_egfr_l858r_20260811.json"  # totalCount 2, no token
NO_TOTAL_PAGE = "cyanheads_studies_page_2025-06-17T11-16-37.json"  # no totalCount, token
VERSION = "version_akkikens_20260816.json"
ENUMS = "studies_enums_20260816.json"  # a JSON array, not an object

PHELAN_QUERY = {"query.cond": "Phelan-McDermid Syndrome", "fields": "NCTId,BriefTitle"}
FIXTURE_IDS = sorted(all_studies())  # seven real myositis records


# --- helpers -------------------------------------------------------------------------------


def real_response(name: str) -> bytes:
    return (REAL_RESPONSES / name).read_bytes()


def real_json(name: str) -> Any:
    return json.loads(real_response(name))


def make_settings(base_url: str = DEFAULT_BASE_URL, **overrides: Any) -> Settings:
    """Settings for pure client tests (no database is ever opened)."""
    values: dict[str, Any] = {"page_size": 3, "request_interval": 0, "max_retries": 2,
                              "timeout": 5}
    values.update(overrides)
    return Settings(base_url=base_url, database_url="sqlite:///unused.db", **values)


def ids(pages: list[Page]) -> list[str]:
    return [s.record()["protocolSection"]["identificationModule"]["nctId"]
            for p in pages for s in p.studies]


def json_response(body: Any, status: int = 200, **kwargs: Any) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.Response(status, content=content,
                          headers={"Content-Type": "application/json"}, **kwargs)


def serve_pages(router: respx.MockRouter, by_token: dict[str | None, Any]) -> respx.Route:
    """Answer /studies from `by_token` (key None is the first page), keyed on `pageToken`."""

    def answer(request: httpx.Request) -> httpx.Response:
        return json_response(by_token[request.url.params.get("pageToken")])

    return router.get("/studies").mock(side_effect=answer)


def sent_params(route: respx.Route) -> list[dict[str, str]]:
    return [dict(call.request.url.params) for call in route.calls]


def headers_sent(registry: Registry) -> list[dict[str, str]]:
    return [{k.lower(): v for k, v in headers.items()} for _, _, headers in registry.log]


class FakeClock:
    """A monotonic clock that only moves when the client sleeps or the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    """respx standing in for https://clinicaltrials.gov/api/v2; unmatched requests fail."""
    with respx.mock(base_url=DEFAULT_BASE_URL, assert_all_called=False) as router:
        yield router


@pytest.fixture
def mocked(sleeps: Sleeps) -> Iterator[Callable[..., CtGovClient]]:
    """A client for the respx-mocked API; overrides go to Settings, except client keywords."""
    made: list[CtGovClient] = []

    def build(*, jitter: Callable[[], float] = lambda: 0.5, **overrides: Any) -> CtGovClient:
        client = CtGovClient(make_settings(**overrides), sleep=sleeps, jitter=jitter)
        made.append(client)
        return client

    yield build
    for client in made:
        client.close()


@pytest.fixture
def local(fake_api: FakeApi, sleeps: Sleeps) -> Iterator[Callable[..., CtGovClient]]:
    """A client for the fake API on 127.0.0.1 (all seven fixture studies)."""
    made: list[CtGovClient] = []

    def build(*, jitter: Callable[[], float] = lambda: 0.5, **overrides: Any) -> CtGovClient:
        client = CtGovClient(make_settings(fake_api.base_url, **overrides), sleep=sleeps,
                             jitter=jitter)
        made.append(client)
        return client

    yield build
    for client in made:
        client.close()


# --- paging --------------------------------------------------------------------------------


def test_pages_follow_next_page_token_until_every_study_has_arrived(
        local: Callable[..., CtGovClient], registry: Registry) -> None:
    client = local(page_size=3)

    pages = list(client.pages({"query.cond": "myositis"}))

    assert [p.number for p in pages] == [1, 2, 3]
    assert [len(p.studies) for p in pages] == [3, 3, 1]
    assert ids(pages) == FIXTURE_IDS
    sent = registry.requests("/studies")
    assert "pageToken" not in sent[0]
    assert [r["pageToken"] for r in sent[1:]] == [pages[0].next_token, pages[1].next_token]
    assert pages[-1].next_token is None


def test_every_later_page_repeats_all_first_request_parameters_plus_page_token(
        local: Callable[..., CtGovClient], registry: Registry) -> None:
    params = {"query.cond": "myositis OR dermatomyositis",
              "filter.advanced": "AREA[LastUpdatePostDate]RANGE[2000-01-01,MAX]",
              "fields": "NCTId,LastUpdatePostDate"}

    pages = list(local(page_size=3).pages(params))

    first, *later = registry.requests("/studies")
    assert len(pages) == 3 and len(later) == 2
    assert first == {**params, "pageSize": "3", "countTotal": "true"}
    for request, previous in zip(later, pages, strict=False):
        assert request == {**params, "pageSize": "3", "pageToken": previous.next_token}


def test_count_total_is_requested_on_the_first_page_only(
        local: Callable[..., CtGovClient], registry: Registry) -> None:
    pages = list(local(page_size=2).pages({"query.cond": "myositis"}))

    sent = registry.requests("/studies")
    assert len(sent) == 4
    assert sent[0]["countTotal"] == "true"
    assert all("countTotal" not in r for r in sent[1:])
    assert pages[0].total_count == 7
    assert [p.total_count for p in pages[1:]] == [None, None, None]


@pytest.mark.parametrize("page_size", [1, 4, 1000])
def test_page_size_comes_from_settings(local: Callable[..., CtGovClient], registry: Registry,
                                       page_size: int) -> None:
    pages = list(local(page_size=page_size).pages({"query.cond": "myositis"}))

    assert {r["pageSize"] for r in registry.requests("/studies")} == {str(page_size)}
    assert all(len(p.studies) <= page_size for p in pages)
    assert ids(pages) == FIXTURE_IDS


def test_a_full_last_page_that_still_carries_a_token_is_followed_and_the_empty_page_ends_it(
        local: Callable[..., CtGovClient], registry: Registry) -> None:
    pages = list(local(page_size=7).pages({"query.cond": "myositis"}))

    assert [len(p.studies) for p in pages] == [7, 0]
    assert pages[0].next_token is not None
    assert registry.requests("/studies")[1]["pageToken"] == pages[0].next_token
    assert len(registry.requests("/studies")) == 2
    assert ids(pages) == FIXTURE_IDS


def test_an_empty_page_ends_paging_even_if_it_carries_a_token(
        api: respx.MockRouter, mocked: Callable[..., CtGovClient]) -> None:
    first = real_json(NSCLC_ONLY_PAGE)  # the real 2-study page, then an empty one
    route = serve_pages(api, {None: {**first, "nextPageToken": "AAA"},
                              "AAA": {"studies": [], "nextPageToken": "BBB"}})

    pages = list(mocked().pages({"query.cond": "NSCLC"}))

    assert [len(p.studies) for p in pages] == [2, 0]
    assert route.call_count == 2


def test_a_page_without_a_token_ends_paging(api: respx.MockRouter,
                                            mocked: Callable[..., CtGovClient]) -> None:
    route = serve_pages(api, {None: real_response(NSCLC_ONLY_PAGE)})

    pages = list(mocked().pages({"query.cond": "NSCLC"}))

    assert route.call_count == 1
    assert ids(pages) == ["NCT06382129", "NCT06604689"]
    assert pages[0].total_count == 2 and pages[0].next_token is None


def test_real_page_tokens_are_passed_back_verbatim_with_the_original_parameters(
        api: respx.MockRouter, mocked: Callable[..., CtGovClient]) -> None:
    page_1, page_2 = real_json(PHELAN_PAGE_1), real_json(PHELAN_PAGE_2)
    route = serve_pages(api, {None: page_1,
                              page_1["nextPageToken"]: page_2,
                              page_2["nextPageToken"]: {"studies": []}})
    received: list[Page] = []

    # The real pair announces 21 studies; the registry then ends early with an empty page.
    with pytest.raises(IncompleteSync, match="announced 21 studies but sent 10"):
        for page in mocked(page_size=5).pages(PHELAN_QUERY):
            received.append(page)

    assert [len(p.studies) for p in received] == [5, 5, 0]  # every page came before the error
    first, second, third = sent_params(route)
    assert first == {**PHELAN_QUERY, "pageSize": "5", "countTotal": "true"}
    assert second == {**PHELAN_QUERY, "pageSize": "5",
                      "pageToken": "ZVt07cGHkvI2wRk2CJf6_LLq14bEL8swd7KrgP4dnDeTsPkw"}
    assert third == {**PHELAN_QUERY, "pageSize": "5",
                     "pageToken": "ZVt07cGHkvI2wRk2CJf6_LLq14bEL8swd7KrgP4bmjeauvk_IQ"}


def test_a_repeated_page_token_raises_incomplete_sync_instead_of_looping(
        api: respx.MockRouter, mocked: Callable[..., CtGovClient]) -> None:
    page_1, page_2 = real_json(PHELAN_PAGE_1), real_json(PHELAN_PAGE_2)
    token = page_1["nextPageToken"]
    route = serve_pages(api, {None: page_1, token: {**page_2, "nextPageToken": token}})
    received: list[Page] = []

    with pytest.raises(IncompleteSync, match="repeated a page token on page 2"):
        for page in mocked(page_size=5).pages(PHELAN_QUERY):
            received.append(page)

    assert route.call_count == 2
    assert len(received) == 2


def test_fewer_studies_than_total_count_raises_incomplete_sync_after_the_last_page(
        local: Callable[..., CtGovClient], registry: Registry) -> None:
    # A study withdrawn from the results between page 1 and page 2 shifts the offsets, so
    # one study is never sent although it was counted in totalCount.
    received: list[Page] = []
    with pytest.raises(IncompleteSync, match="announced 7 studies but sent 6"):
        for page in local(page_size=3).pages({"query.cond": "myositis"}):
            received.append(page)
            if page.number == 1:
                registry.drop("NCT02803307")

    assert [len(p.studies) for p in received] == [3, 3, 0]
    assert len(registry.requests("/studies")) == 3


def test_more_studies_than_total_count_also_raises_incomplete_sync(
        api: respx.MockRouter, mocked: Callable[..., CtGovClient]) -> None:
    serve_pages(api, {None: {**real_json(NSCLC_ONLY_PAGE), "totalCount": 1}})

    with pytest.raises(IncompleteSync, match="announced 1 studies but sent 2"):
        list(mocked().pages({"query.cond": "NSCLC"}))


def test_a_missing_total_count_on_the_first_page_raises_malformed_response(
        api: respx.MockRouter, mocked: Callable[..., CtGovClient]) -> None:
    route = serve_pages(api, {None: real_response(NO_TOTAL_PAGE)})  # real, no totalCount
    client = mocked()

    with pytest.raises(MalformedResponse, match="did not return totalCount"):
        next(client.pages({"query.cond": "myositis"}))

    assert route.call_count == 1
    assert client.requests_made == 1


def test_a_duplicate_nct_id_across_pages_raises_incomplete_sync(
        local: Callable[..., CtGovClient], registry: Registry) -> None:
    # A study posted between page 1 and page 2 sorts first and pushes page 1's last study
    # onto page 2, so it arrives twice.
    newcomer = registry.studies.pop("NCT00874328")
    received: list[Page] = []
    with pytest.raises(IncompleteSync, match="NCT02248896 came twice \\(page 2\\)"):
        for page in local(page_size=3).pages({"query.cond": "myositis"}):
            received.append(page)
            registry.put(newcomer)

    assert len(received) == 1  # the page with the duplicate was never handed out


def _without_nct_id(study: dict[str, Any]) -> dict[str, Any]:
    del study["protocolSection"]["identificationModule"]["nctId"]
    return study


def _with_nct_id(value: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def edit(study: dict[str, Any]) -> dict[str, Any]:
        study["protocolSection"]["identificationModule"]["nctId"] = value
        return study
    return edit


@pytest.mark.parametrize("spoil", [
    pytest.param(_without_nct_id, id="nctId missing"),
    pytest.param(_with_nct_id("NCT0407823"), id="seven digits"),
    pytest.param(_with_nct_id("nct04078230"), id="lower case"),
    pytest.param(_with_nct_id(4078230), id="a number"),
    pytest.param(lambda study: {"hasResults": study["hasResults"]}, id="no protocolSection"),
])
def test_a_study_without_a_valid_nct_id_raises_malformed_response(
        api: respx.MockRouter, mocked: Callable[..., CtGovClient],
        spoil: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    good, bad = load_study("NCT00874328"), spoil(copy.deepcopy(load_study("NCT04078230")))
    serve_pages(api, {None: {"totalCount": 3, "studies": [good], "nextPageToken": "AAA"},
                      "AAA": {"studies": [load_study("NCT00987428"), bad]}})
    client = mocked(page_size=1)
    received: list[Page] = []

    with pytest.raises(MalformedResponse, match=re.escape(
            "A study on page 2 has no valid protocolSection.identificationModule.nctId")):
        for page in client.pages({"query.cond": "myositis"}):
            received.append(page)

    assert ids(received) == ["NCT00874328"]  # page 2 was never handed out
    assert client.requests_made == 2  # a bad record is final, not retried


def test_a_page_without_a_studies_list_raises_malformed_response(
        api: respx.MockRouter, mocked: Callable[..., CtGovClient]) -> None:
    serve_pages(api, {None: real_response(VERSION)})  # a real JSON object of another shape

    with pytest.raises(MalformedResponse, match="no 'studies' list"):
        list(mocked().pages({"query.cond": "myositis"}))


# --- politeness ----------------------------------------------------------------------------


def test_user_agent_names_tracker_and_its_version(local: Callable[..., CtGovClient],
                                                  registry: Registry) -> None:
    client = local()
    list(client.pages({"query.cond": "myositis"}))
    client.version()

    agents = {h["user-agent"] for h in headers_sent(registry)}
    assert len(agents) == 1
    (agent,) = agents
    assert agent.startswith(f"tracker/{__version__} ")
    assert "python-httpx/" not in agent  # not httpx's anonymous default


def test_gzip_is_requested_and_gzip_bodies_are_decoded(local: Callable[..., CtGovClient],
                                                       registry: Registry) -> None:
    client = local(page_size=4)
    encodings: list[str | None] = []
    client.http.event_hooks = {
        "response": [lambda response: encodings.append(response.headers.get("Content-Encoding"))]
    }

    pages = list(client.pages({"query.cond": "myositis"}))

    assert all("gzip" in h["accept-encoding"] for h in headers_sent(registry))
    assert encodings == ["gzip", "gzip"]  # the fake API really compressed both pages
    assert {s.nct_id: s.record() for p in pages for s in p.studies} == all_studies()


def test_the_fake_api_gzips_an_answer_once_yet_never_serves_a_stale_one(
        local: Callable[..., CtGovClient], fake_api: FakeApi, registry: Registry) -> None:
    body = b'{"studies":[]}'
    assert fake_api.gzipped(body) is fake_api.gzipped(body)  # compressed once, then kept
    assert gzip.decompress(fake_api.gzipped(body)) == body
    client = local(page_size=10)
    first = next(client.pages({"query.cond": "myositis"}))
    edited = copy.deepcopy(registry.studies["NCT04078230"])
    edited["protocolSection"]["identificationModule"]["briefTitle"] = "Edited"
    registry.put(edited)

    again = next(client.pages({"query.cond": "myositis"}))

    titles = {s.nct_id: s.record()["protocolSection"]["identificationModule"]["briefTitle"]
              for s in again.studies}
    assert titles["NCT04078230"] == "Edited"
    assert len(first.studies) == len(again.studies) == 7


def test_gzip_response_from_respx_is_decoded(api: respx.MockRouter,
                                             mocked: Callable[..., CtGovClient]) -> None:
    api.get("/version").mock(return_value=httpx.Response(
        200, content=gzip.compress(real_response(VERSION)),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"}))

    assert mocked().version() == ApiVersion("2.0.5", "2026-08-14T09:00:05")


def test_a_page_of_unknown_length_is_read_whole_however_it_is_cut(
        api: respx.MockRouter, mocked: Callable[..., CtGovClient]) -> None:
    """No Content-Length (chunked), and far more bytes than were set aside for the body."""
    studies = list(all_studies().values()) * 3
    for number, study in enumerate(studies):
        study = copy.deepcopy(study)
        study["protocolSection"]["identificationModule"]["nctId"] = f"NCT9{number:07d}"
        studies[number] = study
    body = json.dumps({"totalCount": len(studies), "studies": studies}).encode()
    api.get("/studies").mock(return_value=httpx.Response(
        200, content=iter([body[i:i + 777] for i in range(0, len(body), 777)]),
        headers={"Content-Type": "application/json"}))

    (page,) = mocked(page_size=1000).pages({"query.cond": "myositis"})

    assert [s.record() for s in page.studies] == studies


# The next three read a fake clock that the caller moves between pages: each request waits
# for the caller (look_ahead=False), or the thread asking ahead would read it mid-move.

def test_the_client_sleeps_the_remaining_request_interval_between_requests(
        fake_api: FakeApi) -> None:
    clock = FakeClock()
    client = CtGovClient(make_settings(fake_api.base_url, page_size=3, request_interval=1.0),
                         sleep=clock.sleep, clock=clock, jitter=lambda: 0.5, look_ahead=False)
    started: list[float] = []
    client.http.event_hooks = {"request": [lambda request: started.append(clock.now)]}

    for _page in client.pages({"query.cond": "myositis"}):
        clock.now += 0.4  # the caller spends 0.4 s on each page

    assert clock.slept == pytest.approx([0.6, 0.6])  # never before the first request
    assert started[1] - started[0] >= 1.0 and started[2] - started[1] >= 1.0
    client.close()


def test_no_sleep_when_the_interval_has_already_passed(fake_api: FakeApi) -> None:
    clock = FakeClock()
    client = CtGovClient(make_settings(fake_api.base_url, page_size=3, request_interval=1.0),
                         sleep=clock.sleep, clock=clock, look_ahead=False)

    for _page in client.pages({"query.cond": "myositis"}):
        clock.now += 1.5

    assert clock.slept == []
    assert client.requests_made == 3
    client.close()


def test_the_request_interval_also_separates_a_retry_from_the_failed_attempt(
        fake_api: FakeApi, registry: Registry) -> None:
    clock = FakeClock()
    registry.fail(status=429, headers={"Retry-After": "0"})
    client = CtGovClient(make_settings(fake_api.base_url, request_interval=1.0),
                         sleep=clock.sleep, clock=clock, look_ahead=False)

    client.version()
    next(client.pages({"query.cond": "myositis"}))

    # version, then the 429 (1 s later), the Retry-After 0 wait, then 1 s before the retry
    assert clock.slept == pytest.approx([1.0, 0.0, 1.0])
    client.close()


def test_the_next_page_is_asked_for_while_the_caller_reads_this_one(
        local: Callable[..., CtGovClient], registry: Registry) -> None:
    client = local(page_size=3)
    asked = threading.Semaphore(0)
    client.http.event_hooks = {"request": [lambda request: asked.release()]}
    early: list[bool] = []

    for page in client.pages({"query.cond": "myositis"}):
        assert asked.acquire(timeout=5)  # this page's own request
        if page.next_token:  # the next one goes out before this page is let go
            early.append(asked.acquire(timeout=5))
            asked.release()

    assert early == [True, True]
    assert client.requests_made == len(registry.requests("/studies")) == 3


def test_a_page_asked_for_ahead_is_let_go_when_the_caller_stops(
        local: Callable[..., CtGovClient], registry: Registry) -> None:
    client = local(page_size=3)
    asked = threading.Semaphore(0)
    client.http.event_hooks = {"request": [lambda request: asked.release()]}
    pages = client.pages({"query.cond": "myositis"})

    next(pages)
    assert asked.acquire(timeout=5) and asked.acquire(timeout=5)  # page 1, and page 2 ahead
    pages.close()  # the caller stops after one page

    assert client.requests_made == 2
    assert len(list(client.pages({"query.cond": "myositis"}))) == 3  # the client works on


@pytest.mark.slow
def test_requests_are_really_spaced_by_the_request_interval(fake_api: FakeApi) -> None:
    client = CtGovClient(make_settings(fake_api.base_url, page_size=3, request_interval=0.2))
    started: list[float] = []
    client.http.event_hooks = {"request": [lambda request: started.append(time.monotonic())]}

    list(client.pages({"query.cond": "myositis"}))

    assert len(started) == 3
    assert min(b - a for a, b in itertools.pairwise(started)) >= 0.2
    client.close()


def test_explicit_timeouts_are_set_on_the_http_client() -> None:
    client = CtGovClient(make_settings(timeout=42))

    timeout = client.http.timeout
    assert timeout.read == 42 and timeout.write == 42 and timeout.pool == 42
    assert timeout.connect is not None and 0 < timeout.connect <= 60
    client.close()


@pytest.mark.slow
def test_a_slow_answer_is_abandoned_after_the_timeout_and_retried(
        local: Callable[..., CtGovClient], registry: Registry, sleeps: Sleeps) -> None:
    registry.fail(match=lambda path, params: path.endswith("/version"), delay=1.5)
    client = local(timeout=0.3)
    problems: list[str] = []
    client.on_retry = problems.append

    started = time.monotonic()
    version = client.version()
    elapsed = time.monotonic() - started

    # Let the fake server finish writing to the abandoned socket while output is captured.
    time.sleep(max(0.0, 1.5 + 0.3 - elapsed))
    assert elapsed < 1.0  # did not wait for the 1.5 s answer
    assert version.data_timestamp == registry.data_timestamp
    assert client.requests_made == 2
    assert sleeps == [0.75]
    assert len(problems) == 1 and "ReadTimeout" in problems[0]


# --- retries -------------------------------------------------------------------------------


def test_a_503_then_success_is_retried_with_exponential_backoff(
        api: respx.MockRouter, mocked: Callable[..., CtGovClient], sleeps: Sleeps) -> None:
    route = api.get("/version").mock(side_effect=[
        httpx.Response(503, text="Service Unavailable")] * 3 + [
        json_response(real_response(VERSION))])
    client = mocked(max_retries=5, jitter=lambda: 0.5)

    assert client.version().api_version == "2.0.5"

    assert sleeps == [0.75, 1.5, 3.0]  # doubles each time
    assert route.call_count == 4
    assert client.requests_made == 4


@pytest.mark.parametrize(("jitter", "expected"), [
    (0.0, [0.5, 1.0, 2.0, 4.0]),  # lower bound: half the nominal delay
    (0.25, [0.625, 1.25, 2.5, 5.0]),
    (1.0, [1.0, 2.0, 4.0, 8.0]),  # upper bound: the nominal delay
])
def test_backoff_jitter_stays_within_half_and_all_of_the_nominal_delay(
        api: respx.MockRouter, mocked: Callable[..., CtGovClient], sleeps: Sleeps,
        jitter: float, expected: list[float]) -> None:
    api.get("/version").mock(return_value=httpx.Response(502, text="Bad Gateway"))

    with pytest.raises(RetriesExhausted):
        mocked(max_retries=4, jitter=lambda: jitter).version()

    assert sleeps == pytest.approx(expected)


def test_random_jitter_is_within_bounds_and_backoff_is_capped(
        api: respx.MockRouter, sleeps: Sleeps) -> None:
    api.get("/version").mock(return_value=httpx.Response(500, text="Internal Server Error"))
    client = CtGovClient(make_settings(max_retries=9), sleep=sleeps,
                         jitter=random.Random(20261122).random)

    with pytest.raises(RetriesExhausted):
        client.version()

    assert len(sleeps) == 9
    for attempt, slept in enumerate(sleeps):
        nominal = min(BACKOFF_CAP, 2.0**attempt)
        assert nominal / 2 <= slept <= nominal
    assert max(sleeps) <= BACKOFF_CAP
    assert len(set(sleeps[-3:])) == 3  # really jittered, not a fixed value
    client.close()


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_seconds_is_slept_exactly(local: Callable[..., CtGovClient],
                                              registry: Registry, sleeps: Sleeps,
                                              status: int) -> None:
    registry.fail(status=status, headers={"Retry-After": "7"}, body=b"Too Many Requests")
    client = local(jitter=lambda: 0.5)

    pages = list(client.pages({"query.cond": "myositis"}))

    assert sleeps == [7.0]
    assert ids(pages) == FIXTURE_IDS
    assert client.requests_made == 4


@pytest.mark.parametrize(("cap", "header", "expected"), [
    (300.0, "86400", 300.0),
    (120.0, "121", 120.0),
    (120.0, "120", 120.0),
    (0.0, "5", 0.0),
])
def test_retry_after_larger_than_the_cap_is_capped(api: respx.MockRouter,
                                                   mocked: Callable[..., CtGovClient],
                                                   sleeps: Sleeps, cap: float, header: str,
                                                   expected: float) -> None:
    api.get("/version").mock(side_effect=[
        httpx.Response(429, text="Too Many Requests", headers={"Retry-After": header}),
        json_response(real_response(VERSION))])

    mocked(retry_after_cap=cap).version()

    assert sleeps == [expected]


def test_retry_after_as_an_http_date_is_parsed(api: respx.MockRouter,
                                               mocked: Callable[..., CtGovClient],
                                               sleeps: Sleeps) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    api.get("/version").mock(side_effect=[
        httpx.Response(503, text="Service Unavailable", headers={"Retry-After": when}),
        json_response(real_response(VERSION))])

    mocked().version()

    assert len(sleeps) == 1
    assert 85 < sleeps[0] <= 90


def test_retry_after_as_an_http_date_is_capped_and_a_past_date_means_now(
        api: respx.MockRouter, mocked: Callable[..., CtGovClient], sleeps: Sleeps) -> None:
    far = format_datetime(datetime.now(UTC) + timedelta(days=2), usegmt=True)
    api.get("/version").mock(side_effect=[
        httpx.Response(429, headers={"Retry-After": far}),
        httpx.Response(429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}),
        json_response(real_response(VERSION))])

    mocked(retry_after_cap=300).version()

    assert sleeps == [300.0, 0.0]


def test_an_unparseable_retry_after_falls_back_to_backoff(
        api: respx.MockRouter, mocked: Callable[..., CtGovClient], sleeps: Sleeps) -> None:
    api.get("/version").mock(side_effect=[
        httpx.Response(503, headers={"Retry-After": "soon"}),
        json_response(real_response(VERSION))])

    mocked(jitter=lambda: 0.5).version()

    assert sleeps == [0.75]


@pytest.mark.parametrize("fault", [
    httpx.ConnectError("[Errno 111] Connection refused"),
    httpx.ConnectTimeout("timed out"),
    httpx.ReadTimeout("The read operation timed out"),
    httpx.RemoteProtocolError("Server disconnected without sending a response."),
], ids=lambda fault: type(fault).__name__)
def test_network_faults_are_retried(api: respx.MockRouter, mocked: Callable[..., CtGovClient],
                                    sleeps: Sleeps, fault: Exception) -> None:
    route = api.get("/version").mock(side_effect=[fault, json_response(
        real_response(VERSION))])
    client = mocked(jitter=lambda: 0.0)
    problems: list[str] = []
    client.on_retry = problems.append

    assert client.version().data_timestamp == "2026-08-14T09:00:05"

    assert route.call_count == 2
    assert sleeps == [0.5]
    assert type(fault).__name__ in problems[0]


def test_a_refused_connection_to_a_real_socket_is_retried_then_exhausted(
        sleeps: Sleeps) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nobody listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = CtGovClient(make_settings(f"http://127.0.0.1:{port}/api/v2", max_retries=2),
                         sleep=sleeps, jitter=lambda: 0.5)

    with pytest.raises(RetriesExhausted, match="after 3 attempts \\(last: ConnectError"):
        client.version()

    assert client.requests_made == 3
    assert sleeps == [0.75, 1.5]
    client.close()


def test_retries_exhausted_names_the_last_problem(api: respx.MockRouter,
                                                  mocked: Callable[..., CtGovClient],
                                                  sleeps: Sleeps) -> None:
    api.get("/studies").mock(side_effect=[
        httpx.Response(503, text="Service Unavailable"),
        httpx.ReadTimeout("The read operation timed out"),
        httpx.Response(504, text="Gateway Timeout")])
    client = mocked(max_retries=2)

    with pytest.raises(RetriesExhausted) as caught:
        list(client.pages({"query.cond": "myositis"}))

    message = str(caught.value)
    assert "page 1 of studies" in message
    assert "after 3 attempts (last: HTTP 504)" in message
    assert DEFAULT_BASE_URL in message
    assert len(sleeps) == 2  # no pointless sleep after the final attempt
    assert client.requests_made == 3


def test_without_retries_the_message_counts_one_attempt(api: respx.MockRouter,
                                                        mocked: Callable[..., CtGovClient],
                                                        sleeps: Sleeps) -> None:
    api.get("/studies").mock(return_value=httpx.Response(503, text="Service Unavailable"))
    client = mocked(max_retries=0)

    with pytest.raises(RetriesExhausted, match=r"after 1 attempt \(last: HTTP 503\)"):
        list(client.pages({"query.cond": "myositis"}))
    assert sleeps == [] and client.requests_made == 1


def test_a_400_is_never_retried_and_carries_the_servers_plain_text_message(
        local: Callable[..., CtGovClient], registry: Registry, sleeps: Sleeps) -> None:
    client = local()

    with pytest.raises(ApiError) as caught:
        list(client.pages({"query.cond": "myositis", "bogusParam": "1"}))

    error = caught.value
    assert error.status == 400
    assert error.api_message == "`bogusParam` is unknown parameter"
    assert "`bogusParam` is unknown parameter" in str(error)
    assert error.url.endswith("/api/v2/studies")
    assert client.requests_made == 1 and len(registry.log) == 1
    assert sleeps == []


def test_a_400_from_respx_keeps_the_real_error_text(api: respx.MockRouter,
                                                    mocked: Callable[..., CtGovClient]) -> None:
    text = "Error parsing query in advanced filter: Unknown area name: 'X'"
    route = api.get("/studies").mock(return_value=httpx.Response(
        400, text=text, headers={"Content-Type": "text/plain"}))

    with pytest.raises(ApiError) as caught:
        list(mocked().pages({"query.cond": "myositis", "filter.advanced": "AREA[X]1"}))

    assert caught.value.api_message == text
    assert route.call_count == 1


def test_a_404_is_never_retried_and_carries_the_servers_message(
        local: Callable[..., CtGovClient], registry: Registry, sleeps: Sleeps) -> None:
    registry.fail(match=lambda path, params: path.endswith("/version"), status=404,
                  body=b"Not Found", times=5)
    client = local()

    with pytest.raises(ApiError) as caught:
        client.version()

    assert caught.value.status == 404
    assert caught.value.api_message == "Not Found"
    assert client.requests_made == 1
    assert sleeps == []


@pytest.mark.parametrize("status", [501, 505, 520])
def test_every_5xx_is_retried_not_reported_as_a_refusal(
        api: respx.MockRouter, mocked: Callable[..., CtGovClient], sleeps: Sleeps,
        status: int) -> None:
    # errors.py: ApiError is "a 4xx other than 429"; 5xx belong to RetriesExhausted.
    route = api.get("/version").mock(return_value=httpx.Response(status, text="upstream"))

    with pytest.raises(RetriesExhausted, match=f"last: HTTP {status}"):
        mocked(max_retries=2).version()

    assert route.call_count == 3


def test_malformed_json_is_retried(local: Callable[..., CtGovClient], registry: Registry,
                                   sleeps: Sleeps) -> None:
    registry.fail(status=200, body=b'{"totalCount":7,"studies":[{"protocolSection":')
    client = local()

    pages = list(client.pages({"query.cond": "myositis"}))

    assert ids(pages) == FIXTURE_IDS
    assert client.requests_made == 4
    assert sleeps == [0.75]


def test_persistently_malformed_json_raises_malformed_response(
        local: Callable[..., CtGovClient], registry: Registry, sleeps: Sleeps) -> None:
    registry.fail(status=200, body=b"<html>Gateway error</html>", times=10)
    client = local(max_retries=2)

    with pytest.raises(MalformedResponse, match="malformed JSON for page 1 of studies"):
        list(client.pages({"query.cond": "myositis"}))

    assert client.requests_made == 3 and len(registry.log) == 3
    assert len(sleeps) == 2


def test_a_truncated_body_is_retried(local: Callable[..., CtGovClient], registry: Registry,
                                     sleeps: Sleeps) -> None:
    registry.fail(truncate=True)
    client = local()

    pages = list(client.pages({"query.cond": "myositis"}))

    assert ids(pages) == FIXTURE_IDS
    assert client.requests_made == 4
    assert len(sleeps) == 1


def test_a_persistently_truncated_body_raises_retries_exhausted(
        local: Callable[..., CtGovClient], registry: Registry) -> None:
    registry.fail(truncate=True, times=10)
    client = local(max_retries=1)

    with pytest.raises(RetriesExhausted, match="after 2 attempts \\(last: RemoteProtocolError"):
        list(client.pages({"query.cond": "myositis"}))

    assert client.requests_made == 2


def _corrupt_gzip(request: httpx.Request) -> httpx.Response:
    # Content-Encoding says gzip but the bytes are not: httpx raises DecodingError on read.
    return httpx.Response(200, stream=httpx.ByteStream(b'{"apiVersion":"2.0.5"}'),
                          headers={"Content-Type": "application/json",
                                   "Content-Encoding": "gzip"})


def test_a_body_that_fails_to_decompress_is_retried(api: respx.MockRouter,
                                                     mocked: Callable[..., CtGovClient],
                                                     sleeps: Sleeps) -> None:
    calls = iter([_corrupt_gzip, lambda request: json_response(real_response(VERSION))])
    api.get("/version").mock(side_effect=lambda request: next(calls)(request))
    client = mocked()

    assert client.version().api_version == "2.0.5"
    assert client.requests_made == 2
    assert sleeps == [0.75]


def test_a_body_that_never_decompresses_ends_as_a_fetch_error(
        api: respx.MockRouter, mocked: Callable[..., CtGovClient]) -> None:
    api.get("/version").mock(side_effect=_corrupt_gzip)
    client = mocked(max_retries=1)

    with pytest.raises(FetchError, match="DecodingError"):
        client.version()

    assert client.requests_made == 2


def test_requests_made_counts_every_attempt(local: Callable[..., CtGovClient],
                                            registry: Registry) -> None:
    registry.fail(status=503, times=2)  # the first page twice
    registry.fail(match=lambda path, params: "pageToken" in params, status=502)
    client = local(max_retries=3)

    client.version()
    pages = list(client.pages({"query.cond": "myositis"}))

    assert len(pages) == 3
    assert client.requests_made == 1 + 3 + 2 + 1
    assert client.requests_made == len(registry.log)


# --- version() -----------------------------------------------------------------------------


def test_version_parses_the_real_version_answer(api: respx.MockRouter,
                                                mocked: Callable[..., CtGovClient]) -> None:
    route = api.get("/version").mock(return_value=json_response(real_response(VERSION)))

    version = mocked().version()

    assert version == ApiVersion(api_version="2.0.5", data_timestamp="2026-08-14T09:00:05")
    assert route.call_count == 1
    assert dict(route.calls[0].request.url.params) == {}


def test_version_from_the_local_fake_api(local: Callable[..., CtGovClient],
                                         registry: Registry) -> None:
    registry.data_timestamp = "2026-11-21T09:00:05"

    assert local().version() == ApiVersion("2.0.5", "2026-11-21T09:00:05")
    assert [path for path, _, _ in registry.log] == ["/api/v2/version"]


def _version_without_timestamp() -> Any:
    body = real_json(VERSION)
    del body["dataTimestamp"]
    return body


def _version_with_numeric_timestamp() -> Any:
    return {**real_json(VERSION), "dataTimestamp": 20260814}


@pytest.mark.parametrize("body", [
    pytest.param(_version_without_timestamp, id="dataTimestamp missing"),
    pytest.param(_version_with_numeric_timestamp, id="dataTimestamp not a string"),
    pytest.param(lambda: real_json(ENUMS), id="a JSON array (the real /studies/enums)"),
])
def test_version_without_a_data_timestamp_raises_malformed_response(
        api: respx.MockRouter, mocked: Callable[..., CtGovClient],
        body: Callable[[], Any]) -> None:
    api.get("/version").mock(return_value=json_response(body()))
    client = mocked()

    with pytest.raises(MalformedResponse, match="did not return a dataTimestamp"):
        client.version()

    assert client.requests_made == 1


def test_an_unexpected_success_status_is_a_clear_fetch_error(
        local: Callable[..., CtGovClient], registry: Registry, sleeps: Sleeps) -> None:
    registry.fail(match=lambda path, params: path.endswith("/version"), status=204, body=b"")
    client = local()

    with pytest.raises(FetchError, match="unexpected HTTP 204") as caught:
        client.version()

    assert not isinstance(caught.value, ApiError)
    assert client.requests_made == 1


def test_a_redirect_loop_is_a_clear_fetch_error(api: respx.MockRouter,
                                                mocked: Callable[..., CtGovClient]) -> None:
    api.get("/version").mock(return_value=httpx.Response(
        301, headers={"Location": f"{DEFAULT_BASE_URL}/version"}))

    with pytest.raises(FetchError, match="redirected the API version in a loop"):
        mocked().version()


@examples(max_examples=400, deadline=None)
@given(st.text(st.characters() | st.sampled_from("\x00\x01\x08\x0b\x1b\x1f\t\n\r\ud800\udfff")))
def test_a_body_that_could_hold_an_unsafe_character_is_always_cleaned(text: str) -> None:
    """Pages skip shape.clean only when their bytes cannot decode to an UNSAFE character."""
    if UNSAFE.search(text):
        assert may_be_unsafe(json.dumps({"t": text}).encode())
        try:  # a raw surrogate is not UTF-8: such a body is refused as malformed JSON
            raw = json.dumps({"t": text}, ensure_ascii=False).encode()
        except UnicodeEncodeError:
            return
        assert may_be_unsafe(raw)


def test_a_page_with_a_control_character_is_cleaned(registry: Registry, fake_api: FakeApi,
                                                    settings: Settings) -> None:
    study = copy.deepcopy(next(iter(registry.studies.values())))
    study["protocolSection"]["identificationModule"]["briefTitle"] = "Bell\x07 and NUL\x00"
    registry.put(study)
    client = CtGovClient(settings)
    titles = [s.record()["protocolSection"]["identificationModule"]["briefTitle"]
              for page in client.pages({}) for s in page.studies]
    client.close()
    assert "Bell and NUL" in titles


def test_a_page_is_split_into_study_bytes_with_id_and_update_date_read(
        local: Callable[..., CtGovClient]) -> None:
    pages = list(local(page_size=3).pages({"query.cond": "myositis"}))

    studies = [s for p in pages for s in p.studies]
    assert all(isinstance(s.raw, bytes | msgspec.Raw) for s in studies)  # not decoded yet
    for study in studies:
        record = study.record()
        assert record == all_studies()[study.nct_id]
        assert study.last_update_posted == (
            record["protocolSection"]["statusModule"]["lastUpdatePostDateStruct"]["date"])


@pytest.mark.parametrize("odd", [
    pytest.param({"statusModule": ["not", "an", "object"]}, id="statusModule a list"),
    pytest.param({"statusModule": {"lastUpdatePostDateStruct": {"date": 20261105}}},
                 id="date a number"),
])
def test_a_study_of_another_shape_keeps_its_id_and_has_no_update_date(
        api: respx.MockRouter, mocked: Callable[..., CtGovClient], odd: dict[str, Any]) -> None:
    study = copy.deepcopy(load_study("NCT04078230"))
    study["protocolSection"].update(odd)
    serve_pages(api, {None: {"totalCount": 1, "studies": [study]}})

    [page] = list(mocked().pages({"query.cond": "myositis"}))

    [got] = page.studies
    assert (got.nct_id, got.last_update_posted, got.record()) == ("NCT04078230", None, study)


def test_a_page_msgspec_refuses_is_read_as_the_standard_library_reads_it(
        api: respx.MockRouter, mocked: Callable[..., CtGovClient]) -> None:
    study = load_study("NCT04078230")
    body = json.dumps({"totalCount": 1, "studies": [{**study, "oddity": float("nan")}]})
    serve_pages(api, {None: body.encode()})

    [page] = list(mocked().pages({"query.cond": "myositis"}))

    record = page.studies[0].record()
    assert record["protocolSection"] == study["protocolSection"]
    assert repr(record["oddity"]) == "nan"


def test_a_study_whose_text_is_not_utf8_is_a_malformed_response_when_read(
        api: respx.MockRouter, mocked: Callable[..., CtGovClient]) -> None:
    body = json.dumps({"totalCount": 1, "studies": [load_study("NCT04078230")]}).encode()
    body = body.replace(b'"briefSummary": "', b'"briefSummary": "\xff', 1)
    serve_pages(api, {None: body})

    [page] = list(mocked().pages({"query.cond": "myositis"}))

    with pytest.raises(MalformedResponse, match="NCT04078230 as malformed JSON"):
        page.studies[0].record()
