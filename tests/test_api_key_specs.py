"""Configured API keys (`--api-key KEY[:ROLE][@ACCOUNT]`, FAKESHIFT_API_KEYS): one reading per
spec, and a spec that could be read two ways, or not at all, is refused at start with a message
that says how to write what was meant."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import ROOT, basic
from fakeshift import create_app
from fakeshift.auth import ApiKey


@pytest.mark.parametrize("spec, key, role, account", [
    ("k", "k", "write", "k"),
    ("k:read", "k", "read", "k"),
    ("writer@shop", "writer", "write", "shop"),
    ("reader:read@shop", "reader", "read", "shop"),
    ("team/job-17@team/ci", "team/job-17", "write", "team/ci"),
    # An explicit role says the '@' starts the account, dots and all.
    ("user:write@example.com", "user", "write", "example.com"),
    # '@', ':', ',' and '%' inside a key or account are written percent-escaped.
    ("user%40example.com", "user@example.com", "write", "user@example.com"),
    ("user%40example.com:read@example.com", "user@example.com", "read", "example.com"),
    ("a%3Ab%2Cc%25d@shop%40eu", "a:b,c%d", "write", "shop@eu"),
    ("caf%C3%A9", "caf\u00e9", "write", "caf\u00e9"),
])
def test_a_spec_has_one_reading(spec, key, role, account):
    assert ApiKey.parse(spec) == ApiKey(key, role, account)


@pytest.mark.parametrize("spec, says", [
    # Key "user" in account "example.com", or the key user@example.com? Refused, not guessed.
    ("user@example.com", "user%40example.com"),
    ("ops@mail.example.com", "ops:write@mail.example.com"),
    ("a@b@c", "more than one '@'"),
    ("a:read:x", "more than one ':'"),
    ("k@shop:read", "the role goes before the account"),
    ("", "no key"),
    (":read", "no key"),
    ("k:", "no role after ':'"),
    ("k@", "no account after '@'"),
    ("k:admin", "role must be one of write, read"),
    ("k%4", "%25"),
    ("k%zz@shop", "%25"),
    ("k%FF", "not UTF-8"),
    ("k%0A", "could never be sent"),
    ("k" * 257, "could never be sent"),
])
def test_a_spec_that_reads_two_ways_or_none_is_refused_with_what_to_write(spec, says):
    with pytest.raises(ValueError, match="API key spec") as refused:
        ApiKey.parse(spec)
    assert says in str(refused.value)


def test_an_escaped_email_key_authenticates_with_the_plain_email():
    client = create_app({"api_keys": ("user%40example.com",)}).test_client()
    answer = client.post("/api/v1/customers", json={"email": "a@example.com"},
                         headers=basic("user@example.com"))
    assert answer.status_code == 200
    assert client.get("/_fakeshift/accounts").json["accounts"][0]["account"] == "user@example.com"
    refused = client.post("/api/v1/customers", json={"email": "a@example.com"},
                          headers=basic("user"))
    assert refused.status_code == 401


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_serve_refuses_an_email_like_key_in_one_line(how):
    args, env = ["--api-key", "user@example.com"], {}
    if how == "environment":
        args, env = [], {"FAKESHIFT_API_KEYS": "good,user@example.com"}
    result = subprocess.run([sys.executable, "-m", "fakeshift", "serve", "--port", "0", *args],
                            capture_output=True, text=True, timeout=60, cwd=ROOT,
                            env={**os.environ, **env})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fakeshift: error: API key spec "), lines
    assert "user%40example.com" in lines[0]
