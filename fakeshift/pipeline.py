"""The path of every request, in one place: `Pipeline` is the WSGI callable the server runs.

    Pipeline(environ)                              timed from here to the record
    │ the request's headers, in one pass           (the size guard and the journal share them)
    │ Flask's request context                      routing; `request` and `g` for the views
    │ guard: readiness (Blueshift only) 503, body size 413, header size 431
    ├── a Blueshift operation (a Route, built per URL rule and method at start-up)
    │     credentials resolved                     (g.api_key; remembered per header)
    │     1. contract check                        violations recorded; strict mode 400
    │     2. auth                                  401 without a key, 403 read-only key's write
    │     3. rate limit, when configured           429
    │     4. fault decision                        header, magic input, rules; latency; answer
    │     5. the view                              (the append log wraps it, --durability aof)
    │     the fault's finish, X-Fakeshift-Violation
    ├── an /api/ path with no operation            contract records it; JSON 404 or 405
    └── the control plane and the rest             admin token 401, then Flask's own dispatch
    │ any exception: the app's error handlers (fakeshift/app.py), the one place for their shapes
    │ transport fault                              drop: no response at all; truncate: half
    └ journal entry, access-log line               (probes and the journal's reads left out)

A stage returns None to let the request go on, or the response that ends it. Nothing here runs
through Flask's before/after-request hooks or its signals: each of those costs every request a
dispatch of its own, where a stage is a plain call.
"""

from __future__ import annotations

import time
from typing import NamedTuple

from flask import Flask, Response, g
from waitress.channel import ClientDisconnected

from . import auth, faults, ratelimit
from .contract import API_PREFIX, VIOLATION_HEADER, ContractCheck, Operation
from .errors import STATUS_BODIES
from .http import answer
from .journal import CLIENT_GONE_KEY, CONTENT_HEADERS, Exchange, clip, leaves_out, request_headers


class Route(NamedTuple):
    """One Blueshift operation as the pipeline runs it: one URL rule and one method."""
    endpoint: str  # "blueshift.forget": what fault rules, rate limits and the journal name
    operation: Operation | None  # its compiled contract; None when the document has none
    writes: bool  # refused to a read-only key


class Call:
    """What one request's stages learn, for the stages after them and for its record."""

    __slots__ = ("api_key", "violation", "fault", "outcome")

    def __init__(self):
        self.api_key: auth.ApiKey | None = None
        self.violation: str | None = None  # the contract rules it broke: "required, json"
        self.fault: str | None = None  # the label of the fault or rate limit that answered
        self.outcome: faults.Outcome | None = None

    @property
    def account(self) -> str | None:
        return self.api_key.account if self.api_key is not None else None


class Pipeline:
    """Built by create_app once every blueprint is registered; `access_log` is set by
    `fakeshift serve` (server.listen). Holds nothing that changes per request, so waitress's
    threads share it as they share the app."""

    def __init__(self, app: Flask, emulator, blueshift: str, admin: str,
                 control_blueprints: frozenset[str], open_endpoints: frozenset[str]):
        self.app = app
        config = emulator.config
        self.ready = emulator.ready
        self.keyring = emulator.keyring
        self.fault_rules = emulator.faults
        self.rate_limits = emulator.rate_limits
        self.journal = emulator.journal
        self.magic_inputs = config.magic_inputs
        self.max_body_bytes = config.max_body_bytes
        self.admin_max_body_bytes = config.admin_max_body_bytes
        self.max_header_bytes = config.max_header_bytes
        self.admin = admin
        self.control_blueprints = control_blueprints
        self.open_endpoints = open_endpoints
        self.contract = ContractCheck(emulator.violations, config.strict_contract)
        self.routes: dict[tuple[str, str], Route] = {
            (rule.rule, method): Route(rule.endpoint, self.contract.operation(rule.rule, method),
                                       method not in auth.READ_METHODS)
            for rule in app.url_map.iter_rules() if rule.endpoint.startswith(f"{blueshift}.")
            for method in rule.methods}
        self.access_log = None

    def __call__(self, environ, start_response):
        started = time.perf_counter()
        method, path = environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", "")
        headers = [(name, value) for name, value in environ.items()
                   if name.startswith("HTTP_") or name in CONTENT_HEADERS]
        call = Call()
        journaled = not leaves_out(method, path, environ)
        with self.app.request_context(environ) as context:
            req = context.request
            response = self.respond(req, headers, call)
            operation = req.url_rule.endpoint if req.url_rule is not None else None
            body = self.request_body(req) if journaled else None
        transport = call.outcome.transport if call.outcome is not None else None
        if transport == "drop":
            self.record(environ, call, journaled, started, None, headers, operation, body)
            # waitress closes the socket without a byte of response.
            raise ClientDisconnected(f"fault {call.fault} dropped the connection")
        response_body = None if response.is_streamed else response.get_data()
        app_iter, status, response_headers = response.get_wsgi_response(environ)
        if transport == "truncate":
            # The Content-Length stays whole: the server closes the connection mid-body.
            whole = b"".join(app_iter)
            if hasattr(app_iter, "close"):
                app_iter.close()
            app_iter = [whole[:len(whole) // 2]]
        start_response(status, response_headers)
        self.record(environ, call, journaled, started, response.status_code, headers, operation,
                    body, response_headers, response_body)
        return app_iter

    def respond(self, req, headers, call: Call) -> Response:
        try:
            rule = req.url_rule
            route = self.routes.get((rule.rule, req.method)) if rule is not None else None
            refusal = self.guard(req, route, headers)
            if refusal is not None:
                return refusal
            if route is not None:
                return self.blueshift(req, route, call)
            if rule is None and req.path.startswith(API_PREFIX):
                return self.no_operation(req, call)
            return self.control(req)
        except Exception as exc:
            return self.error(exc)

    def error(self, exc: Exception) -> Response:
        return self.app.make_response(self.app.handle_user_exception(exc))

    def guard(self, req, route: Route | None, headers) -> Response | None:
        # A sidecar that answers before its scenario is loaded makes its users' tests lie.
        if route is not None and not self.ready.is_set():
            return answer(STATUS_BODIES[503], 503, {"Retry-After": "1"})
        # Werkzeug answers 413 as soon as a body passes this, chunked or not; the control plane
        # gets a larger limit because scenarios and seeds are uploaded through it.
        req.max_content_length = (self.admin_max_body_bytes
                                  if route is None and req.blueprint == self.admin
                                  else self.max_body_bytes)
        # Counted as on the wire ("Name: value\r\n"), so the limit means what a client expects.
        size = sum([len(name) - 5 + len(value) + 4 for name, value in headers
                    if name.startswith("HTTP_")])
        if size > self.max_header_bytes:
            return answer({"message": f"Request headers too large: {size} bytes, the limit is "
                                      f"{self.max_header_bytes} bytes (max_header_bytes)"}, 431)
        return None

    # ---- a Blueshift operation ------------------------------------------------------------

    def blueshift(self, req, route: Route, call: Call) -> Response:
        call.api_key = g.api_key = self.caller(req)
        try:
            for stage in (self.check_contract, self.authenticate, self.limit_rate,
                          self.decide_fault, self.run_view):
                response = stage(req, route, call)
                if response is not None:
                    break
        except Exception as exc:
            response = self.error(exc)
        return self.finish(response, call)

    def caller(self, req) -> auth.ApiKey | None:
        return self.keyring.resolve(req.environ.get("HTTP_AUTHORIZATION"))

    def check_contract(self, req, route: Route, call: Call) -> Response | None:
        call.violation, refusal = self.contract.judge(req, route.operation, call.account,
                                                      call.api_key is not None)
        return answer(refusal, 400) if refusal is not None else None

    def authenticate(self, req, route: Route, call: Call) -> None:
        auth.authorize(call.api_key, route.writes)

    def limit_rate(self, req, route: Route, call: Call) -> Response | None:
        refusal = ratelimit.refusal(self.rate_limits, call.account, route.endpoint)
        if refusal is not None:
            call.fault = ratelimit.RATE_LIMIT_LABEL
        return refusal

    def decide_fault(self, req, route: Route, call: Call) -> Response | None:
        outcome = faults.decide_for(self.fault_rules, req, route.endpoint, call.account,
                                    self.magic_inputs)
        if outcome is None:
            return None
        call.outcome, call.fault = outcome, outcome.label
        return faults.injected(outcome)

    def run_view(self, req, route: Route, call: Call) -> Response:
        # Looked up per request: the append log wraps the views after the app is built.
        return self.app.make_response(self.app.view_functions[route.endpoint](**req.view_args))

    def finish(self, response: Response, call: Call) -> Response:
        """The fault's finish (apply, malformed, its headers) and the contract's header."""
        if call.outcome is not None:
            response = faults.finished(response, call.outcome)
        if call.violation:
            response.headers[VIOLATION_HEADER] = call.violation
        return response

    # ---- everything else ----------------------------------------------------------------------

    def no_operation(self, req, call: Call) -> Response:
        """An /api/ path or method Blueshift does not have: a violation, then its 404 or 405."""
        call.api_key = g.api_key = self.caller(req)
        call.violation, _refusal = self.contract.judge(req, None, call.account,
                                                       call.api_key is not None)
        return self.finish(self.error(req.routing_exception), call)

    def control(self, req) -> Response:
        """The control plane and `/`: the admin token where the blueprint needs it, then
        Flask's own dispatch (blueprint hooks and error handlers included)."""
        if (req.blueprint in self.control_blueprints and req.endpoint not in self.open_endpoints
                and not self.keyring.admin_allowed(req.headers)):
            return answer({"message": auth.ADMIN_TOKEN_NEEDED}, 401)
        return self.app.full_dispatch_request()

    # ---- the record ---------------------------------------------------------------------------

    @staticmethod
    def request_body(req) -> bytes | None:
        try:
            return req.get_data(cache=True)
        except Exception:  # too large, or cut short by the client: the status says so
            return None

    def record(self, environ, call: Call, journaled: bool, started: float, status: int | None,
               headers, operation: str | None, body: bytes | None,
               response_headers=(), response_body: bytes | None = None) -> None:
        """The journal's entry and the access log's line; `status` None: dropped."""
        access_log = self.access_log
        logged = access_log is not None and access_log.logs(environ.get("PATH_INFO", ""))
        if not journaled and not logged:
            return
        took_ms = (time.perf_counter() - started) * 1000
        client_gone = environ.get(CLIENT_GONE_KEY)
        abandoned = status is not None and client_gone is not None and client_gone()
        if journaled:
            self.journal_entry(environ, call, took_ms, status, headers, operation, body,
                               response_headers, response_body, abandoned)
        if logged:
            self.log_access(environ, call, took_ms, status, abandoned)

    def journal_entry(self, environ, call: Call, took_ms: float, status: int | None, headers,
                      operation: str | None, body: bytes | None, response_headers,
                      response_body: bytes | None, abandoned: bool) -> None:
        journal = self.journal
        kept_headers, dropped_headers = request_headers(headers)
        exchange = Exchange(environ.get("SERVER_PROTOCOL", "HTTP/1.1"), kept_headers,
                            dropped_headers, list(response_headers),
                            response_body[:journal.body_bytes]
                            if response_body is not None else None,
                            len(response_body) if response_body is not None else 0)
        journal.record(clip(environ.get("REQUEST_METHOD", "")),
                       clip(environ.get("PATH_INFO", "")),
                       clip(environ.get("QUERY_STRING", "")), call.account, operation,
                       body[:journal.body_bytes] if body is not None else None,
                       len(body) if body is not None else 0, status, took_ms, call.fault,
                       call.violation, exchange, abandoned)

    def log_access(self, environ, call: Call, took_ms: float, status: int | None,
                   abandoned: bool) -> None:
        self.access_log.write(environ, status, took_ms, call.account, call.fault,
                              call.violation, abandoned)
