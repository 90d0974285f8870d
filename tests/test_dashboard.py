"""The dashboard page (/_fakeshift/ui) as the server sends it: self-contained, guarded by the
admin token, shipped in the package. What it does in a browser is tests/test_dashboard_browser.py."""

from __future__ import annotations

import base64
import hashlib
import re
import tomllib
from html.parser import HTMLParser
from importlib import resources

import pytest

from conftest import ROOT
from fakeshift import create_app
from fakeshift.dashboard import PATH

TOKEN = "s3cret-admin"


class PageParts(HTMLParser):
    """The page's inline scripts and styles, and every address it names."""

    def __init__(self):
        super().__init__()
        self.addresses: list[str] = []
        self.inline: dict[str, list[str]] = {"script": [], "style": []}
        self._open: str | None = None

    def handle_starttag(self, tag, attrs):
        self.addresses += [value for name, value in attrs if name in ("src", "href", "action")]
        if tag in self.inline:
            self._open = tag
            self.inline[tag].append("")

    def handle_endtag(self, tag):
        self._open = None

    def handle_data(self, data):
        if self._open:
            self.inline[self._open][-1] += data


def _sha256_source(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def test_the_page_is_one_document_that_loads_nothing_from_elsewhere(client):
    response = client.get(PATH)
    assert response.status_code == 200 and response.mimetype == "text/html"
    parts = PageParts()
    parts.feed(response.get_data(as_text=True))
    # One inline script and one inline style: no file to fetch, nothing from a CDN.
    assert [len(parts.inline["script"]), len(parts.inline["style"])] == [1, 1]
    assert "fakeshiftDashboard" in parts.inline["script"][0]
    # Its own icon is a data: address, so the browser asks for no /favicon.ico either.
    assert all(address.startswith(("/_fakeshift/", "data:")) for address in parts.addresses), \
        parts.addresses
    assert "url(" not in parts.inline["style"][0] and "@import" not in parts.inline["style"][0]
    policy = dict(part.strip().split(" ", 1) for part in
                  response.headers["Content-Security-Policy"].split(";"))
    # The browser itself refuses anything but this exact script and style, and any other host.
    assert policy["default-src"] == "'none'" and policy["connect-src"] == "'self'"
    assert policy["script-src"] == _sha256_source(parts.inline["script"][0])
    assert policy["style-src"] == _sha256_source(parts.inline["style"][0])


def test_the_script_puts_client_data_on_the_page_as_text_only():
    script = (resources.files("fakeshift.dashboard") / "dashboard.js").read_text()
    # Paths, bodies and identifiers are whatever clients sent: never parsed as HTML.
    assert re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write", script) is None
    assert "textContent" in script


def test_with_an_admin_token_the_page_needs_it_in_a_header_or_once_in_its_address():
    client = create_app({"admin_token": TOKEN}).test_client()
    refused = client.get(PATH)
    assert refused.status_code == 401 and f"{PATH}?token=<token>" in refused.json["message"]
    for wrong in (f"{PATH}?token=wrong", f"{PATH}?token=", f"{PATH}?token=%C3%A9"):
        assert client.get(wrong).status_code == 401, wrong
    assert client.get(PATH, headers={"X-Fakeshift-Admin-Token": TOKEN}).status_code == 200
    assert client.get(PATH, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    opened = client.get(f"{PATH}?token={TOKEN}")
    assert opened.status_code == 200
    # The address holds the token: no Referer carries it anywhere, no cache keeps the page.
    assert opened.headers["Referrer-Policy"] == "no-referrer"
    assert opened.headers["Cache-Control"] == "no-store"
    # The control plane itself still takes the token in headers only.
    assert client.get(f"/_fakeshift/accounts?token={TOKEN}").status_code == 401


def test_without_an_admin_token_the_page_is_open(client):
    assert client.get(PATH).status_code == 200
    assert client.get(f"{PATH}?token=anything").status_code == 200


@pytest.mark.parametrize("method", ["post", "put", "delete"])
def test_the_page_only_answers_get(client, method):
    response = getattr(client, method)(PATH)
    assert response.status_code == 405 and response.is_json


def test_every_file_of_the_dashboard_ships_in_the_package():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "fakeshift.dashboard" in config["packages"]
    patterns = config["package-data"]["fakeshift.dashboard"]
    files = [item.name for item in resources.files("fakeshift.dashboard").iterdir()
             if item.is_file() and item.suffix != ".py"]
    assert sorted(files) == ["dashboard.css", "dashboard.js", "index.html"]
    assert all(any(re.fullmatch(pattern.replace(".", r"\.").replace("*", ".*"), name)
                   for pattern in patterns) for name in files)
