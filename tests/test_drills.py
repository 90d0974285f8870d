"""Chaos drills: loading, playing step by step, the journal summary, and end to end against a
live server, from the CLI and inside the server."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import requests

from fakeshift import create_app
from fakeshift.drill import Drill, DrillError, LocalControl, play, summarize

from conftest import ROOT, basic

DRILLS = ROOT / "scenarios" / "drills"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "drill.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("path", sorted(DRILLS.glob("*.yaml")), ids=lambda p: p.name)
def test_the_shipped_drills_load(path):
    drill = Drill.from_file(path)
    assert drill.description and len(drill.steps) >= 3 and drill.duration >= 60
    assert any(step.faults or step.rate_limits for step in drill.steps)
    assert not drill.steps[-1].faults  # every drill ends with a recovery


def test_three_kinds_of_drill_are_shipped():
    rules = {name: [rule for step in Drill.from_file(DRILLS / name).steps for rule in step.faults]
             for name in ("flaky-5xx.yaml", "rate-limit-storm.yaml", "lost-responses.yaml")}
    assert any(rule.get("status", 0) >= 500 for rule in rules["flaky-5xx.yaml"])
    storm = Drill.from_file(DRILLS / "rate-limit-storm.yaml")
    assert any(step.rate_limits for step in storm.steps)
    assert any(rule.get("drop") and rule.get("apply") for rule in rules["lost-responses.yaml"])


@pytest.mark.parametrize("text, problem", [
    ("steps: []\n", "steps: [] should be non-empty"),
    ("steps:\n  - {name: a}\n", "'duration' is a required property"),
    ("steps:\n  - {name: a, duration: 1s, faults: [{status: 299}]}\n",
     r"steps[0] (a).faults[0]: status: 299 is not one of"),
    ("steps:\n  - {name: a, duration: 1s, faults: ['nope:status=503']}\n",
     "unknown operation 'nope'"),
    ("steps:\n  - {name: a, duration: 1s, rate_limits: {rate: 1}}\n",
     "'burst' is a dependency of 'rate'"),
])
def test_a_bad_drill_names_the_file_step_and_problem(tmp_path, text, problem):
    with pytest.raises(DrillError) as caught:
        Drill.from_file(write(tmp_path, text))
    assert "drill.yaml" in str(caught.value) and problem in str(caught.value)


def test_play_installs_each_steps_rules_and_limits_and_cleans_up(tmp_path):
    drill = Drill.from_file(write(tmp_path, """
steps:
  - name: failing
    duration: 60s
    faults: ["search_customers:status=503", {operation: forget, drop: true, apply: true}]
  - name: throttled
    duration: 30s
    rate_limits: {rate: 1, burst: 1}
  - name: recovery
    duration: 30s
"""))
    emulator = create_app({"faults": ("identify:status=500,account=nobody",)}).extensions[
        "fakeshift"]
    seen = []

    def sleep(seconds):
        seen.append((seconds, [r["id"] for r in emulator.faults.rules()],
                     emulator.rate_limits.describe()["enabled"]))

    play(drill, LocalControl(emulator), speed=60, sleep=sleep, say=lambda _: None)
    assert seen == [(1.0, ["f1", "failing-1", "failing-2"], False),
                    (0.5, ["f1"], True),
                    (0.5, ["f1"], False)]
    assert [r["id"] for r in emulator.faults.rules()] == ["f1"]


def test_play_cleans_up_when_interrupted(tmp_path):
    drill = Drill.from_file(write(tmp_path, """
steps:
  - {name: one, duration: 1s, faults: ["status=503"], rate_limits: {rate: 1, burst: 1}}
"""))
    emulator = create_app({}).extensions["fakeshift"]

    def interrupted(_seconds):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        play(drill, LocalControl(emulator), sleep=interrupted, say=lambda _: None)
    assert emulator.faults.rules() == [] and not emulator.rate_limits.enabled


def entry(n, time, status=200, fault=None, account="a", body="{}", path="/api/v1/customers"):
    return {"id": n, "time": time, "account": account, "operation": "blueshift.identify",
            "method": "POST", "path": path, "query": "", "body": body, "status": status,
            "fault": fault}


def test_summary_counts_and_retries():
    entries = [
        entry(1, "2030-01-01T00:00:00Z", 503, "f1"),
        entry(2, "2030-01-01T00:00:01Z"),  # a retry of 1
        entry(3, "2030-01-01T00:00:02Z", None, "f2", body='{"x": 1}'),
        entry(4, "2030-01-01T00:01:00Z", body='{"x": 1}'),  # too late to count as a retry
        entry(5, "2030-01-01T00:01:00Z", 429, "rate-limit", account="b"),
        entry(6, "2030-01-01T00:01:00Z", path="/_fakeshift/faults"),  # the control plane
    ]
    summary = summarize(entries, retry_window=5)
    assert summary["requests"] == 5
    assert summary["by_status"] == {"200": 2, "429": 1, "503": 1, "dropped": 1}
    assert summary["by_operation"] == {"identify": {"total": 5, "200": 2, "429": 1, "503": 1,
                                                    "dropped": 1}}
    assert summary["faults"] == {"f1": 1, "f2": 1, "rate-limit": 1}
    assert summary["retries"] == {"faulted": 3, "retried": 1, "clients": {
        "a": {"faulted": 2, "retried": 1}, "b": {"faulted": 1, "retried": 0}}}


TIMELINE = """
retry_window: 30s
steps:
  - name: failing
    duration: 1.6s
    faults: [{operation: search_customers, status: 503, probability: 0.4, seed: 3}]
  - name: throttled
    duration: 1.6s
    rate_limits: {rate: 10, burst: 3}
  - name: quiet
    duration: 1.6s
    faults: [{operation: identify, status: 500, account: nobody}]
"""


def rule_ids(url: str) -> set[str]:
    return {r["id"] for r in requests.get(f"{url}/_fakeshift/faults", timeout=5).json()["rules"]}


def wait_for(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_drill_runs_end_to_end_and_its_summary_matches_the_journal(tmp_path, start_server):
    server = start_server("--access-log", "false")
    path = write(tmp_path, TIMELINE)
    drill = subprocess.Popen([sys.executable, "-m", "fakeshift", "drill", str(path),
                              "--base-url", server.url, "--speed", "2", "--json"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        wait_for(lambda: "failing-1" in rule_ids(server.url))
        attempts, retried = Counter(), 0
        session = requests.Session()
        # A client with up to three attempts per call, until the drill's quiet step begins.
        for call in range(2000):
            if "quiet-1" in rule_ids(server.url):
                break
            for attempt in range(3):
                status = session.get(f"{server.url}/api/v1/customers?email=u{call}@example.com",
                                     headers=basic("driller"), timeout=5).status_code
                attempts[str(status)] += 1
                if status == 200:
                    break
                retried += attempt < 2
        out, err = drill.communicate(timeout=60)
    finally:
        if drill.poll() is None:
            drill.kill()
            drill.communicate()
    assert drill.returncode == 0, err
    summary = json.loads(out)
    assert "step 2/3 throttled" in err
    assert summary["by_status"] == dict(sorted(attempts.items()))
    assert summary["by_status"].get("503", 0) > 0 and summary["by_status"].get("429", 0) > 0
    calls = requests.get(f"{server.url}/_fakeshift/journal", timeout=5,
                         params={"path": "/api/*"}).json()["entries"]
    assert summary["requests"] == len(calls) == sum(attempts.values())
    assert summary["by_operation"]["search_customers"]["total"] == len(calls)
    assert summary["faults"] == dict(Counter(e["fault"] for e in calls if e["fault"]))
    assert summary["retries"]["retried"] == retried
    assert summary["retries"]["faulted"] == sum(1 for e in calls if e["fault"])
    assert rule_ids(server.url) == set()  # cleaned up
    assert requests.get(f"{server.url}/_fakeshift/rate-limits", timeout=5).json()["enabled"] is False


def test_serve_plays_a_drill_inside_the_server(tmp_path, start_server):
    path = write(tmp_path, """
steps:
  - {name: inside, duration: 2s, faults: ["search_customers:status=503"]}
""")
    server = start_server("--access-log", "false", "--drill", str(path), "--drill-speed", "2")
    wait_for(lambda: "inside-1" in rule_ids(server.url))
    assert requests.get(f"{server.url}/api/v1/customers?email=a@example.com",
                        headers=basic("inside"), timeout=5).status_code == 503
    wait_for(lambda: not rule_ids(server.url))
    server.stop()
    assert "drill" in server.output and "503: 1" in server.output


def test_a_bad_drill_stops_serve_at_once(tmp_path):
    path = write(tmp_path, "steps: []\n")
    done = subprocess.run([sys.executable, "-m", "fakeshift", "serve", "--port", "0",
                           "--drill", str(path)], capture_output=True, text=True, timeout=30,
                          cwd=ROOT)
    assert done.returncode == 2 and "should be non-empty" in done.stderr


def test_a_drill_survives_a_reset_that_removed_its_rules(tmp_path, start_server):
    server = start_server("--access-log", "false")
    path = write(tmp_path, "steps:\n  - {name: one, duration: 1s, faults: ['status=503']}\n")
    drill = subprocess.Popen([sys.executable, "-m", "fakeshift", "drill", str(path),
                              "--base-url", server.url, "--speed", "1"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        wait_for(lambda: "one-1" in rule_ids(server.url))
        requests.post(f"{server.url}/_fakeshift/reset", timeout=5)
        out, err = drill.communicate(timeout=30)
    finally:
        if drill.poll() is None:
            drill.kill()
            drill.communicate()
    assert drill.returncode == 0, err
    assert "requests: 0" in out
