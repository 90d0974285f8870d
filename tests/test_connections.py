"""Connections to a real `fakeshift serve`: the control plane keeps answering while latency faults
hold every worker; slow, silent and stalled clients cannot lock others out; what waitress would
let through or leave unanswered (request smuggling, bare LFs, stalled bodies, `//` paths) gets a
JSON 4xx. Raw sockets throughout, to 127.0.0.1 only."""

from __future__ import annotations

import json
import socket
import time

import pytest
import requests

from conftest import basic
from fakeshift.cli import build_parser, config_from_args

AUTH = basic("conn")["Authorization"].encode()


def _address(server) -> tuple[str, int]:
    host, port = server.url.removeprefix("http://").split(":")
    return host, int(port)


def _connect(server, timeout: float = 5) -> socket.socket:
    return socket.create_connection(_address(server), timeout=timeout)


def _read_all(connection: socket.socket, within: float) -> tuple[bytes, bool]:
    """Everything received within `within` seconds, and whether the server closed meanwhile."""
    deadline = time.monotonic() + within
    received = b""
    while time.monotonic() < deadline:
        connection.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = connection.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            return received, True
        if not chunk:
            return received, True
        received += chunk
    return received, False


def _responses(raw: bytes) -> list[tuple[int, dict, dict]]:
    """Each (status, headers, JSON body) in `raw`, a stream of responses with Content-Length."""
    answers = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {name.lower(): value.strip()
                   for name, _, value in (line.partition(":") for line in lines[1:])}
        length = int(headers["content-length"])
        answers.append((int(lines[0].split()[1]), headers, json.loads(rest[:length])))
        raw = rest[length:]
    return answers


def _exchange(server, data: bytes, within: float = 5) -> tuple[list, bool]:
    with _connect(server) as connection:
        connection.sendall(data)
        raw, closed = _read_all(connection, within)
    return _responses(raw), closed


def _timed_get(url: str, method: str = "GET") -> tuple[int, float]:
    started = time.monotonic()
    response = requests.request(method, url, timeout=5)
    return response.status_code, time.monotonic() - started


# ---- the control plane while latency faults hold every worker --------------------------------

IDENTIFY = (b"POST /api/v1/customers HTTP/1.1\r\nHost: x\r\nAuthorization: " + AUTH
            + b"\r\nContent-Type: application/json\r\nContent-Length: 2\r\n")


@pytest.mark.parametrize("how", ["rule", "header"])
def test_health_readiness_and_the_control_plane_answer_while_latency_holds_every_worker(
        start_server, how):
    server = start_server("--access-log", "false", "--threads", "8")
    extra = b""
    if how == "rule":
        rule = requests.post(f"{server.url}/_fakeshift/faults", json={"latency": "20s"}, timeout=5)
        assert rule.status_code == 200
    else:
        extra = b"X-Fakeshift-Fault: latency=20s\r\n"
    # More held requests than worker threads: some wait in waitress's queue too.
    held = [_connect(server) for _ in range(12)]
    try:
        for connection in held:
            connection.sendall(IDENTIFY + extra + b"\r\n{}")
        if how == "rule":
            deadline = time.monotonic() + 10
            while requests.get(f"{server.url}/_fakeshift/faults",
                               timeout=1).json()["rules"][0]["applied"] < 8:
                assert time.monotonic() < deadline, "the held requests never reached the workers"
                time.sleep(0.05)
        else:
            time.sleep(1)
        for path in ("/_fakeshift/health", "/_fakeshift/ready", "/_fakeshift/accounts"):
            status, took = _timed_get(f"{server.url}{path}")
            assert status == 200 and took < 1, (path, status, took)
        status, took = _timed_get(f"{server.url}/_fakeshift/faults", "DELETE")
        assert status == 200 and took < 1, took
        # Nothing answered the held requests meanwhile: they really held the workers.
        for connection in held:
            connection.setblocking(False)
            with pytest.raises(BlockingIOError):
                connection.recv(1)
    finally:
        for connection in held:
            connection.close()


# ---- slow, silent and stalled clients --------------------------------------------------------

def test_two_hundred_slow_or_silent_connections_do_not_lock_out_a_client(start_server):
    server = start_server("--access-log", "false")
    silent = [_connect(server) for _ in range(100)]
    dripping = [_connect(server) for _ in range(100)]
    try:
        for connection in dripping:
            connection.sendall(b"GET /_fakeshift/health HTTP/1.1\r\nHo")
        took = []
        for round_number in range(5):
            for connection in dripping:
                connection.sendall(b"s")
            status, seconds = _timed_get(f"{server.url}/_fakeshift/health")
            assert status == 200
            took.append(seconds)
            time.sleep(0.3)
        assert max(took) < 2, took
    finally:
        for connection in silent + dripping:
            connection.close()


def test_headers_dripping_past_the_header_timeout_get_a_408_and_the_connection_closes(
        start_server):
    server = start_server("--access-log", "false", "--header-timeout", "1s")
    with _connect(server) as connection:
        connection.sendall(b"GET /_fakeshift/health HTTP/1.1\r\n")
        started = time.monotonic()
        received, closed = b"", False
        # One byte every 0.2 s: never idle, never finished.
        while not closed and time.monotonic() - started < 5:
            try:
                connection.sendall(b"X")
            except (BrokenPipeError, ConnectionResetError):
                break
            chunk, closed = _read_all(connection, 0.2)
            received += chunk
        took = time.monotonic() - started
    (status, headers, body), = _responses(received)
    assert status == 408 and headers["content-type"] == "application/json"
    assert body == {"message": "Request Timeout: the request headers did not arrive within 1s"}
    assert headers["connection"] == "close" and took < 3.5


def test_a_connection_that_sends_nothing_is_closed_after_the_idle_timeout(start_server):
    server = start_server("--access-log", "false", "--idle-timeout", "1s")
    with _connect(server) as connection:
        started = time.monotonic()
        received, closed = _read_all(connection, 5)
    assert closed and received == b"" and time.monotonic() - started < 3.5


def test_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout(start_server):
    server = start_server("--access-log", "false", "--idle-timeout", "1s")
    with _connect(server) as connection:
        connection.sendall(b"GET /_fakeshift/health HTTP/1.1\r\nHost: x\r\n\r\n")
        started = time.monotonic()
        received, closed = _read_all(connection, 5)
    (status, _headers, _body), = _responses(received)
    assert status == 200 and closed and time.monotonic() - started < 3.5


def test_the_connection_flags_and_their_environment_variables(monkeypatch):
    def config(*argv):
        return config_from_args(build_parser().parse_args(["serve", *argv]))

    default = config()
    assert (default.connection_limit, default.idle_timeout, default.header_timeout) == (
        1000, 10, 10)
    given = config("--connection-limit", "7", "--idle-timeout", "3s", "--header-timeout", "1m")
    assert (given.connection_limit, given.idle_timeout, given.header_timeout) == (7, 3, 60)
    monkeypatch.setenv("FAKESHIFT_CONNECTION_LIMIT", "9")
    monkeypatch.setenv("FAKESHIFT_IDLE_TIMEOUT", "4")
    monkeypatch.setenv("FAKESHIFT_HEADER_TIMEOUT", "5s")
    from_env = config()
    assert (from_env.connection_limit, from_env.idle_timeout, from_env.header_timeout) == (9, 4, 5)


@pytest.mark.parametrize("flag, value", [("--connection-limit", "0"), ("--idle-timeout", "0"),
                                         ("--idle-timeout", "1.5s"), ("--header-timeout", "500ms")])
def test_connection_flags_out_of_range_are_refused(flag, value, capsys):
    with pytest.raises(SystemExit) as exit_status:
        build_parser().parse_args(["serve", flag, value])
    assert exit_status.value.code == 2 and f"argument {flag}" in capsys.readouterr().err


# ---- what waitress would let through or leave unanswered ------------------------------------

SMUGGLED = (b"POST /_fakeshift/accounts/smuggled/seed HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")


@pytest.mark.parametrize("framing", [
    b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
])
def test_content_length_with_transfer_encoding_is_refused_and_nothing_is_smuggled(
        start_server, framing):
    server = start_server("--access-log", "false")
    answers, closed = _exchange(server, b"POST /api/v1/customers HTTP/1.1\r\nHost: x\r\n"
                                + b"Authorization: " + AUTH + b"\r\nContent-Type: application/json"
                                + b"\r\n" + framing + b"\r\n0\r\n\r\n" + SMUGGLED)
    (status, headers, body), = answers
    assert status == 400 and headers["connection"] == "close" and closed
    assert "Content-Length and Transfer-Encoding" in body["errors"]["request"][0]
    accounts = requests.get(f"{server.url}/_fakeshift/accounts", timeout=5).json()["accounts"]
    assert accounts == []


@pytest.mark.parametrize("request_bytes", [
    b"GET /_fakeshift/health HTTP/1.1\nHost: x\n\n",
    b"GET /_fakeshift/health HTTP/1.1\r\nHost: x\n\n",
    b"GET /_fakeshift/health HTTP/1.1\r\nHost: x\r\n\n",
    b"GET /_fakeshift/health HTTP/1.1\rHost: x\r\r",
])
def test_bare_line_feeds_and_carriage_returns_get_a_json_400_at_once(start_server, request_bytes):
    server = start_server("--access-log", "false")
    answers, closed = _exchange(server, request_bytes, within=2)
    (status, headers, body), = answers
    assert status == 400 and closed and headers["content-type"] == "application/json"
    assert "Bare CR or LF" in body["errors"]["request"][0]


LATIN_1_BODY = '{"email": "café@example.com"}'.encode("latin-1")


def _forget(body: bytes, content_length: int) -> bytes:
    return (b"POST /api/v1/customers/forget HTTP/1.1\r\nHost: x\r\nAuthorization: " + AUTH
            + b"\r\nContent-Type: application/json; charset=latin-1\r\n"
            + f"Content-Length: {content_length}\r\n\r\n".encode() + body)


def test_a_latin_1_body_gets_a_json_400(start_server):
    server = start_server("--access-log", "false")
    answers, _closed = _exchange(server, _forget(LATIN_1_BODY, len(LATIN_1_BODY)), within=2)
    (status, _headers, body), = answers
    assert status == 400 and "not valid UTF-8" in body["errors"]["body"][0]


def test_a_body_shorter_than_its_content_length_gets_a_json_408(start_server):
    """The latin-1 body again, its Content-Length counted in UTF-8 bytes (one more): waitress
    waits for a byte that never comes."""
    server = start_server("--access-log", "false", "--idle-timeout", "1s")
    started = time.monotonic()
    utf8_length = len(LATIN_1_BODY.decode("latin-1").encode("utf-8"))
    answers, closed = _exchange(server, _forget(LATIN_1_BODY, utf8_length))
    (status, _headers, body), = answers
    assert status == 408 and closed and time.monotonic() - started < 3.5
    assert body == {"message": "Request Timeout: the request is incomplete and nothing more "
                               "arrived for 1s"}


# (waitress itself strips the extra slashes at the start of a path: //api/v1/... is /api/v1/...)
@pytest.mark.parametrize("path", [b"/api/v1//customers/forget", b"/api/v1/customers//forget",
                                  b"/_fakeshift//health"])
def test_doubled_slashes_get_a_json_404_not_a_redirect(start_server, path):
    server = start_server("--access-log", "false")
    answers, _closed = _exchange(server, b"POST " + path + b" HTTP/1.1\r\nHost: x\r\n"
                                 + b"Authorization: " + AUTH
                                 + b"\r\nContent-Type: application/json\r\n"
                                 + b"Content-Length: 2\r\nConnection: close\r\n\r\n{}")
    (status, headers, body), = answers
    assert status == 404 and headers["content-type"] == "application/json"
    assert body == {"status": "404", "error": "Not Found"}
