"""Isolation and access: credentials on every Blueshift route, accounts that never see each other,
an admin token that guards the control plane (and is never an API key), and no traffic before
the scenario is loaded."""

from __future__ import annotations

import base64
import time
import uuid

import pytest
import requests

from conftest import Blueshift, basic
from fakeshift import create_app
from fakeshift.contract import load_document

# Probes and the published documents stay open: health checks and SDK generators have no secrets.
OPEN_CONTROL_ENDPOINTS = {"admin.health", "admin.ready", "admin.openapi_document",
                          "admin.readme"}
SAMPLE_ARGUMENTS = {"IntegerConverter": 1001, "UUIDConverter": uuid.UUID(int=7),
                    "UnicodeConverter": "vip", "PathConverter": "x", "IdConverter": "team/vip",
                    "ProfileConverter": str(uuid.UUID(int=7)), "SegmentConverter": "sample-id"}


def _sample_url(app, rule) -> str:
    values = {}
    for name, converter in rule._converters.items():
        kind = type(converter).__name__
        values[name] = sorted(converter.items)[0] if kind == "AnyConverter" else SAMPLE_ARGUMENTS[kind]
    with app.test_request_context():
        return app.url_for(rule.endpoint, **values)


def _routes(app, blueprint_prefix: str):
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith(blueprint_prefix):
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                yield rule, method


def _blueshift_routes(app):
    return [(rule.endpoint, method, _sample_url(app, rule))
            for rule, method in _routes(app, "blueshift.")]


def _control_routes(app):
    return [(rule.endpoint, method, _sample_url(app, rule))
            for rule in app.url_map.iter_rules()
            if rule.rule.startswith("/_fakeshift/")
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"})]


BAD_CREDENTIALS = [
    {},
    {"Authorization": ""},
    {"Authorization": "Basic"},
    {"Authorization": "Basic "},
    {"Authorization": "Basic " + base64.b64encode(b":").decode()},
    {"Authorization": "Basic " + base64.b64encode(b":secret").decode()},
    {"Authorization": "Basic not-base64!"},
    {"Authorization": "Basic " + base64.b64encode(b"\xff\xfe:").decode()},
    {"Authorization": "Bearer some-key"},
    {"Authorization": "Digest username=some-key"},
    {"Authorization": "some-key"},
    {"Authorization": "Basic " + base64.b64encode(b"\x00\x00:").decode()},
    {"Authorization": "Basic " + base64.b64encode(b"key\nX-Injected: 1:").decode()},
    {"Authorization": "Basic " + base64.b64encode(b"k" * 257 + b":").decode()},
]


def test_the_route_list_covers_every_blueshift_endpoint():
    endpoints = {endpoint for endpoint, _method, _url in _blueshift_routes(create_app({}))}
    assert {"blueshift.forget", "blueshift.delete_customer", "blueshift.unforget",
            "blueshift.delete_group", "blueshift.remove_user_from_list"} <= endpoints
    assert len(endpoints) >= 13


@pytest.mark.parametrize("credentials", BAD_CREDENTIALS, ids=range(len(BAD_CREDENTIALS)))
def test_no_blueshift_route_answers_without_valid_credentials(credentials):
    app = create_app({})
    client = app.test_client()
    for endpoint, method, url in _blueshift_routes(app):
        response = client.open(url, method=method, headers=credentials,
                               json={"email": "a@example.com"})
        assert response.status_code == 401, (endpoint, method, response.status_code)
        assert response.json == {"message": "Not authorized"}
    assert client.get("/_fakeshift/accounts").json == {"accounts": []}


def test_configured_keys_refuse_unknown_ones_on_every_route():
    app = create_app({"api_keys": ("known:write@acme",)})
    client = app.test_client()
    for endpoint, method, url in _blueshift_routes(app):
        response = client.open(url, method=method, headers=basic("unknown"), json={})
        assert response.status_code == 401, (endpoint, method)


def _twin_accounts(client) -> dict[str, Blueshift]:
    """Two accounts with the same emails, customer ids, profile uuids, list id and group id."""
    twins = {}
    for key in ("alpha", "beta"):
        response = client.post(f"/_fakeshift/accounts/{key}/seed", json={
            "profiles": [
                {"uuid": "00000000-0000-4000-8000-000000000001", "email": "same@example.com",
                 "customer_id": "c-1", "attributes": {"owner": key}},
                {"email": "dup@example.com", "count": 3, "attributes": {"owner": key}},
            ],
            "lists": [{"id": 1001, "name": "Shared name", "members": ["same@example.com"]}],
            "groups": [{"group_id": "vip", "members": [{"email": "dup@example.com"}]}],
        })
        assert response.status_code == 200
        twins[key] = Blueshift(client, key)
    return twins


def test_accounts_sharing_every_identifier_never_see_or_change_each_other():
    client = create_app({}).test_client()
    twins = _twin_accounts(client)
    alpha, beta = twins["alpha"], twins["beta"]
    beta_before = beta.state()

    profile = alpha.get("/api/v1/customers/00000000-0000-4000-8000-000000000001")
    assert profile.json["customer"]["owner"] == "alpha"
    found = alpha.get("/api/v1/customers?email=dup@example.com").json["users"]
    assert {user["owner"] for user in found} == {"alpha"} and len(found) == 3
    assert alpha.get("/api/v1/custom_user_lists/id/1001").json["user_count"] == 1

    calls = [
        ("POST", "/api/v1/customers/delete?delete_all_matching_customers=true",
         {"email": "dup@example.com"}),
        ("POST", "/api/v1/customers/forget", {"customer_id": "c-1"}),
        ("POST", "/api/v1/customers/unforget", {"customer_id": "c-1"}),
        ("PUT", "/api/v1/custom_user_lists/remove_user_from_list/1001",
         {"identifier_key": "email", "identifier_value": "same@example.com"}),
        ("DELETE", "/api/v1/customer_group/vip", None),
        ("POST", "/api/v1/customers", {"customer_id": "c-2", "email": "same@example.com"}),
        ("POST", "/api/v1/custom_user_lists/create", {"name": "Another"}),
    ]
    for method, path, body in calls:
        response = alpha.call(method, path, json=body) if body else alpha.call(method, path)
        assert response.status_code == 200, (path, response.json)

    assert beta.state() == beta_before
    assert alpha.state()["stats"]["pending_deletion"] == 4
    # What alpha did is journaled under alpha only.
    journal = client.get("/_fakeshift/journal?account=beta").json
    assert journal["count"] == 0
    assert client.get("/_fakeshift/journal?account=alpha").json["count"] >= len(calls)


def test_admin_token_guards_the_control_plane_and_is_never_an_api_key():
    app = create_app({"admin_token": "s3cret-admin"})
    client = app.test_client()
    routes = _control_routes(app)
    assert len(routes) >= 20
    guarded = [(endpoint, method, url) for endpoint, method, url in routes
               if endpoint not in OPEN_CONTROL_ENDPOINTS]
    wrong_tokens = [{}, {"X-Fakeshift-Admin-Token": "wrong"},
                    {"Authorization": "Bearer wrong"}, basic("s3cret-admin"),
                    {"X-Fakeshift-Admin-Token": ""}]
    for endpoint, method, url in guarded:
        for headers in wrong_tokens:
            response = client.open(url, method=method, headers=headers, json={})
            assert response.status_code == 401, (endpoint, method, headers, response.status_code)
            assert response.is_json
    for endpoint, method, url in routes:
        if endpoint in OPEN_CONTROL_ENDPOINTS:
            assert client.open(url, method=method).status_code == 200, endpoint
    # Nothing was changed by all those refused calls: reset, seed, clock, faults...
    token = {"X-Fakeshift-Admin-Token": "s3cret-admin"}
    assert client.get("/_fakeshift/accounts", headers=token).json == {"accounts": []}
    assert client.get("/_fakeshift/faults", headers=token).json["count"] == 0
    assert client.get("/_fakeshift/clock", headers=token).json["frozen"] is False
    assert client.get("/_fakeshift/accounts",
                      headers={"Authorization": "Bearer s3cret-admin"}).status_code == 200
    # The admin token is not an API key, in either Basic form.
    for colon in (True, False):
        refused = client.post("/api/v1/customers", headers=basic("s3cret-admin", colon),
                              json={"email": "a@example.com"})
        assert refused.status_code == 401
    assert client.get("/_fakeshift/accounts", headers=token).json == {"accounts": []}


def test_not_ready_and_no_blueshift_answers_while_a_large_scenario_loads(start_server, tmp_path):
    scenario = tmp_path / "large.yaml"
    scenario.write_text(
        "accounts:\n"
        "  - key: big\n"
        "    generate:\n"
        "      - {count: 150000, email: 'user{n}@example.com', customer_id: 'c{n}'}\n"
        "    lists:\n"
        "      - {name: Everyone, members: [user1@example.com, user2@example.com]}\n")
    server = start_server("--scenario", str(scenario), "--access-log", "false", ready=False)
    seen = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        # The Blueshift call first: if it answered, readiness polled after it must say so too.
        call = requests.get(f"{server.url}/api/v1/custom_user_lists/id/1001", headers=basic("big"),
                            timeout=5)
        ready = requests.get(f"{server.url}/_fakeshift/ready", timeout=5).status_code
        seen.append((call.status_code, ready))
        if call.status_code == 503:
            assert call.json()["message"].startswith("Service Unavailable")
            assert call.headers["Retry-After"] == "1"
        else:
            break
        time.sleep(0.02)
    assert seen[0] == (503, 503), "loading finished before the first poll"
    assert seen[-1] == (200, 200), seen[-1]
    assert call.json()["user_count"] == 2
    assert requests.get(f"{server.url}/_fakeshift/health", timeout=5).json()["internal_errors"] == 0


@pytest.mark.parametrize("headers", [{}, {"X-Fakeshift-Admin-Token": "wrong"},
                                     {"Authorization": "Bearer wrong"}])
def test_a_control_plane_401_says_an_admin_token_is_needed_and_how_to_send_it(headers):
    client = create_app({"admin_token": "s3cret-admin"}).test_client()
    response = client.get("/_fakeshift/accounts", headers=headers)
    assert response.status_code == 401
    message = response.json["message"]
    assert "admin token" in message
    assert "X-Fakeshift-Admin-Token" in message and "Authorization: Bearer" in message
    # Blueshift's endpoints keep Blueshift's own 401.
    refused = client.post("/api/v1/customers", json={"email": "a@example.com"}, headers=headers)
    assert refused.status_code == 401 and refused.json == {"message": "Not authorized"}
    documented = load_document("admin")["components"]["responses"]["Unauthorized"]
    assert documented["content"]["application/json"]["example"] == response.json


def test_reads_with_fresh_keys_create_no_account_so_a_new_key_can_still_write():
    client = create_app({"max_accounts": 3}).test_client()
    for n in range(20):
        reader = Blueshift(client, f"reader-{n}")
        assert reader.get("/api/v1/customers?email=a@example.com").json == {"users": []}
        assert reader.get("/api/v1/customers/00000000-0000-4000-8000-000000000001").status_code \
            == 404
        assert reader.get("/api/v1/custom_user_lists/id/1001").status_code == 404
    assert client.get("/_fakeshift/accounts").json == {"accounts": []}
    for n in range(3):
        writer = Blueshift(client, f"writer-{n}")
        assert writer.post("/api/v1/customers", json={"email": "w@example.com"}).status_code == 200
    # The cap still holds for accounts that write.
    refused = Blueshift(client, "one-too-many").post("/api/v1/customers",
                                                     json={"email": "w@example.com"})
    assert refused.status_code == 429 and "max_accounts" in refused.json["message"]
    # An existing account reads its own data as before.
    found = Blueshift(client, "writer-0").get("/api/v1/customers?email=w@example.com").json
    assert len(found["users"]) == 1
