"""The request journal: what it records, how it is queried, its cap, and its cost."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from waitress.channel import ClientDisconnected

from fakeshift import create_app
from fakeshift.clock import VirtualClock
from fakeshift.journal import Journal, JournalQuery

from conftest import Blueshift, recording_microseconds

SEARCH = "/api/v1/customers?email=someone@example.com"


def journal(client, **filters) -> dict:
    response = client.get("/_fakeshift/journal", query_string=filters)
    assert response.status_code == 200, response.json
    return response.json


def test_every_request_is_recorded_with_its_details(client, api):
    api.post("/api/v1/customers/forget?x=1", json={"email": "gone@example.com"})
    client.post("/_fakeshift/clock/advance", json={"seconds": 5})
    client.get("/api/v1/customers")  # no credentials
    found = journal(client)
    assert found["count"] == 3
    forget, advance, anonymous = found["entries"]
    assert forget["account"] == "test-key"
    assert forget["operation"] == "blueshift.forget"
    assert (forget["method"], forget["path"], forget["query"]) == (
        "POST", "/api/v1/customers/forget", "x=1")
    assert forget["body"] == '{"email": "gone@example.com"}'
    assert forget["status"] == 200 and forget["fault"] is None
    assert 0 <= forget["latency_ms"] < 5000
    assert forget["time"].endswith("Z") and forget["id"] < advance["id"] < anonymous["id"]
    assert advance["account"] is None and advance["path"] == "/_fakeshift/clock/advance"
    assert (anonymous["account"], anonymous["status"]) == (None, 401)


def test_probes_and_journal_reads_are_not_recorded(client):
    for _ in range(3):
        client.get("/_fakeshift/health")
        client.get("/_fakeshift/ready")
        client.get("/_fakeshift/journal")
    assert journal(client)["count"] == 0


def test_the_dashboard_and_control_plane_reads_marked_skip_are_not_recorded(client, api):
    skip = {"X-Fakeshift-Journal": "skip"}
    client.get("/_fakeshift/ui?token=secret")
    client.get("/_fakeshift/accounts", headers=skip)
    client.get("/_fakeshift/clock", headers={"X-Fakeshift-Journal": " Skip "})
    assert journal(client)["count"] == 0
    # Only control-plane reads: a change of state, and Blueshift traffic, are always recorded.
    client.post("/_fakeshift/clock/advance", json={"seconds": 1}, headers=skip)
    api.get(SEARCH, headers=skip)
    client.get("/_fakeshift/accounts")
    client.get("/_fakeshift/settings", headers={"X-Fakeshift-Journal": "yes"})
    assert [(e["method"], e["path"]) for e in journal(client)["entries"]] == [
        ("POST", "/_fakeshift/clock/advance"), ("GET", "/api/v1/customers"),
        ("GET", "/_fakeshift/accounts"), ("GET", "/_fakeshift/settings")]


def test_an_entry_names_the_contract_rules_its_request_broke(client, api):
    api.post("/api/v1/customers/forget", json={"emial": "typo@example.com", "cookie": 5})
    api.get(SEARCH)
    broken, kept = journal(client)["entries"]
    assert set(broken["violation"].split(", ")) == {"additionalProperties", "type"}
    assert kept["violation"] is None


def test_faults_limits_and_drops_are_recorded(client, api):
    client.post("/_fakeshift/faults", json={"operation": "search_customers", "status": 503,
                                            "first": 1, "id": "once"})
    api.get(SEARCH)
    api.get(SEARCH)
    with pytest.raises(ClientDisconnected):
        api.get(SEARCH, headers={"X-Fakeshift-Fault": "drop"})
    client.put("/_fakeshift/rate-limits", json={"rate": 0.001, "burst": 1})
    api.get(SEARCH)
    api.get(SEARCH)
    calls = journal(client, operation="blueshift.search_customers")["entries"]
    assert journal(client, operation="search_customers")["entries"] == calls
    assert [(e["status"], e["fault"]) for e in calls] == [
        (503, "once"), (200, None), (None, "header"), (200, None), (429, "rate-limit")]
    assert journal(client, fault="any")["count"] == 3
    assert journal(client, status="none")["entries"][0]["fault"] == "header"


def test_filters(client):
    alice, bob = Blueshift(client, "alice"), Blueshift(client, "bob")
    client.post("/_fakeshift/clock/freeze", json={"at": "2030-01-01T00:00:00Z"})
    alice.get(SEARCH)
    client.post("/_fakeshift/clock/advance", json={"by": "1h"})
    bob.post("/api/v1/customers/delete", json={"email": "nobody@example.com"})
    bob.get("/api/v1/custom_user_lists/id/3")
    assert [e["account"] for e in journal(client, account="bob")["entries"]] == ["bob", "bob"]
    assert journal(client, method="post", account="bob")["entries"][0]["status"] == 404
    assert journal(client, path="/api/v1/customers")["count"] == 1
    assert journal(client, path="/api/v1/custom_user_lists/*")["count"] == 1
    assert journal(client, path="/api/v1/*")["count"] == 3
    assert journal(client, status="404")["count"] == 2
    assert journal(client, status="4xx", account="bob")["count"] == 2
    assert journal(client, status="2xx", account="alice")["count"] == 1
    assert journal(client, since="2030-01-01T00:30:00Z", account="bob")["count"] == 2
    assert journal(client, until="2030-01-01T00:30:00Z", path="/api/*")["count"] == 1
    latest = journal(client, limit=1)
    assert latest["count"] > 1 and len(latest["entries"]) == 1
    last_id = latest["entries"][0]["id"]
    alice.get(SEARCH)
    after = journal(client, after=last_id)
    assert [e["account"] for e in after["entries"]] == ["alice"]


@pytest.mark.parametrize("filters, field", [
    ({"status": "abc"}, "status"), ({"since": "yesterday"}, "since"),
    ({"limit": "-1"}, "limit"), ({"after": "x"}, "after"), ({"colour": "red"}, "colour"),
])
def test_bad_filters_are_a_400_naming_them(client, filters, field):
    response = client.get("/_fakeshift/journal", query_string=filters)
    assert response.status_code == 400
    assert field in response.json["errors"]


def test_the_cap_holds_under_ten_times_its_size():
    app = create_app({"journal_size": 100})
    api = Blueshift(app.test_client())
    for _ in range(1000):
        api.get(SEARCH)
    found = journal(app.test_client())
    assert found["count"] == 100 and len(app.extensions["fakeshift"].journal) == 100
    assert [e["id"] for e in found["entries"]] == list(range(901, 1001))


def test_bodies_are_bounded_but_their_size_is_kept():
    app = create_app({"journal_body_bytes": 16})
    api = Blueshift(app.test_client())
    body = '{"email": "' + "x" * 100 + '@example.com"}'
    api.post("/api/v1/customers/forget", data=body, content_type="application/json")
    entry = journal(app.test_client())["entries"][0]
    assert entry["body"] == body[:16] and entry["body_size"] == len(body)


def test_clear_and_reset_empty_the_journal(client, api):
    api.get(SEARCH)
    assert client.delete("/_fakeshift/journal").json["cleared"] == 1
    api.get(SEARCH)
    client.post("/_fakeshift/reset")
    # Only the reset itself, recorded once it has been answered.
    assert [e["path"] for e in journal(client)["entries"]] == ["/_fakeshift/reset"]


def test_recording_is_safe_under_concurrent_requests():
    recorded = Journal(VirtualClock(), capacity=5000)
    start = threading.Barrier(8)

    def hammer(thread):
        start.wait()
        for _ in range(1000):
            recorded.record("GET", f"/t{thread}", "", "a", None, b"", 0, 200, 0.1, None)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(hammer, range(8)))
    count, entries = recorded.search(JournalQuery())
    assert count == 5000
    assert [e["id"] for e in entries] == list(range(3001, 8001))


def test_recording_costs_microseconds():
    recorded = Journal(VirtualClock(), capacity=10_000)
    body = b'{"email": "someone@example.com"}'
    rounds = 20_000
    started = time.perf_counter()
    for _ in range(rounds):
        recorded.record("POST", "/api/v1/customers/delete", "", "acct", "blueshift.delete_customer",
                        body, len(body), 200, 0.5, None)
    per_request_us = (time.perf_counter() - started) / rounds * 1e6
    print(f"journal.record: {per_request_us:.2f} us per request")
    assert per_request_us < 100


def test_recording_a_request_costs_microseconds():
    """The pipeline's record step for a trivial request: what the journal adds to every
    request."""
    app = create_app({"journal_size": 10_000})
    environ = {"PATH_INFO": "/api/v1/customers/delete", "REQUEST_METHOD": "POST",
               "QUERY_STRING": ""}
    added = recording_microseconds(app, environ, body=b"{}")
    print(f"journal record step: {added:.2f} us per request")
    assert len(app.extensions["fakeshift"].journal) == 10_000
    assert added < 100
