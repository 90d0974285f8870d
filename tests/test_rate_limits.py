"""Rate limits: a leaky bucket per account and operation on the virtual clock, off by default."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from fakeshift import create_app
from fakeshift.clock import VirtualClock
from fakeshift.errors import STATUS_BODIES
from fakeshift.faults import FaultSpecError
from fakeshift.ratelimit import RateLimiter, parse_limit_specs

from conftest import Blueshift, basic

SEARCH = "/api/v1/customers?email=someone@example.com"


def statuses(api, count: int, path: str = SEARCH) -> list[int]:
    return [api.get(path).status_code for _ in range(count)]


def limit(client, **document) -> dict:
    response = client.put("/_fakeshift/rate-limits", json=document)
    assert response.status_code == 200, response.json
    return response.json


@pytest.fixture
def frozen(client):
    client.post("/_fakeshift/clock/freeze", json={"at": "2030-01-01T00:00:00Z"})


def advance(client, seconds: float) -> None:
    assert client.post("/_fakeshift/clock/advance", json={"seconds": seconds}).status_code == 200


def test_exactly_the_burst_passes_then_429_then_it_recovers_with_time(client, api, frozen):
    limit(client, rate=2, burst=5)
    assert statuses(api, 7) == [200] * 5 + [429] * 2
    refused = api.get(SEARCH)
    assert refused.json == STATUS_BODIES[429] == {"message": "Rate limit exceeded"}
    assert refused.headers["X-Fakeshift-Fault"] == "rate-limit"
    assert "Retry-After" not in refused.headers  # Blueshift is reported to send none
    advance(client, 0.5)  # one unit drains at 2 per second
    assert statuses(api, 2) == [200, 429]
    advance(client, 2.5)  # the whole bucket drains
    assert statuses(api, 6) == [200] * 5 + [429]


def test_retry_after_when_asked_for(client, api, frozen):
    limit(client, rate=0.25, burst=1, retry_after=True)
    assert statuses(api, 1) == [200]
    assert api.get(SEARCH).headers["Retry-After"] == "4"


def test_buckets_are_per_account_and_per_operation(client, api, frozen):
    limit(client, rate=1, burst=2)
    assert statuses(api, 3) == [200, 200, 429]
    assert statuses(Blueshift(client, "another"), 3) == [200, 200, 429]
    assert statuses(api, 3, "/api/v1/custom_user_lists/id/1") == [404, 404, 429]


def test_per_operation_limits_override_the_default(client, api, frozen):
    limit(client, operations={"search_customers": {"rate": 1, "burst": 1}})
    assert statuses(api, 2) == [200, 429]
    # No default: other operations are not limited.
    assert statuses(api, 5, "/api/v1/custom_user_lists/id/1") == [404] * 5


def test_refused_requests_change_nothing(client, api, frozen):
    limit(client, operations={"forget": {"rate": 1, "burst": 1}})
    api.post("/api/v1/customers/forget", json={"email": "first@example.com"})
    refused = api.post("/api/v1/customers/forget", json={"email": "second@example.com"})
    assert refused.status_code == 429
    suppressed = [entry["value"] for entry in api.state()["suppressed"]]
    assert suppressed == ["first@example.com"]


def test_off_by_default_and_turned_off_with_an_empty_document(client, api, frozen):
    assert statuses(api, 30) == [200] * 30
    limit(client, rate=1, burst=1)
    assert statuses(api, 2) == [200, 429]
    assert limit(client)["enabled"] is False
    assert statuses(api, 10) == [200] * 10


@pytest.mark.parametrize("document, problem", [
    ({"rate": 1}, "'burst' is a dependency of 'rate'"),
    ({"rate": 0, "burst": 1}, "less than the minimum of 0.001"),
    ({"rate": 1, "burst": 0}, "less than the minimum of 1"),
    ({"operations": {"nope": {"rate": 1, "burst": 1}}}, "unknown operation 'nope'"),
    ({"rate": 1, "burst": 1, "per": "minute"}, "'per' was unexpected"),
])
def test_bad_limits_are_a_400_and_keep_the_old_ones(client, document, problem):
    limit(client, rate=3, burst=3)
    response = client.put("/_fakeshift/rate-limits", json=document)
    assert response.status_code == 400
    assert problem in response.json["errors"]["rate_limits"][0]
    assert client.get("/_fakeshift/rate-limits").json["rate"] == 3


def test_cli_specs():
    assert parse_limit_specs(["rate=5,burst=10", "delete_customer:rate=1,burst=2,retry_after"]) == {
        "rate": 5, "burst": 10, "retry_after": True,
        "operations": {"blueshift.delete_customer": {"rate": 1, "burst": 2}}}
    assert parse_limit_specs([]) == {}
    with pytest.raises(FaultSpecError, match="burst"):
        parse_limit_specs(["rate=5"])


def test_startup_and_scenario_limits_are_restored_on_reset(tmp_path):
    path = tmp_path / "limited.yaml"
    path.write_text("clock: {now: '2030-01-01T00:00:00Z', frozen: true}\n"
                    "rate_limits: {rate: 1, burst: 2}\n")
    app = create_app({"scenario": str(path)})
    client, api = app.test_client(), Blueshift(app.test_client())
    assert statuses(api, 3) == [200, 200, 429]
    limit(client)
    client.post("/_fakeshift/reset")
    assert statuses(api, 3) == [200, 200, 429]  # the scenario's limits, with empty buckets

    flagged = create_app({"rate_limits": ("rate=1,burst=1",), "scenario": str(path)})
    assert statuses(Blueshift(flagged.test_client()), 2) == [200, 429]  # the flags win


def test_the_bucket_is_exact_under_concurrent_requests():
    clock = VirtualClock()
    clock.freeze()
    limiter = RateLimiter(clock)
    limiter.configure({"rate": 1, "burst": 100})
    start = threading.Barrier(8)

    def hammer(_):
        start.wait()
        return sum(1 for _ in range(500) if limiter.admit("a", "blueshift.search_customers") is None)

    with ThreadPoolExecutor(8) as pool:
        assert sum(pool.map(hammer, range(8))) == 100


def test_rate_limits_from_the_command_line_over_http(start_server):
    server = start_server("--access-log", "false", "--rate-limit", "search_customers:rate=0.01,burst=3")
    codes = [requests.get(server.url + SEARCH, headers=basic("cli"), timeout=5).status_code
             for _ in range(4)]
    assert codes == [200, 200, 200, 429]
