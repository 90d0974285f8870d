"""The real `fakeshift serve` process: start on a free port, talk HTTP, stop cleanly."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
import requests

from conftest import ROOT, SCENARIOS, basic


def test_serve_round_trip_over_http(start_server):
    server = start_server("--scenario", str(SCENARIOS / "gdpr-duplicates.yaml"),
                          "--deletion-delay", "1h")
    auth = basic("gdpr-demo")
    delete = requests.post(f"{server.url}/api/v1/customers/delete",
                           params={"delete_all_matching_customers": "true"},
                           json={"email": "duplicate@example.com"}, headers=auth, timeout=5)
    assert delete.status_code == 200 and delete.headers["X-Fakeshift-Scheduled"] == "50"
    requests.post(f"{server.url}/_fakeshift/clock/advance", json={"by": "1h"}, timeout=5)
    state = requests.get(f"{server.url}/_fakeshift/accounts/gdpr-demo", timeout=5).json()
    assert state["stats"]["purged"] == 50 and state["stats"]["active"] == 73
    took = server.stop(signal.SIGTERM)
    assert server.process.returncode == 0 and took < 1.5
    assert 'POST /api/v1/customers/delete?delete_all_matching_customers=true" 200' in server.output


def test_ctrl_c_stops_within_a_second(start_server):
    server = start_server()
    assert server.stop(signal.SIGINT) < 1.5
    assert server.process.returncode == 0


def test_environment_variables_configure_the_server(start_server):
    server = start_server(env={"FAKESHIFT_API_KEYS": "only-key", "FAKESHIFT_DELETION_DELAY": "0",
                               "FAKESHIFT_ACCESS_LOG": "false"})
    ok = requests.post(f"{server.url}/api/v1/customers", json={"email": "e@example.com"},
                       headers=basic("only-key"), timeout=5)
    refused = requests.post(f"{server.url}/api/v1/customers", json={"email": "e@example.com"},
                            headers=basic("other-key"), timeout=5)
    assert ok.status_code == 200 and refused.status_code == 401
    requests.post(f"{server.url}/api/v1/customers/delete", json={"email": "e@example.com"},
                  headers=basic("only-key"), timeout=5)
    assert requests.get(f"{server.url}/_fakeshift/accounts/only-key",
                        timeout=5).json()["stats"]["purged"] == 1
    server.stop()
    assert "POST /api/v1/customers" not in server.output


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "fakeshift", *args], capture_output=True,
                          text=True, timeout=30, cwd=ROOT, env=env)


def test_a_bad_scenario_fails_at_start_with_a_clear_message(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("accounts: [{key: a, profiles: [{email: 5}]}]")
    result = run_cli("serve", "--port", "0", "--scenario", str(bad))
    assert result.returncode == 2
    assert f"fakeshift: error: {bad}: accounts[0].profiles[0].email" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("flag, value", [("--deletion-delay", "soon"), ("--port", "http"),
                                         ("--group-delete-users-default", "maybe"),
                                         ("--api-key", "k:admin")])
def test_bad_flags_are_refused(flag, value):
    result = run_cli("serve", "--port", "0", flag, value) if flag != "--port" else \
        run_cli("serve", flag, value)
    assert result.returncode == 2 and "error" in result.stderr


def test_help_lists_every_flag_with_its_environment_variable():
    result = run_cli("serve", "--help")
    for variable in ("FAKESHIFT_HOST", "FAKESHIFT_PORT", "FAKESHIFT_SCENARIO",
                     "FAKESHIFT_DELETION_DELAY", "FAKESHIFT_API_KEYS", "FAKESHIFT_ADMIN_TOKEN"):
        assert variable in result.stdout


def test_load_does_not_flood_the_log_with_queue_warnings(start_server):
    from concurrent.futures import ThreadPoolExecutor

    server = start_server("--threads", "1")

    def call(i):
        return requests.post(f"{server.url}/api/v1/customers", json={"email": f"q{i}@example.com"},
                             headers=basic("queue"), timeout=10).status_code

    with ThreadPoolExecutor(32) as pool:
        assert set(pool.map(call, range(200))) == {200}
    server.stop()
    assert server.output.count('"POST /api/v1/customers" 200') == 200
    assert "Task queue depth" not in server.output
