"""Blueshift authentication: HTTP Basic with the API key as user name and an empty password.

Default (open) mode accepts any non-empty key and gives each key an isolated account of its own,
so parallel CI jobs never see each other. Configured mode accepts only the listed keys, each with
a role; a read-only key may read but gets 403 on every write.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import unquote

from .errors import BlueshiftError, PermissionDenied, Unauthorized

ROLES = ("write", "read")
ADMIN_TOKEN_HEADER = "X-Fakeshift-Admin-Token"
# The control plane is fakeshift's own, so its 401 may say more than Blueshift's "Not
# authorized": what is missing and how to send it.
ADMIN_TOKEN_NEEDED = (f"Not authorized: this control-plane call needs the server's admin token "
                      f"(--admin-token); send it as {ADMIN_TOKEN_HEADER}: <token> or as "
                      "Authorization: Bearer <token>")
MAX_KEY_LENGTH = 256
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Resolved Authorization headers remembered: "Basic " and the base64 of the longest key and ":".
RESOLVED_KEPT = 4096
_RESOLVED_HEADER_LENGTH = 8 + (MAX_KEY_LENGTH * 4 + 1) * 4 // 3


@dataclass(frozen=True)
class ApiKey:
    key: str
    role: str
    account: str

    @classmethod
    def parse(cls, spec: str) -> "ApiKey":
        """`KEY[:ROLE][@ACCOUNT]`: role write (default) or read; account defaults to the key.

        Each separator appears at most once, in that order; an `@`, `:`, `,` or `%` inside a key
        or account is written %40, %3A, %2C, %25. `KEY@ACCOUNT` with a dot in the account and no
        role reads as an email address just as well (`user@example.com`), so it is refused with
        both ways to say what was meant, rather than guessed."""
        def refuse(why: str):
            raise ValueError(f"API key spec {spec!r}: {why}")

        if spec.count("@") > 1:
            refuse("more than one '@'; write an '@' inside a key or account as %40")
        if spec.count(":") > 1:
            refuse("more than one ':'; write a ':' inside a key or account as %3A")
        rest, at, account = spec.partition("@")
        if ":" in account:
            refuse("the role goes before the account: KEY:ROLE@ACCOUNT")
        key, colon, role = rest.partition(":")
        if at and not colon and "." in account:
            refuse(f"reads as key {key!r} in account {account!r} but also as an email address; "
                   f"for the key {spec} write {key}%40{account}, for that account give the role: "
                   f"{key}:write@{account}")
        if _BAD_ESCAPE.search(spec):
            refuse("a '%' that starts no escape such as %40; write a '%' itself as %25")
        try:
            key, role, account = (unquote(part, errors="strict") for part in (key, role, account))
        except UnicodeDecodeError:
            refuse("a %-escape that is not UTF-8 text")
        if not key:
            refuse("no key")
        if colon and not role:
            refuse("no role after ':'")
        if colon and role not in ROLES:
            refuse(f"role must be one of {', '.join(ROLES)}")
        if at and not account:
            refuse("no account after '@'")
        if len(key) > MAX_KEY_LENGTH or _CONTROL.search(key):
            refuse(f"the key could never be sent: at most {MAX_KEY_LENGTH} characters, none of "
                   "them control characters")
        return cls(key, role or "write", account or key)


def basic_key(header: str | None) -> str | None:
    """The API key from an Authorization header, or None. Accepts base64 of `KEY:` (the
    documented form), `KEY:anything`, and of `KEY` alone, which real clients send."""
    if not header:
        return None
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    key = decoded.split(":", 1)[0]
    # In open mode every key becomes an account: control characters (NUL, newlines) would end up
    # in account names, logs and journal filters, and a huge key is no real client's key.
    if not key or len(key) > MAX_KEY_LENGTH or _CONTROL.search(key):
        return None
    return key


class KeyRing:
    def __init__(self, keys: list[ApiKey] | None = None, admin_token: str | None = None):
        self._keys = {k.key: k for k in keys or ()}
        # An empty token (FAKESHIFT_ADMIN_TOKEN="") is no token: it would be matched by an
        # empty header, which is no secret at all. serve warns about it (server.exposure_warning).
        self._admin_token = admin_token or None
        # Compared as the bytes a client sends: a header value reaches WSGI as the latin-1
        # reading of its bytes, and a UTF-8 token is sent as its UTF-8 bytes.
        self._admin_token_bytes = admin_token.encode("utf-8") if admin_token else None
        # lru_cache is safe to share between threads; the ring itself never changes.
        self._resolve_remembered = lru_cache(maxsize=RESOLVED_KEPT)(self._resolve)

    @property
    def open_mode(self) -> bool:
        return not self._keys

    def accounts(self) -> set[str]:
        return {k.account for k in self._keys.values()}

    def resolve(self, header: str | None) -> ApiKey | None:
        """The API key an Authorization header carries, or None when it carries no valid one.
        Every Blueshift request asks, mostly with a header seen before: short headers (every
        valid one is) are remembered, at most RESOLVED_KEPT of them."""
        if header is None or len(header) > _RESOLVED_HEADER_LENGTH:
            return self._resolve(header)
        return self._resolve_remembered(header)

    def _resolve(self, header: str | None) -> ApiKey | None:
        key = basic_key(header)
        if key is None or key == self._admin_token:
            return None
        if self.open_mode:
            return ApiKey(key, "write", key)
        return self._keys.get(key)

    def admin_allowed(self, headers) -> bool:
        """With an admin token set, the control plane needs it: `X-Fakeshift-Admin-Token: T`
        or `Authorization: Bearer T`."""
        if self._admin_token_bytes is None:
            return True
        given = headers.get(ADMIN_TOKEN_HEADER)
        if given is None:
            scheme, _, token = headers.get("Authorization", "").partition(" ")
            given = token.strip() if scheme.lower() == "bearer" else None
        if not given:
            return False
        try:
            sent = given.encode("latin-1")
        except UnicodeEncodeError:
            # Only an in-process caller can pass text no header could carry; it is no match.
            return False
        # Bytes, not str: compare_digest raises TypeError on non-ASCII text (a 500).
        return hmac.compare_digest(sent, self._admin_token_bytes)


def authorize(api_key: ApiKey | None, writes: bool) -> ApiKey:
    """The caller of a Blueshift operation, or its refusal: 401 without a valid key, 403 when a
    read-only key asks to write."""
    if api_key is None:
        raise Unauthorized()
    if writes and api_key.role == "read":
        raise PermissionDenied()
    return api_key
