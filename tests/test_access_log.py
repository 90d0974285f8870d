"""The access log: one well-formed line per request, also when waitress's threads write at once,
and on by default in `fakeshift serve`."""

from __future__ import annotations

import io
import re
import threading
import time

import requests

from fakeshift.server import AccessLog

LINE = re.compile(r'^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} fakeshift\.access '
                  r'(?P<addr>\S+) "(?P<method>[A-Z]+) (?P<target>\S+)" (?P<status>\d{3}|dropped) '
                  r'\d+\.\dms$')


def _app(environ, start_response):
    start_response(environ["PATH_INFO"].rsplit("/", 1)[-1] + " Whatever", [])
    return [b"{}"]


def _call(app, method: str, path: str, query: str = "") -> bytes:
    environ = {"REMOTE_ADDR": "10.0.0.7", "REQUEST_METHOD": method, "PATH_INFO": path,
               "QUERY_STRING": query}
    return b"".join(app(environ, lambda status, headers, exc_info=None: None))


def test_one_line_per_request_with_status_and_query():
    stream = io.StringIO()
    logged = AccessLog(_app, stream)
    assert _call(logged, "POST", "/api/v1/customers/delete/404", "a=1&b=2") == b"{}"
    _call(logged, "GET", "/_fakeshift/ready/200")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (LINE.match(line) for line in lines)
    assert first and second, lines
    assert first.group("addr", "method", "target", "status") == (
        "10.0.0.7", "POST", "/api/v1/customers/delete/404?a=1&b=2", "404")
    assert second.group("target", "status") == ("/_fakeshift/ready/200", "200")


def test_a_request_that_never_answered_is_logged_as_dropped():
    def dropping(environ, start_response):
        raise ConnectionResetError("client went away")

    stream = io.StringIO()
    try:
        _call(AccessLog(dropping, stream), "POST", "/api/v1/customers/forget")
    except ConnectionResetError:
        pass
    match = LINE.match(stream.getvalue().strip())
    assert match and match.group("status") == "dropped"


class _YieldingStream(io.StringIO):
    """Writes each text in two halves and lets other threads run in between, as a real stream
    may when a write blocks on a full pipe."""

    def write(self, text: str) -> int:
        half = len(text) // 2
        super().write(text[:half])
        time.sleep(0)
        return super().write(text[half:])


def test_threads_writing_at_once_never_interleave_lines():
    stream = _YieldingStream()
    logged = AccessLog(_app, stream)
    per_thread, thread_count = 300, 8
    start = threading.Barrier(thread_count)

    def hammer(number: int):
        start.wait()
        for i in range(per_thread):
            _call(logged, "PUT", f"/t{number}/r{i}/200")

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(thread_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    lines = stream.getvalue().splitlines()
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
    logged = AccessLog(_app, stream, flush_interval=0.05)
    _call(logged, "POST", "/api/v1/customers/forget/200")
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
