"""The control plane: readiness, reset, scenarios, state, seeding, settings and the clock."""

from __future__ import annotations

from importlib.metadata import version
from urllib.parse import quote

import jsonschema
import pytest

from fakeshift import create_app
from fakeshift.contract import load_document
from fakeshift.pytest_plugin import LiveServer
from conftest import SCENARIOS, Blueshift


def test_health_and_readiness(client):
    assert client.get("/_fakeshift/health").json["status"] == "ok"
    assert client.get("/_fakeshift/ready").json == {"ready": True}


def test_not_ready_until_the_scenario_is_loaded():
    app = create_app({}, load_scenario=False)
    client = app.test_client()
    assert client.get("/_fakeshift/ready").status_code == 503
    refused = Blueshift(client).post("/api/v1/customers", json={"email": "a@example.com"})
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
    app.extensions["fakeshift"].load(None)
    app.extensions["fakeshift"].ready.set()
    assert client.get("/_fakeshift/ready").status_code == 200


def test_reset_to_scenario_and_to_empty():
    client = create_app({"scenario": str(SCENARIOS / "gdpr-duplicates.yaml")}).test_client()
    demo = Blueshift(client, "gdpr-demo")
    demo.post("/api/v1/customers/delete?delete_all_matching_customers=true",
              json={"email": "duplicate@example.com"})
    assert demo.state()["stats"]["pending_deletion"] == 50
    assert client.post("/_fakeshift/reset").json == {"status": "ok", "reset_to": "scenario"}
    assert demo.state()["stats"]["pending_deletion"] == 0
    assert demo.state()["stats"]["active"] == 123
    assert client.post("/_fakeshift/reset?to=empty").status_code == 200
    assert client.get("/_fakeshift/accounts").json == {"accounts": []}
    assert client.post("/_fakeshift/reset?to=yesterday").status_code == 400


def test_load_a_scenario_as_yaml_then_reset_returns_to_it(client):
    yaml_text = "accounts:\n  - key: live\n    profiles:\n      - {email: a@example.com, count: 2}\n"
    response = client.put("/_fakeshift/scenario", data=yaml_text,
                          headers={"Content-Type": "application/yaml"})
    assert response.status_code == 200 and response.json["accounts"] == ["live"]
    Blueshift(client, "live").post("/api/v1/customers/forget", json={"email": "a@example.com"})
    client.post("/_fakeshift/reset")
    assert Blueshift(client, "live").state()["stats"] == {
        "profiles": 2, "active": 2, "pending_deletion": 0, "purged": 0, "suppressed": 0,
        "lists": 0, "groups": 0, "events": 0, "events_dropped": 0}
    assert client.get("/_fakeshift/scenario").json["source"] == "request body"


def test_a_bad_scenario_is_refused_with_where_and_why_and_keeps_state(api, client):
    api.seed(profiles=[{"email": "stay@example.com"}])
    response = client.put("/_fakeshift/scenario",
                          json={"accounts": [{"key": "x", "profiles": [{"email": 7}]}]})
    assert response.status_code == 400
    message = response.json["errors"]["scenario"][0]
    assert "accounts[0].profiles[0].email" in message and "not of type 'string'" in message
    assert api.state()["stats"]["profiles"] == 1


def test_seed_profiles_duplicates_generators_lists_and_groups(api):
    created = api.seed(
        profiles=[{"email": "dup@example.com", "count": 3}],
        generate=[{"count": 5, "email": "user{n}@example.com", "customer_id": "C{n}"}],
        suppressed=[{"email": "nope@example.com"}],
        lists=[{"name": "All", "source": "customer_id", "members": ["C1", "C5"]}],
        groups=[{"group_id": "g", "members": [{"customer_id": "C2"}]}],
    )
    assert created["created"] == 8 and len(set(created["uuids"])) == 8
    assert created["counts"] == {"profiles": 8, "suppressed": 1, "lists": 1, "groups": 1}
    state = api.state()
    assert state["stats"] == {"profiles": 8, "active": 8, "pending_deletion": 0, "purged": 0,
                              "suppressed": 1, "lists": 1, "groups": 1, "events": 0,
                              "events_dropped": 0}
    assert state["lists"][0]["user_count"] == 2
    assert api.get("/api/v1/customers?email=user3@example.com").json["users"][0]["customer_id"] == "C3"


def test_seeding_only_a_group_counts_the_group(api):
    uuid = api.seed(profiles=[{"email": "g@example.com"}])["uuids"][0]
    seeded = api.seed(groups=[{"group_id": "g", "members": [{"uuid": uuid}]}])
    assert seeded == {"status": "ok", "created": 0, "uuids": [],
                      "counts": {"profiles": 0, "suppressed": 0, "lists": 0, "groups": 1}}
    documented = load_document("admin")["paths"]["/_fakeshift/accounts/{name}/seed"]["post"]
    schema = documented["responses"]["200"]["content"]["application/json"]["schema"]
    jsonschema.validate(seeded, schema)


def test_seed_refuses_a_member_that_does_not_exist(api, client):
    response = client.post(f"/_fakeshift/accounts/{api.key}/seed",
                           json={"groups": [{"group_id": "g", "members": [{"email": "no@x.io"}]}]})
    assert response.status_code == 400
    assert "groups[0].members[0]" in response.json["errors"]["seed"][0]


def test_unknown_account_state_is_404(client):
    assert client.get("/_fakeshift/accounts/nobody").status_code == 404


def test_clock_advance_set_freeze(client):
    frozen = client.post("/_fakeshift/clock/freeze", json={"at": "2026-01-01T00:00:00Z"}).json
    assert frozen == {"now": "2026-01-01T00:00:00.000000Z", "frozen": True,
                      "offset_seconds": frozen["offset_seconds"]}
    assert client.post("/_fakeshift/clock/advance", json={"by": "2h"}).json["now"] == \
        "2026-01-01T02:00:00.000000Z"
    assert client.post("/_fakeshift/clock/advance", json={"seconds": 30}).json["now"] == \
        "2026-01-01T02:00:30.000000Z"
    assert client.post("/_fakeshift/clock/set", json={"now": "2030-05-05T05:05:05Z"}).json["now"] \
        .startswith("2030-05-05T05:05:05")
    assert client.post("/_fakeshift/clock/unfreeze").json["frozen"] is False


@pytest.mark.parametrize("path, body", [
    ("/_fakeshift/clock/advance", {"seconds": -5}),
    ("/_fakeshift/clock/advance", {"seconds": "5"}),
    ("/_fakeshift/clock/advance", {}),
    ("/_fakeshift/clock/set", {"now": "yesterday"}),
    ("/_fakeshift/clock/freeze", {"at": 5}),
])
def test_bad_clock_calls_are_400(client, path, body):
    before = client.get("/_fakeshift/clock").json["offset_seconds"]
    response = client.post(path, json=body)
    assert response.status_code == 400 and response.json["errors"]
    assert abs(client.get("/_fakeshift/clock").json["offset_seconds"] - before) < 1


def test_per_account_deletion_delay(api, client):
    api.seed(profiles=[{"email": "now@example.com"}])
    assert client.put(f"/_fakeshift/accounts/{api.key}/settings",
                      json={"deletion_delay": 0}).json["deletion_delay"] == 0
    api.post("/api/v1/customers/delete", json={"email": "now@example.com"})
    assert api.state()["stats"]["profiles"] == 0 and api.state()["stats"]["purged"] == 1


def test_server_deletion_delay_setting(api, client):
    assert client.put("/_fakeshift/settings", json={"deletion_delay": "10m"}).json[
        "deletion_delay"] == 600
    api.seed(profiles=[{"email": "later@example.com"}])
    api.post("/api/v1/customers/delete", json={"email": "later@example.com"})
    client.post("/_fakeshift/clock/advance", json={"by": "10m"})
    assert api.state()["stats"]["purged"] == 1
    assert client.put("/_fakeshift/settings", json={"deletion_delay": "soon"}).status_code == 400


@pytest.mark.parametrize("key", ["team/job-17", "/leading", "trailing/", "a//b", "50%/x"])
def test_an_account_whose_name_holds_slashes_is_addressable(client, key):
    api = Blueshift(client, key)
    assert api.post("/api/v1/customers", json={"email": "s@example.com"}).status_code == 200
    path = f"/_fakeshift/accounts/{quote(key, safe='')}"
    assert client.get(path).json["account"] == key
    assert client.put(f"{path}/settings", json={"deletion_delay": 0}).status_code == 200
    seeded = client.post(f"{path}/seed", json={"profiles": [{"email": "t@example.com"}]})
    assert seeded.status_code == 200
    assert client.get(path).json["stats"]["profiles"] == 2
    assert client.delete(path).json == {"status": "ok", "dropped": True}
    assert client.get("/_fakeshift/accounts").json == {"accounts": []}


def test_the_control_client_reaches_slashed_account_names_over_http():
    with LiveServer({"access_log": False}) as server:
        control = server.control
        control.seed("team/job-17", profiles=[{"email": "s@example.com"}])
        assert control.account("team/job-17")["stats"]["profiles"] == 1
        assert control.set_account_deletion_delay("team/job-17", 0)["deletion_delay"] == 0
        assert control.drop_account("team/job-17")["dropped"] is True
        assert control.accounts() == []


def test_the_root_answers_a_small_index_whose_links_work_without_the_admin_token():
    client = create_app({"admin_token": "s3cret"}).test_client()
    index = client.get("/")
    assert index.status_code == 200 and index.mimetype == "application/json"
    body = index.json
    assert body["name"] == "fakeshift" and body["version"] == version("fakeshift")
    links = [body["blueshift_api"]["openapi"], body["control_plane"]["openapi"],
             body["control_plane"]["health"], body["readme"]]
    assert links[:2] == ["/_fakeshift/openapi/blueshift.json", "/_fakeshift/openapi/admin.json"]
    for link in links:
        assert client.get(link).status_code == 200, link
    readme = client.get(body["readme"])
    assert readme.mimetype == "text/markdown"
    assert readme.get_data(as_text=True).startswith("# fakeshift")
    # Only the index and what it points to are open: the rest still needs the token.
    assert client.get(body["control_plane"]["prefix"] + "accounts").status_code == 401
