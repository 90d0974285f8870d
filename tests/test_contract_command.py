"""`fakeshift contract` passes against a real `fakeshift serve`, fails with a report that names
the problem against a server that breaks the contract, and refuses to touch a remote server
unless told to."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading

import pytest
from werkzeug.serving import make_server

from fakeshift import create_app
from fakeshift.cli import main
from fakeshift.contract import load_document
from fakeshift.contract_check import UsageError, run_contract

from conftest import ROOT

EXAMPLES = "3"


def contract(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fakeshift", "contract", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=240)


def test_passes_against_fakeshift(live_server):
    run = contract("--base-url", live_server.url, "--api-key", "contract-pass",
                   "--examples", EXAMPLES, "--seed", "7")
    assert run.returncode == 0, run.stdout + run.stderr
    operations = sum(1 for item in load_document("blueshift")["paths"].values()
                     for method in item if method in ("get", "post", "put", "patch", "delete"))
    assert f"schema checks: {operations} operations" in run.stdout
    assert "semantic checks: 6 passed, 0 failed" in run.stdout
    assert run.stdout.rstrip().endswith("PASSED")


def breaks_delete(app):
    """fakeshift, except that the delete endpoint answers success with 201 and a body of its own,
    and "not found" with a body of the wrong shape."""

    def wrapped(environ, start_response):
        if environ["PATH_INFO"] != "/api/v1/customers/delete":
            return app(environ, start_response)
        captured = {}

        def capture(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers
            return lambda data: None

        body = b"".join(app(environ, capture))
        status = captured["status"]
        if status.startswith("200"):
            status, body = "201 CREATED", json.dumps({"deleted": True}).encode()
        elif status.startswith("404"):
            body = json.dumps({"error": "no such customer"}).encode()
        start_response(status, [("Content-Type", "application/json"),
                                ("Content-Length", str(len(body)))])
        return [body]

    return wrapped


@pytest.fixture
def nonconforming_server():
    server = make_server("127.0.0.1", 0, breaks_delete(create_app({})), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)


def test_fails_with_a_report_against_a_nonconforming_server(nonconforming_server, capsys):
    status = main(["contract", "--base-url", nonconforming_server, "--api-key", "k",
                   "--examples", EXAMPLES, "--seed", "7"])
    report = capsys.readouterr().out
    assert status == 1, report
    failures = report.split("\n\nFAIL ")[1:]
    schema = [f for f in failures if f.startswith("[schema]")]
    assert schema and all("POST /api/v1/customers/delete" in f for f in schema), report
    assert any('received: 404 {"error": "no such customer"}' in f for f in schema), report
    # The semantic story names the call, what went out, what came back and what was expected.
    semantic = report[report.index("FAIL [semantic] delete twice"):]
    assert "sent:     POST /api/v1/customers/delete {\"email\": \"fakeshift-contract-" in semantic
    assert "expected: HTTP 200" in semantic
    assert report.rstrip().splitlines()[-1].startswith("FAILED")


def test_refuses_a_remote_server_without_yes_destructive(capsys):
    status = main(["contract", "--base-url", "https://api.example.invalid", "--api-key", "k"])
    assert status == 2
    assert "--yes-destructive" in capsys.readouterr().err


def test_names_the_missing_extra(monkeypatch, live_server):
    # None in sys.modules makes `import schemathesis` fail as if it were not installed.
    monkeypatch.setitem(sys.modules, "schemathesis", None)
    with pytest.raises(UsageError, match=r"pip install 'fakeshift\[contract\]'"):
        run_contract(live_server.url, "k")


def test_a_server_that_is_down_is_one_line_and_exit_status_2(capsys):
    with socket.socket() as probe:  # a port nothing listens on once the socket is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    status = main(["contract", "--base-url", f"http://127.0.0.1:{port}", "--api-key", "k"])
    out, err = capsys.readouterr()
    assert status == 2 and out == ""
    assert err == f"fakeshift contract: error: cannot reach http://127.0.0.1:{port}: " \
                  "Connection refused\n"
