"""The real `fakeshift serve` process: start on a free port, talk HTTP, stop cleanly."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from importlib.metadata import version

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


def _assert_refused_in_one_line(result, *fragments):
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    # argparse's own errors: its usage line, then the error; the server's: the error alone.
    assert lines[-1].startswith(("fakeshift: error: ", "fakeshift serve: error: ")), lines
    assert len(lines) == 1 or (len(lines) == 2 and lines[0].startswith("usage: fakeshift serve"))
    for fragment in fragments:
        assert fragment in lines[-1], (fragment, lines)


@pytest.mark.parametrize("argv, fragments", [
    (["--port", "70000"], ["argument --port", "70000"]),
    (["--port", "-1"], ["argument --port", "-1"]),
    (["--threads", "0"], ["argument --threads", "0"]),
    (["--port", "0", "--host", "no-such-host.invalid"], ["no-such-host.invalid"]),
    (["--port", "0", "--host", "192.0.2.1"], ["192.0.2.1", "Cannot assign requested address"]),
])
def test_start_up_errors_are_one_line_and_exit_2(argv, fragments):
    result = run_cli("serve", *argv)
    _assert_refused_in_one_line(result, *fragments)
    assert "Traceback" not in result.stderr and "listening" not in result.stdout


def test_an_environment_variable_out_of_range_is_refused_too():
    result = run_cli("serve", env={**os.environ, "FAKESHIFT_PORT": "70000"})
    _assert_refused_in_one_line(result, "argument --port", "70000")


def test_a_port_already_in_use_is_one_line_naming_it():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("serve", "--port", str(port))
    _assert_refused_in_one_line(result, f"port {port}", "already in use")


def test_a_mistyped_serve_flag_prints_the_usage_of_serve():
    result = run_cli("serve", "--port", "0", "--treads", "4")
    _assert_refused_in_one_line(result, "unrecognized arguments: --treads 4")
    assert result.stderr.startswith("usage: fakeshift serve")


def test_version_comes_from_the_package_metadata():
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout == f"fakeshift {version('fakeshift')}\n"


def test_the_banner_has_a_timestamp_the_version_and_the_configuration():
    process = subprocess.Popen([sys.executable, "-m", "fakeshift", "serve", "--port", "0",
                                "--threads", "3", "--access-log", "false"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               cwd=ROOT)
    try:
        banner = process.stdout.readline()
    finally:
        process.terminate()
        process.communicate(timeout=10)
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} fakeshift listening on http://127\.0\.0\.1:\d+ "
        rf"\(version={re.escape(version('fakeshift'))} threads=3\+2 connection_limit=1000 "
        r"idle_timeout=10s header_timeout=10s scenario=- state_file=- save_interval=- "
        r"durability=- "
        r"api_keys=any admin_token=off strict_contract=off access_log=off\)\n", banner), banner
