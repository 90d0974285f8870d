"""The control plane under /_fakeshift/: health, readiness, reset, scenarios, account state,
seeding, settings, the virtual clock and each account's own clock and reset; and the index at
`/`. Not part of Blueshift's API.

Account routes take `<id:name>`, so a name may hold `/`. A name that ends in one of their own
suffixes is shadowed by the sub-resource: `/accounts/x/clock` is account x's clock, never the
state of an account named `x/clock` (fixed segments win the routing; %2F is decoded before it)."""

from __future__ import annotations

from importlib import metadata

from flask import Blueprint, Response, current_app, request

from . import contract
from .api import use_id_converter
from .clock import parse_iso
from .emulator import Emulator
from .errors import InvalidField
from .http import answer
from .parsing import flag, json_object, only_fields
from .scenario import Scenario, ScenarioError, check_account_fragment, parse_duration, seed_account

bp = Blueprint("admin", __name__, url_prefix="/_fakeshift")
use_id_converter(bp)
# Probes must work without the admin token (container health checks have no secrets), and so
# must what the index at `/` points a newcomer to.
OPEN_ENDPOINTS = frozenset({"admin.health", "admin.ready", "admin.openapi_document",
                            "admin.readme"})
# `/` is outside /_fakeshift/ and needs no token: opening the server's address in a browser or
# with curl says what it is and where to go from there.
index_bp = Blueprint("index", __name__)
_YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")


def _emulator() -> Emulator:
    return current_app.extensions["fakeshift"]


def _body(allowed=None) -> dict:
    raw = request.get_data(cache=True)
    body = json_object(raw, request.mimetype) if raw.strip() else {}
    if allowed is not None:
        only_fields(body, allowed)
    return body


def _duration(value, name: str) -> float:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise InvalidField(name, str(exc)) from exc


@index_bp.get("/")
def index():
    return answer({
        "name": "fakeshift",
        "version": metadata.version("fakeshift"),
        "summary": metadata.metadata("fakeshift")["Summary"],
        "blueshift_api": {"prefix": "/api/v1/", "openapi": "/_fakeshift/openapi/blueshift.json"},
        "control_plane": {"prefix": "/_fakeshift/", "openapi": "/_fakeshift/openapi/admin.json",
                          "health": "/_fakeshift/health", "ready": "/_fakeshift/ready"},
        "readme": "/_fakeshift/readme",
    })


@bp.get("/readme")
def readme():
    """The README of the installed version: it ships as the package's long description."""
    return Response(metadata.metadata("fakeshift")["Description"], mimetype="text/markdown")


@bp.get("/health")
def health():
    return answer({"status": "ok", "internal_errors": _emulator().internal_errors})


@bp.get("/ready")
def ready():
    is_ready = _emulator().ready.is_set()
    return answer({"ready": is_ready}, status=200 if is_ready else 503)


# ---- scenario and reset ------------------------------------------------------------------------

@bp.post("/reset")
def reset():
    to = _reset_target()
    _emulator().reset(to)
    return answer({"status": "ok", "reset_to": to})


def _reset_target() -> str:
    to = request.args.get("to") or _body(("to",)).get("to", "scenario")
    if to not in ("scenario", "empty"):
        raise InvalidField("to", "must be scenario or empty")
    return to


@bp.get("/scenario")
def get_scenario():
    scenario = _emulator().scenario
    if scenario is None:
        return answer({"source": None, "scenario": None})
    return answer({"source": scenario.source, "scenario": scenario.document})


@bp.put("/scenario")
def load_scenario():
    """Replace all state with the scenario in the body (YAML or JSON); resets go back to it."""
    raw = request.get_data(cache=True)
    try:
        if request.mimetype in _YAML_TYPES:
            text = raw.decode("utf-8")
            scenario = Scenario.from_text(text, "request body")
        else:
            scenario = Scenario.from_document(json_object(raw, request.mimetype), "request body")
        _emulator().check_buildable(scenario)
    except UnicodeDecodeError as exc:
        raise InvalidField("body", "is not valid UTF-8") from exc
    except ScenarioError as exc:
        raise InvalidField("scenario", str(exc)) from exc
    _emulator().load(scenario)
    return answer({"status": "ok", "accounts": _emulator().store.account_names()})


# ---- server settings ---------------------------------------------------------------------------

@bp.get("/settings")
def get_settings():
    return answer(vars(_emulator().store.settings))


@bp.put("/settings")
def put_settings():
    body = _body(("deletion_delay", "group_delete_users_default"))
    settings = _emulator().store.settings
    with _emulator().store.exclusive():
        if "deletion_delay" in body:
            settings.deletion_delay = _duration(body["deletion_delay"], "deletion_delay")
        if "group_delete_users_default" in body:
            value = flag(body["group_delete_users_default"], "group_delete_users_default")
            if value is None:
                raise InvalidField("group_delete_users_default", "must be true or false")
            settings.group_delete_users_default = value
    return answer(vars(settings))


# ---- accounts ----------------------------------------------------------------------------------

@bp.get("/accounts")
def list_accounts():
    store = _emulator().store
    accounts = []
    for name in store.account_names():
        with store.open(name) as (account, _now):
            accounts.append({"account": name, "uuid": account.uuid, "stats": account.stats()})
    return answer({"accounts": accounts})


@bp.get("/accounts/<id:name>", merge_slashes=False)
def account_state(name: str):
    with _emulator().store.open(name, create=False) as (account, _now):
        return answer(account.state())


@bp.delete("/accounts/<id:name>", merge_slashes=False)
def drop_account(name: str):
    emulator = _emulator()
    dropped = emulator.store.drop_account(name)
    # Its contract violations and its own clock go with it, also when refused requests never
    # created it: the next user of the same key must not be blamed for them, nor live in its time.
    emulator.violations.clear(name)
    emulator.clock.account(name).reset()
    return answer({"status": "ok", "dropped": dropped})


@bp.post("/accounts/<id:name>/reset", merge_slashes=False)
def reset_account(name: str):
    to = _reset_target()
    try:
        _emulator().reset_account(name, to)
    except ScenarioError as exc:
        raise InvalidField("reset", str(exc)) from exc
    return answer({"status": "ok", "reset_to": to, "account": name})


@bp.get("/accounts/<id:name>/events", merge_slashes=False)
def account_events(name: str):
    only_fields(request.args, ("event", "user_uuid"))
    with _emulator().store.open(name, create=False) as (account, _now):
        events = account.recorded_events(request.args.get("event"), request.args.get("user_uuid"))
        return answer({"events": events, "dropped": account.events_dropped})


@bp.put("/accounts/<id:name>/settings", merge_slashes=False)
def account_settings(name: str):
    body = _body(("deletion_delay",))
    with _emulator().store.open(name) as (account, _now):
        value = body.get("deletion_delay")
        account.deletion_delay = None if value is None else _duration(value, "deletion_delay")
        return answer(account.state()["settings"])


@bp.post("/accounts/<id:name>/seed", merge_slashes=False)
def seed(name: str):
    """Seed profiles (duplicates included), generated profiles, suppressions, lists and groups,
    in the format of one `accounts[]` entry of a scenario file."""
    fragment = {**_body(), "key": name}
    try:
        check_account_fragment(fragment, "request body")
        with _emulator().store.open(name) as (account, now):
            created = seed_account(account, now, fragment, "request body")
    except ScenarioError as exc:
        raise InvalidField("seed", str(exc)) from exc
    # `created` counts profiles only (kept as it was for existing callers); `counts` has every
    # kind. Each entry of lists, groups and suppressed made one, or the call failed.
    counts = {"profiles": created["created"],
              **{kind: len(fragment.get(kind, ())) for kind in ("suppressed", "lists", "groups")}}
    return answer({"status": "ok", **created, "counts": counts})


# ---- the virtual clock, and each account's own ------------------------------------------------
# The server's clock and an account's (clock.AccountClock) take the same calls with the same
# bodies; each body is read into a call on "a clock" before any clock is touched.

@bp.get("/clock")
def clock():
    return answer(_emulator().clock.snapshot())


@bp.post("/clock/freeze")
def freeze():
    return _on_server_clock(_freeze_call())


@bp.post("/clock/unfreeze")
def unfreeze():
    return _on_server_clock(_unfreeze_call())


@bp.post("/clock/set")
def set_clock():
    return _on_server_clock(_set_call())


@bp.post("/clock/advance")
def advance():
    return _on_server_clock(_advance_call())


@bp.get("/accounts/<id:name>/clock", merge_slashes=False)
def account_clock(name: str):
    """Reading creates nothing: an account without a clock of its own shows the server's."""
    return answer(_emulator().clock.account(name).snapshot())


@bp.delete("/accounts/<id:name>/clock", merge_slashes=False)
def reset_account_clock(name: str):
    own = _emulator().clock.account(name)
    own.reset()
    return answer(own.snapshot())


@bp.post("/accounts/<id:name>/clock/freeze", merge_slashes=False)
def freeze_account_clock(name: str):
    return _on_account_clock(name, _freeze_call())


@bp.post("/accounts/<id:name>/clock/unfreeze", merge_slashes=False)
def unfreeze_account_clock(name: str):
    return _on_account_clock(name, _unfreeze_call())


@bp.post("/accounts/<id:name>/clock/set", merge_slashes=False)
def set_account_clock(name: str):
    return _on_account_clock(name, _set_call())


@bp.post("/accounts/<id:name>/clock/advance", merge_slashes=False)
def advance_account_clock(name: str):
    return _on_account_clock(name, _advance_call())


def _on_server_clock(call):
    server = _emulator().clock
    call(server)
    return answer(server.snapshot())


def _on_account_clock(name: str, call):
    """A change to an account's clock creates the account, as its settings do: the clock then
    goes when the account is dropped, and counts against max_accounts like any account."""
    emulator = _emulator()
    own = emulator.clock.account(name)
    with emulator.store.open(name):
        call(own)
        return answer(own.snapshot())


def _freeze_call():
    at = _body(("at",)).get("at")
    moment = _moment(at, "at") if at is not None else None
    return lambda clock: clock.freeze(moment)


def _unfreeze_call():
    _body(())
    return lambda clock: clock.unfreeze()


def _set_call():
    body = _body(("now",))
    if "now" not in body:
        raise InvalidField("now", "can't be blank")
    moment = _moment(body["now"], "now")
    return lambda clock: clock.set(moment)


def _advance_call():
    body = _body(("seconds", "by"))
    if ("seconds" in body) == ("by" in body):
        raise InvalidField("seconds", "give exactly one of seconds (a number) or by (e.g. \"2h\")")
    step = body.get("seconds", body.get("by"))
    if "seconds" in body and (isinstance(step, bool) or not isinstance(step, (int, float))):
        raise InvalidField("seconds", "must be a number")
    seconds = _duration(step, "by" if "by" in body else "seconds")
    return lambda clock: clock.advance(seconds)


def _moment(value, name: str):
    if not isinstance(value, str):
        raise InvalidField(name, "must be an ISO 8601 date-time string")
    try:
        return parse_iso(value)
    except ValueError as exc:
        raise InvalidField(name, f"is not an ISO 8601 date-time: {exc}") from exc


# ---- the contract: OpenAPI documents and recorded violations (see fakeshift/contract.py) -------

@bp.get("/openapi/<any(blueshift, admin):name>.<any(json, yaml):form>")
def openapi_document(name: str, form: str):
    """Open like health: a client generator or contract checker has no admin token."""
    if form == "yaml":
        return Response(contract.document_text(name), mimetype="application/yaml")
    return answer(contract.load_document(name))


@bp.get("/violations")
def list_violations():
    violations = _emulator().violations.list(request.args.get("account"))
    return answer({"count": len(violations), "violations": violations})


@bp.delete("/violations")
def clear_violations():
    # Refused rather than ignored: a misspelt `account` must not clear every job's violations.
    only_fields(request.args, ("account",))
    cleared = _emulator().violations.clear(request.args.get("account"))
    return answer({"status": "ok", "cleared": cleared})
