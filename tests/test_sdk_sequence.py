"""An SDK-like client, written the way integrations call Blueshift (stdlib urllib, Basic auth,
JSON in and out, no fakeshift header or control-plane call), goes through a realistic sequence
against a real `fakeshift serve`: the five emulated endpoints mixed with events, list bulk
calls, merges and campaign reads. Every call succeeds, and the journal shows each one."""

from __future__ import annotations

import base64
import json
import urllib.request
import uuid

import requests


class BlueshiftSdk:
    """What an SDK's HTTP layer does: one base URL, one user API key, JSON both ways."""

    def __init__(self, base_url: str, api_key: str):
        self.base_url = base_url
        self.authorization = "Basic " + base64.b64encode(f"{api_key}:".encode()).decode()
        self.calls: list[tuple[str, str, int]] = []

    def request(self, method: str, path: str, body=None, **query):
        url = self.base_url + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method, headers={
            "Authorization": self.authorization, "Content-Type": "application/json",
            "Accept": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            self.calls.append((method, path, response.status))
            return json.loads(response.read())

    def identify(self, **customer):
        return self.request("POST", "/api/v1/customers", customer)["customer"]

    def search(self, email: str) -> list[dict]:
        return self.request("GET", "/api/v1/customers", email=email)["users"]

    def track(self, event: str, **fields):
        return self.request("POST", "/api/v1/event", {"event": event, **fields})


def test_an_sdk_like_client_runs_a_realistic_sequence_and_the_journal_shows_it(live_server):
    key = f"sdk-{uuid.uuid4().hex}"
    sdk = BlueshiftSdk(live_server.url, key)

    ana = sdk.identify(email="ana@example.com", customer_id="A1", firstname="Ana")
    sdk.identify(email="ben@example.com", customer_id="B1")
    sdk.identify(email="ana@example.com")  # updates Ana: identify is create-or-update
    assert [user["uuid"] for user in sdk.search("ana@example.com")] == [ana["uuid"]]

    sdk.track("view_product", email="ana@example.com", sku="SKU-1")
    sdk.request("POST", "/api/v1/bulkevents", {"events": [
        {"event": "add_to_cart", "email": "ana@example.com", "sku": "SKU-1"},
        {"event": "view_product", "email": "ben@example.com", "sku": "SKU-2"}]})
    events = sdk.request("GET", "/api/v1/customer_search/show_events", uuid=ana["uuid"])
    assert [event["event"] for event in events] == ["add_to_cart", "view_product"]

    newsletter = sdk.request("POST", "/api/v1/custom_user_lists/create",
                             {"name": f"newsletter {key}", "description": "weekly"})
    added = sdk.request("PUT", f"/api/v1/custom_user_lists/bulk_add_users_to_list/"
                               f"{newsletter['id']}",
                        {"identifier_key": "email",
                         "identifier_values": ["ana@example.com", "ben@example.com"]})
    assert added["errors"] == []
    assert sdk.request("GET", f"/api/v1/custom_user_lists/id/{newsletter['id']}")[
        "user_count"] == 2
    sdk.request("PUT", f"/api/v1/custom_user_lists/remove_user_from_list/{newsletter['id']}",
                {"identifier_key": "email", "identifier_value": "ben@example.com"})

    campaign = sdk.request("POST", "/api/v1/campaigns/one_time",
                           {"name": "Spring sale", "startdate": "2026-03-01T09:00:00.000Z"})
    campaign_uuid = campaign["campaign"]["uuid"]
    assert sdk.request("GET", f"/api/v1/campaigns/{campaign_uuid}.json")["name"] == "Spring sale"
    sdk.request("GET", "/api/v2/campaigns.json")

    # A duplicate merged into the customer who stays.
    sdk.identify(email="ana.old@example.com", customer_id="A-OLD")
    sdk.request("POST", "/api/v1/customers/merge",
                {"customer_id": "A-OLD", "bsft_new_customer_id": "A1"})

    # The GDPR path: forget, a suppressed identify, unforget, delete.
    sdk.request("POST", "/api/v1/customers/forget", {"email": "ben@example.com"})
    suppressed = sdk.request("POST", "/api/v1/customers", {"email": "ben@example.com"})
    assert suppressed == {"status": "ok"}  # accepted, and changes nothing
    sdk.request("POST", "/api/v1/customers/unforget", {"email": "ben@example.com"})
    sdk.request("POST", "/api/v1/customers/delete", {"email": "ana@example.com"})

    assert all(status == 200 for _, _, status in sdk.calls), sdk.calls
    journal = requests.get(f"{live_server.url}/_fakeshift/journal",
                           params={"account": key}, timeout=10).json()
    recorded = [(entry["method"], entry["path"], entry["status"]) for entry in journal["entries"]]
    assert recorded == [(method, path, 200) for method, path, _ in sdk.calls]
    assert all(entry["fault"] is None for entry in journal["entries"])
    assert None not in {entry["operation"] for entry in journal["entries"]}
