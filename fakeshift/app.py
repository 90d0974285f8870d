"""The application factory: one Flask app around one Emulator."""

from __future__ import annotations

import logging

from flask import Flask, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound, RequestEntityTooLarge

from . import admin, api, dashboard, faults, journal, ratelimit
from .config import Config
from .emulator import Emulator
from .errors import STATUS_BODIES, BlueshiftError
from .http import answer
from .pipeline import Pipeline
from .scenario import Scenario

log = logging.getLogger("fakeshift")


def create_app(config: Config | dict | None = None, *, load_scenario: bool = True) -> Flask:
    """Build the emulator's WSGI app.

    `load_scenario=False` leaves the server not ready, so `fakeshift serve` can answer health
    probes while a large scenario loads in the background, and call `emulator.load()` itself.
    """
    if not isinstance(config, Config):
        config = Config.from_mapping(config or {})
    # No static files: Flask would otherwise serve an undocumented /static/<path> route.
    app = Flask(__name__, static_folder=None)
    # Blueshift documents no OPTIONS; an undocumented method must answer 405 like any other.
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    # Werkzeug would answer /api/v1//customers with a 308 redirect in HTML; a path Blueshift
    # does not have is a JSON 404 like any other.
    app.url_map.merge_slashes = False

    emulator = Emulator(config)
    # Handlers, tests and the pytest plugin all reach the emulator through the app.
    app.extensions["fakeshift"] = emulator

    for blueprint in (api.bp, admin.bp, faults.bp, journal.bp, ratelimit.bp,
                      # Checks the admin token itself: the page also takes it once as ?token=.
                      dashboard.bp, admin.index_bp):
        app.register_blueprint(blueprint)
    _register_error_handlers(app, emulator)
    # Every request's whole path (fakeshift/pipeline.py); Flask dispatches the control plane.
    app.wsgi_app = Pipeline(app, emulator, api.bp.name, admin.bp.name,
                            frozenset({admin.bp.name, faults.bp.name, journal.bp.name,
                                       ratelimit.bp.name}),
                            admin.OPEN_ENDPOINTS)

    if load_scenario:
        emulator.load(Scenario.from_file(config.scenario) if config.scenario else None)
        emulator.ready.set()
    return app


def _register_error_handlers(app: Flask, emulator: Emulator) -> None:
    @app.errorhandler(BlueshiftError)
    def blueshift_error(exc: BlueshiftError):
        return answer(exc.body, exc.status)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if isinstance(exc, NotFound):
            return answer({"status": "404", "error": "Not Found"}, 404)
        if isinstance(exc, MethodNotAllowed):
            allow = ", ".join(sorted(exc.valid_methods or ()))
            return answer({"message": f"Method {request.method} is not allowed here; use {allow}"},
                          405, {"Allow": allow})
        if isinstance(exc, RequestEntityTooLarge):
            limit = emulator.config.max_body_bytes
            if request.blueprint == admin.bp.name:
                limit = emulator.config.admin_max_body_bytes
            return answer({"message": f"Request body too large: the limit is {limit} bytes"}, 413)
        return answer({"message": exc.description or exc.name}, exc.code or 400)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        # No fault rule asked for this: it is a bug, so count it where tests can see it.
        emulator.count_internal_error()
        log.exception("internal error while serving %s %s", request.method, request.path)
        return answer(STATUS_BODIES[500], 500, {"X-Fakeshift-Internal-Error": "true"})
