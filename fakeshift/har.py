"""The request journal as an HTTP Archive (HAR 1.2): `GET /_fakeshift/journal.har`, which HAR
viewers, browser developer tools and replay tools open. Standard library only.

What an entry holds, and from where:
- request: method; url (the server's address as the HAR was asked for, the path, the query);
  the HTTP version; headers (the first journal.STORED_HEADER_CHARACTERS of them, names in
  title case as WSGI leaves them: User-Agent); queryString; postData, the body as the journal
  keeps it (the first --journal-body-bytes), with its size.
- response: status (0 when the connection was dropped, as browsers write a request that got
  none); the headers the app sent (waitress adds Date and Server on the wire); content, the body
  the app answered, cut like request bodies, with `size` its whole length and a comment when cut.
  A `truncate` fault halves that body on the wire: `_fakeshift.fault` names the rule.
- timings: the journal measures only the time the server spent (`latency_ms`): that is `wait`,
  and `send` and `receive` are 0. startedDateTime is the virtual clock at the end of the request
  less that time.
- `_fakeshift` (HAR's custom fields start with "_"): the journal's id, account, operation, fault.

Redaction, always on: the values of Authorization, Proxy-Authorization, Cookie, Set-Cookie and
X-Fakeshift-Admin-Token are "[redacted]", and the server's admin token and its configured API
keys (--api-key) are replaced by "[redacted]" wherever else they appear (URLs, queries, headers,
bodies). Bodies are kept otherwise, customer identifiers such as emails included: they are the
test data a HAR is read for. In open mode (no --api-key) any key is accepted and is its
account's name, so a key is no secret there: it stays in paths and `_fakeshift.account`, and
only its Authorization header is redacted.
"""

from __future__ import annotations

import http
import re
from collections.abc import Iterable
from datetime import timedelta
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, quote, unquote_plus, urlencode

from .auth import ADMIN_TOKEN_HEADER, ApiKey
from .clock import iso

if TYPE_CHECKING:
    from .config import Config
    from .journal import Entry

HAR_VERSION = "1.2"
REDACTED = "[redacted]"
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie",
                                ADMIN_TOKEN_HEADER.lower()})
# What RFC 3986 lets a path hold besides letters, digits and percent escapes.
_PATH_CHARACTERS = "/-._~!$&'()*+,;=:@"


class Redactor:
    """Replaces credentials: whole values of credential headers, and known secrets anywhere."""

    def __init__(self, secrets: Iterable[str | None]):
        present = {secret for secret in secrets if secret}
        # Longest first, so that a secret containing another is replaced whole.
        self._secrets = re.compile("|".join(
            re.escape(secret) for secret in sorted(present, key=len, reverse=True))
        ) if present else None

    @classmethod
    def for_config(cls, config: Config) -> "Redactor":
        return cls([config.admin_token, *(ApiKey.parse(spec).key for spec in config.api_keys)])

    def text(self, text: str) -> str:
        return text if self._secrets is None else self._secrets.sub(REDACTED, text)

    def header(self, name: str, value: str) -> dict:
        shown = REDACTED if name.lower() in CREDENTIAL_HEADERS else self.text(value)
        return {"name": name, "value": shown}


def har_document(entries: Iterable[Entry], base_url: str, redactor: Redactor) -> dict:
    """A HAR 1.2 log of journal entries (oldest first); `base_url` is the server's address."""
    # Imported here: the package imports this module (through the journal) before it sets its
    # version.
    from . import __version__

    base = base_url.rstrip("/")
    return {"log": {"version": HAR_VERSION,
                    "creator": {"name": "fakeshift", "version": __version__},
                    "entries": [_entry(entry, base, redactor) for entry in entries]}}


def _entry(entry: Entry, base: str, redactor: Redactor) -> dict:
    latency = round(entry.latency_ms, 3)
    return {
        "startedDateTime": iso(entry.time - timedelta(milliseconds=entry.latency_ms)),
        "time": latency,
        "request": _request(entry, base, redactor),
        "response": _response(entry, redactor),
        "cache": {},
        "timings": {"send": 0, "wait": latency, "receive": 0},
        "_fakeshift": {"id": entry.id, "account": _redacted_or_none(redactor, entry.account),
                       "operation": entry.operation, "fault": entry.fault},
    }


def _request(entry: Entry, base: str, redactor: Redactor) -> dict:
    exchange = entry.exchange
    headers = [redactor.header(_header_name(name), value)
               for name, value in exchange.request_headers]
    pairs = [(redactor.text(name), redactor.text(value))
             for name, value in parse_qsl(entry.query, keep_blank_values=True)]
    query = entry.query
    if redactor.text(unquote_plus(query)) != unquote_plus(query):
        # A secret in the query, in whichever encoding the client chose: written out anew.
        query = urlencode(pairs)
    # The journal keeps the path decoded (WSGI's PATH_INFO); a URL has it percent-encoded.
    url = base + quote(redactor.text(entry.path), safe=_PATH_CHARACTERS) + (
        f"?{query}" if query else "")
    request = {
        "method": entry.method, "url": url, "httpVersion": exchange.http_version,
        "cookies": [], "headers": headers,
        "queryString": [{"name": name, "value": value} for name, value in pairs],
        "headersSize": -1,
        # The journal keeps no body when reading it failed (too large, cut short).
        "bodySize": -1 if entry.body is None else entry.body_size,
    }
    if entry.body:
        request["postData"] = {"mimeType": _value_of(headers, "Content-Type"),
                               "text": redactor.text(entry.body.decode("utf-8", "replace"))}
        if len(entry.body) < entry.body_size:
            request["postData"]["comment"] = _cut_note(len(entry.body), entry.body_size)
    if exchange.request_headers_dropped:
        request["comment"] = (f"{exchange.request_headers_dropped} more headers not kept "
                              "(the journal keeps a few kilobytes of headers per request)")
    return request


def _response(entry: Entry, redactor: Redactor) -> dict:
    exchange = entry.exchange
    if entry.status is None:
        return {"status": 0, "statusText": "", "httpVersion": exchange.http_version,
                "cookies": [], "headers": [], "content": {"size": 0, "mimeType": ""},
                "redirectURL": "", "headersSize": -1, "bodySize": -1,
                "comment": f"no response: fault {entry.fault} dropped the connection"}
    headers = [redactor.header(name, value) for name, value in exchange.response_headers]
    content = {"size": exchange.response_size, "mimeType": _value_of(headers, "Content-Type")}
    body = exchange.response_body
    if body is not None:
        content["text"] = redactor.text(body.decode("utf-8", "replace"))
        if len(body) < exchange.response_size:
            content["comment"] = _cut_note(len(body), exchange.response_size)
    return {"status": entry.status, "statusText": _reason(entry.status),
            "httpVersion": exchange.http_version, "cookies": [], "headers": headers,
            "content": content, "redirectURL": _value_of(headers, "Location"),
            "headersSize": -1, "bodySize": -1 if body is None else exchange.response_size}


def _header_name(wsgi_name: str) -> str:
    """HTTP_X_FAKESHIFT_FAULT -> X-Fakeshift-Fault, CONTENT_TYPE -> Content-Type."""
    return wsgi_name.removeprefix("HTTP_").replace("_", "-").title()


def _value_of(headers: list[dict], name: str) -> str:
    wanted = name.lower()
    return next((h["value"] for h in headers if h["name"].lower() == wanted), "")


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


def _cut_note(kept: int, size: int) -> str:
    return f"the first {kept} of {size} bytes (--journal-body-bytes)"


def _redacted_or_none(redactor: Redactor, text: str | None) -> str | None:
    return None if text is None else redactor.text(text)
