"""Capacity limits: each is configurable (Config field, `fakeshift serve` flag, FAKESHIFT_ env),
has a sane default, and past it the answer is a clear 4xx naming the limit, never a crash."""

from __future__ import annotations

import re

import pytest
import requests

from conftest import ROOT, Blueshift, basic
from fakeshift import create_app
from fakeshift.cli import build_parser, config_from_args
from fakeshift.clock import VirtualClock
from fakeshift.config import Config
from fakeshift.errors import LimitReached
from fakeshift.models import MAX_PROFILES_TOTAL, Settings, Store


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
    ("--max-events-per-account", "MAX_EVENTS_PER_ACCOUNT", "max_events_per_account", "5", 5,
     1_000),
    ("--max-profiles-total", "MAX_PROFILES_TOTAL", "max_profiles_total", "11", 11, 2_000_000),
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


def _with_profile_total(cap: int):
    """An app whose server-wide profile cap is `cap` (a Settings field; no flag sets it)."""
    app = create_app({})
    emulator = app.extensions["fakeshift"]
    emulator.base_settings.max_profiles_total = cap
    emulator.reset("empty")
    return app, app.test_client()


def test_the_default_profile_total_bounds_the_server_below_every_account_at_its_cap():
    settings = Settings()
    assert settings.max_profiles_total == MAX_PROFILES_TOTAL
    assert settings.max_profiles_total < settings.max_accounts * settings.max_profiles_per_account
    assert MAX_PROFILES_TOTAL >= settings.max_profiles_per_account


def test_the_server_wide_profile_limit_is_a_429_naming_it_across_accounts():
    app, client = _with_profile_total(5)
    for key, count in (("a", 3), ("b", 2)):
        for n in range(count):
            assert Blueshift(client, key).post(
                "/api/v1/customers", json={"customer_id": f"c{n}"}).status_code == 200
    refused = Blueshift(client, "c").post("/api/v1/customers", json={"customer_id": "c0"})
    assert refused.status_code == 429
    assert refused.json == {"message": "Profile limit reached: the server holds 5 profiles "
                                       "(max_profiles_total)"}
    assert Blueshift(client, "a").post("/api/v1/customers",
                                       json={"customer_id": "c1", "plan": "pro"}).status_code == 200
    seed = client.post("/_fakeshift/accounts/b/seed", json={"profiles": [{"email": "z@e.com"}]})
    assert seed.status_code == 400 and "max_profiles_total" in str(seed.json)
    stats = {a["account"]: a["stats"]["profiles"]
             for a in client.get("/_fakeshift/accounts").json["accounts"]}
    assert stats == {"a": 3, "b": 2, "c": 0}
    assert app.extensions["fakeshift"].internal_errors == 0


def test_a_scenario_past_the_profile_total_is_refused_and_changes_nothing():
    _app, client = _with_profile_total(5)
    Blueshift(client, "kept").seed(profiles=[{"email": "kept@example.com"}])
    scenario = {"accounts": [{"key": "x", "generate": [{"count": 3, "email": "x{n}@e.com"}]},
                             {"key": "y", "profiles": [{"email": "y@e.com", "count": 3}]}]}
    refused = client.put("/_fakeshift/scenario", json=scenario)
    assert refused.status_code == 400
    (message,) = refused.json["errors"]["scenario"]
    assert message == ("request body: accounts[1].profiles[0]: Profile limit reached: the server "
                       "holds 5 profiles (max_profiles_total)")
    assert [a["account"] for a in client.get("/_fakeshift/accounts").json["accounts"]] == ["kept"]
    scenario["accounts"][1]["profiles"][0]["count"] = 2
    assert client.put("/_fakeshift/scenario", json=scenario).status_code == 200


def _fill(store: Store, name: str, *customer_ids: str) -> None:
    with store.open(name) as (account, now):
        for customer_id in customer_ids:
            account.new_profile(now, {"customer_id": customer_id})


def _refused(store: Store, name: str) -> None:
    with pytest.raises(LimitReached, match="max_profiles_total"):
        _fill(store, name, "one-too-many")


def test_purged_dropped_and_cleared_profiles_make_room_again():
    clock = VirtualClock()
    store = Store(clock, Settings(max_profiles_total=3, deletion_delay=60))
    _fill(store, "a", "c0", "c1", "c2")
    _refused(store, "a")
    with store.open("a") as (account, now):
        account.delete(now, {"customer_id": "c0"}, all_matching=False)
    _refused(store, "b")  # a pending deletion still counts, as for max_profiles_per_account
    clock.advance(61)
    # c0 has fallen due: it makes room although nothing has opened account a since.
    _fill(store, "b", "b0")
    _refused(store, "b")
    store.drop_account("b")
    _fill(store, "a", "c3")
    _refused(store, "a")
    saved = store.to_state()
    store.clear()
    _fill(store, "c", "f0", "f1")
    store.restore(saved)
    _refused(store, "c")
    store.drop_account("a")
    _fill(store, "d", "d0", "d1", "d2")
    _refused(store, "d")


def test_a_saved_state_past_the_profile_total_is_refused():
    big = Store(VirtualClock(), Settings())
    with big.open("a") as (account, now):
        for n in range(4):
            account.new_profile(now, {"customer_id": f"c{n}"})
    small = Store(VirtualClock(), Settings(max_profiles_total=3))
    with pytest.raises(LimitReached, match=r"holds 4 profiles, more than max_profiles_total \(3\)"):
        small.restore(big.to_state())
    assert small.account_names() == []
