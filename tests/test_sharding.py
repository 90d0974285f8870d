"""Sharding by API key (docs/shared-instance.md): two fakeshift processes behind Debian's nginx
with `hash $http_authorization consistent`. Each key's account lives on exactly one backend, and
every call with that key, control-plane calls sent with it included, lands there."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time

import pytest
import requests

from conftest import basic

ADMIN_TOKEN = "shard-admin-token"
KEYS = [f"ci-job-{number}" for number in range(16)]
NGINX_CONF = """
daemon off;
master_process off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    upstream fakeshift {{
        hash $http_authorization consistent;
        server 127.0.0.1:{first};
        server 127.0.0.1:{second};
        keepalive 8;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://fakeshift;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


def _nginx() -> str:
    """Debian's nginx, installed with apt-get when missing (in CI, or as root); in CI a missing
    nginx fails the test rather than skipping it."""
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    found = shutil.which("nginx", path=search)
    in_ci = os.environ.get("FAKESHIFT_CI") == "1"
    if found is None and (in_ci or os.geteuid() == 0):
        install = ["apt-get", "install", "-y", "-qq", "nginx"]
        if subprocess.run(install, capture_output=True, timeout=300).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=300)
            subprocess.run(install, capture_output=True, timeout=300)
        found = shutil.which("nginx", path=search)
    if found is None:
        if in_ci:
            pytest.fail("nginx is missing (apt-get install nginx)")
        pytest.skip("nginx is not installed (apt-get install nginx)")
    return found


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def nginx_in_front(start_server, tmp_path):
    """Two fakeshift servers and an nginx sharding them by Authorization header; yields
    (nginx's URL, the two servers)."""
    nginx = _nginx()
    backends = [start_server("--access-log", "false", "--admin-token", ADMIN_TOKEN)
                for _ in range(2)]
    port = _free_port()
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    (prefix / "nginx.conf").write_text(NGINX_CONF.format(
        prefix=prefix, port=port, first=backends[0].url.rsplit(":", 1)[1],
        second=backends[1].url.rsplit(":", 1)[1]))
    process = subprocess.Popen([nginx, "-p", str(prefix), "-c", str(prefix / "nginx.conf"),
                                "-e", str(prefix / "error.log")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            if process.poll() is not None:
                pytest.fail(f"nginx stopped: {process.stderr.read().decode()[-500:]}"
                            f"{(prefix / 'error.log').read_text()[-500:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("nginx did not listen within 10 s")
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}", backends
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _accounts(server) -> set[str]:
    response = requests.get(f"{server.url}/_fakeshift/accounts", timeout=10,
                            headers={"X-Fakeshift-Admin-Token": ADMIN_TOKEN})
    assert response.status_code == 200, response.text
    return {account["account"] for account in response.json()["accounts"]}


def test_each_key_lives_on_exactly_one_backend_and_always_lands_there(nginx_in_front):
    url, backends = nginx_in_front
    with requests.Session() as session:
        for key in KEYS:
            for email in ("first@example.com", "second@example.com"):
                answer = session.post(f"{url}/api/v1/customers", headers=basic(key), timeout=10,
                                      json={"email": email})
                assert answer.status_code == 200, answer.text
            # A control-plane call for the key's own account goes with the key's Basic header
            # (nginx hashes it) and the admin token in its own header.
            seeded = session.post(f"{url}/_fakeshift/accounts/{key}/seed", timeout=10,
                                  headers={**basic(key), "X-Fakeshift-Admin-Token": ADMIN_TOKEN},
                                  json={"profiles": [{"email": "seeded@example.com"}]})
            assert seeded.status_code == 200, seeded.text

        held = [_accounts(backend) for backend in backends]
        assert held[0] | held[1] == set(KEYS)
        assert not held[0] & held[1], held[0] & held[1]
        assert held[0] and held[1], "every key hashed to one backend"
        for key in KEYS:
            home = backends[0] if key in held[0] else backends[1]
            state = requests.get(f"{home.url}/_fakeshift/accounts/{key}", timeout=10,
                                 headers={"X-Fakeshift-Admin-Token": ADMIN_TOKEN}).json()
            # All three writes reached the same process ...
            assert sorted(p["email"] for p in state["profiles"]) == [
                "first@example.com", "second@example.com", "seeded@example.com"], key
            # ... and a read through nginx is answered by it too.
            found = session.get(f"{url}/api/v1/customers", headers=basic(key), timeout=10,
                                params={"email": "seeded@example.com"})
            assert [user["uuid"] for user in found.json()["users"]] == [
                p["uuid"] for p in state["profiles"] if p["email"] == "seeded@example.com"]
