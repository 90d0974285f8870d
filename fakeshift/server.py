"""Serving the app with waitress: connection handling, logs, readiness, clean stop on Ctrl-C and
SIGTERM."""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import json
import logging
import re
import resource
import signal
import socket
import sys
import threading
import time
from collections import deque
from urllib.parse import unquote_plus

from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser, ParsingError
from waitress.server import TcpWSGIServer
from waitress.task import ErrorTask, ThreadedTaskDispatcher, WSGITask
from waitress.utilities import BadRequest, Error, find_double_newline

from . import __version__, appendlog, persistence
from .dashboard import TOKEN_PARAMETER
from .journal import CLIENT_GONE_KEY, PROBE_PATHS
from .scenario import Scenario, ScenarioError

log = logging.getLogger("fakeshift")
# From SIGTERM to exit: requests in flight get this long to finish; then the process stops.
STOP_BUDGET_SECONDS = 0.8
STOP_POLL_SECONDS = 0.1
# waitress itself refuses headers this many times past --max-header-bytes (JsonErrorTask);
# between the two the app does, naming the configured limit.
WAITRESS_HEADER_FACTOR = 4
# Worker threads, on top of --threads, that serve only the control plane (/_fakeshift/...), so
# health, readiness and the control plane answer however long Blueshift requests are held.
CONTROL_PLANE_THREADS = 2
CONTROL_PLANE_PREFIX = "/_fakeshift/"
# How often idle and stalled connections are looked for (waitress's cleanup_interval, seconds).
CLEANUP_INTERVAL_SECONDS = 1
# File descriptors the process needs besides its connections: the listener, waitress's trigger,
# standard streams, the state file, its lock and temporary file, imported resources.
SPARE_FILE_DESCRIPTORS = 64
ACCESS_LOGGER_NAME = "fakeshift.access"
# Log lines reach the stream at most this long after they were written.
LOG_FLUSH_SECONDS = 0.25
# Lines held while the stream is not being read; past this, lines are dropped and counted.
LOG_BUFFER_LINES = 10_000
# At exit, how long the last lines may take to reach a stream nobody reads before they are lost.
LOG_CLOSE_SECONDS = 1.0


# ---- log lines ---------------------------------------------------------------------------------

def _escaped(character: str) -> str:
    code = ord(character)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def escape_unprintable(text: str, also: str = "") -> str:
    """`text` with every unprintable character (controls, line and paragraph separators, bidi
    overrides) and every character of `also` written as a \\x.. escape, so that text taken from
    a request can neither end a log line nor make one look like another."""
    if text.isprintable() and not any(character in text for character in also):
        return text
    return "".join(_escaped(character) if not character.isprintable() or character in also
                   else character for character in text)


# In an access-log field a quote or a space would end the field early, and a backslash would
# make a literal "\x0a" read as an escape.
_FIELD_ESCAPES = '"\\ '
REDACTED = "[redacted]"


def redact_query(query: str) -> str:
    """`query` with the value of every `token` parameter (the dashboard's one-time admin token,
    `/_fakeshift/ui?token=T`) replaced, so that a log never holds the token. Parameter names are
    compared as the app reads them (percent- and plus-decoded): `%74oken=T` is a token too."""
    if "=" not in query:
        return query
    parts = query.split("&")
    for position, part in enumerate(parts):
        name, equals, _value = part.partition("=")
        if equals and unquote_plus(name) == TOKEN_PARAMETER:
            parts[position] = f"{name}={REDACTED}"
    return "&".join(parts)


class LogWriter:
    """Every log line of `fakeshift serve` goes through here, so that writing one never blocks the
    thread that logs it: lines are queued (at most `capacity`) and a thread of its own writes
    and flushes them every `flush_interval` seconds. When the stream is not being read (stdout
    an undrained pipe), that thread blocks, not a request or the serving loop; the queue fills
    and further lines are dropped, counted, and reported by a line of their own as soon as the
    stream takes lines again.

    One write and flush per batch rather than per line: each is a system call that hands the GIL
    to another thread, which under load cost ~10% of the throughput (bench/results.md)."""

    def __init__(self, stream, capacity: int = LOG_BUFFER_LINES,
                 flush_interval: float = LOG_FLUSH_SECONDS):
        self.stream = stream
        self.capacity = capacity
        self.flush_interval = flush_interval
        self.dropped = 0
        self._reported_drops = 0
        self._pending: list[str] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        # (second, its text): one object, so that a thread never reads one without the other.
        self._stamp = (-1, "")
        self._thread = threading.Thread(target=self._run, name="fakeshift-log", daemon=True)
        self._thread.start()

    def timestamp(self) -> str:
        """logging's asctime ("2026-01-31 12:00:00,123"), its text rebuilt once a second."""
        now = time.time()
        second = int(now)
        stamp_second, text = self._stamp
        if stamp_second != second:
            text = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
            self._stamp = (second, text)
        return f"{text},{int((now - second) * 1000):03d}"

    def write(self, line: str) -> None:
        """Queue one line (without its newline), or drop it if the queue is full."""
        with self._lock:
            if len(self._pending) < self.capacity:
                self._pending.append(line)
            else:
                self.dropped += 1

    def close(self, timeout: float = LOG_CLOSE_SECONDS) -> None:
        """Write what is queued (and the drop count, if any) within `timeout` seconds."""
        self._closing.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._closing.wait(self.flush_interval):
            self._write_queued()
        self._write_queued()

    def _write_queued(self) -> None:
        with self._lock:
            lines, self._pending = self._pending, []
            dropped = self.dropped
        if dropped > self._reported_drops:
            notice = [(f"{self.timestamp()} {log.name} {dropped - self._reported_drops} log "
                       f"lines dropped ({dropped} in all): the log stream was not read fast "
                       f"enough")]
        elif lines:
            notice = []
        else:
            return
        try:
            self.stream.write("\n".join(lines + notice) + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            # A closed stream (EPIPE, or closed by its owner): the lines are lost, and counted.
            with self._lock:
                self.dropped += len(lines)
            return
        self._reported_drops = dropped


class OneRecordPerLineFormatter(logging.Formatter):
    """Unprintable characters in a message are escaped; the line breaks of a multi-line record (a
    traceback, a drill summary) are kept, but its continuation lines are indented, so that no
    line of a record can pass for a record of its own."""

    def format(self, record: logging.LogRecord) -> str:
        lines = super().format(record).split("\n")
        return "\n    ".join(escape_unprintable(line) for line in lines)


class LogWriterHandler(logging.Handler):
    def __init__(self, writer: LogWriter):
        super().__init__()
        self.writer = writer

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.writer.write(self.format(record))
        except Exception:  # logging's contract: a failing handler reports, never raises
            self.handleError(record)


def configure_logging(stream=None) -> LogWriter:
    """Send every log record through one LogWriter on `stream` (stdout), and return it."""
    writer = LogWriter(stream if stream is not None else sys.stdout)
    handler = LogWriterHandler(writer)
    handler.setFormatter(OneRecordPerLineFormatter("%(asctime)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    # Under load waitress warns "Task queue depth is N" once per queued request: noise, not news.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    return writer


class AccessLog:
    """One line per request, written by the request pipeline once the response is produced, in
    the format of the other log lines ("<asctime> fakeshift.access <message>"), with the account,
    the injected fault and the broken contract rules when there are any:

        127.0.0.1 "POST /api/v1/customers/delete" 503 1.2ms account=acme fault=f1 violation=json

    Health and readiness probes are not logged unless `log_probes`. Lines are built here rather
    than through `logging`: a LogRecord built and formatted per request cost ~20 us of CPU, as
    much as the request's own domain work."""

    def __init__(self, writer: LogWriter, log_probes: bool = False):
        self.writer = writer
        self.log_probes = log_probes

    def logs(self, path: str) -> bool:
        return self.log_probes or path not in PROBE_PATHS

    def write(self, environ, status: int | None, took_ms: float, account: str | None = None,
              fault: str | None = None, violation: str | None = None,
              abandoned: bool = False) -> None:
        """The line for one request; `status` None: the connection was dropped unanswered."""
        query = environ.get("QUERY_STRING")
        target = f'{environ.get("PATH_INFO")}{"?" + redact_query(query) if query else ""}'
        line = (f'{self.writer.timestamp()} {ACCESS_LOGGER_NAME} {environ.get("REMOTE_ADDR", "-")} '
                f'"{environ.get("REQUEST_METHOD")} {escape_unprintable(target, _FIELD_ESCAPES)}" '
                f'{"dropped" if status is None else status} {took_ms:.1f}ms')
        fields = (("account", account), ("fault", fault),
                  ("violation", violation and violation.replace(" ", "")),
                  ("abandoned", "true" if abandoned else None))
        for name, value in fields:
            if value:
                line += f" {name}={escape_unprintable(str(value), _FIELD_ESCAPES)}"
        self.writer.write(line)


# ---- HTTP: what waitress refuses, how connections are handled ------------------------------

class RequestTimeout(Error):
    code = 408
    reason = "Request Timeout"


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


# Outside the header block every line ends with CRLF: an LF without its CR, or a CR without its
# LF (one at the very end may still get its LF with the next bytes).
_BARE_LINE_END = re.compile(rb"(?<!\r)\n|\r(?=[^\n])")
# What the error task needs of a request whose own start line could not be read.
_PLACEHOLDER_START_LINE = b"GET / HTTP/1.0\r\n"


class StrictRequestParser(HTTPRequestParser):
    """waitress's parser, stricter where leniency lets a request go unanswered or be smuggled:

    - a bare LF or CR in the header block is refused at once (waitress only ends a header block
      at CRLF CRLF, so a client using bare LFs otherwise waits for an answer that never comes);
    - Content-Length together with Transfer-Encoding is refused (RFC 9112 6.3: such a message
      may be an attempt at request smuggling; the connection is then closed), where waitress
      would go by the chunked encoding and read on after it."""

    def received(self, data):
        if self.body_rcv is None and not self.completed and data:
            received = self.header_plus + data
            end = find_double_newline(received)
            header = received if end < 0 else received[:end]
            # Only what is new (and the byte before it, which may be the new LF's CR).
            if _BARE_LINE_END.search(header, max(0, len(self.header_plus) - 1)):
                self.parse_header(_PLACEHOLDER_START_LINE)
                self.error = BadRequest("Bare CR or LF found in the request header: every line "
                                        "must end with CRLF")
                self.completed = True
                return len(data)
        return super().received(data)

    def parse_header(self, header_plus):
        super().parse_header(header_plus)
        # waitress has already removed Transfer-Encoding from an HTTP/1.1 request if chunked.
        if "CONTENT_LENGTH" in self.headers and (self.chunked
                                                 or "TRANSFER_ENCODING" in self.headers):
            raise ParsingError("Content-Length and Transfer-Encoding together are refused: the "
                               "body's length would be ambiguous")


class FakeshiftTask(WSGITask):
    """waitress's WSGI task, telling the app whether its client is still there."""

    def get_environment(self):
        environ = super().get_environment()
        environ[CLIENT_GONE_KEY] = self.channel.client_gone
        return environ


class FakeshiftChannel(HTTPChannel):
    task_class = FakeshiftTask
    error_task_class = JsonErrorTask
    parser_class = StrictRequestParser
    # When the first byte of the request being received arrived (None between requests).
    request_started: float | None = None

    def received(self, data):
        if self.request is None:
            self.request_started = time.time()
        result = super().received(data)
        if self.request is None:
            self.request_started = None
        return result

    def client_gone(self) -> bool:
        """True when the client has closed its end of the connection (or reset it). waitress
        reads nothing from a connection while its request runs, so a client that gave up is
        noticed only here: by peeking for the end of the stream, which consumes nothing. A
        client that half-closes (shutdown(SHUT_WR)) and still reads counts as gone too."""
        if not self.connected:
            return True
        try:
            return self.socket.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False  # nothing more sent, and still open
        except OSError:
            return True  # reset, or already closed

    def refuse_if_stalled(self, header_cutoff: float, idle_cutoff: float,
                          header_timeout: float) -> None:
        """A 408 for a request whose headers started arriving before `header_cutoff` and are
        still incomplete (a slow drip), or that received nothing since `idle_cutoff` (a body
        shorter than its Content-Length). Main thread only, like all of a channel's reading."""
        with self.requests_lock:
            request = self.request
            if (request is None or self.requests or self.will_close
                    or self.close_when_flushed):
                return
            if not request.headers_finished and self.request_started < header_cutoff:
                request.parse_header(_PLACEHOLDER_START_LINE)
                request.error = RequestTimeout(f"the request headers did not arrive within "
                                               f"{header_timeout:g}s")
            elif self.last_activity < idle_cutoff:
                request.error = RequestTimeout(f"the request is incomplete and nothing more "
                                               f"arrived for {self.adj.channel_timeout}s")
            else:
                return
            request.completed = True
            self.request = None
            self.request_started = None
            # Answered like any request waitress refuses: by the error task, then closed.
            self.requests.append(request)
            self.server.add_task(self)


class FakeshiftServer(TcpWSGIServer):
    """waitress's TCP server with the channel above, and a header deadline: waitress's own
    channel_timeout only closes connections that sent nothing for that long, which a client
    sending one byte a second never does."""

    channel_class = FakeshiftChannel

    def __init__(self, application, adj: Adjustments, dispatcher, header_timeout: float):
        self.header_timeout = header_timeout
        super().__init__(application, map={}, dispatcher=dispatcher, adj=adj)

    def maintenance(self, now):
        header_cutoff = now - self.header_timeout
        idle_cutoff = now - self.adj.channel_timeout
        for channel in list(self.active_channels.values()):
            channel.refuse_if_stalled(header_cutoff, idle_cutoff, self.header_timeout)
        # Then waitress closes the connections idle between requests.
        super().maintenance(now)


class ControlPlaneFirstDispatcher(ThreadedTaskDispatcher):
    """waitress's worker pool with a lane for the control plane: a connection whose next request
    is for /_fakeshift/ (or one waitress refuses itself, answered without the app) is served
    before any Blueshift request, and the first `reserved` threads serve nothing else. A latency
    fault that holds every other thread then still leaves health, readiness and the control
    plane answering at once.

    waitress queues connections (channels), not requests; a channel's next request is
    `channel.requests[0]` whenever it is queued."""

    def __init__(self, reserved: int):
        super().__init__()
        self.reserved = reserved
        self.control_queue: deque = deque()
        # Reserved threads wait on their own condition, so that a Blueshift task never wakes
        # one of them (it would go back to sleep, and the task would wait for another wake-up).
        self.control_cv = threading.Condition(self.lock)

    @staticmethod
    def is_control_plane(channel) -> bool:
        request = channel.requests[0]
        return (request.error is not None
                or getattr(request, "path", "").startswith(CONTROL_PLANE_PREFIX))

    def add_task(self, task):
        with self.lock:
            if self.is_control_plane(task):
                self.control_queue.append(task)
                self.control_cv.notify()
            else:
                self.queue.append(task)
            self.queue_cv.notify()

    def set_thread_count(self, count):
        super().set_thread_count(count)
        # waitress wakes the threads it stops through queue_cv only.
        with self.lock:
            self.control_cv.notify_all()

    def handler_thread(self, thread_no):
        control_only = thread_no < self.reserved
        wake_up = self.control_cv if control_only else self.queue_cv
        while True:
            with self.lock:
                while (self.stop_count == 0 and not self.control_queue
                       and (control_only or not self.queue)):
                    self.active_count -= 1
                    wake_up.wait()
                    self.active_count += 1
                if self.stop_count > 0:
                    self.active_count -= 1
                    self.stop_count -= 1
                    self.threads.discard(thread_no)
                    self.thread_exit_cv.notify()
                    break
                task = self.control_queue.popleft() if self.control_queue else self.queue.popleft()
            try:
                task.service()
            except BaseException:
                self.logger.exception("Exception when servicing %r", task)

    def shutdown(self, cancel_pending=True, timeout=5):
        # waitress cancels what is left in its own queue; put the control plane's there too.
        with self.lock:
            self.queue.extendleft(reversed(self.control_queue))
            self.control_queue.clear()
        return super().shutdown(cancel_pending, timeout)


class ListenError(Exception):
    """The server cannot listen as configured; the message is one line."""


def _connection_limit_within_file_limit(wanted: int) -> int:
    """Raise the soft open-files limit to what `wanted` connections need, as far as the hard
    limit allows; return the connection limit that then fits."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = wanted + SPARE_FILE_DESCRIPTORS
    if soft != resource.RLIM_INFINITY and soft < needed:
        soft = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, soft - SPARE_FILE_DESCRIPTORS))


def listen(app, config, connection_limit: int,
           access_log: LogWriter | None) -> FakeshiftServer:
    """Bind the listening socket and start the worker threads; ListenError if it cannot."""
    # create_app's request pipeline, which writes the access log.
    wsgi = app.wsgi_app
    if access_log is not None:
        wsgi.access_log = AccessLog(access_log, config.log_probes)
    try:
        adj = Adjustments(
            host=config.host, port=config.port, ident="fakeshift",
            connection_limit=connection_limit, channel_timeout=int(config.idle_timeout),
            cleanup_interval=CLEANUP_INTERVAL_SECONDS,
            # The app enforces the configured limits, naming them; waitress's own limits sit
            # above them, so only grossly oversized requests meet its (JsonErrorTask) refusal.
            max_request_header_size=config.max_header_bytes * WAITRESS_HEADER_FACTOR,
            max_request_body_size=max(config.max_body_bytes,
                                      config.admin_max_body_bytes) + (1 << 20),
        )
    except ValueError as exc:
        raise ListenError(f"--host {config.host!r}: not an address to listen on") from exc
    dispatcher = ControlPlaneFirstDispatcher(CONTROL_PLANE_THREADS)
    try:
        server = FakeshiftServer(wsgi, adj, dispatcher, config.header_timeout)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ListenError(f"port {config.port} on {config.host} is already in use") from exc
        raise ListenError(f"cannot listen on {config.host} port {config.port}: "
                          f"{exc.strerror or exc}") from exc
    dispatcher.set_thread_count(config.threads + CONTROL_PLANE_THREADS)
    return server


def _summary(config, connection_limit: int) -> str:
    """The configuration in one line (no secrets: how many keys, whether there is a token)."""
    settings = [
        ("version", __version__),
        ("threads", f"{config.threads}+{CONTROL_PLANE_THREADS}"),
        ("connection_limit", connection_limit),
        ("idle_timeout", f"{config.idle_timeout:g}s"),
        ("header_timeout", f"{config.header_timeout:g}s"),
        ("scenario", config.scenario or "-"),
        ("state_file", config.state_file or "-"),
        ("save_interval", f"{config.save_interval:g}s" if config.state_file else "-"),
        ("durability", (f"aof,fsync={config.fsync_interval:g}s" if config.durability == "aof"
                        else config.durability) if config.state_file else "-"),
        ("api_keys", len(config.api_keys) or "any"),
        ("admin_token", "on" if config.admin_token else "off"),
        ("strict_contract", "on" if config.strict_contract else "off"),
        ("access_log", "on" if config.access_log else "off"),
    ]
    return " ".join(f"{name}={value}" for name, value in settings)


def _is_loopback(host: str) -> bool:
    try:
        # An IPv6 address may carry its interface ("fe80::1%eth0").
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def exposure_warning(config, host: str) -> str | None:
    """The warning for a control plane anyone may call: no admin token while listening beyond
    loopback (`--host 0.0.0.0`, as the Docker image does), or an empty one, which is none."""
    if config.admin_token:
        return None
    empty = config.admin_token == ""
    beyond = not _is_loopback(host)
    if not empty and not beyond:
        return None
    why = "the admin token is empty, which means no token: " if empty else ""
    if beyond:
        return (f"{why}the control plane is open on {host} with no admin token: anyone who can "
                f"reach this port can reset the server, change the clock, inject faults and read "
                f"or change every account; set --admin-token (FAKESHIFT_ADMIN_TOKEN) or listen "
                f"on 127.0.0.1")
    return f"{why}the control plane (/_fakeshift/) is open to anyone on this machine"


def serve(app, scenario: Scenario | None, log_writer: LogWriter, *,
          state_file: persistence.StateFile | None = None, state: dict | None = None,
          append_log: appendlog.AppendLog | None = None) -> int:
    """Listen first (health answers at once), load the scenario (then the saved `state`, if
    any, then the changes in the `append_log`), then report ready. With a state file, save it
    periodically and on stop.

    Returns the process exit status: 0 after Ctrl-C or SIGTERM, 1 if the final save failed, 2 if
    the server could not listen or loading failed."""
    emulator = app.extensions["fakeshift"]
    config = emulator.config
    connection_limit = _connection_limit_within_file_limit(config.connection_limit)
    try:
        server = listen(app, config, connection_limit, log_writer if config.access_log else None)
    except ListenError as exc:
        _error_line(str(exc))
        return 2
    host = server.effective_host
    log.info("listening on http://%s:%s (%s)", f"[{host}]" if ":" in host else host,
             server.effective_port, _summary(config, connection_limit))
    warning = exposure_warning(config, host)
    if warning is not None:
        log.warning("%s", warning)
    if connection_limit < config.connection_limit:
        log.warning("connection limit lowered from %d to %d: the open-files limit (ulimit -n) "
                    "allows no more", config.connection_limit, connection_limit)
    failure: list[str] = []
    stopping = threading.Event()
    saver = (persistence.PeriodicSaver(emulator, state_file.path, config.save_interval,
                                       append_log, appendlog.log_generation(state))
             if state_file is not None else None)

    def load():
        try:
            started = time.perf_counter()
            replayed = 0
            # With an append log nothing may read or change the state before it is whole:
            # scenario, snapshot and replayed changes (the store lock is re-entrant).
            whole = (emulator.store.exclusive() if append_log is not None
                     else contextlib.nullcontext())
            with whole:
                emulator.load(scenario)
                if state is not None:
                    persistence.restore(emulator, state, config.state_file)
                if append_log is not None:
                    replayed = append_log.replay(app)
                    # A log always follows a snapshot: a replay must start from the state the
                    # first record was made on, scenario uuids and timestamps included.
                    if append_log.needs_snapshot and not saver.save_now():
                        raise persistence.StateFileError(
                            f"{config.state_file}: cannot write the first snapshot, which the "
                            f"append log follows")
                    append_log.start()
            emulator.ready.set()
            took = time.perf_counter() - started
            where = scenario.source if scenario else "no scenario"
            restored = f", state restored from {config.state_file}" if state is not None else ""
            if append_log is not None:
                restored += f", {replayed} changes replayed from its append log"
            log.info("ready (%s loaded in %.2fs%s)", where, took, restored)
        except (ScenarioError, persistence.StateFileError, appendlog.AppendLogError) as exc:
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
    # poll(), not select(): select() cannot watch a descriptor numbered 1024 or more.
    while not stopping.is_set():
        server.asyncore.loop(timeout=STOP_POLL_SECONDS, map=server._map, count=1, use_poll=True)
    _drain(server, STOP_BUDGET_SECONDS)
    if failure:
        _error_line(failure[0])
        return 2
    saved = saver is None or saver.stop()
    if append_log is not None:
        append_log.close()
    if not saved:
        kept = ("is kept in its append log and replayed at the next start"
                if append_log is not None else "is lost")
        _error_line(f"the final save of the state to {config.state_file} failed; the state "
                    f"since the last successful save {kept}")
        return 1
    log.info("stopped")
    return 0


def _error_line(message: str) -> None:
    print(f"fakeshift: error: {escape_unprintable(message)}", file=sys.stderr, flush=True)


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
        server.asyncore.loop(timeout=STOP_POLL_SECONDS / 2, map=server._map, count=1,
                             use_poll=True)
    wasyncore.close_all(server._map)
    server.task_dispatcher.shutdown(cancel_pending=True,
                                    timeout=max(0.05, deadline - time.monotonic()))
