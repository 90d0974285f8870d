"""Capacity limits: each is configurable (Config field, `fakeshift serve` flag, FAKESHIFT_ env),
has a sane default, and past it the answer is a clear 4xx naming the limit, never a crash."""

from __future__ import annotations

import re

import pytest
import requests

from conftest import ROOT, Blueshift, basic
from fakeshift import create_app
from fakeshift.cli import build_parser, config_from_args
from fakeshift.config import Config


def _config(argv: list[str]) -> Config:
    return config_from_args(build_parser().parse_args(["serve", *argv]))


LIMIT_FLAGS = [
    # (flag, environment variable, Config field, value given, value expected, default)
    ("--max-body-bytes", "MAX_BODY_BYTES", "max_body_bytes", "2k", 2048, 1 << 20),
    ("--admin-max-body-bytes", "ADMIN_MAX_BODY_BYTES", "admin_max_body_bytes", "3m", 3 << 20,
     256 << 20),
    ("--max-header-bytes", "MAX_HEADER_BYTES", "max_header_bytes", "16k", 16 << 10, 64 << 10),
    ("--max-accounts", "MAX_ACCOUNTS", "max_accounts", "7", 7, 10_000),
    ("--max-profiles-per-account", "MAX_PROFILES_PER_ACCOUNT", "max_profiles_per_account", "9",
     9, 2_000_000),
]


@pytest.mark.parametrize("flag, env, field, given, expected, default", LIMIT_FLAGS)
def test_every_limit_has_a_flag_an_environment_variable_and_a_default(
        monkeypatch, flag, env, field, given, expected, default):
    assert getattr(_config([]), field) == default == getattr(Config(), field)
    assert getattr(_config([flag, given]), field) == expected
    monkeypatch.setenv(f"FAKESHIFT_{env}", given)
    assert getattr(_config([]), field) == expected


def test_a_body_over_the_limit_is_a_json_413_naming_the_limit():
    client = create_app({"max_body_bytes": 1000}).test_client()
    api = Blueshift(client, "acme")
    body = {"email": "a@example.com", "note": "x" * 2000}
    response = api.post("/api/v1/customers", json=body)
    assert response.status_code == 413
    assert response.json == {"message": "Request body too large: the limit is 1000 bytes"}
    assert client.get("/_fakeshift/accounts").json == {"accounts": []}
    # The control plane has its own, larger limit (scenarios are uploaded through it).
    assert client.post("/_fakeshift/accounts/acme/seed",
                       json={"profiles": [{"email": "a@example.com",
                                           "attributes": {"note": "x" * 2000}}]}).status_code == 200


def test_headers_over_the_limit_are_a_json_431_naming_the_limit():
    client = create_app({"max_header_bytes": 2048}).test_client()
    response = Blueshift(client, "acme").get("/api/v1/customers?email=a@example.com",
                                             headers={"X-Padding": "p" * 3000})
    assert response.status_code == 431 and response.is_json
    assert "max_header_bytes" in response.json["message"]
    assert client.get("/_fakeshift/accounts").json == {"accounts": []}
    assert Blueshift(client, "acme").get("/api/v1/customers?email=a@example.com",
                                         headers={"X-Padding": "p" * 1000}).status_code == 200


def test_the_account_limit_is_a_429_naming_it_and_existing_accounts_keep_working():
    client = create_app({"max_accounts": 3}).test_client()
    for key in ("a", "b", "c"):
        assert Blueshift(client, key).post("/api/v1/customers",
                                           json={"email": "x@example.com"}).status_code == 200
    refused = Blueshift(client, "d").post("/api/v1/customers", json={"email": "x@example.com"})
    assert refused.status_code == 429 and "max_accounts" in refused.json["message"]
    seed = client.post("/_fakeshift/accounts/d/seed", json={"profiles": [{"email": "x@e.com"}]})
    assert seed.status_code == 429 and "max_accounts" in seed.json["message"]
    assert len(client.get("/_fakeshift/accounts").json["accounts"]) == 3
    assert Blueshift(client, "a").post("/api/v1/customers",
                                       json={"email": "y@example.com"}).status_code == 200


def test_the_profile_limit_is_a_429_naming_it_and_changes_nothing():
    client = create_app({"max_profiles_per_account": 5}).test_client()
    api = Blueshift(client, "acme")
    for n in range(5):
        assert api.post("/api/v1/customers", json={"customer_id": f"c{n}"}).status_code == 200
    refused = api.post("/api/v1/customers", json={"customer_id": "c5"})
    assert refused.status_code == 429 and "max_profiles_per_account" in refused.json["message"]
    # Updating an existing profile needs no room.
    assert api.post("/api/v1/customers", json={"customer_id": "c1", "plan": "pro"}).status_code == 200
    seed = client.post("/_fakeshift/accounts/acme/seed", json={"profiles": [{"email": "z@e.com"}]})
    assert seed.status_code == 400 and "max_profiles_per_account" in str(seed.json)
    assert api.state()["stats"]["profiles"] == 5


def test_limits_hold_on_a_real_server(start_server):
    server = start_server("--max-accounts", "1", "--max-body-bytes", "512", "--access-log", "false")
    ok = requests.post(f"{server.url}/api/v1/customers", headers=basic("one"), timeout=5,
                       json={"email": "a@example.com"})
    assert ok.status_code == 200
    second = requests.post(f"{server.url}/api/v1/customers", headers=basic("two"), timeout=5,
                           json={"email": "a@example.com"})
    assert second.status_code == 429 and "max_accounts" in second.json()["message"]
    big = requests.post(f"{server.url}/api/v1/customers", headers=basic("one"), timeout=5,
                        json={"email": "a@example.com", "note": "x" * 1000})
    assert big.status_code == 413 and "512 bytes" in big.json()["message"]
    health = requests.get(f"{server.url}/_fakeshift/health", timeout=5).json()
    assert health["internal_errors"] == 0


def test_the_readme_limit_table_matches_the_server():
    """The reliability section's flags exist and its defaults are the parser's."""
    section = (ROOT / "README.md").read_text().split("<!-- section: reliability -->", 1)[1]
    section = section.split("<!-- section:", 1)[0]
    serve = build_parser()._subparsers._group_actions[0].choices["serve"]
    options = {option: action for action in serve._actions for option in action.option_strings}
    rows = re.findall(r"^\| [^|]+ \| ([^|]+) \| `(--[a-z-]+)` \|", section, flags=re.M)
    assert len(rows) >= 8
    for default, flag in rows:
        assert flag in options, flag
        assert str(options[flag].default) == default.strip(), (flag, options[flag].default)
    for flag in set(re.findall(r"`(--[a-z-]+)", section)):
        assert flag in options, flag


def test_fault_rules_and_journal_stay_within_their_limits():
    client = create_app({"max_fault_rules": 2, "journal_size": 5}).test_client()
    for n in range(2):
        assert client.post("/_fakeshift/faults", json={"path": f"/nowhere/{n}",
                                                       "status": 503}).status_code == 200
    refused = client.post("/_fakeshift/faults", json={"path": "/nowhere/2", "status": 503})
    assert refused.status_code == 429 and "the limit is 2" in refused.json["message"]
    assert client.get("/_fakeshift/faults").json["count"] == 2
    api = Blueshift(client, "acme")
    for n in range(12):
        api.post("/api/v1/customers", json={"customer_id": f"c{n}"})
    assert client.get("/_fakeshift/journal").json["count"] == 5
