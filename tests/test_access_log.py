"""The log: one well-formed access-log line per request (naming the account, the fault and the
contract violation), never a line forged by a request, never a request held up by a stream
nobody reads; on by default in `fakeshift serve`, without health and readiness probes."""

from __future__ import annotations

import io
import logging
import re
import socket
import threading
import time

import requests

from waitress.channel import ClientDisconnected

from conftest import basic
from fakeshift import create_app
from fakeshift.server import AccessLog, LogWriter, configure_logging

STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"
LINE = re.compile(rf'^{STAMP} fakeshift\.access '
                  r'(?P<addr>\S+) "(?P<method>[A-Z]+) (?P<target>\S+)" (?P<status>\d{3}|dropped) '
                  r'\d+\.\dms(?P<fields>( [a-z]+=\S+)*)$')


def _write(access_log: AccessLog, method: str, path: str, query: str = "", status: int = 200,
           **fields) -> None:
    environ = {"REMOTE_ADDR": "10.0.0.7", "REQUEST_METHOD": method, "PATH_INFO": path,
               "QUERY_STRING": query}
    access_log.write(environ, status, 1.2, **fields)


def _logged_app(writer: LogWriter, log_probes: bool = False, **config):
    """A test client of an app whose request pipeline writes its access log to `writer`."""
    app = create_app(config)
    app.wsgi_app.access_log = AccessLog(writer, log_probes)
    return app.test_client()


def _lines(writer: LogWriter) -> list[str]:
    writer.close()
    return writer.stream.getvalue().splitlines()


def test_one_line_per_request_with_status_and_query():
    writer = LogWriter(io.StringIO())
    client = _logged_app(writer)
    client.environ_base["REMOTE_ADDR"] = "10.0.0.7"
    assert client.post("/api/v1/customers/delete/404?a=1&b=2").status_code == 404
    assert client.get("/_fakeshift/accounts").status_code == 200
    lines = _lines(writer)
    assert len(lines) == 2
    first, second = (LINE.match(line) for line in lines)
    assert first and second, lines
    assert first.group("addr", "method", "target", "status") == (
        "10.0.0.7", "POST", "/api/v1/customers/delete/404?a=1&b=2", "404")
    assert second.group("target", "status") == ("/_fakeshift/accounts", "200")


def test_a_request_that_never_answered_is_logged_as_dropped():
    writer = LogWriter(io.StringIO())
    client = _logged_app(writer)
    try:
        client.post("/api/v1/customers/forget", json={"email": "a@example.com"},
                    headers={**basic("acme"), "X-Fakeshift-Fault": "drop"})
    except ClientDisconnected:
        pass
    else:
        raise AssertionError("the fault did not drop the connection")
    (line,) = _lines(writer)
    match = LINE.match(line)
    assert match and match.group("status") == "dropped"
    assert match.group("fields") == " account=acme fault=header"


class _YieldingStream(io.StringIO):
    """Writes each text in two halves and lets other threads run in between, as a real stream
    may when a write blocks on a full pipe (only the writer's thread writes: nothing to mix)."""

    def write(self, text: str) -> int:
        half = len(text) // 2
        super().write(text[:half])
        time.sleep(0)
        return super().write(text[half:])


def test_threads_writing_at_once_never_interleave_lines():
    writer = LogWriter(_YieldingStream(), flush_interval=0.01)
    logged = AccessLog(writer)
    per_thread, thread_count = 300, 8
    start = threading.Barrier(thread_count)

    def hammer(number: int):
        start.wait()
        for i in range(per_thread):
            _write(logged, "PUT", f"/t{number}/r{i}")

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(thread_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    lines = _lines(writer)
    assert len(lines) == per_thread * thread_count
    targets = set()
    for line in lines:
        match = LINE.match(line)
        assert match, line
        targets.add(match.group("target"))
    assert len(targets) == per_thread * thread_count


class _FlushRecorder(io.StringIO):
    def __init__(self):
        super().__init__()
        self.flushed_text: list[str] = []

    def flush(self) -> None:
        self.flushed_text.append(self.getvalue())


def test_lines_are_flushed_soon_without_further_traffic():
    stream = _FlushRecorder()
    logged = AccessLog(LogWriter(stream, flush_interval=0.05))
    _write(logged, "POST", "/api/v1/customers/forget/200")
    deadline = time.monotonic() + 5
    while not stream.flushed_text and time.monotonic() < deadline:
        time.sleep(0.01)
    assert stream.flushed_text and "/api/v1/customers/forget/200" in stream.flushed_text[0]
    # Nothing new, nothing flushed again.
    flushes = len(stream.flushed_text)
    time.sleep(0.3)
    assert len(stream.flushed_text) == flushes


def test_serve_writes_the_access_log_by_default(start_server):
    server = start_server()
    answer = requests.post(f"{server.url}/api/v1/customers/unforget",
                           json={"email": "someone@example.com"}, auth=("log-key", ""), timeout=5)
    assert answer.status_code == 200
    server.stop()
    lines = [LINE.match(line) for line in server.output.splitlines()]
    logged = [m.group("method", "target", "status") for m in lines if m]
    assert ("POST", "/api/v1/customers/unforget", "200") in logged


def test_a_line_names_the_account_the_fault_and_the_violation():
    writer = LogWriter(io.StringIO())
    logged = AccessLog(writer)
    _write(logged, "POST", "/api/v1/customers", status=400, account="acme", fault="flaky",
           violation="required, json")
    _write(logged, "GET", "/api/v1/customers", account=None)
    first, second = (LINE.match(line) for line in _lines(writer))
    assert first.group("fields") == " account=acme fault=flaky violation=required,json"
    assert second.group("fields") == ""


def test_a_real_server_names_the_account_the_fault_and_the_violation(start_server):
    server = start_server()
    answer = requests.post(f"{server.url}/api/v1/customers/forget", timeout=5,
                           json={"email": "a@example.com", "unknown": 1},
                           headers={**basic("acme"), "X-Fakeshift-Fault": "status=503"})
    assert answer.status_code == 503
    server.stop()
    fields = [m.group("fields") for m in map(LINE.match, server.output.splitlines())
              if m and m.group("target") == "/api/v1/customers/forget"]
    assert fields == [" account=acme fault=header violation=additionalProperties"]


def test_health_and_readiness_probes_are_logged_only_when_asked():
    quiet, verbose = LogWriter(io.StringIO()), LogWriter(io.StringIO())
    for writer, log_probes in ((quiet, False), (verbose, True)):
        client = _logged_app(writer, log_probes)
        for path in ("/_fakeshift/health", "/_fakeshift/ready", "/_fakeshift/accounts"):
            assert client.get(path).status_code == 200
    assert [LINE.match(line).group("target") for line in _lines(quiet)] == ["/_fakeshift/accounts"]
    assert len(_lines(verbose)) == 3


def test_serve_leaves_probes_out_of_the_access_log(start_server):
    server = start_server()  # wait_ready polls /_fakeshift/ready
    requests.get(f"{server.url}/_fakeshift/health", timeout=5)
    requests.get(f"{server.url}/_fakeshift/accounts", timeout=5)
    server.stop()
    assert '"GET /_fakeshift/accounts" 200' in server.output
    assert "/_fakeshift/ready" not in server.output and "/_fakeshift/health" not in server.output


FORGED = "2031-01-01 00:00:00,000 fakeshift.access 10.0.0.1 \"POST /api/v1/customers\" 200 1.0ms"


def test_control_characters_and_quotes_in_a_path_are_escaped():
    writer = LogWriter(io.StringIO())
    logged = AccessLog(writer)
    _write(logged, "GET", f"/api/v1/x\n{FORGED}/404", "q=\x1b[31mred")
    _write(logged, "GET", '/api/v1/a" 200 1.0ms\\x0a/404')
    _write(logged, "GET", "/api/v1/\u2028\x85\r/404")
    first, second, third = _lines(writer)
    assert LINE.match(first).group("target") == (
        "/api/v1/x\\x0a" + FORGED.replace(" ", "\\x20").replace('"', "\\x22")
        + "/404?q=\\x1b[31mred")
    assert LINE.match(second).group("target") == "/api/v1/a\\x22\\x20200\\x201.0ms\\x5cx0a/404"
    assert LINE.match(third).group("target") == "/api/v1/\\u2028\\x85\\x0d/404"


def test_a_percent_encoded_line_break_cannot_forge_a_log_line(start_server):
    server = start_server()
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as connection:
        connection.sendall(b"GET /api/v1/x%0A" + FORGED.replace(" ", "%20").encode()
                           + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert connection.recv(65536).startswith(b"HTTP/1.1 404")
    server.stop()
    lines = server.output.splitlines()
    assert not any(line.startswith("2031-") for line in lines), lines
    (logged,) = [line for line in lines if "/api/v1/x" in line]
    assert LINE.match(logged) and "/api/v1/x\\x0a2031-01-01\\x2000:00:00" in logged


def test_other_log_lines_escape_control_characters_and_indent_continuations():
    root = logging.getLogger()
    saved = root.handlers[:], root.level, logging.getLogger("waitress.queue").level
    stream = io.StringIO()
    try:
        writer = configure_logging(stream)
        try:
            raise ValueError(f"bad\n{FORGED}")
        except ValueError:
            logging.getLogger("fakeshift").exception("serving %s", f"/x\r\n{FORGED}\x1b")
        writer.close()
    finally:
        root.handlers[:], level, queue_level = saved
        root.setLevel(level)
        logging.getLogger("waitress.queue").setLevel(queue_level)
    first, *rest = stream.getvalue().splitlines()
    assert re.match(rf"{STAMP} fakeshift serving /x\\x0d$", first), first
    assert rest[0] == f"    {FORGED}\\x1b"
    assert rest[1] == "    Traceback (most recent call last):"
    assert all(line.startswith("    ") for line in rest)


class _StuckStream(io.StringIO):
    """stdout as an undrained pipe: a write blocks until the test lets it through."""

    def __init__(self):
        super().__init__()
        self.unblocked = threading.Event()

    def write(self, text: str) -> int:
        self.unblocked.wait(30)
        return super().write(text)


def test_a_stream_nobody_reads_never_blocks_a_request_and_drops_are_counted():
    stream = _StuckStream()
    writer = LogWriter(stream, capacity=100, flush_interval=0.01)
    logged = AccessLog(writer)
    started = time.monotonic()
    for i in range(1000):
        _write(logged, "POST", f"/api/v1/customers/{i}")
    assert time.monotonic() - started < 2  # about 10 ms; blocked, this would be 30 s
    # One batch went to the stuck write; at most `capacity` lines wait; the rest are dropped.
    assert 1000 - 2 * 100 <= writer.dropped <= 1000 - 100, writer.dropped
    stream.unblocked.set()
    writer.close()
    lines = stream.getvalue().splitlines()
    assert f"{writer.dropped} log lines dropped ({writer.dropped} in all)" in lines[-1]
    assert len(lines) == 1000 - writer.dropped + 1


def test_serve_keeps_answering_when_nobody_reads_its_output(start_server):
    """The test harness reads the server's first line only, until it stops: the pipe fills after
    some 600 access-log lines."""
    server = start_server()
    with requests.Session() as session:
        for i in range(1500):
            answer = session.post(f"{server.url}/api/v1/customers", headers=basic("pipe"),
                                  json={"email": f"p{i}@example.com"}, timeout=5)
            assert answer.status_code == 200, i
        assert session.get(f"{server.url}/_fakeshift/health", timeout=1).status_code == 200
    # Read at last: every line was kept meanwhile (far fewer than the writer holds).
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.append(server.process.stdout.read()))
    reader.start()
    server.process.terminate()
    server.process.wait(10)
    reader.join(10)
    assert output[0].count('"POST /api/v1/customers" 200') == 1500
