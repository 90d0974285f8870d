"""Per-account clocks: an account's time is the server clock plus its own offset, or its own frozen
moment, so jobs sharing one server never move each other's time (deletions falling due, purges,
timestamps, rate-limit buckets, fault windows)."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

import jsonschema
import pytest
import requests

from conftest import Blueshift, basic
from fakeshift import create_app, persistence
from fakeshift.clock import VirtualClock
from fakeshift.contract import _inline_refs, load_document
from fakeshift.errors import InvalidField, LimitReached
from fakeshift.models import Settings, Store
from fakeshift.pytest_plugin import LiveServer

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=timezone.utc)
HOUR = timedelta(hours=1)


def _account_clock_schema() -> dict:
    document = load_document("admin")
    response = _inline_refs(document["components"]["responses"]["AccountClock"], document)
    return response["content"]["application/json"]["schema"]


# ---- the clock itself ------------------------------------------------------------------------

@pytest.fixture
def clock():
    clock = VirtualClock()
    clock.freeze(T0)
    return clock


def test_an_account_clock_is_the_server_clock_plus_its_offset_and_moves_with_it(clock):
    assert clock.account("a").advance(3600) == T0 + HOUR
    assert clock.now_for("a") == T0 + HOUR
    assert clock.now_for("b") == T0 == clock.now()
    clock.advance(60)
    assert clock.now_for("a") == T0 + HOUR + timedelta(seconds=60)
    assert clock.now_for("b") == T0 + timedelta(seconds=60)
    clock.set(T0)
    assert clock.now_for("a") == T0 + HOUR
    assert clock.account("a").set(T0 - HOUR) == T0 - HOUR
    assert clock.now_for("a") == T0 - HOUR and clock.now() == T0
    clock.account("a").reset()
    assert clock.now_for("a") == T0


def test_a_frozen_account_clock_stands_still_and_unfreezes_without_a_jump(clock):
    clock.unfreeze()
    frozen = clock.account("a").freeze(T0)
    assert frozen == T0
    clock.advance(7200)
    assert clock.now_for("a") == T0
    assert clock.account("a").advance(30) == T0 + timedelta(seconds=30)
    assert clock.account("a").set(T0 + HOUR) == T0 + HOUR
    assert clock.account("a").snapshot()["frozen"] is True
    running = clock.account("a").unfreeze()
    assert abs((running - (T0 + HOUR)).total_seconds()) < 1
    later = clock.now_for("a")
    assert T0 + HOUR <= later < T0 + HOUR + timedelta(seconds=5)
    assert clock.account("a").snapshot()["frozen"] is False
    # Unfreezing an account that follows the server clock gives it no clock of its own.
    clock.account("b").unfreeze()
    assert clock.account("b").snapshot()["own"] is False


def test_the_snapshot_says_whose_time_it_is_and_how_far_from_the_server(clock):
    assert clock.account("b").snapshot() == {
        "account": "b", "now": "2026-01-05T10:00:00.000000Z", "frozen": True,
        "offset_seconds": pytest.approx(clock.snapshot()["offset_seconds"], abs=1),
        "own": False, "offset_from_server_seconds": 0.0}
    clock.account("a").advance(90)
    snapshot = clock.account("a").snapshot()
    assert snapshot["own"] is True and snapshot["offset_from_server_seconds"] == 90.0
    assert snapshot["now"] == "2026-01-05T10:01:30.000000Z"
    # It follows the frozen server clock, so its time stands still too.
    assert snapshot["frozen"] is True
    jsonschema.validate(snapshot, _account_clock_schema())


def test_moves_out_of_range_are_refused_and_change_nothing(clock):
    with pytest.raises(InvalidField, match="account 'a'"):
        clock.account("a").advance(timedelta(days=365 * 7000).total_seconds())
    assert clock.account("a").snapshot()["own"] is False
    clock.account("a").set(datetime(8990, 1, 1, tzinfo=timezone.utc))
    # The server clock cannot carry an account running on an offset past the range ...
    with pytest.raises(InvalidField, match="account 'a'"):
        clock.set(datetime(8000, 1, 1, tzinfo=timezone.utc))
    with pytest.raises(InvalidField, match="account 'a'"):
        clock.freeze(datetime(8000, 1, 1, tzinfo=timezone.utc))
    assert clock.now() == T0
    # ... but a frozen account does not follow it.
    clock.account("a").freeze()
    assert clock.set(datetime(8000, 1, 1, tzinfo=timezone.utc)).year == 8000


def test_a_server_reset_drops_every_account_clock(clock):
    clock.account("a").advance(60)
    clock.account("b").freeze()
    clock.reset()
    assert clock.account_clocks() == {}
    assert abs((clock.now_for("a") - clock.now()).total_seconds()) < 1


def test_a_server_reset_puts_every_account_back_on_the_server_clock(client):
    client.post("/_fakeshift/accounts/a/clock/advance", json={"by": "1h"})
    client.post("/_fakeshift/accounts/b/clock/freeze", json={})
    client.post("/_fakeshift/reset")
    for name in ("a", "b"):
        assert client.get(f"/_fakeshift/accounts/{name}/clock").json["own"] is False


def test_account_clocks_changed_from_many_threads_lose_no_change(clock):
    """The accounts' clocks are one dictionary, copied on write: a write made outside the lock
    would drop another account's concurrent change."""
    names = [f"job-{n}" for n in range(8)]
    steps = 300

    def advance(name: str) -> None:
        own = clock.account(name)
        for _ in range(steps):
            own.advance(1)
            clock.now_for(name)

    threads = [threading.Thread(target=advance, args=(name,)) for name in names * 2]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for name in names:
        assert clock.now_for(name) == T0 + timedelta(seconds=2 * steps), name
    assert clock.now() == T0


# ---- the store reads each account's time ------------------------------------------------------

def test_advancing_one_accounts_clock_purges_its_deletions_and_not_anothers(clock):
    store = Store(clock, Settings(deletion_delay=3600))
    for name in ("a", "b"):
        with store.open(name) as (account, now):
            account.new_profile(now, {"email": "p@example.com"})
            account.delete(now, {"email": "p@example.com"}, all_matching=False)
    clock.account("a").advance(3600)
    with store.open("a") as (account, now):
        assert now == T0 + HOUR and account.stats()["purged"] == 1
    with store.open("b") as (account, now):
        assert now == T0 and account.stats()["pending_deletion"] == 1
    clock.account("b").advance(3599)
    with store.open("b") as (account, _now):
        assert account.stats()["pending_deletion"] == 1


def test_making_room_purges_each_account_on_its_own_time(clock):
    """A full store purges what has fallen due everywhere before refusing a profile, each
    account on its own clock: an account far ahead must not purge another's deletions."""
    store = Store(clock, Settings(deletion_delay=3600, max_profiles_total=2))
    with store.open("b") as (account, now):
        account.new_profile(now, {"email": "keep@example.com"})
        account.delete(now, {"email": "keep@example.com"}, all_matching=False)
    clock.account("a").advance(7200)
    with store.open("a") as (account, now):
        account.new_profile(now, {"email": "one@example.com"})
        with pytest.raises(LimitReached):
            account.new_profile(now, {"email": "two@example.com"})
    with store.open("b") as (account, _now):
        assert account.stats()["pending_deletion"] == 1
    clock.account("b").advance(3600)
    with store.open("a") as (account, now):
        account.new_profile(now, {"email": "two@example.com"})


# ---- over the control plane --------------------------------------------------------------------

@pytest.fixture
def frozen_client():
    client = create_app({}).test_client()
    assert client.post("/_fakeshift/clock/freeze", json={"at": "2026-01-05T10:00:00Z"}).status_code \
        == 200
    return client


def _pending_deletion(api: Blueshift) -> None:
    api.seed(profiles=[{"email": "p@example.com"}])
    assert api.post("/api/v1/customers/delete", json={"email": "p@example.com"}).status_code == 200
    assert api.state()["stats"]["pending_deletion"] == 1


@pytest.mark.parametrize("name", ["job-a", "team/job-a"])
def test_over_http_advancing_a_purges_as_pending_deletion_and_not_bs(frozen_client, name):
    a, b = Blueshift(frozen_client, name), Blueshift(frozen_client, "job-b")
    _pending_deletion(a)
    _pending_deletion(b)
    path = f"/_fakeshift/accounts/{quote(name, safe='')}/clock"
    answer = frozen_client.post(f"{path}/advance", json={"by": "2h"}).json
    assert answer["now"] == "2026-01-05T12:00:00.000000Z" and answer["account"] == name
    jsonschema.validate(answer, _account_clock_schema())
    assert a.state()["stats"]["purged"] == 1
    assert b.state()["stats"] == {**b.state()["stats"], "pending_deletion": 1, "purged": 0}
    assert frozen_client.get("/_fakeshift/clock").json["now"] == "2026-01-05T10:00:00.000000Z"
    assert frozen_client.get("/_fakeshift/accounts/job-b/clock").json["own"] is False
    # The server clock still moves every account.
    frozen_client.post("/_fakeshift/clock/advance", json={"by": "2h"})
    assert b.state()["stats"]["purged"] == 1
    assert frozen_client.get(path).json["now"] == "2026-01-05T14:00:00.000000Z"


def test_freezing_a_does_not_freeze_b_and_timestamps_follow_each_clock():
    client = create_app({}).test_client()
    a, b = Blueshift(client, "job-a"), Blueshift(client, "job-b")
    frozen = client.post("/_fakeshift/accounts/job-a/clock/freeze",
                         json={"at": "2030-01-01T00:00:00Z"}).json
    assert frozen["frozen"] is True and frozen["own"] is True
    assert client.get("/_fakeshift/accounts/job-b/clock").json["frozen"] is False
    assert client.get("/_fakeshift/clock").json["frozen"] is False
    for api in (a, b):
        assert api.post("/api/v1/customers", json={"email": "t@example.com"}).status_code == 200
        assert api.post("/api/v1/custom_user_lists/create", json={"name": "L"}).status_code == 200
    a_state, b_state = a.state(), b.state()
    assert a_state["profiles"][0]["created_at"] == "2030-01-01T00:00:00.000000Z"
    assert a_state["lists"][0]["created_at"] == "2030-01-01T00:00:00.000000Z"
    assert b_state["profiles"][0]["created_at"].startswith(str(datetime.now(timezone.utc).year))
    # b's time runs; a's stands still.
    before = client.get("/_fakeshift/accounts/job-b/clock").json["now"]
    assert client.get("/_fakeshift/accounts/job-b/clock").json["now"] > before
    assert client.get("/_fakeshift/accounts/job-a/clock").json["now"] == \
        "2030-01-01T00:00:00.000000Z"
    unfrozen = client.post("/_fakeshift/accounts/job-a/clock/unfreeze").json
    assert unfrozen["frozen"] is False and unfrozen["now"].startswith("2030-01-01T00:00:0")


def test_set_and_reset_an_account_clock(frozen_client):
    path = "/_fakeshift/accounts/job-a/clock"
    assert frozen_client.post(f"{path}/set", json={"now": "2027-02-03T04:05:06Z"}).json["now"] \
        == "2027-02-03T04:05:06.000000Z"
    reset = frozen_client.delete(path).json
    assert reset["own"] is False and reset["now"] == "2026-01-05T10:00:00.000000Z"


def test_reading_an_account_clock_creates_nothing_and_a_change_creates_the_account(client):
    assert client.get("/_fakeshift/accounts/nobody/clock").json["own"] is False
    assert client.get("/_fakeshift/accounts").json == {"accounts": []}
    client.post("/_fakeshift/accounts/somebody/clock/advance", json={"seconds": 5})
    assert [a["account"] for a in client.get("/_fakeshift/accounts").json["accounts"]] == \
        ["somebody"]
    # Dropping the account drops its clock: the next user of the key starts on server time.
    client.delete("/_fakeshift/accounts/somebody")
    assert client.get("/_fakeshift/accounts/somebody/clock").json["own"] is False


@pytest.mark.parametrize("call, body", [
    ("advance", {"seconds": -5}),
    ("advance", {"seconds": "5"}),
    ("advance", {}),
    ("advance", {"seconds": 5, "by": "5s"}),
    ("advance", {"by": "400000d"}),
    ("set", {"now": "yesterday"}),
    ("set", {}),
    ("freeze", {"at": 5}),
    ("freeze", {"when": "now"}),
    ("unfreeze", {"at": "2026-01-01T00:00:00Z"}),
])
def test_bad_account_clock_calls_are_400_and_change_nothing(frozen_client, call, body):
    response = frozen_client.post(f"/_fakeshift/accounts/job-a/clock/{call}", json=body)
    assert response.status_code == 400 and response.json["errors"]
    assert frozen_client.get("/_fakeshift/accounts/job-a/clock").json["own"] is False
    assert frozen_client.get("/_fakeshift/accounts").json == {"accounts": []}


def test_an_account_clock_counts_against_max_accounts():
    client = create_app({"max_accounts": 1}).test_client()
    Blueshift(client, "first").seed(profiles=[{"email": "a@example.com"}])
    refused = client.post("/_fakeshift/accounts/second/clock/advance", json={"seconds": 5})
    assert refused.status_code == 429 and "max_accounts" in refused.json["message"]
    assert client.get("/_fakeshift/accounts/second/clock").json["own"] is False


def test_names_ending_in_clock_address_the_clock_of_the_name_before_it(frozen_client):
    """The documented decision: an account path's own ending wins over a name holding `/`."""
    slashed = Blueshift(frozen_client, "x/clock")
    slashed.seed(profiles=[{"email": "p@example.com"}])
    assert slashed.post("/api/v1/customers/delete", json={"email": "p@example.com"}).status_code \
        == 200
    frozen_client.post("/_fakeshift/accounts/x/clock/advance", json={"by": "2h"})
    assert frozen_client.get("/_fakeshift/accounts/x/clock").json["account"] == "x"
    assert frozen_client.get("/_fakeshift/accounts/x%2Fclock").json["account"] == "x"
    # The clock of "x/clock" is one level further down, and only it purges its deletion.
    assert frozen_client.get("/_fakeshift/accounts").json["accounts"][0]["stats"][
        "pending_deletion"] == 1
    own = frozen_client.post("/_fakeshift/accounts/x/clock/clock/advance", json={"by": "2h"}).json
    assert own["account"] == "x/clock"
    assert frozen_client.get("/_fakeshift/accounts").json["accounts"][0]["stats"]["purged"] == 1
    # DELETE on the clock path resets x's clock (x exists: its clock's advance made it); it
    # never drops the account named x/clock.
    assert frozen_client.delete("/_fakeshift/accounts/x/clock").json["account"] == "x"
    assert [a["account"] for a in frozen_client.get("/_fakeshift/accounts").json["accounts"]] \
        == ["x/clock", "x"]


def test_rate_limit_buckets_drain_on_their_accounts_clock(frozen_client):
    frozen_client.put("/_fakeshift/rate-limits", json={"rate": 1, "burst": 1})
    a, b = Blueshift(frozen_client, "job-a"), Blueshift(frozen_client, "job-b")
    for api in (a, b):
        assert api.post("/api/v1/customers", json={"email": "r@example.com"}).status_code == 200
        assert api.post("/api/v1/customers", json={"email": "r@example.com"}).status_code == 429
    frozen_client.post("/_fakeshift/accounts/job-a/clock/advance", json={"seconds": 1})
    assert a.post("/api/v1/customers", json={"email": "r@example.com"}).status_code == 200
    assert b.post("/api/v1/customers", json={"email": "r@example.com"}).status_code == 429


def test_fault_windows_are_read_on_the_requesting_accounts_clock(frozen_client):
    frozen_client.post("/_fakeshift/faults", json={
        "id": "later", "status": 503, "from": "2026-01-05T11:00:00Z",
        "until": "2026-01-05T12:00:00Z"})
    a, b = Blueshift(frozen_client, "job-a"), Blueshift(frozen_client, "job-b")
    assert a.post("/api/v1/customers", json={"email": "w@example.com"}).status_code == 200
    frozen_client.post("/_fakeshift/accounts/job-a/clock/advance", json={"by": "90m"})
    faulted = a.post("/api/v1/customers", json={"email": "w@example.com"})
    assert faulted.status_code == 503 and faulted.headers["X-Fakeshift-Fault"] == "later"
    assert b.post("/api/v1/customers", json={"email": "w@example.com"}).status_code == 200
    frozen_client.post("/_fakeshift/accounts/job-a/clock/advance", json={"by": "1h"})
    assert a.post("/api/v1/customers", json={"email": "w@example.com"}).status_code == 200


# ---- kept across a restart -------------------------------------------------------------------

def test_account_clocks_are_saved_in_the_state_file_and_restored(tmp_path):
    saved = create_app({})
    client = saved.test_client()
    client.post("/_fakeshift/clock/freeze", json={"at": "2026-01-05T10:00:00Z"})
    client.post("/_fakeshift/accounts/ahead/clock/advance", json={"by": "2h"})
    client.post("/_fakeshift/accounts/still/clock/freeze", json={"at": "2030-01-01T00:00:00Z"})
    path = tmp_path / "state.json"
    persistence.write_atomically(path, persistence.snapshot(saved.extensions["fakeshift"]))
    document = persistence.read(path)
    assert document["account_clocks"] == {
        "ahead": {"offset_seconds": 7200.0, "frozen_at": None},
        "still": {"offset_seconds": 0.0, "frozen_at": "2030-01-01T00:00:00.000000Z"}}
    restored = create_app({})
    persistence.restore(restored.extensions["fakeshift"], document, str(path))
    again = restored.test_client()
    assert again.get("/_fakeshift/accounts/ahead/clock").json["now"] == \
        "2026-01-05T12:00:00.000000Z"
    assert again.get("/_fakeshift/accounts/still/clock").json["now"] == \
        "2030-01-01T00:00:00.000000Z"
    # A file from before account clocks loads with none.
    del document["account_clocks"]
    persistence.restore(restored.extensions["fakeshift"], document, str(path))
    assert again.get("/_fakeshift/accounts/ahead/clock").json["own"] is False


def test_a_state_file_with_a_bad_account_clock_is_refused_with_one_line(tmp_path):
    emulator = create_app({}).extensions["fakeshift"]
    document = persistence.snapshot(emulator)
    path = tmp_path / "state.json"
    for damage, message in (({"x": {"offset_seconds": "1", "frozen_at": None}},
                              "account_clocks/x/offset_seconds"),
                            ({"x": {"offset_seconds": 1e300, "frozen_at": None}},
                             "damaged state file")):
        persistence.write_atomically(path, {**document, "account_clocks": damage})
        with pytest.raises(persistence.StateFileError, match=message):
            persistence.restore(emulator, persistence.read(path), str(path))


# ---- many threads, two accounts, one clock moving -----------------------------------------------

def test_requests_on_two_accounts_while_one_accounts_clock_moves_never_cross():
    """Waitress threads serve two accounts' deletes while a third thread keeps advancing,
    freezing and unfreezing account a's clock: no error, b never purges, and a purges all."""
    with LiveServer({"access_log": False}, threads=4) as server:
        control = server.control
        rounds = 40
        errors: list = []
        stop = threading.Event()

        def churn(key: str, worker: int) -> None:
            session = requests.Session()
            try:
                for n in range(rounds):
                    email = f"w{worker}-u{n}@example.com"
                    for path in ("/api/v1/customers", "/api/v1/customers/delete"):
                        answer = session.post(f"{server.url}{path}", json={"email": email},
                                              headers=basic(key), timeout=30)
                        if answer.status_code != 200:
                            errors.append((key, path, answer.status_code, answer.text))
            except Exception as exc:  # noqa: BLE001 - reported by the test below
                errors.append((key, repr(exc)))

        def move_a() -> None:
            try:
                while not stop.is_set():
                    control.advance_account_clock("a", 60)
                    control.freeze_account_clock("a")
                    control.unfreeze_account_clock("a")
            except Exception as exc:  # noqa: BLE001
                errors.append(("clock", repr(exc)))

        control.seed("a")
        control.seed("b")
        mover = threading.Thread(target=move_a)
        workers = [threading.Thread(target=churn, args=(key, worker))
                   for worker, key in enumerate(("a", "b", "a", "b"))]
        mover.start()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        stop.set()
        mover.join()
        assert errors == []
        b_stats = control.account("b")["stats"]
        assert b_stats["purged"] == 0 and b_stats["pending_deletion"] == 2 * rounds
        assert control.account_clock("b")["own"] is False
        assert abs(control.clock()["offset_seconds"]) < 5
        control.advance_account_clock("a", by="2h")
        assert control.account("a")["stats"]["pending_deletion"] == 0
        assert control.account("b")["stats"]["pending_deletion"] == 2 * rounds
        assert control.health()["internal_errors"] == 0
