"""Exposure of the control plane: a warning at start when anyone may call it, an empty admin
token counted as none, an admin-token header that is no text compare_digest takes is a 401 (not
a 500), and the dashboard's one-time ?token= never reaches the access log."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest
import requests

from conftest import ROOT
from fakeshift import create_app
from fakeshift.config import Config
from fakeshift.server import AccessLog, LogWriter, exposure_warning, redact_query

TOKEN = "s3cret"


@pytest.mark.parametrize("headers", [
    {"X-Fakeshift-Admin-Token": "s\u00e9cret"},
    {"Authorization": "Bearer \u00fc\u00fc"},
    # What a client sending UTF-8 puts on the wire, as WSGI hands it over (latin-1 text).
    {"X-Fakeshift-Admin-Token": "\u20ac".encode().decode("latin-1")},
])
def test_a_non_ascii_admin_token_header_is_a_401_not_a_500(headers):
    client = create_app({"admin_token": TOKEN}).test_client()
    response = client.get("/_fakeshift/accounts", headers=headers)
    assert response.status_code == 401, response.status_code
    assert "admin token" in response.json["message"]
    assert client.get("/_fakeshift/health").json["internal_errors"] == 0


def test_a_non_ascii_admin_token_matches_its_utf8_bytes():
    token = "p\u00e4ss-\u20ac"
    client = create_app({"admin_token": token}).test_client()
    sent = token.encode("utf-8").decode("latin-1")  # the header as a UTF-8 client sends it
    assert client.get("/_fakeshift/accounts",
                      headers={"X-Fakeshift-Admin-Token": sent}).status_code == 200
    assert client.get("/_fakeshift/accounts",
                      headers={"Authorization": f"Bearer {sent}"}).status_code == 200
    assert client.get("/_fakeshift/accounts",
                      headers={"X-Fakeshift-Admin-Token": token[:-1]}).status_code == 401


def test_an_empty_header_never_matches_a_token():
    client = create_app({"admin_token": TOKEN}).test_client()
    for headers in ({"X-Fakeshift-Admin-Token": ""}, {"Authorization": "Bearer "},
                    {"Authorization": "Bearer"}):
        assert client.get("/_fakeshift/accounts", headers=headers).status_code == 401, headers


def test_an_empty_admin_token_is_no_token():
    client = create_app({"admin_token": ""}).test_client()
    assert client.get("/_fakeshift/accounts").status_code == 200
    # ...and, being no token, it is not a key that the Blueshift API refuses either.
    assert client.post("/api/v1/customers", json={"email": "a@example.com"},
                       headers={"Authorization": "Basic Og=="}).status_code == 401


@pytest.mark.parametrize("host, token, warned", [
    ("127.0.0.1", None, None),
    ("::1", None, None),
    ("127.0.0.1", TOKEN, None),
    ("0.0.0.0", TOKEN, None),
    ("0.0.0.0", None, "the control plane is open on 0.0.0.0 with no admin token"),
    ("::", None, "the control plane is open on :: with no admin token"),
    ("192.168.1.20", None, "anyone who can reach this port can reset the server"),
    ("0.0.0.0", "", "the admin token is empty, which means no token: the control plane is open"),
    ("127.0.0.1", "", "the admin token is empty, which means no token: the control plane "
                      "(/_fakeshift/) is open to anyone on this machine"),
])
def test_the_start_warns_when_anyone_may_call_the_control_plane(host, token, warned):
    warning = exposure_warning(Config(host=host, admin_token=token), host)
    if warned is None:
        assert warning is None
    else:
        assert warning is not None and warned in warning, warning
        if token is None:
            assert "--admin-token (FAKESHIFT_ADMIN_TOKEN)" in warning


def test_serve_with_an_empty_admin_token_variable_warns_and_runs_open():
    process = subprocess.Popen(
        [sys.executable, "-m", "fakeshift", "serve", "--port", "0", "--access-log", "false"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
        env={**_environment(), "FAKESHIFT_ADMIN_TOKEN": ""})
    try:
        banner = process.stdout.readline()
        warning = process.stdout.readline()
        url = banner.split("listening on ", 1)[1].split(" ", 1)[0]
        assert "admin_token=off" in banner
        assert "WARNING" not in banner and "admin token is empty, which means no token" in warning
        assert requests.get(f"{url}/_fakeshift/accounts", timeout=5).status_code == 200
    finally:
        process.terminate()
        process.communicate(timeout=10)


def _environment() -> dict:
    import os
    return {name: value for name, value in os.environ.items()
            if not name.startswith("FAKESHIFT_")}


@pytest.mark.parametrize("query, logged", [
    ("token=abc", "token=[redacted]"),
    ("a=1&token=abc&b=2", "a=1&token=[redacted]&b=2"),
    ("%74oken=abc", "%74oken=[redacted]"),
    ("token=a&token=b", "token=[redacted]&token=[redacted]"),
    ("tokens=abc&x=token=abc", "tokens=abc&x=token=abc"),
    ("token", "token"),
    ("a=1", "a=1"),
])
def test_token_values_are_redacted_from_logged_queries(query, logged):
    assert redact_query(query) == logged


def test_the_dashboard_token_never_reaches_the_access_log():
    writer = LogWriter(io.StringIO())
    app = create_app({"admin_token": TOKEN})
    logged = app.wsgi_app
    logged.access_log = AccessLog(writer)
    environ = {"REMOTE_ADDR": "127.0.0.1", "REQUEST_METHOD": "GET", "PATH_INFO": "/_fakeshift/ui",
               "QUERY_STRING": f"token={TOKEN}", "SERVER_NAME": "localhost", "SERVER_PORT": "80",
               "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(b"")}
    statuses = []
    b"".join(logged(environ, lambda status, headers, exc_info=None: statuses.append(status)))
    writer.close()
    (line,) = writer.stream.getvalue().splitlines()
    assert statuses == ["200 OK"]  # the token was taken, and yet:
    assert TOKEN not in line and '"GET /_fakeshift/ui?token=[redacted]" 200' in line
