"""One account reset, and one account's faults, rate-limit buckets, journal and violations cleared,
on a server other accounts keep using: nothing of theirs changes."""

from __future__ import annotations

import threading

import pytest

from conftest import Blueshift
from fakeshift import create_app
from fakeshift.clock import VirtualClock
from fakeshift.faults import FaultRules
from fakeshift.journal import Journal, JournalQuery
from fakeshift.pytest_plugin import LiveServer
from fakeshift.ratelimit import RateLimiter

BROKEN = {"email": 42}  # breaks the contract: a violation recorded for its account
HEADER_FAULT = {"X-Fakeshift-Fault": "status=503,first=1"}


def _use(client, api: Blueshift) -> None:
    """Give the account a bit of everything kept for it alone: data with a pending deletion,
    journal entries, a violation, a fault rule targeting it, a header-rule counter, a full
    rate-limit bucket and a clock of its own."""
    api.seed(profiles=[{"email": "p@example.com"}, {"email": "q@example.com"}])
    assert api.post("/api/v1/customers/delete", json={"email": "p@example.com"}).status_code == 200
    api.post("/api/v1/customers/forget", json=BROKEN)
    assert client.post("/_fakeshift/faults", json={
        "id": f"only-{api.key}", "account": api.key, "operation": "search_customers",
        "status": 502}).status_code == 200
    # The header's counter: its first use fails, later ones pass.
    assert api.get("/api/v1/customers?email=q@example.com", headers=HEADER_FAULT).status_code \
        == 503
    assert api.get("/api/v1/customers?email=q@example.com", headers=HEADER_FAULT).status_code \
        == 502  # now the rule targeting the account answers
    assert client.post(f"/_fakeshift/accounts/{api.key}/clock/advance",
                       json={"by": "10m"}).status_code == 200
    # Fill the identify bucket: burst 5, and the account's clock stands still from here on.
    for _ in range(5):
        assert api.post("/api/v1/customers", json={"email": "q@example.com"}).status_code == 200


def _everything_of(client, key: str) -> dict:
    clock = client.get(f"/_fakeshift/accounts/{key}/clock").json
    accounts = {a["account"]: a for a in client.get("/_fakeshift/accounts").json["accounts"]}
    return {
        "state": client.get(f"/_fakeshift/accounts/{key}").json if key in accounts else None,
        "journal": client.get(f"/_fakeshift/journal?account={key}").json,
        "violations": client.get(f"/_fakeshift/violations?account={key}").json,
        "faults": [r for r in client.get("/_fakeshift/faults").json["rules"]
                   if r.get("account") == key],
        "clock": {k: v for k, v in clock.items() if k in ("own", "offset_from_server_seconds")},
    }


@pytest.fixture
def limited_client():
    client = create_app({}).test_client()
    client.post("/_fakeshift/clock/freeze", json={})
    client.put("/_fakeshift/rate-limits", json={"rate": 0.001, "burst": 5})
    return client


def test_resetting_a_leaves_bs_data_journal_violations_faults_limits_and_clock_alone(
        limited_client):
    client = limited_client
    a, b = Blueshift(client, "job-a"), Blueshift(client, "job-b")
    _use(client, a)
    _use(client, b)
    b_before = _everything_of(client, "job-b")
    assert b_before["violations"]["count"] == 1 and len(b_before["faults"]) == 1
    assert b_before["clock"] == {"own": True, "offset_from_server_seconds": 600.0}

    answer = client.post("/_fakeshift/accounts/job-a/reset", json={"to": "empty"})
    assert answer.json == {"status": "ok", "reset_to": "empty", "account": "job-a"}

    assert _everything_of(client, "job-b") == b_before
    a_after = _everything_of(client, "job-a")
    assert a_after == {"state": None, "journal": {"count": 0, "entries": []},
                       "violations": {"count": 0, "violations": []}, "faults": [],
                       "clock": {"own": False, "offset_from_server_seconds": 0.0}}
    # a's bucket is empty and its header counter forgotten: the header fails its first use
    # again. b's bucket is still full (5 of 5) and its counter still past its first use.
    assert a.get("/api/v1/customers?email=q@example.com", headers=HEADER_FAULT).status_code \
        == 503
    assert a.post("/api/v1/customers", json={"email": "q@example.com"}).status_code == 200
    assert b.post("/api/v1/customers", json={"email": "q@example.com"}).status_code == 429


def test_resetting_to_the_scenario_rebuilds_only_that_accounts_entries(tmp_path):
    scenario = tmp_path / "two.yaml"
    scenario.write_text(
        "accounts:\n"
        "  - key: alpha\n"
        "    deletion_delay: 1h\n"
        "    profiles: [{email: a@example.com, count: 2}]\n"
        "    lists: [{name: Alpha, members: [a@example.com]}]\n"
        "  - key: beta\n"
        "    profiles: [{email: b@example.com}]\n")
    client = create_app({"scenario": str(scenario)}).test_client()
    alpha, beta = Blueshift(client, "alpha"), Blueshift(client, "beta")
    pristine = alpha.state()
    for api, email in ((alpha, "a@example.com"), (beta, "b@example.com")):
        api.post("/api/v1/customers/forget", json={"email": email})
    Blueshift(client, "gamma").post("/api/v1/customers", json={"email": "g@example.com"})
    beta_before = beta.state()

    assert client.post("/_fakeshift/accounts/alpha/reset").json["reset_to"] == "scenario"
    rebuilt = alpha.state()
    assert rebuilt["stats"] == pristine["stats"]
    assert rebuilt["settings"] == {"deletion_delay": 3600, "deletion_delay_overridden": True}
    assert [lst["filename"] for lst in rebuilt["lists"]] == ["Alpha"]
    assert beta.state() == beta_before
    # An account the scenario does not name is empty after its reset.
    client.post("/_fakeshift/accounts/gamma/reset")
    assert [a["account"] for a in client.get("/_fakeshift/accounts").json["accounts"]] == \
        ["beta", "alpha"]
    assert client.post("/_fakeshift/accounts/alpha/reset?to=yesterday").status_code == 400


def test_one_accounts_faults_journal_violations_and_buckets_are_cleared_alone(limited_client):
    client = limited_client
    a, b = Blueshift(client, "job-a"), Blueshift(client, "job-b")
    _use(client, a)
    _use(client, b)
    client.post("/_fakeshift/faults", json={"id": "everyone", "path": "/api/v1/nowhere",
                                            "status": 500})
    b_before = _everything_of(client, "job-b")

    assert client.delete("/_fakeshift/faults?account=job-a").json == {"status": "ok",
                                                                      "removed": 1}
    assert [r["id"] for r in client.get("/_fakeshift/faults").json["rules"]] == \
        ["only-job-b", "everyone"]
    assert client.delete("/_fakeshift/journal?account=job-a").json["cleared"] > 0
    assert client.delete("/_fakeshift/violations?account=job-a").json["cleared"] == 1
    # One bucket per operation a used: delete, forget, search and identify.
    assert client.delete("/_fakeshift/rate-limits/buckets?account=job-a").json["cleared"] == 4
    # The DELETE calls above are journaled without an account; b's entries are as they were.
    assert _everything_of(client, "job-b") == b_before
    assert client.get("/_fakeshift/journal?account=job-a").json["count"] == 0
    assert a.post("/api/v1/customers", json={"email": "q@example.com"}).status_code == 200
    assert b.post("/api/v1/customers", json={"email": "q@example.com"}).status_code == 429
    assert a.get("/api/v1/customers?email=q@example.com", headers=HEADER_FAULT).status_code \
        == 503
    # Without an account, every bucket goes (the limits stay).
    assert client.delete("/_fakeshift/rate-limits/buckets").json["cleared"] >= 2
    assert client.get("/_fakeshift/rate-limits").json["rate"] == 0.001
    assert b.post("/api/v1/customers", json={"email": "q@example.com"}).status_code == 200


@pytest.mark.parametrize("path", ["/_fakeshift/faults", "/_fakeshift/journal",
                                  "/_fakeshift/violations", "/_fakeshift/rate-limits/buckets"])
def test_a_misspelt_account_parameter_clears_nothing(limited_client, path):
    client = limited_client
    _use(client, Blueshift(client, "job-b"))
    before = _everything_of(client, "job-b")
    response = client.delete(f"{path}?acount=job-a")
    assert response.status_code == 400 and "acount" in response.json["errors"]
    assert _everything_of(client, "job-b") == before
    assert Blueshift(client, "job-b").post("/api/v1/customers",
                                           json={"email": "q@example.com"}).status_code == 429


def test_the_control_client_resets_and_clears_one_account_over_http():
    with LiveServer({"access_log": False}) as server:
        control = server.control
        for key in ("team/a", "b"):
            control.seed(key, profiles=[{"email": "p@example.com"}])
            control.add_fault({"account": key, "status": 503})
            control.advance_account_clock(key, by="1h")
        assert control.account_clock("team/a")["own"] is True
        assert control.clear_faults(account="team/a") == {"status": "ok", "removed": 1}
        assert control.clear_journal(account="team/a")["status"] == "ok"
        assert control.clear_rate_limit_buckets(account="team/a") == {"status": "ok",
                                                                       "cleared": 0}
        assert control.reset_account("team/a", "empty") == {
            "status": "ok", "reset_to": "empty", "account": "team/a"}
        assert [a["account"] for a in control.accounts()] == ["b"]
        assert control.account_clock("team/a")["own"] is False
        b_clock = control.account_clock("b")
        assert b_clock["own"] is True and b_clock["offset_from_server_seconds"] >= 3600
        assert control.freeze_account_clock("b", "2030-01-01T00:00:00Z")["now"] == \
            "2030-01-01T00:00:00.000000Z"
        assert control.set_account_clock("b", "2031-01-01T00:00:00Z")["frozen"] is True
        assert control.unfreeze_account_clock("b")["frozen"] is False
        assert control.reset_account_clock("b")["own"] is False
        assert len(control.faults()["rules"]) == 1


def test_clearing_one_account_while_others_record_loses_none_of_theirs():
    """The journal, the limiter's buckets and the header-rule counters are shared by every
    thread; clearing one account's must not drop or corrupt another's entries meanwhile."""
    recorded = 2_000
    clock = VirtualClock()
    clock.freeze()
    journal = Journal(clock, capacity=100_000)
    limiter = RateLimiter(clock)
    # Each account may pour exactly one unit more than it does below (the clock is frozen).
    limiter.configure({"rate": 0.001, "burst": recorded + 1})
    rules = FaultRules(clock)
    failures: list = []

    def record(account: str) -> None:
        for n in range(recorded):
            journal.record("POST", f"/api/v1/customers/{n}", "", account, None, None, 0, 200,
                           0.1, None)
            if limiter.admit(account, "blueshift.identify_customer") is not None:
                failures.append((account, "limited"))
            rules.decide_header("status=503,first=1", "blueshift.identify_customer", "POST",
                                "/api/v1/customers", account)

    def clear(account: str, stop: threading.Event) -> None:
        while not stop.is_set():
            journal.clear(account)
            limiter.clear(account)
            rules.clear(account)

    stop = threading.Event()
    clearer = threading.Thread(target=clear, args=("a", stop))
    writers = [threading.Thread(target=record, args=(key,)) for key in ("a", "b")]
    clearer.start()
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    stop.set()
    clearer.join()
    assert failures == []
    count, entries = journal.find(JournalQuery(account="b"))
    assert count == recorded and [e.path for e in entries] == [
        f"/api/v1/customers/{n}" for n in range(recorded)]
    # b's bucket holds every unit b poured (one more fits, then it is full), and b's header
    # rule is past its first use.
    assert limiter.admit("b", "blueshift.identify_customer") is None
    assert limiter.admit("b", "blueshift.identify_customer") is not None
    assert rules.decide_header("status=503,first=1", "blueshift.identify_customer", "POST",
                               "/api/v1/customers", "b") is None
