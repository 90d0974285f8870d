"""Shared fixtures: a fresh in-process app per test, a Blueshift-speaking test client, and a real
`fakeshift serve` process for tests that need HTTP over a socket."""

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from fakeshift import create_app
from fakeshift.auth import ApiKey
from fakeshift.journal import CONTENT_HEADERS
from fakeshift.pipeline import Call

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "scenarios"


def basic(key: str, colon: bool = True) -> dict:
    """The Authorization header Blueshift documents (`key:` in base64), or the colon-less form."""
    raw = f"{key}:" if colon else key
    return {"Authorization": "Basic " + base64.b64encode(raw.encode()).decode()}


class Blueshift:
    """A Flask test client that sends one API key on every call."""

    def __init__(self, client, key: str = "test-key"):
        self.client = client
        self.key = key

    def call(self, method: str, path: str, **kwargs):
        headers = {**basic(self.key), **kwargs.pop("headers", {})}
        return self.client.open(path, method=method, headers=headers, **kwargs)

    def post(self, path, **kwargs):
        return self.call("POST", path, **kwargs)

    def put(self, path, **kwargs):
        return self.call("PUT", path, **kwargs)

    def get(self, path, **kwargs):
        return self.call("GET", path, **kwargs)

    def patch(self, path, **kwargs):
        return self.call("PATCH", path, **kwargs)

    def delete(self, path, **kwargs):
        return self.call("DELETE", path, **kwargs)

    def state(self) -> dict:
        response = self.client.get(f"/_fakeshift/accounts/{self.key}")
        assert response.status_code == 200, response.json
        return response.json

    def seed(self, **fragment) -> dict:
        response = self.client.post(f"/_fakeshift/accounts/{self.key}/seed", json=fragment)
        assert response.status_code == 200, response.json
        return response.json


@pytest.fixture
def app():
    return create_app({})


@pytest.fixture
def emulator(app):
    return app.extensions["fakeshift"]


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def api(client):
    return Blueshift(client)


class ServerProcess:
    """A real `fakeshift serve` on a free loopback port, stopped when the test is done."""

    def __init__(self, *args: str, env: dict | None = None):
        command = [sys.executable, "-m", "fakeshift", "serve", "--host", "127.0.0.1",
                   "--port", "0", *args]
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, **(env or {})}, cwd=ROOT,
        )
        first_line = self.process.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)", first_line)
        if not match:
            self.process.kill()
            raise RuntimeError(f"fakeshift serve did not start: {first_line!r}")
        self.url = f"http://127.0.0.1:{match.group(1)}"

    def wait_ready(self, timeout: float = 30.0) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            try:
                if requests.get(f"{self.url}/_fakeshift/ready", timeout=1).status_code == 200:
                    return time.monotonic() - started
            except requests.ConnectionError:
                pass
            time.sleep(0.02)
        raise TimeoutError("fakeshift serve never became ready")

    def stop(self, sig=signal.SIGTERM, timeout: float = 5.0) -> float:
        """Send `sig`; return how long the process took to exit."""
        started = time.monotonic()
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        took = time.monotonic() - started
        self.output = self.process.stdout.read()
        return took


@pytest.fixture
def start_server():
    """Start any number of real servers in a test: `start_server("--scenario", path)`."""
    servers: list[ServerProcess] = []

    def start(*args: str, env: dict | None = None, ready: bool = True) -> ServerProcess:
        server = ServerProcess(*args, env=env)
        servers.append(server)
        if ready:
            server.wait_ready()
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def live_server():
    """One shared real server for the session (tests use their own API keys, so they're isolated)."""
    server = ServerProcess("--access-log", "false")
    server.wait_ready()
    yield server
    server.stop()


def recording_microseconds(app, environ: dict, body: bytes | None = None,
                           response_body: bytes | None = None, response_headers=(),
                           rounds: int = 20_000) -> float:
    """What the request pipeline's record step (the journal's entry, and the access-log line
    when there is a log) costs per request for `environ` and that answer: the best of three
    runs of `rounds` records, in microseconds per record."""
    pipeline = app.wsgi_app
    call = Call()
    call.api_key = ApiKey("acct", "write", "acct")
    headers = [(name, value) for name, value in environ.items()
               if name.startswith("HTTP_") or name in CONTENT_HEADERS]

    def one_run() -> float:
        started = time.perf_counter()
        for _ in range(rounds):
            pipeline.record(environ, call, True, time.perf_counter(), 200, headers,
                            "blueshift.delete_customer", body, response_headers, response_body)
        return (time.perf_counter() - started) / rounds * 1e6
    return min(one_run() for _ in range(3))
