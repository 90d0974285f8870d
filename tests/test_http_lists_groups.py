"""Custom lists and customer groups over HTTP."""

from __future__ import annotations

from urllib.parse import quote

import pytest


@pytest.fixture
def retail(api):
    """Two customers, an email list and a customer_id list holding both, and a group."""
    uuids = api.seed(profiles=[{"email": "ana@example.com", "customer_id": "C1"},
                               {"email": "ben@example.com", "customer_id": "C2"}])["uuids"]
    by_email = api.post("/api/v1/custom_user_lists/create",
                        json={"name": "VIP", "description": "v", "source": "email"}).json
    by_id = api.post("/api/v1/custom_user_lists/create",
                     json={"name": "Loyal", "description": "l", "source": "customer_id"}).json
    for value in ("ana@example.com", "ben@example.com"):
        assert api.put(f"/api/v1/custom_user_lists/add_user_to_list/{by_email['id']}",
                       json={"identifier_key": "email", "identifier_value": value}).status_code == 200
    for value in ("C1", "C2"):
        api.put(f"/api/v1/custom_user_lists/add_user_to_list/{by_id['id']}",
                json={"identifier_key": "customer_id", "identifier_value": value})
    api.seed(groups=[{"group_id": "grp_orion", "attributes": {"firstname": "Orion"},
                      "members": [{"uuid": uuids[0]}, {"email": "ben@example.com"}]}])
    return {"uuids": uuids, "email_list": by_email["id"], "id_list": by_id["id"]}


def list_count(api, list_id):
    return api.get(f"/api/v1/custom_user_lists/id/{list_id}").json["user_count"]


def test_remove_user_from_list_by_email_and_customer_id(api, retail):
    remove = "/api/v1/custom_user_lists/remove_user_from_list/{}"
    response = api.put(remove.format(retail["email_list"]),
                       json={"identifier_key": "email", "identifier_value": "ana@example.com"})
    assert response.status_code == 200 and response.json == {"status": "ok"}
    assert list_count(api, retail["email_list"]) == 1
    api.put(remove.format(retail["id_list"]),
            json={"identifier_key": "customer_id", "identifier_value": "C2"})
    assert list_count(api, retail["id_list"]) == 1


def test_removing_a_non_member_is_an_idempotent_200(api, retail):
    remove = f"/api/v1/custom_user_lists/remove_user_from_list/{retail['email_list']}"
    body = {"identifier_key": "email", "identifier_value": "ana@example.com"}
    assert [api.put(remove, json=body).headers["X-Fakeshift-Removed"] for _ in range(2)] == ["1", "0"]
    stranger = api.put(remove, json={"identifier_key": "email", "identifier_value": "zed@example.com"})
    assert stranger.status_code == 200
    assert list_count(api, retail["email_list"]) == 1


def test_remove_from_unknown_list_is_404(api):
    response = api.put("/api/v1/custom_user_lists/remove_user_from_list/424242",
                       json={"identifier_key": "email", "identifier_value": "a@example.com"})
    assert response.status_code == 404
    assert response.json == {"message": "The customer list you are looking for could not be found."}


@pytest.mark.parametrize("key", ["customer_id", "uuid", "phone"])
def test_identifier_key_must_be_the_lists_source(api, retail, key):
    response = api.put(f"/api/v1/custom_user_lists/remove_user_from_list/{retail['email_list']}",
                       json={"identifier_key": key, "identifier_value": "C1"})
    assert response.status_code == 400
    assert "identifier_key" in response.json["errors"]
    assert list_count(api, retail["email_list"]) == 2


def test_non_integer_list_id_is_not_routed(api):
    response = api.put("/api/v1/custom_user_lists/remove_user_from_list/abc",
                       json={"identifier_key": "email", "identifier_value": "a@example.com"})
    assert response.status_code == 404 and response.json == {"status": "404", "error": "Not Found"}


def test_list_names_are_unique(api, retail):
    response = api.post("/api/v1/custom_user_lists/create", json={"name": "vip", "description": ""})
    assert response.status_code == 400 and response.json["errors"]["name"] == ["has already been taken"]


def test_delete_group_returns_the_group_and_deletes_users_by_default(api, retail, client):
    response = api.delete("/api/v1/customer_group/grp_orion")
    assert response.status_code == 200
    assert response.json["_bsft_delete_status"] == "success"
    group = response.json["group"]
    assert group["group_id"] == "grp_orion" and group["user_count"] == 2
    assert group["firstname"] == "Orion" and group["extended_attributes"]["firstname"] == "Orion"
    assert response.headers["X-Fakeshift-Scheduled"] == "2"
    again = api.delete("/api/v1/customer_group/grp_orion")
    assert again.status_code == 404
    assert again.json == {"message": "The specified group ID was not found."}
    client.post("/_fakeshift/clock/advance", json={"by": "2h"})
    assert list_count(api, retail["email_list"]) == 0


def test_delete_group_with_delete_users_false_keeps_users(api, retail):
    response = api.delete("/api/v1/customer_group/grp_orion?delete_users=false")
    assert response.status_code == 200 and response.headers["X-Fakeshift-Scheduled"] == "0"
    assert api.state()["stats"]["active"] == 2


def test_server_setting_flips_the_omitted_default(api, retail, client):
    assert client.put("/_fakeshift/settings",
                      json={"group_delete_users_default": False}).status_code == 200
    assert api.delete("/api/v1/customer_group/grp_orion").headers["X-Fakeshift-Scheduled"] == "0"


def test_delete_users_must_be_a_boolean(api, retail):
    response = api.delete("/api/v1/customer_group/grp_orion?delete_users=maybe")
    assert response.status_code == 400 and "delete_users" in response.json["errors"]
    assert api.state()["stats"]["groups"] == 1


def test_remove_one_user_from_a_group(api, retail):
    user = retail["uuids"][0]
    response = api.delete(f"/api/v1/customer_group/grp_orion/user/{user}")
    assert response.status_code == 200 and response.json["user_uuid"] == user
    assert api.delete(f"/api/v1/customer_group/grp_orion/user/{user}").status_code == 404
    state = api.state()
    assert state["groups"][0]["user_count"] == 1 and state["stats"]["active"] == 2


# The custom list object of Blueshift's export (create and details answers), with its types.
BLUESHIFT_LIST_FIELDS = {
    "id": int, "account_id": int, "filename": str, "description": str, "filesize": type(None),
    "user_count": int, "status": str, "created_at": str, "updated_at": str, "is_exporting": bool,
    "user_id": int, "source": str, "uuid": str, "is_seed_list": bool, "deleted_at": type(None),
    "import_method": str, "version": str, "author": str,
}


def test_the_list_object_has_blueshifts_fields_and_nothing_else(api, retail):
    created = api.post("/api/v1/custom_user_lists/create",
                       json={"name": "SF users", "description": "in SF", "is_seed_list": 1}).json
    details = api.get(f"/api/v1/custom_user_lists/id/{created['id']}").json
    assert created == details
    assert {k: type(v) for k, v in details.items()} == BLUESHIFT_LIST_FIELDS
    assert details["filename"] == "SF users"  # Blueshift answers the list's name as `filename`
    assert (details["is_exporting"], details["is_seed_list"], details["version"]) == (
        False, True, "v2")
    # One account, one account_id (and its one user, the API); another account has another.
    other = api.get(f"/api/v1/custom_user_lists/id/{retail['email_list']}").json
    assert (other["account_id"], other["user_id"]) == (details["account_id"], details["user_id"])
    api.key = "another-account"
    elsewhere = api.post("/api/v1/custom_user_lists/create", json={"name": "SF users"}).json
    assert elsewhere["account_id"] != details["account_id"]


@pytest.mark.parametrize("group_id", ["a/b", "/a", "a/", "team//17", "a%2Fb"])
def test_a_group_whose_id_holds_slashes_can_be_deleted_and_edited(api, group_id):
    uuids = api.seed(profiles=[{"email": "g1@example.com"}, {"email": "g2@example.com"}])["uuids"]
    api.seed(groups=[{"group_id": group_id, "members": [{"uuid": u} for u in uuids]}])
    path = f"/api/v1/customer_group/{quote(group_id, safe='')}"
    removed = api.delete(f"{path}/user/{uuids[0]}")
    assert removed.status_code == 200 and removed.json["group_id"] == group_id
    deleted = api.delete(f"{path}?delete_users=false")
    assert deleted.status_code == 200 and deleted.json["group"]["group_id"] == group_id
    assert deleted.json["group"]["user_uuids"] == [uuids[1]]
    assert api.delete(path).status_code == 404

