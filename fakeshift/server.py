"""Serving the app with waitress: access log, readiness, clean stop on Ctrl-C and SIGTERM."""

from __future__ import annotations

import _thread
import logging
import signal
import sys
import threading
import time

import waitress

from .scenario import Scenario, ScenarioError

log = logging.getLogger("fakeshift")
access_log = logging.getLogger("fakeshift.access")


class AccessLog:
    """One line per request, written after the response has been produced."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        started = time.perf_counter()
        seen = {}

        def recording_start_response(status, headers, exc_info=None):
            seen["status"] = status.split(" ", 1)[0]
            return start_response(status, headers, exc_info)

        try:
            return self.app(environ, recording_start_response)
        finally:
            access_log.info(
                '%s "%s %s%s" %s %.1fms', environ.get("REMOTE_ADDR", "-"),
                environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"),
                "?" + environ["QUERY_STRING"] if environ.get("QUERY_STRING") else "",
                seen.get("status", "dropped"), (time.perf_counter() - started) * 1000,
            )


def configure_logging(access: bool) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        stream=sys.stdout)
    # Under load waitress warns "Task queue depth is N" once per queued request: noise, not news.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    access_log.disabled = not access


def serve(app, host: str, port: int, threads: int, scenario: Scenario | None,
          access: bool = True) -> int:
    """Listen first (health answers at once), load the scenario, then report ready.

    Returns the process exit status: 0 after Ctrl-C or SIGTERM, 2 if the scenario failed."""
    emulator = app.extensions["fakeshift"]
    wsgi = AccessLog(app) if access else app
    server = waitress.create_server(wsgi, host=host, port=port, threads=threads,
                                    ident="fakeshift", channel_timeout=30)
    print(f"fakeshift listening on http://{host}:{server.effective_port}", flush=True)
    failure: list[str] = []

    def load():
        try:
            started = time.perf_counter()
            emulator.load(scenario)
            emulator.ready.set()
            took = time.perf_counter() - started
            where = scenario.source if scenario else "no scenario"
            log.info("ready (%s loaded in %.2fs)", where, took)
        except ScenarioError as exc:
            failure.append(str(exc))
            _thread.interrupt_main()

    def stop(_signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    threading.Thread(target=load, name="fakeshift-load", daemon=True).start()
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        # Let requests already being served finish, within the stop budget.
        server.task_dispatcher.shutdown(cancel_pending=True, timeout=0.8)
    if failure:
        print(f"fakeshift: error: {failure[0]}", file=sys.stderr, flush=True)
        return 2
    log.info("stopped")
    return 0
