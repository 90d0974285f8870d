"""Fault rules: what they target, what they do, when they fire, how they are set, and that an
injected fault never touches state unless it was told to apply first."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from waitress.channel import ClientDisconnected

from fakeshift import create_app
from fakeshift.clock import VirtualClock
from fakeshift.errors import STATUS_BODIES
from fakeshift.faults import FaultRules, FaultSpecError, parse_spec
from fakeshift.scenario import Scenario, ScenarioError

from conftest import ROOT, Blueshift, basic

DELETE = "/api/v1/customers/delete"
SEARCH = "/api/v1/customers?email=someone@example.com"
INJECTABLE = (400, 401, 403, 404, 409, 422, 429, 500, 502, 503, 504)


def add_rule(client, **rule) -> dict:
    response = client.post("/_fakeshift/faults", json=rule)
    assert response.status_code == 200, response.json
    return response.json


def searches(api, count: int, **kwargs) -> list:
    return [api.get(SEARCH, **kwargs) for _ in range(count)]


def statuses(responses) -> list[int]:
    return [r.status_code for r in responses]


def seed_duplicates(api, email="dup@example.com", count=3):
    api.seed(profiles=[{"email": email, "count": count}])


def active(api, email="dup@example.com") -> int:
    return sum(1 for p in api.state()["profiles"]
               if p.get("email") == email and not p.get("deletion_pending"))


# ---- what a rule does --------------------------------------------------------------------------

@pytest.mark.parametrize("status", INJECTABLE)
def test_each_status_answers_blueshifts_body_for_it(client, api, status):
    rule = add_rule(client, operation="search_customers", status=status)
    response = api.get(SEARCH)
    assert response.status_code == status
    assert response.json == STATUS_BODIES[status]
    assert response.headers["X-Fakeshift-Fault"] == rule["id"]


def test_retry_after_is_sent_with_the_status(client, api):
    add_rule(client, operation="search_customers", status=503, retry_after=7, id="slow-down")
    response = api.get(SEARCH)
    assert (response.status_code, response.headers["Retry-After"]) == (503, "7")
    assert response.headers["X-Fakeshift-Fault"] == "slow-down"


def test_latency_alone_slows_the_request_and_then_serves_it(client, api):
    add_rule(client, operation="search_customers", latency="150ms")
    started = time.perf_counter()
    response = api.get(SEARCH)
    took = time.perf_counter() - started
    assert response.status_code == 200 and response.json == {"users": []}
    assert took >= 0.15
    assert response.headers["X-Fakeshift-Fault"] == "f1"


def test_a_latency_range_draws_within_its_bounds(client, api):
    add_rule(client, operation="search_customers", latency=["20ms", "60ms"])
    took = []
    for _ in range(5):
        started = time.perf_counter()
        api.get(SEARCH)
        took.append(time.perf_counter() - started)
    assert all(0.02 <= t < 0.5 for t in took)
    assert max(took) - min(took) > 0.001  # drawn, not fixed


def test_malformed_cuts_the_json_but_keeps_an_honest_content_length(client, api):
    add_rule(client, operation="search_customers", malformed=True)
    response = api.get(SEARCH)
    assert response.status_code == 200
    assert int(response.headers["Content-Length"]) == len(response.data)
    with pytest.raises(ValueError):
        response.get_json(force=True, silent=False)


def test_drop_in_process_raises_client_disconnected(client, api):
    add_rule(client, operation="search_customers", drop=True)
    with pytest.raises(ClientDisconnected):
        api.get(SEARCH)


# ---- state: an injected fault never applies; apply-then-fail applies once ----------------------

@pytest.mark.parametrize("fault", [{"status": 503}, {"status": 500, "retry_after": 1},
                                   {"drop": True}, {"malformed": True}, {"truncate": True}])
def test_an_injected_fault_leaves_state_unchanged(client, api, fault):
    seed_duplicates(api)
    add_rule(client, operation="delete_customer", **fault)
    try:
        api.post(DELETE, json={"email": "dup@example.com",
                               "delete_all_matching_customers": True})
    except ClientDisconnected:
        pass
    assert active(api) == 3


@pytest.mark.parametrize("fault", [{"status": 503}, {"drop": True}, {"truncate": True},
                                   {"malformed": True}])
def test_apply_then_fail_changes_state_exactly_once(client, api, fault):
    seed_duplicates(api)
    add_rule(client, operation="delete_customer", apply=True, first=1, **fault)
    try:
        response = api.post(DELETE, json={"email": "dup@example.com"})
        if "status" in fault:
            assert response.status_code == fault["status"]
            assert response.json == STATUS_BODIES[fault["status"]]
    except ClientDisconnected:
        pass
    assert active(api) == 2  # the handler ran once: one of the three is pending deletion
    assert api.post(DELETE, json={"email": "dup@example.com"}).status_code == 200
    assert active(api) == 1


# ---- which requests ---------------------------------------------------------------------------

def test_operation_method_and_path_targeting(client, api):
    add_rule(client, method="GET", path="/api/v1/customers", status=502)
    add_rule(client, path_regex=r"/api/v1/custom_user_lists/id/\d+", status=504)
    assert api.get(SEARCH).status_code == 502
    assert api.get("/api/v1/custom_user_lists/id/12").status_code == 504
    # Not targeted: another method on the same path, another path.
    assert api.post("/api/v1/customers", json={"email": "a@example.com"}).status_code == 200


def test_a_rule_can_target_one_account(client):
    add_rule(client, operation="search_customers", account="victim", status=503)
    victim, bystander = Blueshift(client, "victim"), Blueshift(client, "bystander")
    assert statuses(searches(victim, 3)) == [503] * 3
    assert statuses(searches(bystander, 3)) == [200] * 3


def test_the_control_plane_is_never_faulted(client):
    add_rule(client, path="/*", status=503)
    assert client.get("/_fakeshift/faults").status_code == 200
    assert client.get("/_fakeshift/journal").status_code == 200


def test_first_matching_rule_that_fires_wins(client, api):
    add_rule(client, operation="search_customers", status=503, first=1)
    add_rule(client, operation="search_customers", status=429)
    assert statuses(searches(api, 3)) == [503, 429, 429]


# ---- when -------------------------------------------------------------------------------------

def test_first_n_then_succeed(client, api):
    add_rule(client, operation="search_customers", status=503, first=2)
    assert statuses(searches(api, 4)) == [503, 503, 200, 200]


def test_every_nth(client, api):
    add_rule(client, operation="search_customers", status=500, every=3)
    assert statuses(searches(api, 7)) == [200, 200, 500, 200, 200, 500, 200]


def test_after_n(client, api):
    add_rule(client, operation="search_customers", status=502, after=2)
    assert statuses(searches(api, 4)) == [200, 200, 502, 502]


def test_a_window_on_the_virtual_clock(client, api):
    client.post("/_fakeshift/clock/freeze", json={"at": "2030-01-01T00:00:00Z"})
    add_rule(client, operation="search_customers", status=503,
             **{"from": "2030-01-01T00:10:00Z", "until": "2030-01-01T00:20:00Z"})
    assert api.get(SEARCH).status_code == 200
    client.post("/_fakeshift/clock/advance", json={"by": "10m"})
    assert api.get(SEARCH).status_code == 503
    client.post("/_fakeshift/clock/advance", json={"by": "10m"})
    assert api.get(SEARCH).status_code == 200


def sequence(seed_config: dict, rule: dict, count: int = 1000) -> list[int]:
    app = create_app(seed_config)
    api = Blueshift(app.test_client(), "seeded")
    add_rule(api.client, operation="search_customers", status=503, **rule)
    return statuses(searches(api, count))


def test_the_same_seed_gives_the_same_sequence_and_another_seed_another():
    first = sequence({}, {"probability": 0.3, "seed": 42})
    assert first == sequence({}, {"probability": 0.3, "seed": 42})
    assert first != sequence({}, {"probability": 0.3, "seed": 43})
    assert 200 < first.count(503) < 400  # about 30% of 1,000
    # Rules without a seed of their own follow the server's seed.
    by_server = sequence({"fault_seed": 5}, {"probability": 0.3}, 300)
    assert by_server == sequence({"fault_seed": 5}, {"probability": 0.3}, 300)
    assert by_server != sequence({"fault_seed": 6}, {"probability": 0.3}, 300)


def test_no_fault_latency_or_limit_unless_configured(client, api):
    started = time.perf_counter()
    responses = searches(api, 50)
    assert statuses(responses) == [200] * 50
    assert not any("X-Fakeshift-Fault" in r.headers for r in responses)
    assert time.perf_counter() - started < 5
    assert client.get("/_fakeshift/faults").json == {"count": 0, "rules": []}
    assert client.get("/_fakeshift/rate-limits").json["enabled"] is False


# ---- the single-request header ---------------------------------------------------------------

def test_the_header_faults_one_request(api):
    response = api.get(SEARCH, headers={"X-Fakeshift-Fault": "status=503,retry_after=2"})
    assert (response.status_code, response.headers["Retry-After"]) == (503, "2")
    assert response.headers["X-Fakeshift-Fault"] == "header"
    assert api.get(SEARCH).status_code == 200
    assert api.get(SEARCH, headers={"X-Fakeshift-Fault": "429"}).status_code == 429


def test_the_header_counts_per_account_and_value(client, api):
    header = {"X-Fakeshift-Fault": "status=503,first=2"}
    assert statuses(searches(api, 3, headers=header)) == [503, 503, 200]
    other = Blueshift(client, "other-account")
    assert statuses(searches(other, 3, headers=header)) == [503, 503, 200]


def test_the_header_can_drop_or_slow_down(api):
    with pytest.raises(ClientDisconnected):
        api.get(SEARCH, headers={"X-Fakeshift-Fault": "drop"})
    started = time.perf_counter()
    assert api.get(SEARCH, headers={"X-Fakeshift-Fault": "latency=100ms"}).status_code == 200
    assert time.perf_counter() - started >= 0.1


def test_a_bad_header_is_a_400_that_changes_nothing(api):
    seed_duplicates(api)
    response = api.post(DELETE, json={"email": "dup@example.com"},
                        headers={"X-Fakeshift-Fault": "status=299"})
    assert response.status_code == 400
    assert "299 is not one of" in response.json["errors"]["X-Fakeshift-Fault"][0]
    assert active(api) == 3


# ---- the control plane -------------------------------------------------------------------------

def test_list_shows_hit_counts_and_rules_can_be_removed(client, api):
    rule = add_rule(client, operation="search_customers", status=503, first=1)
    searches(api, 3)
    listed = client.get("/_fakeshift/faults").json
    assert listed["count"] == 1
    assert (listed["rules"][0]["matched"], listed["rules"][0]["applied"]) == (3, 1)
    assert client.delete(f"/_fakeshift/faults/{rule['id']}").json["removed"] == rule["id"]
    missing = client.delete(f"/_fakeshift/faults/{rule['id']}")
    assert missing.status_code == 404 and rule["id"] in missing.json["message"]
    add_rule(client, status=500)
    add_rule(client, status=502)
    assert client.delete("/_fakeshift/faults").json["removed"] == 2
    assert client.get("/_fakeshift/faults").json["count"] == 0


def test_the_compact_syntax_is_accepted_as_text(client, api):
    response = client.post("/_fakeshift/faults", data="search_customers:status=503,first=2",
                           content_type="text/plain")
    assert response.status_code == 200
    assert statuses(searches(api, 3)) == [503, 503, 200]


@pytest.mark.parametrize("rule, problem", [
    ({"status": 503, "drop": True}, "drop sends no response"),
    ({"status": 299}, "299 is not one of"),
    ({"operation": "delete_customr", "status": 503}, "unknown operation 'delete_customr'"),
    ({"path_regex": "(", "status": 503}, "not a valid RE2 regular expression"),
    ({"latency": ["2s", "1s"]}, "from low to high"),
    ({"apply": True, "latency": "1s"}, "apply needs a failure"),
    ({"first": 2}, "is not valid under any of the given schemas"),
    ({"status": 503, "colour": "red"}, "'colour' was unexpected"),
])
def test_a_bad_rule_is_a_400_naming_the_problem_and_installs_nothing(client, rule, problem):
    response = client.post("/_fakeshift/faults", json=rule)
    assert response.status_code == 400
    assert problem in response.json["errors"]["fault"][0]
    assert client.get("/_fakeshift/faults").json["count"] == 0


def test_duplicate_ids_are_refused(client):
    add_rule(client, id="mine", status=503)
    response = client.post("/_fakeshift/faults", json={"id": "mine", "status": 500})
    assert response.status_code == 400 and "already in use" in response.json["errors"]["id"][0]


def test_the_number_of_rules_is_capped():
    client = create_app({"max_fault_rules": 3}).test_client()
    for _ in range(3):
        add_rule(client, status=503)
    response = client.post("/_fakeshift/faults", json={"status": 503})
    assert response.status_code == 429
    assert "the limit is 3" in response.json["message"]
    assert "--max-fault-rules" in response.json["message"]


def test_the_control_plane_needs_the_admin_token_when_set():
    client = create_app({"admin_token": "sesame"}).test_client()
    assert client.get("/_fakeshift/faults").status_code == 401
    assert client.post("/_fakeshift/faults", json={"status": 503}).status_code == 401
    allowed = client.get("/_fakeshift/faults", headers={"X-Fakeshift-Admin-Token": "sesame"})
    assert allowed.status_code == 200


# ---- start-up rules, scenarios and reset ------------------------------------------------------

def test_startup_rules_come_back_with_fresh_counters_on_reset_and_runtime_rules_go():
    app = create_app({"faults": ("search_customers:status=503,first=1",)})
    client = app.test_client()
    api = Blueshift(client)
    add_rule(client, operation="search_customers", status=500)
    assert statuses(searches(api, 2)) == [503, 500]
    client.post("/_fakeshift/reset")
    assert [r["operation"] for r in client.get("/_fakeshift/faults").json["rules"]] == [
        "search_customers"]
    assert statuses(searches(api, 2)) == [503, 200]


def test_a_bad_startup_rule_stops_the_start():
    with pytest.raises(FaultSpecError, match="unknown operation 'nope'"):
        create_app({"faults": ("nope:status=503",)})


def test_scenario_faults_load_and_are_restored_on_reset(tmp_path):
    path = tmp_path / "chaos.yaml"
    path.write_text("faults:\n  - {operation: search_customers, status: 502, every: 2}\n")
    app = create_app({"scenario": str(path)})
    client, api = app.test_client(), Blueshift(app.test_client())
    assert statuses(searches(api, 4)) == [200, 502, 200, 502]
    client.post("/_fakeshift/reset")
    assert statuses(searches(api, 2)) == [200, 502]


def test_a_bad_scenario_fault_names_file_entry_and_problem(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("faults:\n  - {status: 503}\n  - {operation: nope, status: 503}\n")
    with pytest.raises(ScenarioError, match=r"bad\.yaml: faults\[1\]: operation: unknown"):
        Scenario.from_file(path)
    path.write_text("faults:\n  - {status: 503, first: 0}\n")
    with pytest.raises(ScenarioError, match=r"bad\.yaml: faults\[0\]\.first: 0 is less than"):
        Scenario.from_file(path)


@pytest.mark.parametrize("spec, document", [
    ("delete_customer:status=503,first=2", {"operation": "delete_customer", "status": 503,
                                            "first": 2}),
    ("POST /api/v1/customers/delete:drop,apply", {"method": "POST",
                                                  "path": "/api/v1/customers/delete",
                                                  "drop": True, "apply": True}),
    ("/api/v1/*:latency=100ms..300ms,probability=0.5,seed=3",
     {"path": "/api/v1/*", "latency": ["100ms", "300ms"], "probability": 0.5, "seed": 3}),
    ("*:503", {"status": 503}),
    ("status=503,from=2030-01-01T00:00:00Z", {"status": 503, "from": "2030-01-01T00:00:00Z"}),
    ('{"operation": "forget", "status": 500}', {"operation": "forget", "status": 500}),
])
def test_the_compact_syntax(spec, document):
    assert parse_spec(spec) == document


def test_export_and_import_round_trip():
    rules = FaultRules(VirtualClock())
    rules.add({"operation": "forget", "status": 500, "first": 2})
    rules.add({"id": "named", "path": "/api/*", "drop": True, "probability": 0.1})
    exported = rules.export_rules()
    again = FaultRules(VirtualClock())
    again.import_rules(exported)
    assert again.export_rules() == exported
    assert [r["id"] for r in exported] == ["f1", "named"]


# ---- concurrency ------------------------------------------------------------------------------

def test_counters_are_exact_under_concurrent_decisions():
    rules = FaultRules(VirtualClock())
    rules.add({"operation": "search_customers", "status": 503, "every": 4})
    rules.add({"operation": "search_customers", "status": 500, "probability": 0.5, "seed": 1})
    threads, each = 8, 2000
    start = threading.Barrier(threads)

    def hammer(_):
        start.wait()
        return [rules.decide("blueshift.search_customers", "GET", "/api/v1/customers", "a")
                for _ in range(each)]

    with ThreadPoolExecutor(threads) as pool:
        outcomes = [o for batch in pool.map(hammer, range(threads)) for o in batch]
    every_fourth, coin = rules.rules()
    assert every_fourth["matched"] == threads * each
    assert every_fourth["applied"] == threads * each // 4
    assert sum(1 for o in outcomes if o and o.status == 503) == threads * each // 4
    # The second rule saw exactly the requests the first let through, and its generator drew
    # the same sequence it would have drawn alone.
    assert coin["matched"] == threads * each * 3 // 4
    alone = FaultRules(VirtualClock())
    alone.add({"operation": "search_customers", "status": 500, "probability": 0.5, "seed": 1})
    expected = sum(1 for _ in range(coin["matched"])
                   if alone.decide("blueshift.search_customers", "GET", "/", "a"))
    assert coin["applied"] == expected


def test_first_n_holds_under_concurrent_requests_over_waitress(start_server):
    server = start_server("--access-log", "false", "--threads", "8")
    requests.post(f"{server.url}/_fakeshift/faults", timeout=5,
                  json={"operation": "search_customers", "status": 503, "first": 25})

    def call(_):
        with requests.Session() as session:
            return [session.get(server.url + SEARCH, headers=basic("concurrent"), timeout=10)
                    .status_code for _ in range(20)]

    with ThreadPoolExecutor(8) as pool:
        seen = [s for batch in pool.map(call, range(8)) for s in batch]
    assert seen.count(503) == 25
    assert seen.count(200) == 8 * 20 - 25
    rule = requests.get(f"{server.url}/_fakeshift/faults", timeout=5).json()["rules"][0]
    assert (rule["matched"], rule["applied"]) == (160, 25)


# ---- over a real socket ------------------------------------------------------------------------

def test_a_real_client_sees_dropped_connections_and_truncated_bodies(start_server):
    server = start_server("--access-log", "false",
                          "--fault", "search_customers:drop,account=dropped",
                          env={"FAKESHIFT_FAULTS": "ignored because --fault wins"})
    with pytest.raises(requests.ConnectionError):
        requests.get(server.url + SEARCH, headers=basic("dropped"), timeout=5)
    assert requests.get(server.url + SEARCH, headers=basic("fine"), timeout=5).status_code == 200

    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(server.url + SEARCH, timeout=5,
                     headers={**basic("fine"), "X-Fakeshift-Fault": "truncate"})
    # Lost response: the delete is applied, then the connection is dropped.
    requests.post(f"{server.url}/_fakeshift/accounts/lost/seed", timeout=5,
                  json={"profiles": [{"email": "gone@example.com", "count": 2}]})
    with pytest.raises(requests.ConnectionError):
        requests.post(server.url + DELETE, json={"email": "gone@example.com"}, timeout=5,
                      headers={**basic("lost"), "X-Fakeshift-Fault": "drop,apply"})
    state = requests.get(f"{server.url}/_fakeshift/accounts/lost", timeout=5).json()
    assert sum(1 for p in state["profiles"] if not p.get("deletion_pending")) == 1
    dropped = requests.get(f"{server.url}/_fakeshift/journal?status=none", timeout=5).json()
    assert dropped["count"] == 2
    assert {e["fault"] for e in dropped["entries"]} == {"f1", "header"}


def test_faults_from_the_environment(start_server):
    server = start_server("--access-log", "false",
                          env={"FAKESHIFT_FAULTS": "search_customers:status=503,first=1;"
                                                   "forget:status=500"})
    assert [r["operation"] for r in
            requests.get(f"{server.url}/_fakeshift/faults", timeout=5).json()["rules"]] == [
        "search_customers", "forget"]
    codes = [requests.get(server.url + SEARCH, headers=basic("env"), timeout=5).status_code
             for _ in range(2)]
    assert codes == [503, 200]


@pytest.mark.skipif(shutil.which("curl") is None, reason="the README's examples use curl")
def test_the_readme_examples_do_what_they_say(start_server):
    readme = (ROOT / "README.md").read_text()
    section = readme.split("<!-- section: faults -->", 1)[1].split("<!-- section:", 1)[0]
    (block,) = re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    server = start_server("--access-log", "false", "--scenario",
                          str(ROOT / "scenarios" / "gdpr-duplicates.yaml"))
    script = (f"set -eu\nB={server.url}; K='-u gdpr-demo:'; J='Content-Type: application/json'\n"
              + block.replace("fakeshift drill", f"{sys.executable} -m fakeshift drill"))
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert ('{"id":"f1","operation":"delete_customer","status":503,"first":2,"matched":0,'
            '"applied":0}') in out
    assert '{"message":"Service Unavailable - The service' in out
    assert '"id":"flaky"' in out and '"removed":"flaky"' in out
    assert '"rate":2,"burst":5' in out and '"enabled":false' in out
    assert '"count":1,"entries":[{' in out and '"status":503' in out  # the header's 503
    assert "by status:" in out and "retried after a fault" in out
