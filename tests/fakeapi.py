"""A local stand-in for the ClinicalTrials.gov Data API v2, served on 127.0.0.1.

It serves real (edited) study records and reproduces the documented behaviour the client
depends on: `pageSize` default 10 and cap 1000, `countTotal` only on the first page, opaque
page tokens bound to the query, a token on an exactly-full last page that leads to an empty
page, `fields` projection, `filter.ids`, `filter.advanced` with a LastUpdatePostDate range,
text/plain 400s for unknown parameters, gzip, and `/version`. Faults can be injected per
request: status codes with Retry-After, truncated bodies, malformed JSON and slow answers.

Like the real API, which sits behind a cache, it gzips a given answer once: the compressed
bytes are kept by the answer's own SHA-256 (so an edit to the registry can never serve a stale
page), and every later request for the same bytes is served them again.
"""

from __future__ import annotations

import base64
import copy
import gzip
import hashlib
import json
import re
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

KNOWN_PARAMS = {
    "query.cond", "query.term", "query.intr", "query.titles", "query.locn", "query.id",
    "filter.ids", "filter.advanced", "filter.overallStatus", "fields", "sort", "countTotal",
    "pageSize", "pageToken", "format", "markupFormat",
}
GZIP_CACHE_BYTES = 512 * 2**20  # compressed answers kept, least recently used dropped first
RANGE = re.compile(r"^AREA\[LastUpdatePostDate\]RANGE\[(\d{4}-\d{2}-\d{2}),MAX\]$")
PROJECTIONS = {
    "NCTId": ("protocolSection", "identificationModule", "nctId"),
    "LastUpdatePostDate": ("protocolSection", "statusModule", "lastUpdatePostDateStruct", "date"),
    "OverallStatus": ("protocolSection", "statusModule", "overallStatus"),
}


@dataclass
class Fault:
    """One injected fault, applied to the next `times` requests that `match`."""

    match: Callable[[str, dict[str, str]], bool]
    times: int = 1
    status: int = 503
    body: bytes = b"Service Unavailable"
    headers: dict[str, str] = field(default_factory=dict)
    truncate: bool = False
    delay: float = 0.0
    passthrough: bool = False  # after the delay, answer as the registry would


@dataclass
class Registry:
    studies: dict[str, dict[str, Any]] = field(default_factory=dict)
    data_timestamp: str = "2026-11-20T09:00:05"
    faults: list[Fault] = field(default_factory=list)
    # In the registry, but no longer found by the tracked search (conditions edited, say).
    unmatched: set[str] = field(default_factory=set)
    log: list[tuple[str, dict[str, str], dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def put(self, *studies: dict[str, Any]) -> None:
        for study in studies:
            nct_id = study["protocolSection"]["identificationModule"]["nctId"]
            self.studies[nct_id] = copy.deepcopy(study)

    def drop(self, nct_id: str) -> None:
        """The study is gone from the registry altogether."""
        del self.studies[nct_id]

    def unmatch(self, nct_id: str) -> None:
        """The study stays in the registry but the search no longer finds it."""
        self.unmatched.add(nct_id)

    def fail(self, match: Callable[[str, dict[str, str]], bool] | None = None,
             **kwargs: Any) -> Fault:
        fault = Fault(match=match or (lambda path, params: path.endswith("/studies")), **kwargs)
        self.faults.append(fault)
        return fault

    def requests(self, path_end: str = "") -> list[dict[str, str]]:
        return [params for path, params, _ in self.log if path.endswith(path_end)]

    # --- the API -------------------------------------------------------------------------

    def answer(self, path: str, params: dict[str, str]) -> tuple[int, str, bytes]:
        if path.endswith("/version"):
            body = {"apiVersion": "2.0.5", "dataTimestamp": self.data_timestamp}
            return 200, "application/json", json.dumps(body).encode()
        if not path.endswith("/studies"):
            return 404, "text/plain", b"Not Found"
        for name in params:
            if name not in KNOWN_PARAMS:
                return 400, "text/plain", f"`{name}` is unknown parameter".encode()
        try:
            matches = self._select(params)
        except ValueError as error:
            return 400, "text/plain", str(error).encode()
        size = int(params.get("pageSize") or 10) or 10
        size = min(size, 1000)
        binding = _binding(params)
        offset = 0
        if "pageToken" in params:
            try:
                raw = base64.urlsafe_b64decode(params["pageToken"] + "==").decode()
                offset_text, bound = raw.split(":", 1)
                offset = int(offset_text)
            except ValueError:
                return 400, "text/plain", b"Invalid page token"
            if bound != binding:
                return 400, "text/plain", b"Page token does not belong to these parameters"
        page = matches[offset:offset + size]
        fields = params.get("fields")
        if fields:
            page = [_project(s, fields) for s in page]
        parts = []
        if params.get("countTotal") == "true" and "pageToken" not in params:
            parts.append(f'"totalCount":{len(matches)}')
        lines = ",\n".join(json.dumps(s, ensure_ascii=False, separators=(",", ":")) for s in page)
        parts.append('"studies":[' + ("\n" + lines + "\n" if page else "") + "]")
        if len(page) == size:  # the real API still sends a token on a full last page
            token = base64.urlsafe_b64encode(f"{offset + size}:{binding}".encode()).decode()
            parts.append(f'"nextPageToken":"{token.rstrip("=")}"')
        return 200, "application/json", ("{" + ",".join(parts) + "}").encode()

    def _select(self, params: dict[str, str]) -> list[dict[str, Any]]:
        studies = [self.studies[k] for k in sorted(self.studies)]
        if "query.cond" in params:
            studies = [s for s in studies
                       if s["protocolSection"]["identificationModule"]["nctId"]
                       not in self.unmatched]
        if "filter.ids" in params:
            wanted = set(re.split(r"[,|]", params["filter.ids"]))
            studies = [s for s in studies
                       if s["protocolSection"]["identificationModule"]["nctId"] in wanted]
        if "filter.advanced" in params:
            found = RANGE.match(params["filter.advanced"])
            if not found:
                raise ValueError("Error parsing query in advanced filter: unsupported expression")
            studies = [s for s in studies if _lud(s) >= found.group(1)]
        return studies


def _binding(params: dict[str, str]) -> str:
    kept = sorted((k, v) for k, v in params.items()
                  if k not in ("pageToken", "pageSize", "countTotal"))
    return hashlib.sha1(json.dumps(kept).encode()).hexdigest()[:12]


def _lud(study: dict[str, Any]) -> str:
    return study["protocolSection"]["statusModule"]["lastUpdatePostDateStruct"]["date"]


def _project(study: dict[str, Any], fields: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in re.split(r"[,|]", fields):
        if name not in PROJECTIONS:
            raise ValueError(f"unknown field {name}")
        path = PROJECTIONS[name]
        node: Any = study
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if node is None:
            continue
        target = out
        for key in path[:-1]:
            target = target.setdefault(key, {})
        target[path[-1]] = node
    return out


class _Handler(BaseHTTPRequestHandler):
    server: FakeApi

    def do_GET(self) -> None:
        registry = self.server.registry
        parts = urlsplit(self.path)
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        with registry.lock:
            registry.log.append((parts.path, params, dict(self.headers)))
            live = [f for f in registry.faults if f.times > 0 and f.match(parts.path, params)]
            fault = live[0] if live else None
            if fault:
                fault.times -= 1
        if fault and fault.delay:
            time.sleep(fault.delay)
        if fault and not fault.truncate and not fault.passthrough:
            self._send(fault.status, "text/plain", fault.body, fault.headers)
            return
        try:
            status, kind, body = registry.answer(parts.path, params)
        except ValueError as error:
            status, kind, body = 400, "text/plain", str(error).encode()
        if fault and fault.truncate:
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self._send(status, kind, body, {})

    def _send(self, status: int, kind: str, body: bytes, headers: dict[str, str]) -> None:
        if "gzip" in self.headers.get("Accept-Encoding", "") and status == 200:
            body = self.server.gzipped(body)
            headers = {**headers, "Content-Encoding": "gzip"}
        self.send_response(status)
        self.send_header("Content-Type", kind + "; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class FakeApi(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, registry: Registry | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.registry = registry or Registry()
        self.thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)
        self._gzipped: OrderedDict[bytes, bytes] = OrderedDict()
        self._gzipped_bytes = 0
        self._gzip_lock = threading.Lock()

    def gzipped(self, body: bytes) -> bytes:
        """`body` gzipped (level 9, as gzip.compress does), compressed once per distinct body:
        a cache in front of an API serves repeated pages without compressing them again."""
        key = hashlib.sha256(body).digest()
        with self._gzip_lock:
            cached = self._gzipped.get(key)
            if cached is not None:
                self._gzipped.move_to_end(key)
                return cached
        compressed = gzip.compress(body)
        with self._gzip_lock:
            if key not in self._gzipped:
                self._gzipped[key] = compressed
                self._gzipped_bytes += len(compressed)
            while self._gzipped_bytes > GZIP_CACHE_BYTES:
                _, dropped = self._gzipped.popitem(last=False)
                self._gzipped_bytes -= len(dropped)
        return compressed

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up mid-answer (a timeout test, an interrupted sync) is part of
        the tests; anything else is printed, as socketserver does. Printing the former from
        a server thread would land in whatever output a later test happens to capture."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/api/v2"

    def __enter__(self) -> FakeApi:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()


if __name__ == "__main__":  # serve the fixtures by hand: python tests/fakeapi.py
    import sys
    from pathlib import Path

    registry = Registry()
    for path in sorted((Path(__file__).parent / "data" / "studies").glob("NCT*.json")):
        registry.put(json.loads(path.read_text()))
    with FakeApi(registry) as api:
        print(api.base_url, file=sys.stderr)
        api.thread.join()
