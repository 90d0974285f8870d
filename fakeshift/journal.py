"""The request journal: a bounded ring buffer of the requests the server answered or dropped.

The request pipeline (fakeshift/pipeline.py) records every request last, so connections a fault
dropped are recorded too; recording costs one clock read, a pass over the request headers, two
tuples and a deque append under a lock. Bodies are kept as raw bytes, cut to a bound, and decoded only
when someone reads the journal. Headers and response bodies are shown only by the HAR export
(`GET /_fakeshift/journal.har`, har.py), which redacts credentials.

Not journaled: health and readiness probes (a container polls them every second and they would
push real traffic out), reads of the journal itself, the dashboard page, and control-plane reads
sent with `X-Fakeshift-Journal: skip` (the dashboard's polling: a test reading the journal while
someone watches the dashboard must see the same entries as without it).
"""

from __future__ import annotations

import re
import threading
from collections import deque
from datetime import datetime
from typing import NamedTuple

from flask import Blueprint, current_app, request

from .clock import VirtualClock, iso, parse_iso
from .dashboard import PATH as DASHBOARD_PATH
from .errors import InvalidField
from .har import Redactor, har_document
from .http import answer
from .parsing import flag, only_fields
from .patterns import PatternError, compile_glob, is_glob

# Left by the server (server.FakeshiftTask): a callable, True once the client has closed its end
# of the connection. Such a request still runs and changes state; its entry says `abandoned`.
CLIENT_GONE_KEY = "fakeshift.client_gone"

DEFAULT_SIZE = 10_000
DEFAULT_BODY_BYTES = 4096
# A path or query string may be as long as waitress lets a request line be; the journal keeps
# this much of each, so that its memory is bounded by its size, not by what clients send.
STORED_TEXT_CHARACTERS = 2048
CONTROL_PREFIX = "/_fakeshift/"
JOURNAL_PATH = "/_fakeshift/journal"
JOURNAL_HAR_PATH = "/_fakeshift/journal.har"
SKIP_HEADER = "X-Fakeshift-Journal"
_SKIP_ENVIRON = "HTTP_" + SKIP_HEADER.upper().replace("-", "_")
PROBE_PATHS = frozenset({"/_fakeshift/health", "/_fakeshift/ready"})
# Request headers may add up to --max-header-bytes (64k); the journal keeps the first this many
# characters of them (names and values), so an entry stays a few kilobytes.
STORED_HEADER_CHARACTERS = 4096
# WSGI names the request headers HTTP_*, except these two.
CONTENT_HEADERS = frozenset({"CONTENT_TYPE", "CONTENT_LENGTH"})


class Exchange(NamedTuple):
    """What the HAR export shows beyond the JSON journal."""
    http_version: str
    request_headers: tuple[tuple[str, str], ...]  # WSGI names: HTTP_USER_AGENT, CONTENT_TYPE
    request_headers_dropped: int  # how many came past STORED_HEADER_CHARACTERS
    response_headers: list[tuple[str, str]]  # as the app sent them (waitress adds Date, Server)
    response_body: bytes | None  # the first body_bytes; None: no Flask response was made
    response_size: int


NO_EXCHANGE = Exchange("HTTP/1.1", (), 0, [], None, 0)


class Entry(NamedTuple):
    id: int
    time: datetime
    account: str | None
    operation: str | None
    method: str
    path: str
    query: str
    body: bytes | None
    body_size: int
    status: int | None  # None: the connection was dropped with no response
    latency_ms: float
    fault: str | None
    violation: str | None = None  # the contract rules the request broke, as in the violations
    exchange: Exchange = NO_EXCHANGE
    abandoned: bool = False  # the client was gone when the answer was ready

    def to_dict(self) -> dict:
        return {
            "id": self.id, "time": iso(self.time), "account": self.account,
            "operation": self.operation, "method": self.method, "path": self.path,
            "query": self.query,
            "body": None if self.body is None else self.body.decode("utf-8", "replace"),
            "body_size": self.body_size, "status": self.status,
            "latency_ms": round(self.latency_ms, 3), "fault": self.fault,
            "violation": self.violation, "abandoned": self.abandoned,
        }


class JournalQuery(NamedTuple):
    account: str | None = None
    method: str | None = None
    path: PathFilter | None = None
    operation: str | None = None  # "blueshift.forget" or "forget"
    status: str | None = None  # "503", "5xx", or "none" for dropped connections
    fault: str | None = None  # a rule id, or "any"
    since: datetime | None = None
    until: datetime | None = None
    after: int | None = None  # only entries with a larger id
    limit: int | None = None  # the newest N of the matches

    def matches(self, entry: Entry) -> bool:
        return ((self.account is None or entry.account == self.account)
                and (self.method is None or entry.method == self.method)
                and (self.path is None or self.path.matches(entry.path))
                and (self.operation is None or _operation_matches(self.operation,
                                                                   entry.operation))
                and (self.status is None or _status_matches(self.status, entry.status))
                and (self.fault is None or _fault_matches(self.fault, entry.fault))
                and (self.since is None or entry.time >= self.since)
                and (self.until is None or entry.time < self.until)
                and (self.after is None or entry.id > self.after))


class PathFilter(NamedTuple):
    """A `path` filter: exact, or a glob (compiled once per query, by RE2) when it has * ? or [."""
    text: str
    glob: object | None

    @classmethod
    def parse(cls, text: str) -> "PathFilter":
        try:
            return cls(text, compile_glob(text) if is_glob(text) else None)
        except PatternError as exc:
            raise InvalidField("path", str(exc)) from exc

    def matches(self, path: str) -> bool:
        return path == self.text if self.glob is None else self.glob.fullmatch(path) is not None


def _operation_matches(wanted: str, operation: str | None) -> bool:
    """`blueshift.forget`, or `forget` as fault rules and violations name it."""
    if operation is None:
        return False
    return operation == wanted or ("." not in wanted and operation.endswith("." + wanted))


def _status_matches(wanted: str, status: int | None) -> bool:
    if wanted == "none":
        return status is None
    if status is None:
        return False
    if wanted.endswith("xx"):
        return status // 100 == int(wanted[0])
    return status == int(wanted)


def _fault_matches(wanted: str, fault: str | None) -> bool:
    return fault is not None if wanted == "any" else fault == wanted


class Journal:
    """Newest `capacity` requests. Safe to share between waitress's threads."""

    def __init__(self, clock: VirtualClock, capacity: int = DEFAULT_SIZE,
                 body_bytes: int = DEFAULT_BODY_BYTES):
        if capacity < 1:
            raise ValueError("the journal size must be at least 1")
        self.clock = clock
        self.capacity = capacity
        self.body_bytes = body_bytes
        self._entries: deque[Entry] = deque(maxlen=capacity)
        self._lock = threading.Lock()
        self._last_id = 0

    def record(self, method: str, path: str, query: str, account: str | None,
               operation: str | None, body: bytes | None, body_size: int, status: int | None,
               latency_ms: float, fault: str | None, violation: str | None = None,
               exchange: Exchange = NO_EXCHANGE, abandoned: bool = False) -> None:
        now = self.clock.now()
        with self._lock:
            self._last_id += 1
            self._entries.append(Entry(self._last_id, now, account, operation, method, path,
                                       query, body, body_size, status, latency_ms, fault,
                                       violation, exchange, abandoned))

    def find(self, query: JournalQuery) -> tuple[int, list[Entry]]:
        """(how many entries match, the matching entries oldest first, newest `limit` only)."""
        with self._lock:
            entries = list(self._entries)
        found = [entry for entry in entries if query.matches(entry)]
        return len(found), found if query.limit is None else found[max(0, len(found) - query.limit):]

    def search(self, query: JournalQuery) -> tuple[int, list[dict]]:
        """`find`, with the entries as the JSON journal shows them."""
        count, kept = self.find(query)
        return count, [entry.to_dict() for entry in kept]

    def clear(self, account: str | None = None) -> int:
        """Drop every entry, or one account's (the others keep their ids and order)."""
        with self._lock:
            before = len(self._entries)
            if account is None:
                self._entries.clear()
            else:
                kept = [entry for entry in self._entries if entry.account != account]
                self._entries.clear()
                self._entries.extend(kept)
            return before - len(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


def request_headers(headers) -> tuple[tuple[tuple[str, str], ...], int]:
    """Of the request's headers (WSGI name, value), as many as fit in STORED_HEADER_CHARACTERS,
    and how many did not fit."""
    kept = []
    dropped = 0
    budget = STORED_HEADER_CHARACTERS
    for name, value in headers:
        budget -= len(name) + len(value)
        if budget < 0:
            dropped += 1
        else:
            kept.append((name, value))
    return tuple(kept), dropped


def leaves_out(method: str, path: str, environ) -> bool:
    """A request the journal does not record (see the module's docstring). The dashboard's
    address may carry the admin token (?token=): it is never stored."""
    if path in PROBE_PATHS:
        return True
    return method == "GET" and path.startswith(CONTROL_PREFIX) and (
        path == JOURNAL_PATH or path == JOURNAL_HAR_PATH or path == DASHBOARD_PATH
        or environ.get(_SKIP_ENVIRON, "").strip().lower() == "skip")


def clip(text: str, most: int = STORED_TEXT_CHARACTERS) -> str:
    """`text`, or its first `most` characters and a note of how many were left out."""
    if len(text) <= most:
        return text
    return f"{text[:most]}... ({len(text) - most} more characters)"


bp = Blueprint("journal", __name__, url_prefix="/_fakeshift")


@bp.get("/journal")
def read_journal():
    count, entries = current_app.extensions["fakeshift"].journal.search(
        query_from_args(request.args))
    return answer({"count": count, "entries": entries})


@bp.get("/journal.har")
def read_journal_har():
    """The journal's filters, and `redact=false` to keep the people's identifiers unmasked."""
    emulator = current_app.extensions["fakeshift"]
    filters = {name: value for name, value in request.args.items() if name != "redact"}
    mask_people = flag(request.args.get("redact", "true"), "redact")
    _count, entries = emulator.journal.find(query_from_args(filters))
    redactor = Redactor.for_config(emulator.config, mask_people is not False)
    return answer(har_document(entries, request.host_url, redactor))


@bp.delete("/journal")
def clear_journal():
    """Every entry, or with ?account=K only K's. Another parameter is refused, not ignored: a
    misspelt `account` must not empty a journal other jobs are reading."""
    only_fields(request.args, ("account",))
    journal = current_app.extensions["fakeshift"].journal
    return answer({"status": "ok", "cleared": journal.clear(request.args.get("account"))})


_QUERY_FIELDS = frozenset(JournalQuery._fields)
_STATUS_FILTER = re.compile(r"[1-5](?:[0-9][0-9]|xx)", re.ASCII)
_WHOLE_NUMBER = re.compile(r"[0-9]{1,18}", re.ASCII)


def query_from_args(args) -> JournalQuery:
    """A JournalQuery from query parameters; a 400 naming the parameter for anything wrong."""
    unknown = sorted(set(args) - _QUERY_FIELDS)
    if unknown:
        raise InvalidField(unknown[0], f"is not a journal filter (use {', '.join(JournalQuery._fields)})")
    values: dict = {name: args[name] for name in ("account", "operation", "fault") if name in args}
    if "path" in args:
        values["path"] = PathFilter.parse(args["path"])
    if "method" in args:
        values["method"] = args["method"].upper()
    if "status" in args:
        status = args["status"].strip().lower()
        valid = status == "none" or _STATUS_FILTER.fullmatch(status) is not None
        if not valid:
            raise InvalidField("status", "must be a status code (503), a class (5xx) or none")
        values["status"] = status
    for name in ("since", "until"):
        if name in args:
            try:
                values[name] = parse_iso(args[name])
            except ValueError as exc:
                raise InvalidField(name, f"is not an ISO 8601 date-time: {exc}") from exc
    for name, least in (("after", 0), ("limit", 0)):
        if name in args:
            text = args[name]
            # str.isdigit accepts digits int() cannot read ("²"); a count never needs 19 digits.
            if _WHOLE_NUMBER.fullmatch(text) is None or int(text) < least:
                raise InvalidField(name, f"must be a whole number >= {least}")
            values[name] = int(text)
    return JournalQuery(**values)
