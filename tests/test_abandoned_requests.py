"""A request whose client hangs up before the answer still runs to completion and changes state,
as a real server's would; the journal entry and the access-log line say the client was gone."""

from __future__ import annotations

import base64
import json
import socket
import time
from urllib.parse import urlparse

import requests

from conftest import basic


def _send_and_hang_up(url: str, key: str, body: dict) -> None:
    address = urlparse(url)
    payload = json.dumps(body).encode()
    credentials = base64.b64encode(f"{key}:".encode()).decode()
    request = (f"POST /api/v1/customers HTTP/1.1\r\nHost: {address.netloc}\r\n"
               f"Authorization: Basic {credentials}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(payload)}\r\n\r\n").encode() + payload
    with socket.create_connection((address.hostname, address.port), timeout=5) as connection:
        connection.sendall(request)
    # Closed here, while a latency fault holds the request: the answer has nowhere to go.


def _journal(server, account: str) -> list[dict]:
    response = requests.get(f"{server.url}/_fakeshift/journal", params={"account": account},
                            timeout=5)
    assert response.status_code == 200
    return response.json()["entries"]


def test_an_abandoned_request_still_changes_state_and_is_marked(start_server):
    server = start_server()
    rule = requests.post(f"{server.url}/_fakeshift/faults", timeout=5,
                         json={"operation": "identify", "latency": "400ms", "account": "gone"})
    assert rule.status_code == 200
    _send_and_hang_up(server.url, "gone", {"email": "gone@example.com"})
    kept = requests.post(f"{server.url}/api/v1/customers", headers=basic("stayed"), timeout=5,
                         json={"email": "stayed@example.com"})
    assert kept.status_code == 200

    deadline = time.monotonic() + 10
    while not (entries := _journal(server, "gone")) and time.monotonic() < deadline:
        time.sleep(0.05)
    (entry,) = entries
    assert entry["status"] == 200 and entry["abandoned"] is True, entry
    assert [e["abandoned"] for e in _journal(server, "stayed")] == [False]
    # It ran: the profile exists, as it would on Blueshift once the request was received.
    state = requests.get(f"{server.url}/_fakeshift/accounts/gone", timeout=5).json()
    assert [p["email"] for p in state["profiles"]] == ["gone@example.com"]

    server.stop()
    lines = [line for line in server.output.splitlines() if '"POST /api/v1/customers"' in line]
    assert len(lines) == 2, lines
    gone_line, = (line for line in lines if "account=gone" in line)
    stayed_line, = (line for line in lines if "account=stayed" in line)
    assert gone_line.endswith(" abandoned=true") and " 200 " in gone_line, gone_line
    assert "abandoned" not in stayed_line
