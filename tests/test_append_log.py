"""--durability aof: every change is appended to a log before it is answered, replayed exactly
at start (same uuids, same timestamps), compacted into each snapshot; a torn last record is cut
off, damage anywhere else stops the start with one line; a SIGKILL under load loses no more than
the fsync interval of acknowledged writes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from conftest import basic
from fakeshift import create_app, persistence
from fakeshift.appendlog import (
    FILE_HEADER,
    AppendLog,
    AppendLogError,
    LogFile,
    check_snapshot_mode,
    log_path,
)
from test_persistence import _assert_one_line_exit_2, _everything, _serve_once, _write_rich_state

FSYNC_INTERVAL = 1.0


def _start(state_path: Path):
    """An in-process server started as `fakeshift serve --durability aof` starts one: scenario,
    snapshot, replay, a first snapshot when there was none, then live."""
    document = persistence.read(state_path)
    app = create_app({"state_file": str(state_path), "durability": "aof"}, load_scenario=False)
    emulator = app.extensions["fakeshift"]
    log = AppendLog(state_path, document, FSYNC_INTERVAL)
    log.install(app)
    emulator.load(None)
    if document is not None:
        persistence.restore(emulator, document, str(state_path))
    replayed = log.replay(app)
    if log.needs_snapshot:
        persistence.save(emulator, state_path, log)
    log.start()
    emulator.ready.set()
    return app, log, replayed


def _ok(response):
    assert response.status_code == 200, (response.status_code, response.json)
    return response.json


def _changes(client) -> None:
    """One of each kind of change, on a running clock and then a frozen one, with uuids drawn
    by profiles, lists, groups, events and stored objects."""
    acme, globex = basic("acme"), basic("globex")
    _ok(client.post("/api/v1/customers", headers=acme, json={"email": "a@example.com", "n": 1}))
    _ok(client.post("/api/v1/customers/bulk", headers=acme, json={"customers": [
        {"email": "dup@example.com"}, {"email": "dup@example.com"}, {"customer_id": "c-9"}]}))
    _ok(client.post("/_fakeshift/clock/advance", json={"by": "90m"}))
    _ok(client.post("/api/v1/customers/delete", headers=acme, json={"email": "dup@example.com"}))
    _ok(client.post("/api/v1/customers/forget", headers=acme, json={"email": "gone@example.com"}))
    created = _ok(client.post("/api/v1/custom_user_lists/create", headers=acme,
                              json={"name": "News"}))
    _ok(client.put(f"/api/v1/custom_user_lists/add_user_to_list/{created['id']}", headers=acme,
                   json={"identifier_key": "email", "identifier_value": "a@example.com"}))
    _ok(client.post("/_fakeshift/accounts/acme/seed", json={
        "generate": [{"count": 30, "email": "g{n}@example.com"}],
        "groups": [{"group_id": "vip", "members": [{"email": "g1@example.com"}]}]}))
    _ok(client.delete("/api/v1/customer_group/vip", headers=acme))
    _ok(client.post("/api/v1/event", headers=acme,
                    json={"event": "identify", "email": "e@example.com", "plan": "pro"}))
    _ok(client.post("/api/v1/catalogs", headers=acme, json={"catalog": {"name": "Winter"}}))
    _ok(client.post("/_fakeshift/accounts/globex/clock/advance", json={"by": "3h"}))
    _ok(client.post("/api/v1/customers", headers=globex, json={"customer_id": "x"}))
    _ok(client.post("/_fakeshift/faults", json={"operation": "forget", "status": 503}))
    rule = _ok(client.post("/_fakeshift/faults", json={"operation": "identify", "latency": "1ms"}))
    _ok(client.delete(f"/_fakeshift/faults/{rule['id']}"))
    _ok(client.put("/_fakeshift/rate-limits", json={"rate": 1000, "burst": 1000}))
    _ok(client.put("/_fakeshift/settings", json={"deletion_delay": "1h"}))
    _ok(client.post("/_fakeshift/clock/set", json={"now": "2031-01-02T03:04:05Z"}))
    _ok(client.post("/api/v1/customers", headers=acme, json={"email": "late@example.com"}))
    _ok(client.post("/_fakeshift/clock/freeze", json={}))
    _ok(client.post("/api/v1/customers/unforget", headers=acme,
                    json={"email": "gone@example.com"}))
    # A refused change changes nothing, then as now.
    assert client.post("/api/v1/customers", headers=acme, json={"uuid": "nope"}).status_code == 404


def _clock(client, path: str) -> tuple:
    """A frozen clock's moment; a running one's offset from real time in whole seconds (the
    clock reads real time twice for its answer, which a busy machine may set milliseconds
    apart; the offsets set here are whole hours)."""
    clock = _ok(client.get(path))
    if clock["frozen"]:
        return True, clock["now"]
    return False, round(clock["offset_seconds"]), clock.get("offset_from_server_seconds")


def _state(client) -> dict:
    names = sorted(a["account"] for a in _ok(client.get("/_fakeshift/accounts"))["accounts"])
    return {
        "accounts": {name: _ok(client.get(f"/_fakeshift/accounts/{name}")) for name in names},
        "events": {name: _ok(client.get(f"/_fakeshift/accounts/{name}/events")) for name in names},
        "account_clocks": {name: _clock(client, f"/_fakeshift/accounts/{name}/clock")
                           for name in names},
        "catalogs": _ok(client.get("/api/v1/catalogs", headers=basic("acme"))),
        "clock": _clock(client, "/_fakeshift/clock"),
        "settings": _ok(client.get("/_fakeshift/settings")),
        "faults": _ok(client.get("/_fakeshift/faults")),
        "rate_limits": {k: v for k, v in _ok(client.get("/_fakeshift/rate-limits")).items()
                        if k != "buckets"},
    }


def test_a_replay_makes_exactly_the_changes_that_were_made(tmp_path):
    state_path = tmp_path / "state.json"
    app, log, _ = _start(state_path)
    client = app.test_client()
    _changes(client)
    before = _state(client)
    assert before["accounts"]["acme"]["stats"]["purged"] == 2  # the clock set passed due times
    log.close()  # a crash: nothing saved since the first snapshot, everything in the log

    restarted, log, replayed = _start(state_path)
    assert replayed == 23  # every call of _changes but none of the reads
    assert _state(restarted.test_client()) == before
    log.close()


def test_a_compaction_moves_the_changes_into_the_snapshot_and_empties_the_log(tmp_path):
    state_path = tmp_path / "state.json"
    app, log, _ = _start(state_path)
    client = app.test_client()
    _ok(client.post("/api/v1/customers", headers=basic("acme"), json={"email": "a@example.com"}))
    _ok(client.post("/_fakeshift/faults", json={"operation": "forget", "status": 503}))
    rule = _ok(client.post("/_fakeshift/faults", json={"operation": "identify", "status": 503}))
    _ok(client.delete(f"/_fakeshift/faults/{rule['id']}"))
    assert log_path(state_path, 1).stat().st_size > len(FILE_HEADER)
    persistence.save(app.extensions["fakeshift"], state_path, log)
    assert persistence.read(state_path)["log_generation"] == 2
    assert sorted(p.name for p in tmp_path.glob("state.json.aof.*")) == ["state.json.aof.2"]
    assert log_path(state_path, 2).read_bytes() == FILE_HEADER
    _ok(client.post("/api/v1/customers", headers=basic("acme"), json={"email": "b@example.com"}))
    # After f2 was removed, the next rule is f3: the last number handed out is saved too.
    assert _ok(client.post("/_fakeshift/faults", json={"operation": "delete_customer",
                                                       "status": 500}))["id"] == "f3"
    before = _state(client)
    log.close()

    restarted, log, replayed = _start(state_path)
    assert replayed == 2 and _state(restarted.test_client()) == before
    log.close()


def test_a_reset_after_a_compaction_goes_back_to_the_scenario_loaded_at_run_time(tmp_path):
    state_path = tmp_path / "state.json"
    app, log, _ = _start(state_path)
    client = app.test_client()
    _ok(client.put("/_fakeshift/scenario", json={"accounts": [
        {"key": "shop", "profiles": [{"email": "s@example.com"}]}]}))
    persistence.save(app.extensions["fakeshift"], state_path, log)
    _ok(client.post("/api/v1/customers", headers=basic("shop"), json={"email": "t@example.com"}))
    _ok(client.post("/_fakeshift/reset"))
    before = _state(client)
    log.close()

    restarted, log, _ = _start(state_path)
    after = _state(restarted.test_client())
    assert [p["email"] for p in after["accounts"]["shop"]["profiles"]] == ["s@example.com"]
    assert after == before
    log.close()


def _logged_and_crashed(tmp_path: Path, emails: list[str]) -> Path:
    state_path = tmp_path / "state.json"
    app, log, _ = _start(state_path)
    for email in emails:
        _ok(app.test_client().post("/api/v1/customers", headers=basic("acme"),
                                   json={"email": email}))
    log.close()
    return state_path


def _emails(app) -> list[str]:
    state = app.test_client().get("/_fakeshift/accounts/acme").json
    return [p["email"] for p in state.get("profiles", [])]


@pytest.mark.parametrize("tear", [
    lambda data: data[:-5],  # the last record cut short
    lambda data: data + b"\x10\x00",  # the start of a frame header
    lambda data: data[:-1] + bytes([data[-1] ^ 1]),  # the last byte changed: its CRC fails
    lambda data: data + b"\x00" * 4096,  # zeros where the file system extended the file
])
def test_a_torn_last_record_is_ignored_and_cut_off(tmp_path, tear, caplog):
    state_path = _logged_and_crashed(tmp_path, ["a@example.com", "b@example.com"])
    last = log_path(state_path, 1)
    whole = last.read_bytes()
    last.write_bytes(tear(whole))
    app, log, replayed = _start(state_path)
    expected = ["a@example.com", "b@example.com"] if len(tear(whole)) > len(whole) else [
        "a@example.com"]
    assert _emails(app) == expected and replayed == len(expected)
    assert "ignored a torn last record" in caplog.text
    # Cut off, so a new record follows the last whole one.
    _ok(app.test_client().post("/api/v1/customers", headers=basic("acme"),
                               json={"email": "c@example.com"}))
    log.close()
    assert [json.loads(record.body) for record in LogFile(last).records()] == [
        {"email": email} for email in [*expected, "c@example.com"]]


@pytest.mark.parametrize("left", [b"", FILE_HEADER[:5]])
def test_a_log_a_crash_left_without_its_header_gets_one(tmp_path, left):
    """A save creates the next log before it switches to it: a crash in between may leave it
    empty, or with part of its header; it becomes the current log."""
    state_path = _logged_and_crashed(tmp_path, ["a@example.com"])
    log_path(state_path, 2).write_bytes(left)
    app, log, replayed = _start(state_path)
    _ok(app.test_client().post("/api/v1/customers", headers=basic("acme"),
                               json={"email": "b@example.com"}))
    log.close()
    assert replayed == 1 and log_path(state_path, 2).read_bytes().startswith(FILE_HEADER)
    restarted, log, replayed = _start(state_path)
    assert replayed == 2 and _emails(restarted) == ["a@example.com", "b@example.com"]
    log.close()


def test_damage_before_the_last_record_stops_the_start(tmp_path):
    state_path = _logged_and_crashed(tmp_path, ["a@example.com", "b@example.com"])
    last = log_path(state_path, 1)
    data = bytearray(last.read_bytes())
    data[len(FILE_HEADER) + 20] ^= 0xFF  # in the first record's payload
    last.write_bytes(bytes(data))
    app = create_app({}, load_scenario=False)
    log = AppendLog(state_path, persistence.read(state_path), FSYNC_INTERVAL)
    log.install(app)
    with pytest.raises(AppendLogError, match=r"state\.json\.aof\.1: damaged append log at byte "
                                             r"16: a record whose CRC does not match, with more"):
        log.replay(app)


def test_a_torn_record_with_changes_in_a_later_log_stops_the_start(tmp_path):
    state_path = _logged_and_crashed(tmp_path, ["a@example.com", "b@example.com"])
    whole = log_path(state_path, 1).read_bytes()
    log_path(state_path, 2).write_bytes(whole)
    log_path(state_path, 1).write_bytes(whole[:-5])
    app = create_app({}, load_scenario=False)
    log = AppendLog(state_path, persistence.read(state_path), FSYNC_INTERVAL)
    log.install(app)
    with pytest.raises(AppendLogError, match=r"a record cut short, and state\.json\.aof\.2 "
                                             r"holds changes after it"):
        log.replay(app)


def test_a_foreign_file_a_missing_generation_and_orphan_changes_are_refused(tmp_path):
    state_path = _logged_and_crashed(tmp_path, ["a@example.com"])
    document = persistence.read(state_path)
    log_path(state_path, 3).write_bytes(FILE_HEADER)
    with pytest.raises(AppendLogError, match=r"the append log state\.json\.aof\.2 is missing"):
        AppendLog(state_path, document, FSYNC_INTERVAL)
    log_path(state_path, 3).unlink()

    log_path(state_path, 2).write_bytes(b"PK\x03\x04 a zip file")
    app = create_app({}, load_scenario=False)
    log = AppendLog(state_path, document, FSYNC_INTERVAL)
    log.install(app)
    with pytest.raises(AppendLogError, match="not a fakeshift append log"):
        log.replay(app)
    log_path(state_path, 2).unlink()

    state_path.unlink()
    with pytest.raises(AppendLogError, match="holds changes but the state file they follow does "
                                             "not exist"):
        AppendLog(state_path, None, FSYNC_INTERVAL)


def test_snapshot_mode_refuses_a_log_it_would_drop_and_removes_empty_ones(tmp_path):
    state_path = _logged_and_crashed(tmp_path, ["a@example.com"])
    document = persistence.read(state_path)
    with pytest.raises(AppendLogError, match="holds changes that are not in the state file yet; "
                                             "start with --durability aof"):
        check_snapshot_mode(state_path, document)
    log_path(state_path, 1).write_bytes(FILE_HEADER)
    check_snapshot_mode(state_path, document)
    assert not log_path(state_path, 1).exists()


def test_a_log_that_cannot_be_written_refuses_changes_until_a_save_holds_them(tmp_path,
                                                                              caplog):
    state_path = tmp_path / "state.json"
    app, log, _ = _start(state_path)
    client = app.test_client()
    read_only = os.open(log_path(state_path, 1), os.O_RDONLY)
    writable, log._fd = log._fd, read_only  # as a disk that refuses writes would
    first = client.post("/api/v1/customers", headers=basic("acme"), json={"email": "a@x.com"})
    second = client.post("/api/v1/customers", headers=basic("acme"), json={"email": "b@x.com"})
    log._fd = writable
    os.close(read_only)
    assert first.status_code == 503 and "made but could not be logged" in first.json["message"]
    assert second.status_code == 503 and "nothing was changed" in second.json["message"]
    assert second.headers["Retry-After"] == "1" and "cannot write the append log" in caplog.text
    assert _emails(app) == ["a@x.com"]  # made, in memory, and in no file yet
    assert client.post("/api/v1/customers", headers=basic("acme"),
                       json={"email": "c@x.com"}).status_code == 503

    persistence.save(app.extensions["fakeshift"], state_path, log)  # the next periodic save
    _ok(client.post("/api/v1/customers", headers=basic("acme"), json={"email": "d@x.com"}))
    log.close()
    restarted, log, replayed = _start(state_path)
    assert replayed == 1 and _emails(restarted) == ["a@x.com", "d@x.com"]
    log.close()


def test_changes_wait_until_the_replay_is_done(tmp_path):
    state_path = tmp_path / "state.json"
    app = create_app({}, load_scenario=False)
    log = AppendLog(state_path, None, FSYNC_INTERVAL)
    log.install(app)
    early = app.test_client().post("/_fakeshift/accounts/acme/seed",
                                   json={"profiles": [{"email": "a@example.com"}]})
    assert early.status_code == 503 and early.headers["Retry-After"] == "1"
    assert app.test_client().get("/_fakeshift/accounts").status_code == 200  # reads are fine


def test_aof_needs_a_state_file_and_an_fsync_interval_above_0(tmp_path):
    _assert_one_line_exit_2(_serve_once("--durability", "aof"),
                            "--durability aof needs --state-file")
    refused = _serve_once("--state-file", str(tmp_path / "state.json"), "--durability", "aof",
                          "--fsync-interval", "0")
    assert refused.returncode == 2 and "'0' is too short: more than 0" in refused.stderr
    unknown = _serve_once("--durability", "always")
    assert unknown.returncode == 2 and "'always' is not one of snapshot, aof" in unknown.stderr


# ---- a real server, killed --------------------------------------------------------------------

def _aof_server(start_server, state_file: Path, *extra: str):
    return start_server("--state-file", str(state_file), "--durability", "aof",
                        "--fsync-interval", f"{FSYNC_INTERVAL:g}s", "--access-log", "false",
                        *extra)


def test_a_rich_state_survives_sigkill_exactly(start_server, tmp_path):
    state_file = tmp_path / "state.json"
    first = _aof_server(start_server, state_file, "--save-interval", "1h")
    _write_rich_state(first)
    before = _everything(first)
    first.stop(signal.SIGKILL)
    second = _aof_server(start_server, state_file, "--save-interval", "1h")
    after = _everything(second)
    # The frozen clock keeps its moment; its offset from real time grows meanwhile.
    assert after["clock"]["now"] == before["clock"]["now"]
    after["clock"] = before["clock"]
    assert after == before


class Load:
    """Client threads sending identify calls, each with an email of its own, until stopped;
    `acknowledged` keeps (email, when the 200 arrived) of every call answered. 127.0.0.1 only,
    bounded by `seconds`."""

    def __init__(self, url: str, threads: int, seconds: float):
        self.url = url
        self.deadline = time.monotonic() + seconds
        self.stopped = threading.Event()
        self.acknowledged: list[tuple[str, float]] = []
        self.sent: set[str] = set()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(n,)) for n in range(threads)]

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc):
        self.stopped.set()
        for thread in self._threads:
            thread.join(30)

    def _run(self, number: int) -> None:
        session = requests.Session()
        sequence = 0
        while not self.stopped.is_set() and time.monotonic() < self.deadline:
            email = f"t{number}-{sequence}@example.com"
            sequence += 1
            with self._lock:
                self.sent.add(email)
            try:
                response = session.post(f"{self.url}/api/v1/customers", headers=basic("load"),
                                        json={"email": email}, timeout=5)
            except requests.RequestException:
                return  # the server is gone
            if response.status_code == 200:
                with self._lock:
                    self.acknowledged.append((email, time.monotonic()))


def _kill_under_load(start_server, state_file: Path, mode: list[str], seconds: float,
                     threads: int = 4) -> dict:
    """Kill the server after `seconds` of load, restart it, and count the acknowledged writes
    that are gone."""
    server = start_server("--state-file", str(state_file), "--access-log", "false", *mode)
    with Load(server.url, threads, seconds + 10) as load:
        time.sleep(seconds)
        killed_at = time.monotonic()
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(10)
    restarted = start_server("--state-file", str(state_file), "--access-log", "false", *mode)
    state = requests.get(f"{restarted.url}/_fakeshift/accounts/load", timeout=30).json()
    present = {profile["email"] for profile in state["profiles"]}
    restarted.stop()
    acknowledged = dict(load.acknowledged)
    lost = set(acknowledged) - present
    return {"acknowledged": len(acknowledged), "lost": len(lost),
            "in_last_interval": sum(1 for at in acknowledged.values()
                                    if at >= killed_at - FSYNC_INTERVAL),
            "unknown": len(present - load.sent), "profiles": len(present)}


AOF = ["--durability", "aof", "--fsync-interval", f"{FSYNC_INTERVAL:g}s", "--save-interval", "1s"]


def test_sigkill_under_load_loses_at_most_the_fsync_interval(start_server, tmp_path):
    """With saves (compactions) every second while the load runs, so the kill may land in one."""
    outcome = _kill_under_load(start_server, tmp_path / "state.json", AOF, seconds=3)
    print(f"aof, SIGKILL after 3 s of load: {outcome}")
    assert outcome["acknowledged"] > 300, outcome
    assert outcome["unknown"] == 0, outcome
    assert outcome["lost"] <= outcome["in_last_interval"], outcome


@pytest.mark.long
@pytest.mark.parametrize("mode", ["aof", "snapshot"])
def test_sigkill_soak_counts_lost_acknowledged_writes(start_server, tmp_path, mode):
    """Ten kills at random moments of 5 s loads; prints what each lost (the README's figures)."""
    flags = AOF if mode == "aof" else ["--save-interval", "1s"]
    outcomes = []
    for trial in range(10):
        state_file = tmp_path / f"{trial}" / "state.json"
        state_file.parent.mkdir()
        outcomes.append(_kill_under_load(start_server, state_file, flags,
                                         seconds=4 + (trial * 0.37) % 2))
    print(f"{mode}: " + json.dumps(outcomes))
    print(f"{mode}: lost {sum(o['lost'] for o in outcomes)} of "
          f"{sum(o['acknowledged'] for o in outcomes)} acknowledged writes in 10 kills")
    if mode == "aof":
        assert all(o["lost"] <= o["in_last_interval"] for o in outcomes), outcomes


_WRK_PLAN = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) sent = 0; failed = 0 end
function request()
  sent = sent + 1
  return wrk.format("POST", "/api/v1/customers",
    {["Authorization"] = "Basic bG9hZDo=", ["Content-Type"] = "application/json"},
    '{"email":"w' .. sent .. '@example.com"}')
end
function response(status) if status ~= 200 then failed = failed + 1 end end
function done(summary, latency)
  io.write(string.format("WRK %d %d %d %d\\n", summary.requests, summary.duration,
    latency:percentile(99), threads[1]:get("failed")))
end
"""


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.long
def test_throughput_cost_of_the_append_log(start_server, tmp_path):
    """Identify calls under wrk (16 connections, one thread, an email of its own per call),
    snapshot against aof, alternating, three rounds of 10 s; prints req/s and the server's CPU
    time per request (what a busy shared machine disturbs least), the figures the README gives."""
    wrk = shutil.which("wrk")
    if wrk is None:
        pytest.skip("wrk is not installed (apt-get install wrk)")
    plan = tmp_path / "identify.lua"
    plan.write_text(_WRK_PLAN)
    rates: dict[str, list[float]] = {"snapshot": [], "aof": []}
    cpu_us: dict[str, list[float]] = {"snapshot": [], "aof": []}
    for round_number in range(3):
        for mode, flags in (("snapshot", []), ("aof", AOF[:4])):
            state_file = tmp_path / f"{mode}{round_number}" / "state.json"
            state_file.parent.mkdir()
            server = start_server("--state-file", str(state_file), "--access-log", "false",
                                  "--save-interval", "30s", *flags)
            cpu_before = _cpu_seconds(server.process.pid)
            done = subprocess.run([wrk, "-t1", "-c16", "-d10s", "-s", str(plan), server.url],
                                  capture_output=True, text=True, timeout=60, check=True)
            cpu = _cpu_seconds(server.process.pid) - cpu_before
            figures = next(line for line in done.stdout.splitlines() if line.startswith("WRK "))
            count, micros, _p99_us, failed = map(int, figures.split()[1:])
            assert failed == 0, done.stdout
            rates[mode].append(round(count / (micros / 1e6)))
            cpu_us[mode].append(round(cpu / count * 1e6))
            server.stop()
    rate = {mode: statistics.median(values) for mode, values in rates.items()}
    cpu = {mode: statistics.median(values) for mode, values in cpu_us.items()}
    print(f"identify, medians of 3: snapshot {rate['snapshot']} req/s, {cpu['snapshot']} us "
          f"CPU/request; aof {rate['aof']} req/s, {cpu['aof']} us CPU/request "
          f"(+{(cpu['aof'] / cpu['snapshot'] - 1) * 100:.0f}% CPU); req/s {rates}; "
          f"us CPU {cpu_us}")
    assert cpu["aof"] < 2 * cpu["snapshot"]
