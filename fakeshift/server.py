"""Serving the app with waitress: access log, readiness, clean stop on Ctrl-C and SIGTERM."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time

import waitress
from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.task import ErrorTask

from . import persistence
from .scenario import Scenario, ScenarioError

log = logging.getLogger("fakeshift")
# From SIGTERM to exit: requests in flight get this long to finish; then the process stops.
STOP_BUDGET_SECONDS = 0.8
STOP_POLL_SECONDS = 0.1
# waitress itself refuses headers this many times past --max-header-bytes (JsonErrorTask);
# between the two the app does, naming the configured limit.
WAITRESS_HEADER_FACTOR = 4
ACCESS_LOGGER_NAME = "fakeshift.access"
# Access-log lines reach the stream at most this long after their request.
ACCESS_LOG_FLUSH_SECONDS = 0.25


class JsonErrorTask(ErrorTask):
    """waitress answers malformed HTTP itself (a bad start line, header or Content-Length,
    headers or a body past its own limits) before the app sees it, in text/plain. Answer in
    Blueshift's JSON shapes instead, so a client's error handling meets one format."""

    def execute(self):
        error = self.request.error
        detail = str(error.body).strip() or error.reason
        code, reason = error.code, error.reason
        if code == 501:
            # An unsupported Transfer-Encoding is the client's doing; fakeshift promises a 4xx
            # for any bad input, and a 5xx nobody injected reads as a server bug.
            code, reason = 400, "Bad Request"
        body = ({"errors": {"request": [detail]}} if code == 400
                else {"message": f"{reason}: {detail}"})
        encoded = json.dumps(body).encode("utf-8")
        self.status = f"{code} {reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(encoded)
        self.write(encoded)


class JsonErrorChannel(HTTPChannel):
    error_task_class = JsonErrorTask


class AccessLog:
    """One line per request, written after the response has been produced, in the format of the
    other log lines ("<asctime> fakeshift.access <message>").

    Written straight to the stream rather than through `logging` (a LogRecord built, formatted
    and flushed per request cost ~20 us of CPU, as much as the request's own domain work), and
    flushed by a thread of its own every `flush_interval` seconds rather than once a line: each
    flush is a system call that hands the GIL to another thread, and under load that cost ~10%
    of the throughput (bench/results.md, "--access-log false"). Whoever exits the process
    flushes the stream (cli.py does)."""

    def __init__(self, app, stream=None, flush_interval: float = ACCESS_LOG_FLUSH_SECONDS):
        self.app = app
        self.stream = stream if stream is not None else sys.stdout
        # Text streams are not safe to write from several threads at once.
        self._lock = threading.Lock()
        self._stamp_second = -1
        self._stamp = ""
        self._unflushed = False
        self._flush_interval = flush_interval
        threading.Thread(target=self._flush_now_and_then, name="fakeshift-access-log",
                         daemon=True).start()

    def __call__(self, environ, start_response):
        started = time.perf_counter()
        seen = {}

        def recording_start_response(status, headers, exc_info=None):
            seen["status"] = status.split(" ", 1)[0]
            return start_response(status, headers, exc_info)

        try:
            return self.app(environ, recording_start_response)
        finally:
            query = environ.get("QUERY_STRING")
            self._write(
                f'{environ.get("REMOTE_ADDR", "-")} "{environ.get("REQUEST_METHOD")} '
                f'{environ.get("PATH_INFO")}{"?" + query if query else ""}" '
                f'{seen.get("status", "dropped")} {(time.perf_counter() - started) * 1000:.1f}ms'
            )

    def _write(self, message: str) -> None:
        now = time.time()
        second = int(now)
        with self._lock:
            # logging's asctime, rebuilt once a second instead of once a line.
            if second != self._stamp_second:
                self._stamp_second = second
                self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
            self.stream.write(f"{self._stamp},{int((now - second) * 1000):03d} "
                              f"{ACCESS_LOGGER_NAME} {message}\n")
            self._unflushed = True

    def _flush_now_and_then(self) -> None:
        while True:
            time.sleep(self._flush_interval)
            if self._unflushed:
                with self._lock:
                    self._unflushed = False
                    self.stream.flush()


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        stream=sys.stdout)
    # Under load waitress warns "Task queue depth is N" once per queued request: noise, not news.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)


def serve(app, host: str, port: int, threads: int, scenario: Scenario | None,
          access: bool = True, *, state: dict | None = None) -> int:
    """Listen first (health answers at once), load the scenario (then the saved `state`, if
    any), then report ready. With a state file configured, save it periodically and on stop.

    Returns the process exit status: 0 after Ctrl-C or SIGTERM, 2 if loading failed."""
    emulator = app.extensions["fakeshift"]
    config = emulator.config
    wsgi = AccessLog(app) if access else app
    server = waitress.create_server(
        wsgi, host=host, port=port, threads=threads, ident="fakeshift", channel_timeout=30,
        # The app enforces the configured limits, naming them; waitress's own limits sit above
        # them, so only grossly oversized requests meet its (JsonErrorTask) refusal.
        max_request_header_size=config.max_header_bytes * WAITRESS_HEADER_FACTOR,
        max_request_body_size=max(config.max_body_bytes, config.admin_max_body_bytes) + (1 << 20),
    )
    server.channel_class = JsonErrorChannel
    print(f"fakeshift listening on http://{host}:{server.effective_port}", flush=True)
    failure: list[str] = []
    stopping = threading.Event()
    saver = (persistence.PeriodicSaver(emulator, config.state_file, config.save_interval)
             if config.state_file else None)

    def load():
        try:
            started = time.perf_counter()
            emulator.load(scenario)
            if state is not None:
                persistence.restore(emulator, state, config.state_file)
            emulator.ready.set()
            took = time.perf_counter() - started
            where = scenario.source if scenario else "no scenario"
            restored = f", state restored from {config.state_file}" if state is not None else ""
            log.info("ready (%s loaded in %.2fs%s)", where, took, restored)
        except (ScenarioError, persistence.StateFileError) as exc:
            failure.append(str(exc))
            stopping.set()

    def stop(_signum, _frame):
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    threading.Thread(target=load, name="fakeshift-load", daemon=True).start()
    if saver is not None:
        saver.start()
    # waitress's own run() only stops on an exception raised inside its poll loop, which can
    # cut a request's bookkeeping in half; polling a flag between short rounds stops cleanly.
    while not stopping.is_set():
        server.asyncore.loop(timeout=STOP_POLL_SECONDS, map=server._map, count=1)
    _drain(server, STOP_BUDGET_SECONDS)
    if saver is not None and not failure:
        saver.stop()
    if failure:
        print(f"fakeshift: error: {failure[0]}", file=sys.stderr, flush=True)
        return 2
    log.info("stopped")
    return 0


def _drain(server, budget: float) -> None:
    """Refuse new connections at once, let requests already received finish and their answers
    reach the client, then close everything; all within `budget` seconds."""
    deadline = time.monotonic() + budget
    # Close only the listening socket: the trigger must stay, workers use it to wake the loop.
    wasyncore.dispatcher.close(server)
    while time.monotonic() < deadline:
        busy = [channel for channel in list(server.active_channels.values())
                if channel.requests or channel.total_outbufs_len]
        if not busy:
            break
        server.asyncore.loop(timeout=STOP_POLL_SECONDS / 2, map=server._map, count=1)
    wasyncore.close_all(server._map)
    server.task_dispatcher.shutdown(cancel_pending=True,
                                    timeout=max(0.05, deadline - time.monotonic()))
