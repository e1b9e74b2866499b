"""A polite client for the ClinicalTrials.gov Data API v2.

Polite means: a User-Agent naming the product, gzip, explicit timeouts, at least
`request_interval` seconds between requests, and retries with exponential backoff and jitter
on network faults, 429 and 5xx (honouring a capped `Retry-After`). Any other 4xx is final and
its plain-text message reaches the user. Paging follows the API's rules exactly: every page
repeats the first request's parameters, a full last page may still carry a token, an empty
page ends, and a repeated token is an error.

A page is split, not decoded: each study stays as its bytes (a view into the page's body) with
its ID and update date read, and is decoded only when the sync handles it (`PageStudy.record`).
So a page costs its JSON, not a thousand records as Python objects. While the caller handles
a page, the request for the next one is already out (`look_ahead`), so the registry builds it
meanwhile; its body is read only once the caller is done with the page before.
"""

from __future__ import annotations

import email.utils
import json
import mmap
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
import msgspec

from tracker import __version__
from tracker.config import Settings
from tracker.errors import (
    ApiError,
    FetchError,
    IncompleteSync,
    MalformedResponse,
    RetriesExhausted,
    Stopped,
)
from tracker.record import Record, last_update_posted, loads
from tracker.shape import clean

USER_AGENT = f"tracker/{__version__} (myositis clinical-trials tracker; python-httpx)"
NCT_ID = re.compile(r"^NCT\d{8}$")
BACKOFF_BASE = 1.0
BACKOFF_CAP = 60.0
RETRYABLE_STATUS = {429, *range(500, 600)}  # 429 and every 5xx (errors.py: ApiError is 4xx)
# What in a JSON body can decode to a character shape.UNSAFE removes: a raw C0 control byte, or
# an escape of one (\u0000-\u001f, \b, \f) or of a surrogate (\ud800-\udfff). A body without
# any cannot need cleaning; a match (even "\\u0009", an escaped backslash) only means cleaning.
# Two scans, each at memory speed: one regular expression over all three would be 15x slower.
UNSAFE_ESCAPE = re.compile(rb"\\(?:u00[01]|[uU][dD][89a-fA-F]|[bf])")
NOT_CONTROL = bytes(b for b in range(256) if b >= 0x20 or b in b"\t\n\r")
GZIP_RATIO = 8  # room reserved for a body, times its gzipped size (pages unzip to about 5 times)
T = TypeVar("T")


def may_be_unsafe(raw: bytes | msgspec.Raw) -> bool:
    """Whether JSON bytes may decode to a character shape.UNSAFE removes (see above)."""
    data = memoryview(raw)
    return bool(UNSAFE_ESCAPE.search(data)) or bool(bytes(data).translate(None, NOT_CONTROL))



@dataclass(frozen=True)
class ApiVersion:
    api_version: str
    data_timestamp: str


@dataclass(frozen=True, slots=True)
class PageStudy:
    """One study of a page, undecoded: its ID and update date are read, its record is still
    the bytes the API sent (a view into the page's body). `record()` decodes it."""

    nct_id: str
    last_update_posted: str | None  # None unless the record holds the date as text
    raw: bytes | msgspec.Raw
    unsafe: bool = False  # its bytes may hold a character shape.clean removes

    def record(self) -> Record:
        """The record, decoded now (and cleaned if it needs it); MalformedResponse if its
        bytes are not JSON after all (invalid UTF-8 inside a text the split skipped)."""
        try:
            record: Record = loads(self.raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise MalformedResponse(
                f"ClinicalTrials.gov sent {self.nct_id} as malformed JSON ({error}). "
                "Nothing was changed."
            ) from error
        return clean(record) if self.unsafe else record


@dataclass
class Page:
    number: int
    studies: list[PageStudy]
    total_count: int | None
    next_token: str | None


# The few fields a page's split reads of each study; msgspec skips the rest without building
# it. A record whose shape differs is decoded whole instead, and judged as before.
class _Ident(msgspec.Struct):
    nctId: Any = None


class _Date(msgspec.Struct):
    date: Any = None


class _Status(msgspec.Struct):
    lastUpdatePostDateStruct: _Date | None = None


class _Protocol(msgspec.Struct):
    identificationModule: _Ident | None = None
    statusModule: _Status | None = None


class _Head(msgspec.Struct):
    protocolSection: _Protocol | None = None


class _Envelope(msgspec.Struct):
    studies: list[msgspec.Raw] | None = None
    totalCount: Any = None
    nextPageToken: Any = None


_HEAD = msgspec.json.Decoder(_Head)
_ENVELOPE = msgspec.json.Decoder(_Envelope)


@dataclass
class CtGovClient:
    """Talks to one API base URL; `sleep`, `clock` and `jitter` are injectable for tests."""

    settings: Settings
    http: httpx.Client | None = None
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    jitter: Callable[[], float] = random.random
    on_retry: Callable[[str], None] | None = None
    stop: threading.Event | None = None  # set by a shutdown: no new request, no more waiting
    # Ask for the next page while the caller reads this one (`_Ahead`). Off, each request
    # waits for the caller, so its timing is the caller's (tests with a fake clock need that).
    look_ahead: bool = True
    requests_made: int = 0
    _last_request: float | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.http is None:
            self.http = httpx.Client(
                headers={"User-Agent": USER_AGENT, "Accept-Encoding": "gzip"},
                timeout=httpx.Timeout(self.settings.timeout,
                                      connect=min(15.0, self.settings.timeout)),
                follow_redirects=True,
            )

    def close(self) -> None:
        if self.http is not None:
            self.http.close()

    def version(self) -> ApiVersion:
        body = self._get("/version", {}, "the API version", loads)
        if not isinstance(body, dict) or not isinstance(body.get("dataTimestamp"), str):
            raise MalformedResponse("ClinicalTrials.gov /version did not return a dataTimestamp.")
        return ApiVersion(str(body.get("apiVersion", "")), body["dataTimestamp"])

    def pages(self, params: dict[str, str]) -> Iterator[Page]:
        """Yield every page of `/studies` for `params`, then prove the set is complete.

        Raises IncompleteSync after the last page if the studies received do not match the
        first page's `totalCount` (requested with countTotal=true) or an ID came twice.
        While the caller reads a page, the next one is already asked for (`look_ahead`).
        """
        first = {**params, "pageSize": str(self.settings.page_size), "countTotal": "true"}
        later = {k: v for k, v in first.items() if k != "countTotal"}
        seen: set[str] = set()
        seen_tokens: set[str] = set()
        total: int | None = None
        token: str | None = None
        number = 0
        ahead: _Ahead | None = None
        try:
            while True:
                number += 1
                request = first if token is None else {**later, "pageToken": token}
                page = self._page(request, number, ahead)
                ahead = None
                if number == 1:
                    total = page.total_count
                self._check(page, seen)
                token, empty = page.next_token, not page.studies
                if self.look_ahead and token and not empty and token not in seen_tokens:
                    ahead = self._ask_ahead("/studies", {**later, "pageToken": token})
                yield page
                del page  # hold one page at a time, not two, while the next one downloads
                if empty or not token:
                    break
                if token in seen_tokens:
                    raise IncompleteSync(
                        f"ClinicalTrials.gov repeated a page token on page {number}; stopping "
                        "so as not to loop. Nothing was changed; run the sync again."
                    )
                seen_tokens.add(token)
        finally:
            if ahead is not None:  # the caller stopped reading: nobody wants that page
                ahead.abandon()
        if total is not None and len(seen) != total:
            raise IncompleteSync(
                f"ClinicalTrials.gov announced {total} studies but sent {len(seen)}. "
                "Nothing was changed; run the sync again."
            )

    @staticmethod
    def _check(page: Page, seen: set[str]) -> None:
        """The first page announces how many studies there are, and no study comes twice;
        adds the page's IDs to `seen`."""
        if page.number == 1 and page.total_count is None:
            raise MalformedResponse(
                "ClinicalTrials.gov did not return totalCount on the first page, "
                "so the sync could not be checked for completeness."
            )
        for study in page.studies:
            nct_id = study.nct_id
            if nct_id in seen:
                raise IncompleteSync(
                    f"{nct_id} came twice (page {page.number}); the registry probably "
                    "refreshed during the sync. Nothing was changed; run the sync again."
                )
            seen.add(nct_id)

    def _page(self, params: dict[str, str], number: int, ahead: _Ahead | None = None) -> Page:
        studies, total, token = self._get("/studies", params, f"page {number} of studies",
                                          lambda body: _split_page(body, number), ahead)
        if total is not None and (not isinstance(total, int) or isinstance(total, bool)):
            raise MalformedResponse(f"Page {number} has a non-numeric totalCount: {total!r}.")
        if token is not None and not isinstance(token, str):
            raise MalformedResponse(f"Page {number} has an invalid nextPageToken.")
        return Page(number, studies, total, token or None)

    def _get(self, path: str, params: dict[str, str], what: str,
             parse: Callable[[memoryview], T], ahead: _Ahead | None = None) -> T:
        """The body of a 200 answer, parsed; a body `parse` refuses as JSON is retried. The
        first attempt may be a request already sent for the same parameters (`ahead`)."""
        url = self.settings.base_url + path
        attempts = self.settings.max_retries + 1
        problem = ""
        for attempt in range(attempts):
            wait: float | None = None
            try:
                if ahead is not None and attempt == 0:
                    response = ahead.response()
                else:
                    response = self._open(url, params)
                body = self._read(response)
            except httpx.TooManyRedirects as error:
                raise FetchError(f"ClinicalTrials.gov redirected {what} in a loop ({error}); "
                                 "check CTGOV_BASE_URL.") from error
            except (httpx.TransportError, httpx.DecodingError) as error:
                problem = f"{type(error).__name__}: {error or 'no details'}"
            else:
                if response.status_code == 200:
                    try:
                        return parse(body)
                    except (json.JSONDecodeError, UnicodeDecodeError) as error:
                        problem = f"malformed JSON ({error})"
                        if attempt == attempts - 1:
                            raise MalformedResponse(
                                f"ClinicalTrials.gov sent malformed JSON for {what}: {error}. "
                                "Nothing was changed."
                            ) from error
                elif response.status_code in RETRYABLE_STATUS:
                    problem = f"HTTP {response.status_code}"
                    wait = self._retry_after(response)
                elif 400 <= response.status_code < 500:
                    raise ApiError(response.status_code, _plain_message(response, body), url)
                else:
                    raise FetchError(
                        f"ClinicalTrials.gov answered {what} with an unexpected HTTP "
                        f"{response.status_code}; nothing was changed."
                    )
            if attempt == attempts - 1:
                break
            delay = wait if wait is not None else self._backoff(attempt)
            if self.on_retry:
                self.on_retry(f"{what}: {problem}; retrying in {delay:.0f}s")
            self._wait(delay)
        raise RetriesExhausted(
            f"Could not fetch {what} from {self.settings.base_url} after {attempts} "
            f"attempt{'s' if attempts != 1 else ''} "
            f"(last: {problem}). Nothing was changed."
        )

    def _open(self, url: str, params: dict[str, str]) -> httpx.Response:
        """Send one request, `request_interval` after the last one ended, and read its answer
        up to the headers (`_read` reads the body)."""
        if self._last_request is not None:
            remaining = self._last_request + self.settings.request_interval - self.clock()
            if remaining > 0:
                self._wait(remaining)
        self._check_stop()
        self.requests_made += 1
        try:
            assert self.http is not None
            return self.http.send(self.http.build_request("GET", url, params=params),
                                  stream=True)
        except BaseException:
            self._last_request = self.clock()
            raise

    def _read(self, response: httpx.Response) -> memoryview:
        """The body, read into a buffer of our own (`_mapped`). httpx's `Response.content`
        would keep a page's body alive in a reference cycle (response <-> stream) until the
        garbage collector next runs, and joining its chunks briefly holds the body twice;
        either way memory would grow with the number of pages instead of staying flat."""
        try:
            hint = GZIP_RATIO * int(response.headers.get("Content-Length") or 0)
            return _mapped(response.iter_bytes(), hint)
        finally:
            response.close()
            self._last_request = self.clock()

    def _ask_ahead(self, path: str, params: dict[str, str]) -> _Ahead:
        """Send the request for the next page now, from a background thread, and return at
        once: the registry builds that page while the caller reads this one."""
        url = self.settings.base_url + path
        ahead = _Ahead(lambda: self._open(url, params))
        threading.Thread(target=ahead.run, name="next page", daemon=True).start()
        return ahead

    def _wait(self, seconds: float) -> None:
        if self.stop is None:
            self.sleep(seconds)
        else:
            self.stop.wait(seconds)
            self._check_stop()

    def _check_stop(self) -> None:
        if self.stop is not None and self.stop.is_set():
            raise Stopped("Stopped on request before the sync finished; nothing from it was "
                          "saved.")

    def _backoff(self, attempt: int) -> float:
        delay = min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt)
        return delay / 2 + self.jitter() * delay / 2

    def _retry_after(self, response: httpx.Response) -> float | None:
        raw = response.headers.get("Retry-After")
        if not raw:
            return None
        try:
            seconds = float(raw)
        except ValueError:
            try:
                parsed = email.utils.parsedate_to_datetime(raw)
            except (TypeError, ValueError):
                return None
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            seconds = (parsed - datetime.now(UTC)).total_seconds()
        return max(0.0, min(seconds, self.settings.retry_after_cap))


def _mapped(chunks: Iterable[bytes], size_hint: int) -> memoryview:
    """The chunks, joined in an anonymous memory mapping of their own, which the system takes
    back whole once the last view into it is let go. A page's body (17 MB for 1,000 studies)
    put on the allocator's heap instead would leave it holding that much more after each page,
    and growing with the number of pages. The mapping is reserved at `size_hint` (untouched,
    it costs no memory); in the rare case that is too small, the bytes move to one twice as
    large."""
    buffer = _mapping(max(mmap.PAGESIZE, size_hint))
    for chunk in chunks:
        end = buffer.tell() + len(chunk)
        if end > len(buffer):
            larger = _mapping(max(end, 2 * len(buffer)))
            larger.write(buffer[:buffer.tell()])
            buffer.close()
            buffer = larger
        buffer.write(chunk)
    return memoryview(buffer)[:buffer.tell()]


def _mapping(size: int) -> mmap.mmap:
    """Private anonymous memory (a shared one could not be written past its first size)."""
    if hasattr(mmap, "MAP_PRIVATE"):
        return mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE)
    return mmap.mmap(-1, size)  # Windows: private already


class _Ahead:
    """A request sent from a background thread before anyone waits for its answer.

    The thread sends the request and reads the answer up to its headers, nothing more: the
    body waits in the connection (the registry's end, then the network's buffers) until the
    page before has been read and let go, so one page at most is held as bytes. Whatever the
    thread raises is raised again to whoever asks for the answer."""

    def __init__(self, send: Callable[[], httpx.Response]) -> None:
        self._send = send
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._answer: httpx.Response | None = None
        self._error: BaseException | None = None
        self._abandoned = False

    def run(self) -> None:
        try:
            answer = self._send()
        except BaseException as error:  # raised again in response()
            self._error = error
        else:
            with self._lock:
                self._answer = answer
                if self._abandoned:
                    answer.close()
        finally:
            self._done.set()

    def response(self) -> httpx.Response:
        """The answer, once its headers are in; what sending raised is raised here."""
        self._done.wait()
        if self._error is not None:
            raise self._error
        assert self._answer is not None
        return self._answer

    def abandon(self) -> None:
        """Nobody will read the answer: close it, now or when it comes."""
        with self._lock:
            self._abandoned = True
            if self._answer is not None:
                self._answer.close()


def _envelope(body: bytes | memoryview) -> _Envelope | None:
    """A page's body split into its studies' bytes (views into `body`, nothing copied), or
    None if it is not an object with a 'studies' list. JSON that msgspec refuses but the
    standard library reads (NaN, lone surrogates) is read whole, each study written back."""
    try:
        return _ENVELOPE.decode(body)
    except msgspec.ValidationError:
        return None
    except msgspec.DecodeError:
        page = loads(body)  # the standard library's verdict: read, or a JSON error (retried)
    if not isinstance(page, dict) or not isinstance(page.get("studies"), list):
        return None
    studies = [msgspec.Raw(json.dumps(study).encode()) for study in page["studies"]]
    return _Envelope(studies, page.get("totalCount"), page.get("nextPageToken"))


def _split_page(body: bytes | memoryview, number: int) -> tuple[list[PageStudy], Any, Any]:
    """A page's studies, its totalCount and its nextPageToken (the last two unchecked)."""
    envelope = _envelope(body)
    if envelope is None or envelope.studies is None:
        raise MalformedResponse(
            f"Page {number} from ClinicalTrials.gov has no 'studies' list; nothing was changed."
        )
    studies = [_split(raw, number) for raw in envelope.studies]
    return studies, envelope.totalCount, envelope.nextPageToken


def _split(raw: msgspec.Raw, page: int) -> PageStudy:
    """One study of a page, its ID and update date read. Usually only those fields are
    decoded; a record that may need cleaning, or of another shape, is decoded whole once."""
    unsafe = may_be_unsafe(raw)
    if not unsafe:
        try:
            head = _HEAD.decode(raw)
        except msgspec.DecodeError:  # another shape (or msgspec refuses it): read it whole
            pass
        else:
            protocol = head.protocolSection
            ident = protocol.identificationModule if protocol else None
            nct_id = ident.nctId if ident else None
            if isinstance(nct_id, str) and NCT_ID.match(nct_id):
                status = protocol.statusModule if protocol else None
                date = status.lastUpdatePostDateStruct if status else None
                posted = date.date if date else None
                return PageStudy(nct_id, posted if isinstance(posted, str) else None, raw)
    record = loads(raw)
    if unsafe:
        record = clean(record)
    posted = posted_date(record)
    return PageStudy(nct_id_of(record, page=page), posted, raw, unsafe)


def posted_date(study: Any) -> str | None:
    """The update date of any record, read or not: None unless it is there as text."""
    try:
        posted = last_update_posted(study)
    except Exception:  # an unreadable record: the date is not to be trusted either
        return None
    return posted if isinstance(posted, str) else None


def nct_id_of(study: Any, page: int | None = None) -> str:
    """The study's NCT ID, or MalformedResponse if the record lacks a valid one."""
    try:
        nct_id = study["protocolSection"]["identificationModule"]["nctId"]
    except (KeyError, TypeError):
        nct_id = None
    if not isinstance(nct_id, str) or not NCT_ID.match(nct_id):
        where = f" on page {page}" if page else ""
        raise MalformedResponse(
            f"A study{where} has no valid protocolSection.identificationModule.nctId "
            f"({nct_id!r}); nothing was changed."
        )
    return nct_id


def _plain_message(response: httpx.Response, body: memoryview) -> str:
    text = " ".join(bytes(body).decode(response.charset_encoding or "utf-8",
                                       errors="replace").split())
    return (text[:300] + "...") if len(text) > 300 else (text or response.reason_phrase)
