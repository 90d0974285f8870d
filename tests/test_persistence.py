"""State that survives a restart: `fakeshift serve --state-file`, saved on stop and periodically,
atomically, and refused with one clear line when the file is corrupt or not ours."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from conftest import ROOT, basic
from fakeshift import persistence
from fakeshift.clock import VirtualClock
from fakeshift.models import Account, Profile, Settings, Store


def _admin(server, method: str, path: str, **kwargs):
    response = requests.request(method, f"{server.url}/_fakeshift{path}", timeout=30, **kwargs)
    assert response.status_code == 200, (path, response.status_code, response.text)
    return response.json()


def _blueshift(server, key: str, method: str, path: str, **kwargs):
    return requests.request(method, f"{server.url}/api/v1{path}", headers=basic(key),
                            timeout=30, **kwargs)


def _write_rich_state(server) -> None:
    """Every kind of record the emulator holds, in two accounts."""
    _admin(server, "PUT", "/settings", json={"deletion_delay": "3h",
                                              "group_delete_users_default": False})
    _admin(server, "POST", "/clock/freeze", json={"at": "2031-05-04T03:02:01.123456Z"})
    _admin(server, "POST", "/accounts/acme/seed", json={
        "deletion_delay": "45m",
        "profiles": [{"email": "dup@example.com", "count": 60, "attributes": {"tier": "gold"}},
                     {"email": "alice@example.com", "customer_id": "c-1", "cookie": "ck",
                      "device_id": "dev", "attributes": {"nested": {"a": [1, 2.5, None, True]}}},
                     {"email": "bob@example.com", "created_at": "2020-01-01T00:00:00Z"}],
        "generate": [{"count": 200, "email": "gen{n}@example.com", "customer_id": "g{n}"}],
        "suppressed": [{"email": "never@example.com"}, {"cookie": "tracked-cookie"}],
        "lists": [{"name": "Newsletter", "members": ["alice@example.com", "dup@example.com"]},
                  {"name": "By id", "source": "customer_id", "id": 5000, "members": ["g7"]}],
        "groups": [{"group_id": "vip", "attributes": {"email": "owner@example.com"},
                    "members": [{"email": "bob@example.com"}, {"customer_id": "g9"}]}],
    })
    delete = _blueshift(server, "acme", "POST",
                        "/customers/delete?delete_all_matching_customers=true",
                        json={"email": "dup@example.com"})
    assert delete.headers["X-Fakeshift-Scheduled"] == "50"
    assert _blueshift(server, "acme", "POST", "/customers/forget",
                      json={"email": "gen3@example.com"}).status_code == 200
    _admin(server, "POST", "/accounts/globex/seed", json={"profiles": [{"customer_id": "x"}]})
    _admin(server, "POST", "/faults", json={"id": "flaky-delete", "operation": "delete_customer",
                                            "status": 503, "probability": 0.0, "seed": 4})
    _admin(server, "POST", "/faults", json={"path": "/api/v1/customers/forget", "latency": "1ms",
                                            "account": "globex"})
    _admin(server, "PUT", "/rate-limits", json={"rate": 1000, "burst": 1000})
    assert _blueshift(server, "globex", "POST", "/customers",
                      json={"customer_id": "y", "plan": "pro"}).status_code == 200
    # Events (one of them moved to another profile by a merge) and an overwrite request.
    assert _blueshift(server, "acme", "POST", "/bulkevents", json={"events": [
        {"event": "purchase", "customer_id": "g8", "event_uuid": "e-1", "sku": "A"},
        {"event": "page_view", "timestamp": "2025-09-17T10:26:54Z"}]}).status_code == 200
    assert _blueshift(server, "acme", "POST", "/customers/merge",
                      json={"customer_id": "g8", "bsft_new_customer_id": "g9"}).status_code == 200
    assert _blueshift(server, "acme", "PUT", "/custom_user_lists/overwrite_list/5000",
                      json={"s3_file_path": "s3://b/ids.csv"}).status_code == 200


def _everything(server) -> dict:
    names = sorted(a["account"] for a in _admin(server, "GET", "/accounts")["accounts"])
    return {
        "accounts": {name: _admin(server, "GET", f"/accounts/{name}") for name in names},
        "events": {name: _admin(server, "GET", f"/accounts/{name}/events") for name in names},
        "settings": _admin(server, "GET", "/settings"),
        "clock": _admin(server, "GET", "/clock"),
        "faults": _admin(server, "GET", "/faults"),
        "rate_limits": {k: v for k, v in _admin(server, "GET", "/rate-limits").items()
                        if k != "buckets"},
    }


def test_a_rich_state_survives_sigterm_and_restart_field_by_field(start_server, tmp_path):
    state_file = tmp_path / "state.json"
    first = start_server("--state-file", str(state_file), "--access-log", "false")
    _write_rich_state(first)
    before = _everything(first)
    assert first.stop(signal.SIGTERM) < 3 and first.process.returncode == 0

    saved = json.loads(state_file.read_text())
    assert (saved["format"], saved["version"]) == ("fakeshift-state", 1)
    second = start_server("--state-file", str(state_file), "--access-log", "false")
    after = _everything(second)

    assert sorted(after["accounts"]) == ["acme", "globex"]
    for name, account in before["accounts"].items():
        restored = after["accounts"][name]
        for field in ("uuid", "settings", "stats", "suppressed", "lists", "groups"):
            assert restored[field] == account[field], (name, field)
        assert len(restored["profiles"]) == len(account["profiles"])
        for old, new in zip(account["profiles"], restored["profiles"]):
            assert new == old
    assert before["accounts"]["acme"]["stats"]["pending_deletion"] == 51
    assert after["events"] == before["events"] and len(after["events"]["acme"]["events"]) == 2
    assert next(lst for lst in after["accounts"]["acme"]["lists"] if lst["id"] == 5000)[
        "last_overwrite"]["s3_file_path"] == "s3://b/ids.csv"
    assert after["settings"] == before["settings"]
    assert after["faults"] == before["faults"] and len(str(after["faults"])) > 100
    assert after["rate_limits"] == before["rate_limits"] and after["rate_limits"]["enabled"]
    # A frozen clock keeps its moment; its offset from real time naturally grows meanwhile.
    assert after["clock"]["now"] == before["clock"]["now"] == "2031-05-04T03:02:01.123456Z"
    assert after["clock"]["frozen"] is True

    # The restored state behaves, not just looks, the same: the remaining 10 duplicates are
    # matched oldest first, suppression still holds, and a recorded event_uuid counts once.
    delete = _blueshift(second, "acme", "POST",
                        "/customers/delete?delete_all_matching_customers=true",
                        json={"email": "dup@example.com"})
    assert delete.headers["X-Fakeshift-Scheduled"] == "10"
    suppressed = _blueshift(second, "acme", "POST", "/customers", json={"email": "never@example.com"})
    assert suppressed.headers.get("X-Fakeshift-Suppressed") == "true"
    repeated = _blueshift(second, "acme", "POST", "/event",
                          json={"event": "purchase", "customer_id": "g9", "event_uuid": "e-1"})
    assert repeated.headers["X-Fakeshift-Recorded"] == "0"


def test_pending_deletions_fall_due_after_a_restart(tmp_path):
    clock = VirtualClock()
    clock.freeze()
    store = Store(clock, Settings(deletion_delay=3600))
    with store.open("acme") as (account, now):
        for _ in range(3):
            account.new_profile(now, {"email": "dup@example.com"})
        account.delete(now, {"email": "dup@example.com"}, all_matching=True)
        account.new_profile(now, {"email": "late@example.com"})
    restored = Store(clock, store.settings)
    restored.restore(json.loads(json.dumps(store.to_state())))
    with restored.open("acme") as (account, now):
        assert account.state() == store._accounts["acme"].state()
        newest = account.new_profile(now, {"email": "newest@example.com"})
        assert newest.seq == 4  # the sequence continues, so "oldest first" stays right
    clock.advance(3600)
    with restored.open("acme") as (account, _now):
        assert account.stats()["profiles"] == 2 and account.stats()["purged"] == 3
        assert account.lookup("email", "dup@example.com") == []


def test_a_periodic_save_survives_sigkill(start_server, tmp_path):
    state_file = tmp_path / "state.json"
    server = start_server("--state-file", str(state_file), "--save-interval", "0.2",
                          "--access-log", "false")
    _admin(server, "POST", "/clock/advance", json={"by": "1h"})
    _admin(server, "POST", "/accounts/acme/seed",
           json={"generate": [{"count": 500, "email": "u{n}@example.com"}]})
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if state_file.exists() and json.loads(state_file.read_text())["accounts"]:
            break
        time.sleep(0.05)
    else:
        pytest.fail("no periodic save within 10 s")
    server.stop(signal.SIGKILL)
    restarted = start_server("--state-file", str(state_file), "--access-log", "false")
    assert _admin(restarted, "GET", "/accounts/acme")["stats"]["profiles"] == 500
    # A running clock keeps its offset from real time across the restart.
    assert _admin(restarted, "GET", "/clock")["offset_seconds"] == pytest.approx(3600, abs=1)


def test_sigkill_while_saving_never_leaves_a_corrupt_file(start_server, tmp_path):
    """A large state saved every 50 ms: a kill at any moment leaves the previous or the next
    complete file, which loads; no temporary file survives as the state."""
    state_file = tmp_path / "state.json"
    rng = random.Random(6)
    expected = 0
    for round_number in range(3):
        server = start_server("--state-file", str(state_file), "--save-interval", "0.05",
                              "--access-log", "false")
        if round_number:
            assert _admin(server, "GET", "/accounts/acme")["stats"]["profiles"] == expected
        _admin(server, "POST", "/accounts/acme/seed",
               json={"generate": [{"count": 20000, "email": f"r{round_number}-{{n}}@example.com"}]})
        expected += 20000
        _wait_for_a_save_holding(state_file, expected)
        # Saves now follow each other back to back (each takes longer than the interval), so a
        # kill after a random pause lands in the middle of writing one.
        time.sleep(rng.uniform(0.0, 0.2))
        server.stop(signal.SIGKILL)
        document = persistence.read(state_file)  # raises if damaged
        assert len(document["accounts"][0]["profiles"]) == expected
    leftovers = [p.name for p in tmp_path.iterdir() if p.name not in ("state.json",
                                                                       "state.json.lock")]
    assert all(name.endswith(".tmp") for name in leftovers)


def _wait_for_a_save_holding(state_file: Path, profiles: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # None until the first save, no account in a save from before the seed; raises if damaged
        document = persistence.read(state_file)
        accounts = document["accounts"] if document else []
        if accounts and len(accounts[0]["profiles"]) == profiles:
            return
        time.sleep(0.05)
    raise TimeoutError(f"no save with {profiles} profiles appeared")


def _serve_and_fail(state_file: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fakeshift", "serve", "--port", "0", "--state-file", str(state_file)],
        capture_output=True, text=True, timeout=30, cwd=ROOT,
    )


def _valid_document() -> dict:
    store = Store(VirtualClock(), Settings())
    with store.open("acme") as (account, now):
        account.new_profile(now, {"email": "a@example.com"})
    return {"format": "fakeshift-state", "version": 1, "clock": {"frozen_at": None,
            "offset_seconds": 0}, "settings": {}, "accounts": store.to_state(), "faults": [],
            "rate_limits": {}}


@pytest.mark.parametrize("damage, message", [
    (lambda text: text[: len(text) // 2], "not valid JSON"),
    (lambda text: "\xff\xfe garbage", "not valid JSON"),
    (lambda text: json.dumps({"accounts": []}), "not a fakeshift state file"),
    (lambda text: json.dumps([1, 2]), "not a fakeshift state file"),
    (lambda text: text.replace('"version":1', '"version":99'), "version 99 is not supported"),
    (lambda text: text.replace('"accounts":[', '"accounts":7,"x":['), "damaged state file"),
    (lambda text: text.replace('"seq":0,', ''),
     "damaged state file at accounts/0/profiles/0: 'seq' is a required property"),
    (lambda text: text.replace('"seq":0,', '"seq":"0",'),
     "at accounts/0/profiles/0/seq: '0' is not of type 'integer'"),
    (lambda text: text.replace('"attributes":null', '"attributes":[1]'),
     "at accounts/0/profiles/0/attributes: [1] is not of type 'object', 'null'"),
    (lambda text: text.replace('"purged_count":0', '"purged_count":"0"'),
     "at accounts/0/purged_count: '0' is not of type 'integer'"),
    (lambda text: text.replace('"next_list_id":1001', '"next_list_id":null'),
     "at accounts/0/next_list_id: None is not of type 'integer'"),
    (lambda text: text.replace('"deletion":null', '"deletion":{"reason":"delete"}'),
     "at accounts/0/profiles/0/deletion: 'requested_at' is a required property"),
    (lambda text: text.replace('"suppressed":[]', '"suppressed":[{"kind":"email","since":"x"}]'),
     "at accounts/0/suppressed/0: 'value' is a required property"),
    (lambda text: text.replace('"lists":[]', '"lists":[{"id":"1001"}]'),
     "at accounts/0/lists/0"),
    (lambda text: text.replace('"offset_seconds":0', '"offset_seconds":"0"'),
     "at clock/offset_seconds: '0' is not of type 'number'"),
    (lambda text: text.replace('"created_at":"', '"created_at":"yesterday'), "damaged state file"),
])
def test_a_corrupt_or_foreign_state_file_is_one_line_and_exit_2(tmp_path, damage, message):
    state_file = tmp_path / "state.json"
    state_file.write_text(damage(json.dumps(_valid_document(), separators=(",", ":"))))
    before = state_file.read_bytes()
    result = _serve_and_fail(state_file)
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    error_lines = result.stderr.strip().splitlines()
    assert len(error_lines) == 1 and error_lines[0].startswith("fakeshift: error: ")
    assert str(state_file) in error_lines[0] and message in error_lines[0], error_lines
    assert state_file.read_bytes() == before  # a refused file is never overwritten


def test_a_missing_state_file_is_a_first_start(start_server, tmp_path):
    state_file = tmp_path / "new" / "state.json"
    state_file.parent.mkdir()
    server = start_server("--state-file", str(state_file), "--access-log", "false")
    _admin(server, "POST", "/accounts/fresh/seed", json={"profiles": [{"email": "a@example.com"}]})
    server.stop()
    assert persistence.read(state_file)["accounts"][0]["name"] == "fresh"


def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    state_file = tmp_path / "state.json"
    persistence.write_atomically(state_file, {"generation": 1})
    with pytest.raises(ValueError):
        persistence.write_atomically(state_file, {"generation": float("nan")})
    assert json.loads(state_file.read_text()) == {"generation": 1}
    assert os.listdir(tmp_path) == ["state.json"]


def test_accounts_over_the_limit_in_a_state_file_are_refused(tmp_path):
    store = Store(VirtualClock(), Settings())
    for name in ("a", "b", "c"):
        with store.open(name):
            pass
    small = Store(VirtualClock(), Settings(max_accounts=2))
    with pytest.raises(Exception, match="max_accounts"):
        small.restore(store.to_state())
    assert small.account_names() == []
    assert isinstance(Account.from_state(store.to_state()[0], small.settings), Account)


def _serve_once(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fakeshift", "serve", "--port", "0", *argv],
                          capture_output=True, text=True, timeout=30, cwd=ROOT)


def _assert_one_line_exit_2(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fakeshift: error: "), lines
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert "listening" not in result.stdout


def test_a_state_file_in_a_missing_directory_is_refused_at_start(tmp_path):
    state_file = tmp_path / "missing" / "state.json"
    _assert_one_line_exit_2(_serve_once("--state-file", str(state_file)),
                            f"the directory {state_file.parent} does not exist")


def test_a_state_file_below_a_regular_file_is_refused_at_start(tmp_path):
    (tmp_path / "file").write_text("")
    state_file = tmp_path / "file" / "state.json"
    _assert_one_line_exit_2(_serve_once("--state-file", str(state_file)), "is not a directory")


def test_a_second_server_on_the_same_state_file_refuses_to_start(start_server, tmp_path):
    state_file = tmp_path / "state.json"
    first = start_server("--state-file", str(state_file), "--access-log", "false")
    _admin(first, "POST", "/accounts/acme/seed", json={"profiles": [{"email": "a@example.com"}]})
    _assert_one_line_exit_2(_serve_once("--state-file", str(state_file)),
                            "in use by another fakeshift server", f"{state_file}.lock")
    first.stop(signal.SIGKILL)  # the kernel releases the lock of a killed process too
    second = start_server("--state-file", str(state_file), "--access-log", "false")
    assert second.process.poll() is None


def test_temporary_files_left_by_a_crashed_save_are_removed_at_start(start_server, tmp_path):
    state_file = tmp_path / "state.json"
    stale = [tmp_path / ".state.json.k2j4h5.tmp", tmp_path / ".state.json.x9.tmp"]
    unrelated = [tmp_path / ".other.json.k2j4h5.tmp", tmp_path / "state.json.tmp"]
    for path in stale + unrelated:
        path.write_text("{")
    start_server("--state-file", str(state_file), "--access-log", "false")
    assert not any(path.exists() for path in stale)
    assert all(path.exists() for path in unrelated)


def test_a_failed_final_save_exits_non_zero(start_server, tmp_path):
    directory = tmp_path / "state"
    directory.mkdir()
    state_file = directory / "state.json"
    server = start_server("--state-file", str(state_file), "--save-interval", "1h",
                          "--access-log", "false")
    _admin(server, "POST", "/accounts/acme/seed", json={"profiles": [{"email": "a@example.com"}]})
    shutil.rmtree(directory)  # the save then cannot create its temporary file
    server.stop(signal.SIGTERM)
    assert server.process.returncode == 1
    assert f"fakeshift: error: the final save of the state to {state_file} failed" in server.output


def test_save_interval_0_saves_only_on_stop(start_server, tmp_path):
    state_file = tmp_path / "state.json"
    server = start_server("--state-file", str(state_file), "--save-interval", "0",
                          "--access-log", "false")
    _admin(server, "POST", "/accounts/acme/seed", json={"profiles": [{"email": "a@example.com"}]})
    time.sleep(1)
    assert not state_file.exists()
    server.stop(signal.SIGTERM)
    assert server.process.returncode == 0
    assert persistence.read(state_file)["accounts"][0]["name"] == "acme"


def test_a_save_copies_under_the_store_lock_and_builds_the_document_outside_it(app, monkeypatch):
    """While the document is built, other threads use the store; what they change then is not in
    the document, which matches the store as it was when copied."""
    emulator = app.extensions["fakeshift"]
    client = app.test_client()
    assert client.post("/_fakeshift/accounts/acme/seed", json={
        "profiles": [{"email": "a@example.com", "attributes": {"tier": "gold"}},
                     {"email": "b@example.com"}],
        "suppressed": [{"email": "never@example.com"}],
        "lists": [{"name": "News", "members": ["a@example.com"]}],
        "groups": [{"group_id": "vip", "attributes": {"email": "o@example.com"},
                    "members": [{"email": "a@example.com"}]}],
    }).status_code == 200
    expected = emulator.store.to_state()
    meanwhile: list = []
    build_profile = Profile.to_state

    def change_the_store_from_another_thread():
        # One change to each kind of record the copy must keep apart from the store.
        uuid_a = next(p["uuid"] for p in expected[0]["profiles"] if p["email"] == "a@example.com")
        calls = [("POST", "/api/v1/customers", {"email": "a@example.com", "tier": "silver"}),
                 ("POST", "/api/v1/customers/forget", {"email": "new@example.com"}),
                 ("PUT", "/api/v1/custom_user_lists/add_user_to_list/1001",
                  {"identifier_key": "email", "identifier_value": "b@example.com"}),
                 ("DELETE", f"/api/v1/customer_group/vip/user/{uuid_a}", None),
                 ("POST", "/api/v1/event", {"event": "view", "email": "a@example.com"})]
        for method, path, body in calls:
            meanwhile.append(client.open(path, method=method, json=body,
                                         headers=basic("acme")).status_code)

    def building(profile):
        if not meanwhile:
            thread = threading.Thread(target=change_the_store_from_another_thread)
            thread.start()
            thread.join(5)
            assert not thread.is_alive(), "the store lock was held while building the document"
        return build_profile(profile)

    monkeypatch.setattr(Profile, "to_state", building)
    document = persistence.snapshot(emulator)
    assert meanwhile == [200] * 5, meanwhile
    assert document["accounts"] == expected
    assert emulator.store.to_state() != expected  # the changes did happen, after the copy
