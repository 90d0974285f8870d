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

Redaction of credentials, always on: the values of Authorization, Proxy-Authorization, Cookie,
Set-Cookie and X-Fakeshift-Admin-Token are "[redacted]", and the server's admin token and its
configured API keys (--api-key) are replaced by "[redacted]" wherever else they appear (URLs,
queries, headers, bodies). In open mode (no --api-key) any key is accepted and is its account's
name, so a key is no secret there: it stays in paths and `_fakeshift.account`, and only its
Authorization header is redacted.

Masking of the people, on by default (`?redact=false` turns it off): this is a GDPR tool, and a
recording must not leak the people it deletes. Every identifier value (email, customer_id,
cookie, device_id, and the values list calls and merges name them by) in JSON bodies, requests
and answers alike, and in the query, becomes a mask keyed by this server process: the same
person keeps the same mask throughout (emails fold ASCII case first, as matching does), and
masks cannot be reversed without the server's secret.
"""

from __future__ import annotations

import hashlib
import hmac
import http
import json
import re
import secrets
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
# Fields whose values name a person: the identifiers, and how list calls and merges carry them.
IDENTIFIER_FIELDS = frozenset({"email", "customer_id", "cookie", "device_id", "identifier_value",
                               "identifier_values", "bsft_new_customer_id"})
# One per server process: masks agree across every HAR the server writes, and mean nothing
# without it.
_MASK_KEY = secrets.token_bytes(32)
# What RFC 3986 lets a path hold besides letters, digits and percent escapes.
_PATH_CHARACTERS = "/-._~!$&'()*+,;=:@"


class Redactor:
    """Replaces credentials (whole values of credential headers, and known secrets anywhere)
    and, with `mask_people`, every identifier value by its mask."""

    def __init__(self, secrets: Iterable[str | None], mask_people: bool = True):
        self.mask_people = mask_people
        present = {secret for secret in secrets if secret}
        # Longest first, so that a secret containing another is replaced whole.
        self._secrets = re.compile("|".join(
            re.escape(secret) for secret in sorted(present, key=len, reverse=True))
        ) if present else None

    @classmethod
    def for_config(cls, config: Config, mask_people: bool = True) -> "Redactor":
        return cls([config.admin_token, *(ApiKey.parse(spec).key for spec in config.api_keys)],
                   mask_people)

    def text(self, text: str) -> str:
        return text if self._secrets is None else self._secrets.sub(REDACTED, text)

    def body(self, text: str) -> str:
        """A body with its credentials redacted and, if it is JSON, its people masked."""
        if self.mask_people:
            try:
                document = json.loads(text)
            except ValueError:
                pass
            else:
                text = json.dumps(_masked(document), ensure_ascii=False)
        return self.text(text)

    def query_value(self, name: str, value: str) -> str:
        if self.mask_people and name in IDENTIFIER_FIELDS:
            return mask(name, value)
        return self.text(value)

    def header(self, name: str, value: str) -> dict:
        shown = REDACTED if name.lower() in CREDENTIAL_HEADERS else self.text(value)
        return {"name": name, "value": shown}


def mask(field: str, value: str) -> str:
    """The same mask for the same person: an email stays an email, at a reserved domain."""
    kind = "email" if field == "email" or "@" in value else "id"
    key = value.lower() if kind == "email" and value.isascii() else value
    digest = hmac.new(_MASK_KEY, f"{kind}:{key}".encode(), hashlib.sha256).hexdigest()[:12]
    return f"masked-{digest}@redacted.invalid" if kind == "email" else f"masked-{digest}"


def _masked(node, field: str | None = None):
    if isinstance(node, dict):
        return {name: _masked(value, name) for name, value in node.items()}
    if isinstance(node, list):
        return [_masked(item, field if field == "identifier_values" else None) for item in node]
    if isinstance(node, str) and field in IDENTIFIER_FIELDS:
        return mask(field, node)
    return node


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
    original = parse_qsl(entry.query, keep_blank_values=True)
    pairs = [(redactor.text(name), redactor.query_value(name, value)) for name, value in original]
    query = entry.query
    if pairs != original:
        # A secret or a person in the query, in whichever encoding the client chose: written
        # out anew.
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
                               "text": redactor.body(entry.body.decode("utf-8", "replace"))}
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
        content["text"] = redactor.body(body.decode("utf-8", "replace"))
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
