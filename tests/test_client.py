"""The control client (fakeshift.client) against real servers: one in-process waitress thread for
this module, and a `fakeshift serve` process where the admin token matters."""

from __future__ import annotations

import secrets
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from fakeshift.client import FakeshiftClient, FakeshiftError
from fakeshift.pytest_plugin import LiveServer

from conftest import SCENARIOS


@pytest.fixture(scope="module")
def server():
    # Its own server: these tests reset and load scenarios, which would hit every user of a
    # shared one.
    with LiveServer({"access_log": False}) as live:
        yield live


@pytest.fixture
def control(server) -> FakeshiftClient:
    control = FakeshiftClient(server.url)
    yield control
    control.reset("empty")
    control.load_scenario({})


def new_key() -> str:
    return f"client-{secrets.token_hex(6)}"


def blueshift(server, key: str, method: str, path: str, **kwargs) -> requests.Response:
    return requests.request(method, f"{server.url}/api/v1{path}", auth=(key, ""), timeout=5,
                            **kwargs)


def test_health_and_readiness(control):
    assert control.health()["status"] == "ok"
    assert control.is_ready() is True
    assert control.wait_ready(timeout=2) < 2


def test_readiness_of_a_closed_port_is_false_not_an_exception():
    with LiveServer() as gone:
        url = gone.url
    client = FakeshiftClient(url, timeout=1)
    assert client.is_ready() is False
    with pytest.raises(TimeoutError):
        client.wait_ready(timeout=0.2)


def test_seed_then_read_and_drop_an_account(control):
    key = new_key()
    seeded = control.seed(key, profiles=[{"email": "dup@example.com", "count": 3}],
                          lists=[{"name": "News", "source": "email",
                                  "members": ["dup@example.com"]}],
                          groups=[{"group_id": "grp_1", "members": [{"email": "dup@example.com"}]}],
                          suppressed=[{"email": "gone@example.com"}])
    assert seeded["created"] == 3 and len(seeded["uuids"]) == 3
    state = control.account(key)
    assert state["stats"] == {"profiles": 3, "active": 3, "pending_deletion": 0, "purged": 0,
                              "suppressed": 1, "lists": 1, "groups": 1, "events": 0,
                              "events_dropped": 0}
    assert key in [a["account"] for a in control.accounts()]
    assert control.drop_account(key)["dropped"] is True
    with pytest.raises(FakeshiftError) as refused:
        control.account(key)
    assert refused.value.status == 404


def test_bad_seed_is_a_blueshift_shaped_400_and_changes_nothing(control):
    key = new_key()
    control.seed(key, profiles=[{"email": "a@example.com"}])
    with pytest.raises(FakeshiftError) as refused:
        control.seed(key, profiles=[{"email": 42}])
    assert refused.value.status == 400
    assert "seed" in refused.value.body["errors"]
    assert control.account(key)["stats"]["profiles"] == 1


def test_delete_then_advance_the_clock_purges(server, control):
    key = new_key()
    control.seed(key, profiles=[{"email": "eve@example.com", "count": 2}])
    answer = blueshift(server, key, "POST", "/customers/delete",
                       json={"email": "eve@example.com", "delete_all_matching_customers": True})
    assert answer.status_code == 200, answer.text
    assert control.account(key)["stats"]["pending_deletion"] == 2
    control.advance(by="1h")
    assert control.account(key)["stats"]["pending_deletion"] == 2
    control.advance(3601)
    stats = control.account(key)["stats"]
    assert (stats["profiles"], stats["purged"]) == (0, 2)


def test_clock_freeze_set_unfreeze(control):
    frozen = control.freeze(at="2030-01-01T00:00:00Z")
    assert frozen["frozen"] is True and frozen["now"].startswith("2030-01-01T00:00:00")
    assert control.advance(by="90s")["now"].startswith("2030-01-01T00:01:30")
    assert control.set_clock("2031-06-01T12:00:00Z")["now"].startswith("2031-06-01T12:00:00")
    assert control.clock()["now"].startswith("2031-06-01T12:00:00")
    assert control.unfreeze()["frozen"] is False
    with pytest.raises(ValueError):
        control.advance(10, by="10s")
    with pytest.raises(FakeshiftError) as refused:
        control.set_clock("not a time")
    assert refused.value.status == 400


def test_load_scenario_as_dict_yaml_text_and_path_then_reset(control):
    control.load_scenario({"accounts": [{"key": "from-dict", "profiles": [{"email": "a@x.io"}]}]})
    assert [a["account"] for a in control.accounts()] == ["from-dict"]

    control.load_scenario("accounts:\n  - key: from-yaml\n    profiles: [{email: b@x.io}]\n")
    assert [a["account"] for a in control.accounts()] == ["from-yaml"]

    control.load_scenario(SCENARIOS / "retail.yaml")
    assert control.scenario()["source"] == "request body"
    assert control.account("retail-demo")["stats"]["groups"] == 2

    control.seed("extra", profiles=[{"email": "c@x.io"}])
    control.reset()  # back to the loaded scenario
    assert [a["account"] for a in control.accounts()] == ["retail-demo"]
    control.reset("empty")
    assert control.accounts() == []

    with pytest.raises(FakeshiftError) as refused:
        control.load_scenario("accounts: [{profiles: []}]\n")
    assert refused.value.status == 400


def test_settings_and_per_account_deletion_delay(control):
    assert control.update_settings(deletion_delay="30m")["deletion_delay"] == 1800
    assert control.update_settings(group_delete_users_default=False)[
        "group_delete_users_default"] is False
    key = new_key()
    control.seed(key, profiles=[{"email": "x@example.com"}])
    assert control.set_account_deletion_delay(key, 0)["deletion_delay"] == 0
    assert control.account(key)["settings"]["deletion_delay_overridden"] is True
    assert control.set_account_deletion_delay(key, None)["deletion_delay"] == 1800
    assert control.settings()["deletion_delay"] == 1800


def test_one_client_shared_by_many_threads(server, control):
    """The client keeps no per-call state, so a test's worker threads can share one."""
    key = new_key()

    def seed_five(_):
        return control.seed(key, profiles=[{"email": "t@example.com", "count": 5}])["created"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        created = list(pool.map(seed_five, range(40)))
    assert created == [5] * 40
    assert control.account(key)["stats"]["profiles"] == 200


def test_admin_token_is_sent_when_given(start_server):
    served = start_server("--admin-token", "s3cret")
    without = FakeshiftClient(served.url)
    assert without.is_ready() is True  # probes stay open for container health checks
    with pytest.raises(FakeshiftError) as refused:
        without.accounts()
    assert refused.value.status == 401
    with_token = FakeshiftClient(served.url, admin_token="s3cret")
    with_token.seed("tok", profiles=[{"email": "a@example.com"}])
    assert [a["account"] for a in with_token.accounts()] == ["tok"]


def test_journal_filters_by_account_and_clears(server, control):
    key = new_key()
    blueshift(server, key, "POST", "/customers/forget", json={"email": "j@example.com"})
    blueshift(server, key, "POST", "/customers/delete", json={"email": "nobody@example.com"})
    page = control.journal(account=key)
    assert page["count"] == 2
    assert {(e["path"], e["status"]) for e in page["entries"]} == {
        ("/api/v1/customers/forget", 200), ("/api/v1/customers/delete", 404)}
    assert control.journal(account=key, status=404)["count"] == 1
    control.clear_journal()
    assert control.journal(account=key)["count"] == 0


def test_fault_rules_round_trip(server, control):
    key = new_key()
    rule = control.add_fault({"path": "/api/v1/customers/forget", "status": 503,
                              "account": key})
    try:
        assert "id" in rule
        answer = blueshift(server, key, "POST", "/customers/forget", json={"email": "f@x.io"})
        assert answer.status_code == 503
        assert answer.headers.get("X-Fakeshift-Fault")
    finally:
        control.remove_fault(rule["id"])
    answer = blueshift(server, key, "POST", "/customers/forget", json={"email": "f@x.io"})
    assert answer.status_code == 200
    control.clear_faults()
    assert control.rate_limits() is not None


def test_violations_are_read_per_account_and_cleared(server, control):
    key, other = new_key(), new_key()
    blueshift(server, key, "POST", "/customers/forget", json={"email": "v@x.io", "bogus": 1})
    blueshift(server, other, "POST", "/customers/forget", json={"email": "w@x.io"})
    page = control.violations(key)
    assert page["count"] >= 1
    assert all(v["account"] == key for v in page["violations"])
    assert control.violations(other)["count"] == 0
    control.clear_violations(key)
    assert control.violations(key)["count"] == 0
