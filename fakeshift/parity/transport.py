"""HTTP for `fakeshift parity`, on the standard library alone (the command is part of the core
package, which does not depend on requests)."""

from __future__ import annotations

import base64
import http.client
import ipaddress
import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

from .. import __version__

# A wrong address must fail in seconds, before anything is written anywhere.
CONNECT_CHECK_TIMEOUT = 5.0
HEALTH_PATH = "/_fakeshift/health"
ADMIN_TOKEN_HEADER = "X-Fakeshift-Admin-Token"


class ConnectionProblem(Exception):
    """A server could not be reached at all (exit status 2)."""


def is_loopback(base_url: str) -> bool:
    host = urllib.parse.urlsplit(base_url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def shown_url(base_url: str) -> str:
    """The URL without any user:password part, which may hold a key."""
    parts = urllib.parse.urlsplit(base_url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def reason(exc: BaseException) -> str:
    """Why a request got no answer, in the operating system's words ("Connection refused"),
    never the URL (whose path may hold an account name, which is a key in fakeshift)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (socket.timeout, TimeoutError)):
            return "timed out"
        if isinstance(exc, OSError) and exc.strerror:
            return exc.strerror
        if isinstance(exc, http.client.HTTPException):
            return str(exc) or type(exc).__name__
        inner = getattr(exc, "reason", None)
        exc = inner if isinstance(inner, BaseException) else exc.__cause__ or exc.__context__
    return "no answer"


@dataclass
class Answer:
    status: int | None  # None: no answer at all (refused, dropped, timed out)
    headers: dict[str, str] = field(default_factory=dict)  # names in lower case
    body: bytes = b""
    failure: str | None = None

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            return None


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer to compare, not something to follow."""

    def redirect_request(self, *args, **kwargs):
        return None


class Server:
    """One base URL and the credentials for it."""

    def __init__(self, base_url: str, api_key: str, admin_token: str | None = None,
                 timeout: float = 30.0):
        self.base_url = base_url.rstrip("/")
        # Blueshift's documented form: base64 of "KEY:" (an empty password).
        self._authorization = "Basic " + base64.b64encode(f"{api_key}:".encode()).decode()
        self._api_key = api_key
        self._admin_token = admin_token
        self.timeout = timeout
        # Loopback traffic never goes through a proxy, whatever the environment says; other
        # hosts get the environment's proxies, as any HTTP client would.
        proxies = urllib.request.ProxyHandler({} if is_loopback(base_url) else None)
        self._opener = urllib.request.build_opener(proxies, _NoRedirects())

    @property
    def account_path(self) -> str:
        """The control-plane path of this key's account (fakeshift names an account after the
        key that opened it, unless the server was given KEY@ACCOUNT)."""
        return "/_fakeshift/accounts/" + urllib.parse.quote(self._api_key, safe="")

    def call(self, method: str, path: str, query: dict | None = None, body=None) -> Answer:
        """A Blueshift API call with the key."""
        return self._send(method, path, query, body, {"Authorization": self._authorization},
                          self.timeout)

    def control(self, method: str, path: str, body=None) -> Answer:
        """A fakeshift control-plane call, with the admin token when there is one."""
        headers = {ADMIN_TOKEN_HEADER: self._admin_token} if self._admin_token else {}
        return self._send(method, path, None, body, headers, self.timeout)

    def check_reachable(self) -> Answer:
        """GET the fakeshift health probe (no credentials): any HTTP answer proves the server is
        there, and fakeshift's tells what it is."""
        answer = self._send("GET", HEALTH_PATH, None, None, {},
                            min(CONNECT_CHECK_TIMEOUT, self.timeout))
        if answer.status is None:
            raise ConnectionProblem(f"cannot reach {shown_url(self.base_url)}: {answer.failure}")
        return answer

    def _send(self, method: str, path: str, query: dict | None, body, headers: dict,
              timeout: float) -> Answer:
        url = self.base_url + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method, headers={
            "Accept": "application/json", "User-Agent": f"fakeshift-parity/{__version__}",
            **({"Content-Type": "application/json"} if data is not None else {}), **headers})
        try:
            with self._opener.open(request, timeout=timeout) as response:
                return _answer(response.status, response.headers, response)
        except urllib.error.HTTPError as error:
            with error:
                return _answer(error.code, error.headers, error)
        except (OSError, http.client.HTTPException) as exc:  # URLError is an OSError
            return Answer(None, failure=reason(exc))


def _answer(status: int, headers, stream) -> Answer:
    names = {name.lower(): value for name, value in headers.items()}
    try:
        body = stream.read()
    except http.client.IncompleteRead as cut:  # a body shorter than its Content-Length
        body = cut.partial
    except (OSError, http.client.HTTPException) as exc:
        return Answer(status, names, b"", failure=reason(exc))
    return Answer(status, names, body)
