"""Requests that break openapi/blueshift.yaml are recorded as violations (per account, bounded,
readable and clearable through the control plane); strict mode refuses them before any state
changes."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from conftest import Blueshift, basic
from fakeshift import create_app
from fakeshift.cli import build_parser, config_from_args
from fakeshift.clock import VirtualClock
from fakeshift.contract import Contract, Problem, ViolationLog, load_document
from fakeshift.models import BULK_CAP


def violations(client, account: str | None = None) -> list[dict]:
    response = client.get("/_fakeshift/violations",
                          query_string={"account": account} if account else None)
    assert response.status_code == 200
    body = response.json
    assert body["count"] == len(body["violations"])
    return body["violations"]


def only_violation(client, account: str | None = "test-key") -> dict:
    found = violations(client, account)
    assert len(found) == 1, found
    return found[0]


@pytest.mark.parametrize("method, path, kwargs, status, location, rule", [
    ("POST", "/api/v1/customers/forget", {"json": {"email": "a@example.com", "emial": "x"}},
     400, "body.emial", "additionalProperties"),
    ("POST", "/api/v1/customers/forget", {"json": {"email": 42}}, 400, "body.email", "type"),
    ("POST", "/api/v1/customers/forget", {"json": {}}, 400, "body", "anyOf"),
    ("POST", "/api/v1/customers/unforget", {"json": {}}, 400, "body", "anyOf"),
    ("POST", "/api/v1/customers/delete", {"json": {"email": "   "}}, 400, "body.email", "pattern"),
    ("POST", "/api/v1/customers/delete?delete_all_matching_customers=maybe",
     {"json": {"email": "a@example.com"}}, 400, "query.delete_all_matching_customers", "type"),
    ("PUT", "/api/v1/custom_user_lists/remove_user_from_list/1001",
     {"json": {"identifier_key": "phone", "identifier_value": "1"}}, 400,
     "body.identifier_key", "enum"),
    ("PUT", "/api/v1/custom_user_lists/add_user_to_list/1001",
     {"json": {"identifier_key": "email"}}, 400, "body.identifier_value", "required"),
    ("POST", "/api/v1/customers", {"json": {"email": "a@example.com", "created_at": "now"}},
     400, "body.created_at", "not"),
    ("POST", "/api/v1/customers/bulk", {"json": {"customers": [{"email": None}]}}, 400,
     "body.customers[0].email", "type"),
    ("GET", "/api/v1/customers/forget", {}, 405, "method", "method"),
    ("GET", "/api/v1/no/such/endpoint", {}, 404, "path", "path"),
])
def test_a_broken_request_records_exactly_one_violation(api, client, method, path, kwargs,
                                                        status, location, rule):
    response = api.call(method, path, **kwargs)
    assert response.status_code == status
    found = only_violation(client)
    assert (found["location"], found["rule"]) == (location, rule)
    assert found["account"] == "test-key"
    assert (found["method"], found["path"]) == (method, path.split("?")[0])
    assert found["message"]
    assert response.headers["X-Fakeshift-Violation"] == rule


def test_a_violation_names_its_operation_time_and_message(api, client):
    client.post("/_fakeshift/clock/freeze", json={"at": "2030-01-02T03:04:05Z"})
    api.post("/api/v1/customers/forget", json={})
    found = only_violation(client)
    assert found["operation"] == "forget"
    assert found["message"] == "at least one of email, customer_id, cookie, device_id is required"
    assert found["time"] == "2030-01-02T03:04:05.000000Z"


def test_a_bulk_call_above_the_cap_says_how_many_and_the_cap(api, client):
    customers = [{"email": f"bulk{n}@example.com", "note": "x" * 20} for n in range(BULK_CAP + 1)]
    response = api.post("/api/v1/customers/bulk", json={"customers": customers})
    assert response.status_code == 413
    found = only_violation(client)
    assert (found["location"], found["rule"]) == ("body.customers", "maxItems")
    assert found["message"] == f"{BULK_CAP + 1} customers; at most {BULK_CAP} per call"


def test_the_documents_bulk_cap_is_the_domains():
    bulk = load_document("blueshift")["components"]["schemas"]["BulkRequest"]
    assert bulk["properties"]["customers"]["maxItems"] == BULK_CAP


@pytest.mark.parametrize("body, location, rule", [
    # A value that is not one of a few: the value is shown, cut short.
    ({"identifier_key": "k" * 5000, "identifier_value": "v"}, "body.identifier_key", "enum"),
    # An unknown field with a huge name: the name is cut short wherever it appears.
    ({"identifier_key": "email", "identifier_value": "v", "n" * 5000: 1},
     "body." + "n" * 60, "additionalProperties"),
])
def test_violation_messages_and_locations_stay_short(api, client, body, location, rule):
    strict = Blueshift(create_app({"strict_contract": True}).test_client())
    for caller in (api, strict):
        caller.put("/api/v1/custom_user_lists/remove_user_from_list/1001", json=body)
    for found in (only_violation(client), only_violation(strict.client)):
        assert found["rule"] == rule and found["location"].startswith(location)
        assert len(found["location"]) < 120 and len(found["message"]) < 300, found
    refused = strict.put("/api/v1/custom_user_lists/remove_user_from_list/1001", json=body)
    assert len(refused.get_data()) < 500


def test_an_enum_violation_names_the_allowed_values(api, client):
    api.put("/api/v1/custom_user_lists/remove_user_from_list/1001",
            json={"identifier_key": "phone", "identifier_value": "1"})
    assert only_violation(client)["message"] == "must be one of: email, customer_id; not 'phone'"


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer abc"},
                                     {"Authorization": "Basic !!!"}, basic("")])
def test_missing_or_bad_credentials_are_a_security_violation_without_account(client, headers):
    response = client.post("/api/v1/customers/forget", json={"email": "a@example.com"},
                           headers=headers)
    assert response.status_code == 401
    found = only_violation(client, None)
    assert found["account"] is None
    assert (found["location"], found["rule"]) == ("header.Authorization", "security")


def test_unknown_key_in_configured_mode_is_a_security_violation():
    client = create_app({"api_keys": ("good",)}).test_client()
    response = client.post("/api/v1/customers/forget", json={"email": "a@example.com"},
                           headers=basic("bad"))
    assert response.status_code == 401
    assert only_violation(client, None)["rule"] == "security"


def test_a_lone_surrogate_is_a_json_violation_not_a_crash(api, client, emulator):
    response = api.post("/api/v1/customers/forget", data=b'{"email": "a\\ud800"}',
                        content_type="application/json")
    assert response.status_code == 400
    found = only_violation(client)
    assert (found["location"], found["rule"]) == ("body", "json")
    assert emulator.internal_errors == 0


def test_a_missing_content_type_is_a_violation(api, client):
    response = api.post("/api/v1/customers/forget", data=b'{"email": "a@example.com"}')
    assert response.status_code == 200  # the emulator is lenient, as Blueshift's servers are
    found = only_violation(client)
    assert (found["location"], found["rule"]) == ("header.Content-Type", "content-type")


def test_good_requests_record_no_violation(api, client):
    customer = api.post("/api/v1/customers", json={"email": "a@example.com",
                                                   "customer_id": "c-1", "plan": "gold"}).json
    uuid = customer["customer"]["uuid"]
    api.seed(groups=[{"group_id": "grp_1", "members": [{"uuid": uuid}]}])
    calls = [
        ("POST", "/api/v1/customers/bulk", {"json": {"customers": [{"email": "b@example.com"},
                                                                   {"nickname": "nobody"}]}}),
        ("GET", "/api/v1/customers?email=a@example.com", {}),
        ("GET", f"/api/v1/customers/{uuid}", {}),
        ("POST", "/api/v1/custom_user_lists/create", {"json": {"name": "L", "is_seed_list": 1}}),
        ("PUT", "/api/v1/custom_user_lists/add_user_to_list/1001",
         {"json": {"identifier_key": "email", "identifier_value": "a@example.com"}}),
        ("GET", "/api/v1/custom_user_lists/id/1001", {}),
        ("PUT", "/api/v1/custom_user_lists/remove_user_from_list/1001",
         {"json": {"identifier_key": "email", "identifier_value": "a@example.com"}}),
        ("DELETE", f"/api/v1/customer_group/grp_1/user/{uuid}", {}),
        ("DELETE", "/api/v1/customer_group/grp_1?delete_users=FALSE", {}),
        ("POST", "/api/v1/customers/delete?delete_all_matching_customers=true",
         {"json": {"email": "b@example.com", "delete_all_matching_customers": "True"}}),
        ("POST", "/api/v1/customers/forget", {"json": {"email": "a@example.com"}}),
        ("POST", "/api/v1/customers/unforget", {"json": {"email": "a@example.com",
                                                         "cookie": "ck"}}),
        ("POST", "/api/v1/customers/unforget", {"json": {"device_id": "d-1"}}),
    ]
    for method, path, kwargs in calls:
        response = api.call(method, path, **kwargs)
        assert response.status_code == 200, (path, response.json)
        assert "X-Fakeshift-Violation" not in response.headers
    assert violations(client) == []


def test_violations_are_kept_per_account_and_cleared_per_account(client):
    alice, bob = Blueshift(client, "alice"), Blueshift(client, "bob")
    alice.post("/api/v1/customers/forget", json={"x": 1})
    bob.post("/api/v1/customers/forget", json={"y": 1})
    bob.post("/api/v1/customers/forget", json={"z": 1})
    assert [v["location"] for v in violations(client, "alice")] == ["body.x", "body"]
    assert len(violations(client, "bob")) == 4
    assert len(violations(client)) == 6
    cleared = client.delete("/_fakeshift/violations", query_string={"account": "bob"})
    assert cleared.json == {"status": "ok", "cleared": 4}
    assert violations(client, "bob") == []
    assert len(violations(client, "alice")) == 2
    assert client.delete("/_fakeshift/violations").json["cleared"] == 2
    assert violations(client) == []


def test_dropping_an_account_drops_its_violations_and_only_its_own(api, client):
    api.seed(profiles=[{"email": "a@example.com"}])
    api.post("/api/v1/customers/forget", json={})
    Blueshift(client, "other").post("/api/v1/customers/forget", json={})
    assert client.delete(f"/_fakeshift/accounts/{api.key}").json == {"status": "ok",
                                                                     "dropped": True}
    assert violations(client, api.key) == []
    # A new use of the same key starts clean.
    assert api.post("/api/v1/customers", json={"email": "a@example.com"}).status_code == 200
    assert violations(client, api.key) == []
    assert [v["account"] for v in violations(client)] == ["other"]


def test_dropping_an_account_that_never_held_data_still_drops_its_violations(api, client):
    # Refused before the handler ran, so the account itself was never created.
    api.post("/api/v1/customers/forget", json={})
    assert client.delete(f"/_fakeshift/accounts/{api.key}").json["dropped"] is False
    assert violations(client) == []


@pytest.mark.parametrize("to", ["scenario", "empty"])
def test_reset_clears_violations_of_every_account(client, to):
    for key in ("a", "b"):
        Blueshift(client, key).post("/api/v1/customers/forget", json={})
    assert client.post(f"/_fakeshift/reset?to={to}").status_code == 200
    assert violations(client) == []


def test_reset_clears_violations(api, client):
    api.post("/api/v1/customers/forget", json={})
    assert violations(client)
    assert client.post("/_fakeshift/reset").status_code == 200
    assert violations(client) == []


# ---- strict mode -------------------------------------------------------------------------------

@pytest.fixture
def strict():
    return Blueshift(create_app({"strict_contract": True}).test_client())


def test_strict_mode_refuses_a_violation_with_400_naming_the_rule(strict):
    strict.seed(profiles=[{"email": "a@example.com"}])
    response = strict.post("/api/v1/customers/delete", json={"email": "a@example.com",
                                                             "reason": "gdpr"})
    assert response.status_code == 400
    assert response.headers["X-Fakeshift-Violation"] == "additionalProperties"
    assert response.json == {"errors": {"body.reason": [
        "is not a recognised field (rule: additionalProperties)"]}}
    assert strict.state()["stats"]["pending_deletion"] == 0
    assert only_violation(strict.client)["location"] == "body.reason"


def test_strict_mode_refuses_what_the_lenient_emulator_would_accept(strict, api):
    # An undocumented query parameter: the emulator ignores it, the contract does not.
    for client in (api, strict):
        client.seed(profiles=[{"email": "a@example.com"}])
    path = "/api/v1/customers/delete?force=1"
    assert api.post(path, json={"email": "a@example.com"}).status_code == 200
    refused = strict.post(path, json={"email": "a@example.com"})
    assert refused.status_code == 400
    assert refused.json == {"errors": {"query.force": [
        "is not a recognised field (rule: additionalProperties)"]}}
    assert strict.state()["stats"]["active"] == 1


def test_strict_mode_keeps_blueshifts_own_refusals(strict):
    no_auth = strict.client.post("/api/v1/customers/forget", json={"email": "a@example.com"})
    assert no_auth.status_code == 401 and no_auth.json == {"message": "Not authorized"}
    assert no_auth.headers["X-Fakeshift-Violation"] == "security"
    wrong_method = strict.get("/api/v1/customers/forget")
    assert wrong_method.status_code == 405 and wrong_method.headers["Allow"] == "POST"


def test_strict_mode_lets_good_requests_through(strict):
    response = strict.post("/api/v1/customers", json={"email": "a@example.com"})
    assert response.status_code == 200
    assert violations(strict.client) == []


def test_strict_contract_flag_and_environment_variable(monkeypatch):
    parser = build_parser()
    assert config_from_args(parser.parse_args(["serve"])).strict_contract is False
    assert config_from_args(parser.parse_args(["serve", "--strict-contract"])).strict_contract
    monkeypatch.setenv("FAKESHIFT_STRICT_CONTRACT", "true")
    assert config_from_args(build_parser().parse_args(["serve"])).strict_contract is True
    assert not config_from_args(
        build_parser().parse_args(["serve", "--strict-contract", "false"])).strict_contract


def test_strict_server_over_http(start_server):
    server = start_server(env={"FAKESHIFT_STRICT_CONTRACT": "true", "FAKESHIFT_ACCESS_LOG": "0"})
    response = requests.post(f"{server.url}/api/v1/customers/forget", json={"emial": "a"},
                             headers=basic("http-key"), timeout=10)
    assert response.status_code == 400
    assert "body.emial" in response.json()["errors"]
    listed = requests.get(f"{server.url}/_fakeshift/violations?account=http-key", timeout=10)
    assert {v["location"] for v in listed.json()["violations"]} == {"body", "body.emial"}


# ---- the store itself --------------------------------------------------------------------------

def test_the_log_is_bounded_and_keeps_the_newest():
    log = ViolationLog(VirtualClock(), limit=10)
    for number in range(25):
        log.record("a", "forget", "POST", "/p", [Problem(f"body.f{number}", "type", "m")])
    kept = log.list()
    assert [v["location"] for v in kept] == [f"body.f{n}" for n in range(15, 25)]


def test_the_log_is_safe_under_concurrent_writers_readers_and_clearers():
    log = ViolationLog(VirtualClock(), limit=100_000)
    writers, per_writer = 8, 500
    problem = [Problem("body", "anyOf", "m")]
    failures = []

    def write(account):
        for _ in range(per_writer):
            log.record(account, "forget", "POST", "/p", problem)

    def read_and_clear():
        for _ in range(200):
            try:
                log.list("w0")
                log.clear("nobody")
            except RuntimeError as exc:  # "deque mutated during iteration" without the lock
                failures.append(exc)

    threads = [threading.Thread(target=write, args=(f"w{n}",)) for n in range(writers)]
    threads += [threading.Thread(target=read_and_clear) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    entries = log.list()
    assert len(entries) == writers * per_writer
    assert len({v["id"] for v in entries}) == writers * per_writer
    assert all(len(log.list(f"w{n}")) == per_writer for n in range(writers))


def test_concurrent_requests_through_waitress_threads_are_all_recorded(live_server):
    key, calls = f"threads-{time.monotonic_ns()}", 40

    def broken_call(number):
        requests.post(f"{live_server.url}/api/v1/customers/forget", json={f"f{number}": 1},
                      headers=basic(key), timeout=10)

    threads = [threading.Thread(target=broken_call, args=(n,)) for n in range(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    found = requests.get(f"{live_server.url}/_fakeshift/violations", params={"account": key},
                         timeout=10).json()["violations"]
    # Each call breaks two rules: an unknown field, and no identifier.
    assert sorted(v["location"] for v in found if v["rule"] == "additionalProperties") == sorted(
        f"body.f{n}" for n in range(calls))
    assert sum(v["rule"] == "anyOf" for v in found) == calls


# ---- cost --------------------------------------------------------------------------------------

def _validation_microseconds(rounds: int) -> float:
    contract = Contract(load_document("blueshift"))
    operation = contract.operation("/api/v1/customers/delete", "POST")
    body = b'{"email": "a@example.com", "delete_all_matching_customers": true}'
    args = {"delete_all_matching_customers": "true"}
    assert contract.check(operation, {}, args, "application/json", body) == []
    started = time.perf_counter()
    for _ in range(rounds):
        contract.check(operation, {}, args, "application/json", body)
    return (time.perf_counter() - started) / rounds * 1e6


def test_validating_a_request_costs_little():
    # Generous bound for a loaded 2-core CI machine; `pytest -m long` prints the real figure.
    assert _validation_microseconds(2_000) < 500


@pytest.mark.long
def test_report_validation_cost(capsys):
    cost = min(_validation_microseconds(20_000) for _ in range(3))
    with capsys.disabled():
        print(f"\ncontract validation of one delete request: {cost:.1f} µs")
    assert cost < 200
