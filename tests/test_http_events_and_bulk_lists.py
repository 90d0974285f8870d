"""Merge, the list bulk calls, overwrite and seed lists, and events over HTTP (Flask test client):
each state rule alone, Blueshift's answers, and bad input that changes nothing."""

from __future__ import annotations

import pytest

from conftest import Blueshift
from fakeshift import create_app

MERGE = "/api/v1/customers/merge"
BULK_ADD = "/api/v1/custom_user_lists/bulk_add_users_to_list/{}"
BULK_REMOVE = "/api/v1/custom_user_lists/bulk_remove_users_from_list/{}"
OVERWRITE = "/api/v1/custom_user_lists/overwrite_list/{}"
EVENT = "/api/v1/event"
BULK_EVENTS = "/api/v1/bulkevents"


def identify(api, **fields) -> dict:
    response = api.post("/api/v1/customers", json=fields)
    assert response.status_code == 200, response.json
    return response.json["customer"]


def create_list(api, name: str, **fields) -> int:
    response = api.post("/api/v1/custom_user_lists/create", json={"name": name, **fields})
    assert response.status_code == 200, response.json
    return response.json["id"]


def members(api, list_id: int) -> list[str]:
    return next(lst["user_uuids"] for lst in api.state()["lists"] if lst["id"] == list_id)


def send(api, **event):
    response = api.post(EVENT, json=event)
    assert response.status_code == 200, response.json
    return response


def recorded(api, **query) -> list[dict]:
    response = api.client.get(f"/_fakeshift/accounts/{api.key}/events", query_string=query)
    assert response.status_code == 200, response.json
    return response.json["events"]


def everything(api) -> tuple:
    return api.state(), recorded(api)


# ---- merge ---------------------------------------------------------------------------------------

def test_a_merge_leaves_one_profile(api):
    kept = identify(api, customer_id="keep", email="kim@example.com")
    identify(api, customer_id="dup", email="kim@example.com")
    response = api.post(MERGE, json={"customer_id": "dup", "bsft_new_customer_id": "keep"})
    assert response.status_code == 200 and response.json == {"status": "ok"}
    assert response.headers["X-Fakeshift-Merged"] == "1"
    state = api.state()
    # Gone at once, not pending deletion: nothing of the duplicate is left to purge.
    assert [p["uuid"] for p in state["profiles"]] == [kept["uuid"]]
    assert state["stats"]["pending_deletion"] == 0
    users = api.get("/api/v1/customers", query_string={"email": "kim@example.com"}).json["users"]
    assert [user["uuid"] for user in users] == [kept["uuid"]]


def test_the_kept_profile_takes_what_it_lacks_and_keeps_its_own(api):
    kept = identify(api, customer_id="keep", email="kim@example.com", tier="gold")
    identify(api, customer_id="dup", email="old@example.com", cookie="ck-1", tier="silver",
             city="Oslo")
    api.post(MERGE, json={"customer_id": "dup", "bsft_new_customer_id": "keep"})
    (survivor,) = api.state()["profiles"]
    assert survivor["uuid"] == kept["uuid"]
    assert (survivor["customer_id"], survivor["email"], survivor["cookie"]) == (
        "keep", "kim@example.com", "ck-1")
    assert (survivor["tier"], survivor["city"]) == ("gold", "Oslo")
    # The duplicate's cookie now finds the kept profile, and its customer_id finds nobody.
    assert identify(api, cookie="ck-1")["uuid"] == kept["uuid"]
    assert api.post(MERGE, json={"customer_id": "dup",
                                 "bsft_new_customer_id": "keep"}).status_code == 404


def test_the_kept_profile_takes_over_lists_groups_and_events(api):
    kept = identify(api, customer_id="keep", email="kim@example.com")
    dup = identify(api, customer_id="dup", email="dup@example.com")
    list_id = create_list(api, "VIP")
    api.put(BULK_ADD.format(list_id), json={"identifier_key": "email",
                                            "identifier_values": ["dup@example.com"]})
    api.seed(groups=[{"group_id": "grp", "members": [{"uuid": dup["uuid"]}]}])
    send(api, event="purchase", customer_id="dup")
    api.post(MERGE, json={"customer_id": "dup", "bsft_new_customer_id": "keep"})
    state = api.state()
    assert members(api, list_id) == [kept["uuid"]]
    assert state["groups"][0]["user_uuids"] == [kept["uuid"]]
    shown = api.get("/api/v1/customer_search/show_events", query_string={"uuid": kept["uuid"]})
    assert [event["event"] for event in shown.json] == ["purchase"]


def test_a_customer_merged_into_itself_is_left_as_it_is(api):
    identify(api, customer_id="keep", email="kim@example.com")
    before = everything(api)
    response = api.post(MERGE, json={"customer_id": "keep", "bsft_new_customer_id": "keep"})
    assert response.status_code == 200 and response.headers["X-Fakeshift-Merged"] == "0"
    assert everything(api) == before
    assert api.post(MERGE, json={"customer_id": "nobody",
                                 "bsft_new_customer_id": "nobody"}).status_code == 404


def test_a_merge_with_an_unknown_customer_is_404_and_changes_nothing(api):
    identify(api, customer_id="keep")
    before = everything(api)
    for body in ({"customer_id": "nobody", "bsft_new_customer_id": "keep"},
                 {"customer_id": "keep", "bsft_new_customer_id": "nobody"}):
        response = api.post(MERGE, json=body)
        assert response.status_code == 404 and response.json == {"message": "Customer not found"}
    assert everything(api) == before


@pytest.mark.parametrize("body, field", [
    ({"customer_id": "dup"}, "bsft_new_customer_id"),
    ({"bsft_new_customer_id": "keep"}, "customer_id"),
    ({"customer_id": 7, "bsft_new_customer_id": "keep"}, "customer_id"),
    ({"customer_id": "dup", "bsft_new_customer_id": "keep", "email": "x@example.com"}, "email"),
])
def test_a_bad_merge_is_a_400_naming_the_field_and_changes_nothing(api, body, field):
    identify(api, customer_id="keep")
    identify(api, customer_id="dup")
    before = everything(api)
    response = api.post(MERGE, json=body)
    assert response.status_code == 400 and field in response.json["errors"]
    assert everything(api) == before


# ---- list bulk calls, overwrite, seed lists ----------------------------------------------------

@pytest.fixture
def vip(api):
    api.seed(profiles=[{"email": "ana@example.com", "customer_id": "C1"},
                       {"email": "ben@example.com", "customer_id": "C2"},
                       {"email": "cy@example.com", "customer_id": "C3"}])
    return create_list(api, "VIP")


def test_bulk_add_adds_each_value_and_answers_the_unknown_ones_in_errors(api, vip):
    response = api.put(BULK_ADD.format(vip), json={
        "identifier_key": "email",
        "identifier_values": ["ana@example.com", "BEN@example.com", "zed@example.com"]})
    assert response.status_code == 200
    assert response.json == {"status": "ok", "errors": [
        {"identifier_value": "zed@example.com", "message": "Customer not found"}]}
    assert response.headers["X-Fakeshift-Added"] == "2"
    assert len(members(api, vip)) == 2
    again = api.put(BULK_ADD.format(vip), json={"identifier_key": "email",
                                                "identifier_values": ["ana@example.com"]})
    assert again.json == {"status": "ok", "errors": []} and again.headers["X-Fakeshift-Added"] == "0"


def test_bulk_remove_removes_members_and_ignores_strangers(api, vip):
    api.put(BULK_ADD.format(vip), json={"identifier_key": "email",
                                        "identifier_values": ["ana@example.com", "ben@example.com"]})
    response = api.put(BULK_REMOVE.format(vip), json={
        "identifier_key": "email", "identifier_values": ["ana@example.com", "zed@example.com"]})
    assert response.status_code == 200 and response.json == {"status": "ok", "errors": []}
    assert response.headers["X-Fakeshift-Removed"] == "1"
    assert len(members(api, vip)) == 1


@pytest.mark.parametrize("path, verb", [(BULK_ADD, "add"), (BULK_REMOVE, "remove")])
def test_bulk_list_calls_honour_the_cap(api, vip, path, verb):
    def put(count, query=""):
        values = ["ana@example.com"] + [f"u{n}@example.com" for n in range(count - 1)]
        return api.put(path.format(vip) + query,
                       json={"identifier_key": "email", "identifier_values": values})

    assert put(25).status_code == 200
    assert put(500, "?async=true").status_code == 200
    before = everything(api)
    refused = put(26)
    assert refused.status_code == 413
    assert refused.json == {"error": f"You can {verb} maximum 25 users in one api call"}
    assert put(26, "?async=false").status_code == 413
    refused = put(501, "?async=TRUE")
    assert refused.status_code == 413
    assert refused.json == {"error": f"You can {verb} maximum 500 users in one async api call"}
    assert everything(api) == before


@pytest.mark.parametrize("path", [BULK_ADD, BULK_REMOVE])
@pytest.mark.parametrize("body, query, field, message", [
    ({"identifier_key": "phone", "identifier_values": ["1"]}, "", "identifier_key",
     "must be one of: email, customer_id"),
    ({"identifier_key": "customer_id", "identifier_values": ["C1"]}, "", "identifier_key",
     "does not match the list's source (email)"),
    ({"identifier_key": "email", "identifier_values": []}, "", "identifier_values",
     "must be a non-empty array of strings"),
    ({"identifier_key": "email", "identifier_values": "ana@example.com"}, "", "identifier_values",
     "must be a non-empty array of strings"),
    ({"identifier_key": "email", "identifier_values": ["ana@example.com", 7]}, "",
     "identifier_values[1]", "must be a string, not a number"),
    ({"identifier_key": "email", "identifier_value": "ana@example.com"}, "", "identifier_value",
     "is not a recognised field"),
    ({"identifier_key": "email", "identifier_values": ["ana@example.com"]}, "?async=maybe",
     "async", "must be true or false"),
])
def test_bad_bulk_list_input_is_blueshifts_400_naming_the_field_and_changes_nothing(
        api, vip, path, body, query, field, message):
    api.put(BULK_ADD.format(vip), json={"identifier_key": "email",
                                        "identifier_values": ["ben@example.com"]})
    before = everything(api)
    response = api.put(path.format(vip) + query, json=body)
    assert response.status_code == 400
    assert response.json == {"errors": [{"detail": "Input params not valid", "field": field,
                                         "message": message}]}
    assert everything(api) == before


@pytest.mark.parametrize("path", [BULK_ADD, BULK_REMOVE])
def test_bulk_calls_on_an_unknown_list_are_404(api, path):
    response = api.put(path.format(424242), json={"identifier_key": "email",
                                                  "identifier_values": ["a@example.com"]})
    assert response.status_code == 404
    assert response.json == {"message": "The customer list you are looking for could not be found."}


def test_overwrite_list_records_the_request_and_keeps_the_members(api, vip, client):
    api.put(BULK_ADD.format(vip), json={"identifier_key": "email",
                                        "identifier_values": ["ana@example.com"]})
    client.post("/_fakeshift/clock/freeze", json={"at": "2030-01-01T00:00:00Z"})
    path = "s3://bsft-customers/acme/import/custom_lists/vip.csv"
    response = api.put(OVERWRITE.format(vip), json={"s3_file_path": path})
    assert response.status_code == 200 and response.json == {"status": "ok"}
    (state,) = api.state()["lists"]
    assert state["last_overwrite"] == {"s3_file_path": path,
                                       "requested_at": "2030-01-01T00:00:00.000000Z"}
    assert state["user_count"] == 1 and state["updated_at"] == "2030-01-01T00:00:00.000000Z"


@pytest.mark.parametrize("body, field", [({}, "body"), ({"s3_file_path": ""}, "s3_file_path"),
                                         ({"s3_file_path": "s3://b/x.csv", "x": 1}, "x")])
def test_a_bad_overwrite_is_a_400_and_changes_nothing(api, vip, body, field):
    before = everything(api)
    response = api.put(OVERWRITE.format(vip), json=body) if body else api.put(OVERWRITE.format(vip))
    assert response.status_code == 400 and field in response.json["errors"]
    assert everything(api) == before
    assert api.put(OVERWRITE.format(424242),
                   json={"s3_file_path": "s3://b/x.csv"}).status_code == 404


def test_seed_lists_answers_the_seed_lists_only_with_is_exported(api, vip):
    seeds = create_list(api, "Seeds", is_seed_list=1)
    create_list(api, "More seeds", is_seed_list=1, source="customer_id")
    response = api.get("/api/v1/custom_user_lists/seed_lists")
    assert response.status_code == 200
    assert [entry["filename"] for entry in response.json] == ["Seeds", "More seeds"]
    details = api.get(f"/api/v1/custom_user_lists/id/{seeds}").json
    entry = response.json[0]
    assert entry.pop("is_exported") is details.pop("is_exporting") is False
    assert entry == details


def test_seed_lists_of_an_account_without_any_is_empty(api, vip):
    assert api.get("/api/v1/custom_user_lists/seed_lists").json == []
    assert Blueshift(api.client, "fresh").get("/api/v1/custom_user_lists/seed_lists").json == []


# ---- events ------------------------------------------------------------------------------------

def test_an_event_identifies_its_customer(api):
    response = send(api, event="add_to_cart", customer_id="c-1", email="kim@example.com",
                    sku="ABC")
    assert response.json == {"status": "OK"} and response.headers["X-Fakeshift-Recorded"] == "1"
    (profile,) = api.state()["profiles"]
    assert (profile["customer_id"], profile["email"]) == ("c-1", "kim@example.com")
    # Only an identify event sets the customer's attributes.
    assert "sku" not in profile
    send(api, event="identify", customer_id="c-1", firstname="Kim")
    (profile,) = api.state()["profiles"]
    assert profile["firstname"] == "Kim"
    assert [event["user_uuid"] for event in recorded(api)] == [profile["uuid"]] * 2


def test_an_event_from_a_forgotten_email_creates_nothing(api):
    api.post("/api/v1/customers/forget", json={"email": "gone@example.com"})
    before = everything(api)
    response = api.post(EVENT, json={"event": "identify", "email": "GONE@example.com",
                                     "firstname": "Gone"})
    assert response.status_code == 200 and response.json == {"status": "OK"}
    assert response.headers["X-Fakeshift-Recorded"] == "0"
    bulk = api.post(BULK_EVENTS, json={"events": [{"event": "purchase",
                                                   "email": "gone@example.com"}]})
    assert bulk.status_code == 200 and bulk.json == {"status": "ok", "count": 1}
    assert bulk.headers["X-Fakeshift-Recorded"] == "0"
    assert everything(api) == before
    assert api.state()["profiles"] == [] and recorded(api) == []


def test_events_show_up_in_show_events_newest_first(api):
    kim = identify(api, email="kim@example.com")
    identify(api, email="lee@example.com")
    send(api, event="view", email="kim@example.com", sku="A", ip="192.0.2.1")
    send(api, event="view", email="lee@example.com")
    api.post(BULK_EVENTS, json={"events": [{"event": "add_to_cart", "email": "kim@example.com"},
                                           {"event": "purchase", "email": "kim@example.com",
                                            "timestamp": "2025-09-17T10:26:54Z"}]})
    response = api.get("/api/v1/customer_search/show_events", query_string={"uuid": kim["uuid"]})
    assert response.status_code == 200
    assert [event["event"] for event in response.json] == ["purchase", "add_to_cart", "view"]
    purchase, view = response.json[0], response.json[2]
    assert (purchase["timestamp"], purchase["timestamp_epoch"]) == ("2025-09-17T10:26:54Z",
                                                                     "1758104814")
    assert (view["sku"], view["ip"], view["user_uuid"]) == ("A", "192.0.2.1", kim["uuid"])
    assert view["_bsft_doc_type"] == "events"
    assert view["account_uuid"] == api.state()["uuid"]


@pytest.mark.parametrize("timestamp, epoch", [
    ("2025-09-17T10:26:54Z", 1758104814), ("2025-09-17t12:26:54.5+02:00", 1758104814),
    ("1066-10-14T09:00:00z", -28502722800)])
def test_an_events_timestamp_is_kept_as_sent_and_read_as_rfc_3339(api, timestamp, epoch):
    send(api, event="view", timestamp=timestamp)
    (event,) = recorded(api)
    assert (event["timestamp"], event["timestamp_epoch"]) == (timestamp, epoch)


def test_show_events_of_an_unknown_profile_is_404(api):
    response = api.get("/api/v1/customer_search/show_events",
                       query_string={"uuid": "51aceb79-2cbc-4e2b-a132-b02de69bba15"})
    assert response.status_code == 404 and response.json == {"message": "Customer not found"}


def test_event_history_answers_the_newest_of_one_name_up_to_the_limit(api):
    for n in range(55):
        send(api, event="app_install", device_id=f"d{n}")
    send(api, event="app_open", device_id="d0")
    history = api.get("/api/v1/event/history", query_string={"event_name": "app_install"})
    assert history.status_code == 200 and list(history.json) == ["app_install"]
    installs = history.json["app_install"]
    assert [event["device_id"] for event in installs] == [f"d{n}" for n in range(54, 4, -1)]
    assert all(type(event["timestamp_epoch"]) is int for event in installs)
    limited = api.get("/api/v1/event/history", query_string={"event_name": "app_install",
                                                             "limit": "2"}).json
    assert [event["device_id"] for event in limited["app_install"]] == ["d54", "d53"]
    assert api.get("/api/v1/event/history",
                   query_string={"event_name": "never"}).json == {"never": []}


@pytest.mark.parametrize("query, field", [
    ({}, "event_name"), ({"event_name": "x", "limit": "51"}, "limit"),
    ({"event_name": "x", "limit": "0"}, "limit"), ({"event_name": "x", "limit": "²"}, "limit"),
    ({"event_name": "x", "page": "2"}, "page")])
def test_bad_history_queries_are_a_400_naming_the_field(api, query, field):
    response = api.get("/api/v1/event/history", query_string=query)
    assert response.status_code == 400 and field in response.json["errors"]


def test_an_anonymous_event_is_kept_without_a_profile(api):
    send(api, event="page_view", url="https://example.com/")
    assert api.state()["profiles"] == []
    (event,) = api.get("/api/v1/event/history", query_string={"event_name": "page_view"}).json[
        "page_view"]
    assert event["url"] == "https://example.com/" and "user_uuid" not in event


def test_a_client_cannot_set_the_fields_blueshift_adds(api):
    send(api, event="view", user_uuid="forged", account_uuid="forged", _bsft_ts="forged")
    (event,) = recorded(api)
    assert "user_uuid" not in event
    assert "forged" not in (event["account_uuid"], event["_bsft_ts"])


def test_an_event_uuid_already_recorded_is_not_recorded_twice(api):
    body = {"event": "purchase", "customer_id": "c-1", "event_uuid": "e-1"}
    assert send(api, **body).headers["X-Fakeshift-Recorded"] == "1"
    assert send(api, **body).headers["X-Fakeshift-Recorded"] == "0"
    bulk = api.post(BULK_EVENTS, json={"events": [body, {**body, "event_uuid": "e-2"}]})
    assert bulk.headers["X-Fakeshift-Recorded"] == "1"
    assert [event["event_uuid"] for event in recorded(api)] == ["e-1", "e-2"]


def test_past_the_per_account_cap_the_oldest_events_are_dropped():
    app = create_app({"max_events_per_account": 3})
    api = Blueshift(app.test_client())
    for n in range(5):
        send(api, event="view", customer_id="c-1", n=n)
    assert [event["n"] for event in recorded(api)] == [2, 3, 4]
    assert api.state()["stats"]["events"] == 3 and api.state()["stats"]["events_dropped"] == 2
    # A dropped event's uuid is free again: sent anew, it is recorded anew.
    first = recorded(api)[0]["event_uuid"]
    send(api, event="view", event_uuid=first)
    assert [event["event_uuid"] for event in recorded(api)].count(first) == 1


def test_the_events_of_a_purged_profile_go_with_it(api, client):
    kim = identify(api, email="kim@example.com")
    send(api, event="view", email="kim@example.com")
    send(api, event="page_view")
    api.post("/api/v1/customers/forget", json={"email": "kim@example.com"})
    # Pending deletion: still readable, events included.
    shown = api.get("/api/v1/customer_search/show_events", query_string={"uuid": kim["uuid"]})
    assert len(shown.json) == 1
    client.post("/_fakeshift/clock/advance", json={"by": "2h"})
    assert [event["event"] for event in recorded(api)] == ["page_view"]
    assert api.get("/api/v1/customer_search/show_events",
                   query_string={"uuid": kim["uuid"]}).status_code == 404


RFC_3339 = "must be an RFC 3339 date-time, e.g. 2025-09-17T10:26:54Z"


@pytest.mark.parametrize("path, body, field, message", [
    (EVENT, {"customer_id": "c-1"}, "event", "can't be blank"),
    (EVENT, {"event": 7}, "event", "must be a string, not a number"),
    (EVENT, {"event": "view", "email": ["a@example.com"]}, "email", "must be a string, not an array"),
    (EVENT, {"event": "view", "timestamp": "yesterday"}, "timestamp", RFC_3339),
    (EVENT, {"event": "view", "timestamp": "2025-09-17"}, "timestamp", RFC_3339),
    (EVENT, {"event": "view", "timestamp": "2025-09-17T10:26:54"}, "timestamp", RFC_3339),
    (EVENT, {"event": "view", "timestamp": "2025-13-17T10:26:54Z"}, "timestamp", RFC_3339),
    (EVENT, {"event": "view", "ip": 3232235777}, "ip", "must be a string, not a number"),
    (EVENT, {"event": "view", "subscription_groups": {"id": "news"}}, "subscription_groups",
     "must be an array of objects"),
    (EVENT, {"event": "view", "subscription_groups": ["news"]}, "subscription_groups[0]",
     "must be an object"),
    (EVENT, {"event": "view", "subscription_groups": [{"id": 1}]}, "subscription_groups[0].id",
     "must be a string, not a number"),
    (EVENT, {"event": "view", "subscription_groups": [{"id": "news", "subscribed": "yes"}]},
     "subscription_groups[0].subscribed", "must be true or false"),
    (EVENT, {"event": "identify", "customer_id": "c-1", "created_at": "2020-01-01T00:00:00Z"},
     "created_at", "is set by Blueshift and cannot be written"),
    (EVENT, [{"event": "view"}], "body", "must be a JSON object, not an array"),
    (BULK_EVENTS, {"events": []}, "events", "must be a non-empty array of event objects"),
    (BULK_EVENTS, {"events": [{"event": "view", "customer_id": "c-1"}, "view"]}, "events[1]",
     "must be an object"),
    (BULK_EVENTS, {"events": [{"event": "view", "customer_id": "c-1"}, {"customer_id": "c-2"}]},
     "events[1].event", "can't be blank"),
    (BULK_EVENTS, {"event": "view"}, "event", "is not a recognised field"),
])
def test_bad_event_input_is_blueshifts_400_naming_the_field_and_records_nothing(
        api, path, body, field, message):
    identify(api, customer_id="c-0")
    before = everything(api)
    response = api.post(path, json=body)
    assert response.status_code == 400
    assert response.json == {"errors": [{field: message}]}
    assert everything(api) == before


def test_more_than_100_bulk_events_is_a_413_and_records_nothing(api):
    assert api.post(BULK_EVENTS, json={"events": [{"event": "view"}] * 100}).status_code == 200
    before = everything(api)
    response = api.post(BULK_EVENTS, json={"events": [{"event": "view"}] * 101})
    assert response.status_code == 413
    assert response.json == {"message": "You can upload maximum 100 events in one api call"}
    assert everything(api) == before


def test_the_control_plane_lists_events_oldest_first_and_filters_them(api, client):
    kim = identify(api, email="kim@example.com")
    send(api, event="view", email="kim@example.com")
    send(api, event="view")
    send(api, event="purchase", email="kim@example.com")
    assert [e["event"] for e in recorded(api)] == ["view", "view", "purchase"]
    assert [e["event"] for e in recorded(api, user_uuid=kim["uuid"])] == ["view", "purchase"]
    assert len(recorded(api, event="view")) == 2
    assert client.get(f"/_fakeshift/accounts/{api.key}/events").json["dropped"] == 0
    assert client.get("/_fakeshift/accounts/nobody/events").status_code == 404
    assert client.get(f"/_fakeshift/accounts/{api.key}/events?name=x").status_code == 400


# ---- isolation ---------------------------------------------------------------------------------

def test_events_lists_and_merges_are_isolated_between_accounts(client):
    acme, globex = Blueshift(client, "acme"), Blueshift(client, "globex")
    kim = identify(acme, customer_id="keep", email="kim@example.com")
    identify(acme, customer_id="dup")
    send(acme, event="view", customer_id="keep")
    list_id = create_list(acme, "Seeds", is_seed_list=1)

    assert globex.get("/api/v1/event/history", query_string={"event_name": "view"}).json == {
        "view": []}
    assert globex.get("/api/v1/customer_search/show_events",
                      query_string={"uuid": kim["uuid"]}).status_code == 404
    assert globex.get("/api/v1/custom_user_lists/seed_lists").json == []
    assert globex.post(MERGE, json={"customer_id": "dup",
                                    "bsft_new_customer_id": "keep"}).status_code == 404
    assert globex.put(BULK_ADD.format(list_id), json={
        "identifier_key": "email", "identifier_values": ["kim@example.com"]}).status_code == 404
    # The same event_uuid in another account is another event.
    send(globex, event="view", event_uuid=recorded(acme)[0]["event_uuid"])
    assert len(recorded(globex)) == 1

    assert len(acme.state()["profiles"]) == 2 and len(recorded(acme)) == 1
    assert acme.get("/api/v1/event/history",
                    query_string={"event_name": "view"}).json["view"][0]["user_uuid"] == kim["uuid"]
