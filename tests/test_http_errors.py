"""Bad input and bad credentials: a Blueshift-shaped 4xx that names the problem, and no change."""

from __future__ import annotations

import base64

import pytest

from conftest import Blueshift, basic

FORGET = "/api/v1/customers/forget"


@pytest.fixture
def seeded(api):
    api.seed(profiles=[{"email": "keep@example.com", "count": 3}])
    return api.state()


def assert_unchanged(api, before):
    assert api.state() == before


@pytest.mark.parametrize("body, content_type, field, fragment", [
    (b"{not json", "application/json", "body", "not valid JSON"),
    (b"[1, 2]", "application/json", "body", "not an array"),
    (b"\"keep@example.com\"", "application/json", "body", "not a string"),
    (b"", "application/json", "body", "JSON object is required"),
    (b"{\"email\": \"\xff\xfe\"}", "application/json", "body", "not valid UTF-8"),
    (b"{\"email\": \"a@x\", \"email\": \"b@x\"}", "application/json", "body", "duplicate key"),
    (b"{\"email\": NaN}", "application/json", "body", "not valid JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "application/json", "body", "nested too deeply"),
    (b"{\"email\": \"keep@example.com\"}", "text/plain", "body", "Content-Type"),
    (b"{\"email\": 5}", "application/json", "email", "must be a string"),
    (b"{\"email\": null}", "application/json", "email", "not null"),
    (b"{\"email\": \"  \"}", "application/json", "email", "can't be blank"),
    (b"{\"emial\": \"keep@example.com\"}", "application/json", "emial", "not a recognised field"),
    (b"{}", "application/json", "identifier", "at least one of"),
])
def test_malformed_bodies_are_400_and_change_nothing(api, seeded, body, content_type, field,
                                                     fragment):
    for path in (FORGET, "/api/v1/customers/delete"):
        response = api.post(path, data=body, headers={"Content-Type": content_type})
        assert response.status_code == 400, response.json
        assert fragment in response.json["errors"][field][0]
    assert_unchanged(api, seeded)


def test_wrong_type_for_the_delete_flag(api, seeded):
    response = api.post("/api/v1/customers/delete",
                        json={"email": "keep@example.com", "delete_all_matching_customers": 1})
    assert response.status_code == 400
    assert response.json == {"errors": {"delete_all_matching_customers": ["must be true or false"]}}
    query = api.post("/api/v1/customers/delete?delete_all_matching_customers=yes",
                     json={"email": "keep@example.com"})
    assert query.status_code == 400
    assert_unchanged(api, seeded)


def test_oversized_body_is_413(app, api, seeded):
    huge = b"{\"email\": \"" + b"a" * (app.extensions["fakeshift"].config.max_body_bytes) + b"\"}"
    response = api.post(FORGET, data=huge, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert "limit" in response.json["message"]
    assert_unchanged(api, seeded)


def test_unknown_path_is_json_404(api):
    response = api.get("/api/v1/no/such/thing")
    assert response.status_code == 404 and response.json == {"status": "404", "error": "Not Found"}


def test_wrong_method_is_405_with_allow(api):
    response = api.get(FORGET)
    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"
    assert "POST" in response.json["message"]
    delete_customer = api.get("/api/v1/customers/delete")
    assert delete_customer.status_code == 405


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Basic "},
    {"Authorization": "Basic " + base64.b64encode(b":").decode()},
    {"Authorization": "Basic " + base64.b64encode(b":password").decode()},
    {"Authorization": "Basic not-base64!!"},
    {"Authorization": "Bearer some-key"},
    {"Authorization": "Basic " + base64.b64encode(b"\xff\xfe:").decode()},
])
def test_missing_or_malformed_credentials_are_401(client, headers):
    response = client.post(FORGET, json={"email": "x@example.com"}, headers=headers)
    assert response.status_code == 401 and response.json == {"message": "Not authorized"}
    assert client.get("/_fakeshift/accounts").json["accounts"] == []


def test_both_basic_forms_reach_the_same_account(client):
    with_colon = client.post("/api/v1/customers", json={"email": "k@example.com"},
                             headers=basic("the-key"))
    without_colon = client.get("/api/v1/customers?email=k@example.com",
                               headers=basic("the-key", colon=False))
    assert without_colon.status_code == 200
    assert without_colon.json["users"][0]["uuid"] == with_colon.json["customer"]["uuid"]


def test_configured_keys_and_read_only_role():
    from fakeshift import create_app

    client = create_app({"api_keys": ("writer@shop", "reader:read@shop")}).test_client()
    writer, reader = Blueshift(client, "writer"), Blueshift(client, "reader")
    assert writer.post("/api/v1/customers", json={"email": "r@example.com"}).status_code == 200
    assert reader.get("/api/v1/customers?email=r@example.com").json["users"]
    denied = reader.post(FORGET, json={"email": "r@example.com"})
    assert denied.status_code == 403 and denied.json == {"message": "Permission denied"}
    stranger = Blueshift(client, "stranger").post(FORGET, json={"email": "r@example.com"})
    assert stranger.status_code == 401
    state = client.get("/_fakeshift/accounts/shop").json
    assert state["stats"] == {**state["stats"], "active": 1, "suppressed": 0}


def test_admin_token_guards_the_control_plane_but_not_probes():
    from fakeshift import create_app

    client = create_app({"admin_token": "s3cret"}).test_client()
    assert client.get("/_fakeshift/health").status_code == 200
    assert client.get("/_fakeshift/ready").status_code == 200
    assert client.get("/_fakeshift/accounts").status_code == 401
    assert client.get("/_fakeshift/accounts",
                      headers={"X-Fakeshift-Admin-Token": "s3cret"}).status_code == 200
    assert client.get("/_fakeshift/accounts",
                      headers={"Authorization": "Bearer s3cret"}).status_code == 200
    # The admin token is never a Blueshift key.
    assert client.get("/api/v1/customers?email=a@b.c", headers=basic("s3cret")).status_code == 401


def test_internal_errors_are_counted_and_blueshift_shaped(app, api, monkeypatch):
    from fakeshift import models

    def broken(*_args, **_kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(models.Account, "forget", broken)
    response = api.post(FORGET, json={"email": "x@example.com"})
    assert response.status_code == 500
    assert response.headers["X-Fakeshift-Internal-Error"] == "true"
    assert app.test_client().get("/_fakeshift/health").json["internal_errors"] == 1
