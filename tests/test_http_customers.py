"""The customer endpoints over HTTP (Flask test client): forget, delete, unforget, identify,
bulk, search and get, with the answers a Blueshift client sees."""

from __future__ import annotations

import pytest

from conftest import Blueshift


def identify(api, **fields):
    response = api.post("/api/v1/customers", json=fields)
    assert response.status_code == 200, response.json
    return response.json["customer"]


def test_identify_creates_then_updates(api):
    created = identify(api, email="jane@example.com", firstname="Jane")
    updated = identify(api, email="jane@example.com", lastname="Doe")
    assert updated["uuid"] == created["uuid"]
    assert updated["firstname"] == "Jane" and updated["lastname"] == "Doe"
    fetched = api.get(f"/api/v1/customers/{created['uuid']}")
    assert fetched.status_code == 200 and fetched.json["customer"]["lastname"] == "Doe"


def test_delete_first_match_then_all_matching_in_query_or_body(api):
    api.seed(profiles=[{"email": "dup@example.com", "count": 120}])
    first = api.post("/api/v1/customers/delete", json={"email": "dup@example.com"})
    assert first.status_code == 200 and first.json == {"status": "ok"}
    assert first.headers["X-Fakeshift-Scheduled"] == "1"
    by_query = api.post("/api/v1/customers/delete?delete_all_matching_customers=true",
                        json={"email": "dup@example.com"})
    by_body = api.post("/api/v1/customers/delete",
                       json={"email": "dup@example.com", "delete_all_matching_customers": "TRUE"})
    rest = api.post("/api/v1/customers/delete",
                    json={"email": "dup@example.com", "delete_all_matching_customers": True})
    assert [r.headers["X-Fakeshift-Scheduled"] for r in (by_query, by_body, rest)] == ["50", "50", "19"]
    gone = api.post("/api/v1/customers/delete", json={"email": "dup@example.com"})
    assert gone.status_code == 404 and gone.json == {"message": "Customer not found"}
    assert api.state()["stats"]["pending_deletion"] == 120


def test_delete_flag_false_in_query_deletes_one(api):
    api.seed(profiles=[{"email": "two@example.com", "count": 2}])
    response = api.post("/api/v1/customers/delete?delete_all_matching_customers=false",
                        json={"email": "two@example.com"})
    assert response.headers["X-Fakeshift-Scheduled"] == "1"


def test_forget_answers_both_documented_shapes_and_suppresses(api, client):
    profile = identify(api, email="gdpr@example.com")
    response = api.post("/api/v1/customers/forget", json={"email": "gdpr@example.com"})
    assert response.status_code == 200
    assert response.json["status"] == "ok"
    assert response.json["customer"]["is_forgotten"] is True
    assert response.json["customer"]["forgotten_at"].endswith("Z")
    pending = api.get(f"/api/v1/customers/{profile['uuid']}").json["customer"]
    assert pending["is_forgotten"] is True and pending["deletion_pending"] is True
    again = api.post("/api/v1/customers", json={"email": "gdpr@example.com", "firstname": "X"})
    assert again.status_code == 200 and again.headers["X-Fakeshift-Suppressed"] == "true"
    assert api.state()["stats"]["profiles"] == 1


def test_forgetting_an_unknown_person_still_suppresses_them(api):
    response = api.post("/api/v1/customers/forget", json={"customer_id": "NEVER-SEEN"})
    assert response.status_code == 200 and response.headers["X-Fakeshift-Forgotten"] == "0"
    api.post("/api/v1/customers", json={"customer_id": "NEVER-SEEN", "email": "n@example.com"})
    state = api.state()
    assert state["profiles"] == []
    assert state["suppressed"][0]["value"] == "NEVER-SEEN"


def test_unforget_restores_nothing(api, client):
    old = identify(api, email="back@example.com", firstname="Old")
    api.post("/api/v1/customers/forget", json={"email": "back@example.com"})
    response = api.post("/api/v1/customers/unforget", json={"email": "back@example.com"})
    assert response.status_code == 200 and response.json == {"status": "ok"}
    new = identify(api, email="back@example.com")
    assert new["uuid"] != old["uuid"] and "firstname" not in new
    client.post("/_fakeshift/clock/advance", json={"by": "2h"})
    assert api.get(f"/api/v1/customers/{old['uuid']}").status_code == 404
    assert api.get(f"/api/v1/customers/{new['uuid']}").status_code == 200


def test_unforget_of_someone_never_forgotten_is_harmless(api):
    response = api.post("/api/v1/customers/unforget", json={"customer_id": "C-1"})
    assert response.status_code == 200 and response.headers["X-Fakeshift-Unsuppressed"] == "0"


@pytest.mark.parametrize("kind", ["cookie", "device_id"])
def test_unforget_with_only_a_cookie_or_device_id_lifts_that_suppression(api, client, kind):
    # Blueshift's export takes any of the four identifiers alone (its reference page lists only
    # email and customer_id; the export wins, see README "Decisions").
    api.post("/api/v1/customers/forget", json={kind: "id-1"})
    assert api.post("/api/v1/customers", json={kind: "id-1"}).headers["X-Fakeshift-Suppressed"]
    response = api.post("/api/v1/customers/unforget", json={kind: "id-1"})
    assert response.status_code == 200 and response.json == {"status": "ok"}
    assert response.headers["X-Fakeshift-Unsuppressed"] == "1"
    assert identify(api, **{kind: "id-1"})[kind] == "id-1"
    assert client.get("/_fakeshift/violations").json["count"] == 0


def test_unforget_needs_an_identifier(api):
    response = api.post("/api/v1/customers/unforget", json={})
    assert response.status_code == 400
    assert response.json["errors"]["identifier"] == [
        "at least one of customer_id, email, cookie, device_id is required"]


def test_purge_after_clock_advance_removes_profile_everywhere(api, client):
    profile = identify(api, email="bye@example.com")
    api.post("/api/v1/customers/delete", json={"email": "bye@example.com"})
    assert api.get(f"/api/v1/customers/{profile['uuid']}").status_code == 200
    assert api.get("/api/v1/customers?email=bye@example.com").json["users"][0]["deletion_pending"]
    client.post("/_fakeshift/clock/advance", json={"seconds": 7200})
    assert api.get(f"/api/v1/customers/{profile['uuid']}").status_code == 404
    assert api.get("/api/v1/customers?email=bye@example.com").json == {"users": []}


def test_bulk_creates_up_to_fifty_and_reports_missing_identifiers(api):
    customers = [{"email": f"b{i}@example.com"} for i in range(49)] + [{"firstname": "Nobody"}]
    response = api.post("/api/v1/customers/bulk", json={"customers": customers})
    assert response.status_code == 200
    assert response.json["customers"] == [{"firstname": "Nobody"}]
    assert response.json["errors"][0]["error_data"]["user_identifier_missing"]
    assert api.state()["stats"]["profiles"] == 49
    too_many = api.post("/api/v1/customers/bulk",
                        json={"customers": [{"email": f"x{i}@example.com"} for i in range(51)]})
    assert too_many.status_code == 413
    assert api.state()["stats"]["profiles"] == 49


def test_search_returns_duplicates_oldest_first(api):
    first = identify(api, email="s@example.com", customer_id="A")
    second = identify(api, email="S@example.com", customer_id="B")
    users = api.get("/api/v1/customers?email=s@example.com").json["users"]
    assert [u["uuid"] for u in users] == [first["uuid"], second["uuid"]]


def test_search_answers_blueshifts_users_list_and_first_match_as_user(api):
    first = identify(api, email="s@example.com", customer_id="A")
    identify(api, email="s@example.com", customer_id="B")
    body = api.get("/api/v1/customers?email=s@example.com").json
    assert set(body) == {"users", "user"}
    assert len(body["users"]) == 2 and body["user"] == body["users"][0]
    assert body["user"]["uuid"] == first["uuid"]
    # No match, no first match: `user` is left out rather than sent as null or {}.
    assert api.get("/api/v1/customers?email=nobody@example.com").json == {"users": []}


def test_get_unknown_customer_is_404(api):
    response = api.get("/api/v1/customers/00000000-0000-4000-8000-000000000000")
    assert response.status_code == 404 and response.json == {"message": "Customer not found"}


def test_each_api_key_is_its_own_account(client):
    alice, bob = Blueshift(client, "alice-key"), Blueshift(client, "bob-key")
    identify(alice, email="same@example.com")
    assert bob.post("/api/v1/customers/delete", json={"email": "same@example.com"}).status_code == 404
    assert bob.get("/api/v1/customers?email=same@example.com").json == {"users": []}


def test_forgetting_a_kelvin_sign_lookalike_leaves_the_ascii_address_alone(api):
    kim = identify(api, email="kim@example.com")
    lookalike = "\u212aim@example.com"  # KELVIN SIGN, which str.lower() turns into "k"
    forgotten = api.post("/api/v1/customers/forget", json={"email": lookalike})
    assert forgotten.status_code == 200 and forgotten.headers["X-Fakeshift-Forgotten"] == "0"
    assert "deletion_pending" not in api.get(f"/api/v1/customers/{kim['uuid']}").json["customer"]
    assert identify(api, email="KIM@example.com", plan="gold")["uuid"] == kim["uuid"]
    assert [s["value"] for s in api.state()["suppressed"]] == [lookalike]
