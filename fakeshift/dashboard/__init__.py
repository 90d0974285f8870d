"""The dashboard at /_fakeshift/ui: one page, in plain HTML, CSS and JavaScript, over the control
plane: the journal live, accounts, contract violations, fault rules, rate limits and the clock.

The page is index.html with dashboard.css and dashboard.js put inline when it is served, so it is
one route and one request: a browser opening `?token=` could not send the admin token on separate
requests for the files, and every control-plane route but the probes needs the token. Its
Content-Security-Policy lets it run only that style and script and talk only to this server,
so it works offline in a sidecar and nothing on it can load from elsewhere.

The admin token: like any control-plane call (`X-Fakeshift-Admin-Token` or `Authorization:
Bearer`), or once as `?token=` so a browser can open the page; the script then takes it out of
the address bar and sends it as `X-Fakeshift-Admin-Token` on every call it makes. The control
plane itself still takes the token only in headers.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from flask import Blueprint, Response, current_app, request

from ..auth import ADMIN_TOKEN_HEADER
from ..errors import BlueshiftError

PATH = "/_fakeshift/ui"
TOKEN_PARAMETER = "token"
TOKEN_NEEDED = (f"Not authorized: the dashboard needs the server's admin token (--admin-token); "
                f"open {PATH}?{TOKEN_PARAMETER}=<token>, or send it as {ADMIN_TOKEN_HEADER}: "
                "<token> or as Authorization: Bearer <token>")
# Where index.html takes the two files in.
_STYLE_SLOT = "<style></style>"
_SCRIPT_SLOT = "<script></script>"

bp = Blueprint("dashboard", __name__)


@dataclass(frozen=True)
class Page:
    html: bytes
    content_security_policy: str


def _digest(text: str) -> str:
    """A CSP source for exactly this inline text."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


@lru_cache(maxsize=1)
def page() -> Page:
    """The page, built once: the files ship with the package and do not change while it runs."""
    files = resources.files(__name__)
    style = (files / "dashboard.css").read_text(encoding="utf-8")
    script = (files / "dashboard.js").read_text(encoding="utf-8")
    html = (files / "index.html").read_text(encoding="utf-8")
    html = html.replace(_STYLE_SLOT, f"<style>{style}</style>", 1)
    html = html.replace(_SCRIPT_SLOT, f"<script>{script}</script>", 1)
    policy = "; ".join([
        "default-src 'none'",
        f"script-src {_digest(script)}",
        f"style-src {_digest(style)}",
        "connect-src 'self'",
        "img-src 'self' data:",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ])
    return Page(html.encode("utf-8"), policy)


def _allowed() -> bool:
    keyring = current_app.extensions["fakeshift"].keyring
    if keyring.admin_allowed(request.headers):
        return True
    given = request.args.get(TOKEN_PARAMETER)
    # hmac.compare_digest refuses non-ASCII text with a TypeError; such a token is wrong anyway.
    return (given is not None and given.isascii()
            and keyring.admin_allowed({ADMIN_TOKEN_HEADER: given}))


@bp.get(PATH)
def dashboard():
    if not _allowed():
        raise BlueshiftError({"message": TOKEN_NEEDED}, 401)
    built = page()
    return Response(built.html, mimetype="text/html", headers={
        "Content-Security-Policy": built.content_security_policy,
        # The address may carry ?token=: no Referer to anyone, no copy in any cache.
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
    })
