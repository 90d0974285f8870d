"""The emulated Blueshift endpoints: parse the request, call the domain, shape Blueshift's answer.

Authentication, faults, the journal and contract checks wrap these handlers from outside (see
`app.create_app`); nothing here knows about them.
"""

from __future__ import annotations

import functools
import re
from datetime import datetime

from flask import Blueprint, current_app, g, request
from werkzeug.routing import BaseConverter

from . import surface
from .auth import READ_METHODS
from .clock import iso
from .contract import load_document
from .errors import (
    CUSTOMER_NOT_FOUND,
    EventFieldError,
    InvalidField,
    NotFound,
    ParamsNotValid,
    TooLarge,
)
from .http import answer
from .models import (
    BULK_CAP,
    EVENT_HISTORY_LIMIT,
    IDENTIFIER_KINDS,
    IDENTIFY_EVENT,
    LIST_SOURCES,
    RESERVED_FIELDS,
    check_bulk_events,
    check_list_bulk,
    event_attributes,
)
from .parsing import (
    PARSED_BODY_KEY,
    flag,
    identifiers,
    json_object,
    only_fields,
    string_field,
    text_fields,
)


class IdConverter(BaseConverter):
    """`<id:...>`: any non-empty text, slashes included, so that a group `a/b` or an account
    `team/job-17` can be addressed (as `a/b` or `a%2Fb`: the server decodes both to `a/b`).
    Routes using it also pass merge_slashes=False, or an id starting with `/` would be
    redirected away."""

    regex = ".+?"
    part_isolating = False  # may span path segments
    weight = 200  # as werkzeug's own path converter: routes with fixed segments win


class ProfileConverter(BaseConverter):
    """`<profile:...>`: a profile id as any one path segment, except the customers' own action
    names, so that `GET /customers/forget` stays the 405 it is rather than a search for a
    profile named "forget"."""

    regex = r"(?!(?:forget|delete|unforget|bulk|merge)$)[^/]+"


def use_id_converter(blueprint: Blueprint) -> None:
    blueprint.record_once(
        lambda state: state.app.url_map.converters.setdefault("id", IdConverter))


bp = Blueprint("blueshift", __name__)
use_id_converter(bp)
bp.record_once(lambda state: state.app.url_map.converters.setdefault("profile", ProfileConverter))

OK = {"status": "ok"}
_LIST_FIELDS = ("identifier_key", "identifier_value")


def _body() -> dict:
    return json_object(request.get_data(cache=True), request.mimetype,
                       request.environ.get(PARSED_BODY_KEY))


def caller_account():
    """The caller's account, locked and brought up to date with the clock. A read (GET) of an
    account that does not exist answers as an empty one without creating it."""
    store = current_app.extensions["fakeshift"].store
    if request.method in READ_METHODS:
        return store.read(g.api_key.account)
    return store.open(g.api_key.account)


def _required_identifiers(body: dict) -> dict:
    found = identifiers(body, IDENTIFIER_KINDS)
    if not found:
        raise InvalidField("identifier",
                           f"at least one of {', '.join(IDENTIFIER_KINDS)} is required")
    return found


def _customer_fields(body: dict) -> tuple[dict, dict, str | None]:
    """Split an identify body into identifiers, free attributes and an optional uuid."""
    # Reserved fields first: in a bulk call a missing identifier only fails that customer, but
    # a reserved field is a malformed request and must refuse the whole call.
    for name in body:
        if name in RESERVED_FIELDS and name != "uuid":
            raise InvalidField(name, "is set by Blueshift and cannot be written")
    found = identifiers(body, IDENTIFIER_KINDS)
    profile_uuid = string_field(body, "uuid")
    if not found and profile_uuid is None:
        raise InvalidField("identifier", "at least one of email, customer_id, cookie, "
                                         "device_id or uuid is required")
    attributes = {k: v for k, v in body.items() if k not in IDENTIFIER_KINDS and k != "uuid"}
    return found, attributes, profile_uuid


# ---- the five emulated endpoints ---------------------------------------------------------------

@bp.post("/api/v1/customers/forget")
def forget():
    body = _body()
    only_fields(body, IDENTIFIER_KINDS)
    ids = _required_identifiers(body)
    with caller_account() as (account, now):
        forgotten = account.forget(now, ids)
    # Blueshift documents both {"status": "ok"} and {"customer": {...}}; answer both at once.
    return answer({**OK, "customer": {"is_forgotten": True, "forgotten_at": iso(now)}},
                  headers={"X-Fakeshift-Forgotten": str(len(forgotten))})


@bp.post("/api/v1/customers/delete")
def delete_customer():
    body = _body()
    only_fields(body, (*IDENTIFIER_KINDS, "delete_all_matching_customers"))
    ids = _required_identifiers(body)
    # Blueshift's spec puts the flag in the query, its reference page in the body: take either.
    in_query = flag(request.args.get("delete_all_matching_customers"),
                    "delete_all_matching_customers")
    in_body = flag(body.get("delete_all_matching_customers"), "delete_all_matching_customers")
    with caller_account() as (account, now):
        scheduled = account.delete(now, ids, bool(in_query or in_body))
    return answer(OK, headers={"X-Fakeshift-Scheduled": str(len(scheduled))})


@bp.post("/api/v1/customers/unforget")
def unforget():
    body = _body()
    only_fields(body, IDENTIFIER_KINDS)
    # Any identifier alone, as Blueshift's export has it (README, "Decisions").
    ids = _required_identifiers(body)
    with caller_account() as (account, _now):
        lifted = account.unforget(ids)
    return answer(OK, headers={"X-Fakeshift-Unsuppressed": str(lifted)})


@bp.delete("/api/v1/customer_group/<id:group_id>", merge_slashes=False)
def delete_group(group_id: str):
    delete_users = flag(request.args.get("delete_users"), "delete_users")
    with caller_account() as (account, now):
        group, scheduled = account.delete_group(now, group_id, delete_users)
    return answer({"group": group, "_bsft_delete_status": "success"},
                  headers={"X-Fakeshift-Scheduled": str(scheduled)})


@bp.put("/api/v1/custom_user_lists/remove_user_from_list/<int(signed=True):list_id>")
def remove_user_from_list(list_id: int):
    key, value = _list_identifier(_body())
    with caller_account() as (account, now):
        removed = account.remove_from_list(now, list_id, key, value)
    return answer(OK, headers={"X-Fakeshift-Removed": str(removed)})


# ---- neighbouring endpoints a client needs to seed state ---------------------------------------

@bp.post("/api/v1/customers")
def identify():
    found, attributes, profile_uuid = _customer_fields(_body())
    with caller_account() as (account, now):
        profile = account.identify(now, found, attributes, profile_uuid)
        if profile is None:
            return answer(OK, headers={"X-Fakeshift-Suppressed": "true"})
        return answer({"customer": profile.to_dict()})


@bp.post("/api/v1/customers/bulk")
def bulk_identify():
    body = _body()
    only_fields(body, ("customers",))
    customers = body.get("customers")
    if not isinstance(customers, list) or not customers:
        raise InvalidField("customers", "must be a non-empty array of customer objects")
    if len(customers) > BULK_CAP:
        raise TooLarge(f"You can upload maximum {BULK_CAP} users in one api call")
    parsed, failed = [], []
    for position, customer in enumerate(customers):
        if not isinstance(customer, dict):
            raise InvalidField(f"customers[{position}]", "must be an object")
        try:
            parsed.append((position, _customer_fields(customer)))
        except InvalidField as exc:
            if exc.field != "identifier":
                raise InvalidField(f"customers[{position}].{exc.field}", exc.message) from exc
            failed.append(customer)
    errors = [{"status": 400, "error_data": {"user_identifier_missing": ["No valid identifier found"]}}
              for _ in failed]
    with caller_account() as (account, now):
        for position, (found, attributes, profile_uuid) in parsed:
            try:
                account.identify(now, found, attributes, profile_uuid)
            except NotFound as exc:
                failed.append(customers[position])
                errors.append({"status": 404, "error_data": {"uuid": [exc.body["message"]]}})
    return answer({"customers": failed, "errors": errors})


@bp.get("/api/v1/customers")
def search_customers():
    only_fields(request.args, ("email",))
    email = string_field(request.args, "email", required=True)
    with caller_account() as (account, _now):
        users = [p.to_dict() for p in account.lookup("email", email)]
    # Blueshift's export answers both the list and its first entry; with no match there is no
    # first entry, so `user` is left out (a null would break clients that expect an object).
    return answer({"users": users, "user": users[0]} if users else {"users": users})


# Blueshift's export types these ids as text: anything is routed, and what names no profile or
# list is the domain's 404, never the router's.
@bp.get("/api/v1/customers/<profile:profile_uuid>")
def get_customer(profile_uuid: str):
    with caller_account() as (account, _now):
        return answer({"customer": account.get_profile(profile_uuid.lower()).to_dict()})


@bp.post("/api/v1/custom_user_lists/create")
def create_list():
    body = _body()
    only_fields(body, ("name", "description", "source", "is_seed_list"))
    name = string_field(body, "name", required=True)
    description = body.get("description", "")
    if not isinstance(description, str):
        raise InvalidField("description", "must be a string")
    source = string_field(body, "source") or "email"
    seed = body.get("is_seed_list", 0)
    # Blueshift's field is the integer 0 or 1; true/false or 1.0 are a client's bug to surface.
    if type(seed) is not int or seed not in (0, 1):
        raise InvalidField("is_seed_list", "must be 0 or 1")
    with caller_account() as (account, now):
        custom_list = account.create_list(now, name, description, source, bool(seed))
        return answer(custom_list.to_dict(account.number))


@bp.put("/api/v1/custom_user_lists/add_user_to_list/<int(signed=True):list_id>")
def add_user_to_list(list_id: int):
    key, value = _list_identifier(_body())
    with caller_account() as (account, now):
        account.add_to_list(now, list_id, key, value)
    return answer(OK)


@bp.get("/api/v1/custom_user_lists/id/<list_id>")
def list_details(list_id: str):
    # Past 18 digits no list has the id (and int() refuses 5,000 of them).
    number = (int(list_id) if list_id.isascii() and list_id.lstrip("-").isdigit()
              and len(list_id) <= 18 else None)
    with caller_account() as (account, _now):
        return answer(account.get_list(number).to_dict(account.number))


@bp.delete("/api/v1/customer_group/<id:group_id>/user/<uuid:user_uuid>", merge_slashes=False)
def remove_group_user(group_id: str, user_uuid):
    user_uuid = str(user_uuid)
    with caller_account() as (account, now):
        account.remove_group_user(now, group_id, user_uuid)
    return answer({"status": "success", "message": "User removed from group successfully",
                   "group_id": group_id, "user_uuid": user_uuid})


# ---- merging, list bulk calls, seed lists and events -------------------------------------------

def _errors_as(error):
    """The operation answers its 400s in the shape Blueshift's export gives it, `error(field,
    message)`, rather than as `{"errors": {field: [message]}}`."""
    def decorate(view):
        @functools.wraps(view)
        def shaped(*args, **kwargs):
            try:
                return view(*args, **kwargs)
            except InvalidField as exc:
                raise error(exc.field, exc.message) from exc
        return shaped
    return decorate


@bp.post("/api/v1/customers/merge")
def merge_customers():
    body = _body()
    only_fields(body, ("customer_id", "bsft_new_customer_id"))
    duplicate = string_field(body, "customer_id", required=True)
    survivor = string_field(body, "bsft_new_customer_id", required=True)
    with caller_account() as (account, now):
        merged = account.merge(now, duplicate, survivor)
    return answer(OK, headers={"X-Fakeshift-Merged": str(len(merged))})


def _list_identifiers(body: dict, verb: str) -> tuple[str, list[str]]:
    """identifier_key and identifier_values of a bulk add or remove, within their cap."""
    only_fields(body, ("identifier_key", "identifier_values"))
    key = string_field(body, "identifier_key", required=True)
    if key not in LIST_SOURCES:
        raise InvalidField("identifier_key", "must be one of: email, customer_id")
    values = body.get("identifier_values")
    if not isinstance(values, list) or not values:
        raise InvalidField("identifier_values", "must be a non-empty array of strings")
    names = [f"identifier_values[{position}]" for position in range(len(values))]
    values = [string_field({name: value}, name, required=True)
              for name, value in zip(names, values)]
    check_list_bulk(len(values), bool(flag(request.args.get("async"), "async")), verb)
    return key, values


@bp.put("/api/v1/custom_user_lists/bulk_add_users_to_list/<int(signed=True):list_id>")
@_errors_as(ParamsNotValid)
def bulk_add_users_to_list(list_id: int):
    key, values = _list_identifiers(_body(), "add")
    with caller_account() as (account, now):
        added, missing = account.bulk_add_to_list(now, list_id, key, values)
    errors = [{"identifier_value": value, "message": CUSTOMER_NOT_FOUND} for value in missing]
    return answer({**OK, "errors": errors}, headers={"X-Fakeshift-Added": str(added)})


@bp.put("/api/v1/custom_user_lists/bulk_remove_users_from_list/<int(signed=True):list_id>")
@_errors_as(ParamsNotValid)
def bulk_remove_users_from_list(list_id: int):
    key, values = _list_identifiers(_body(), "remove")
    with caller_account() as (account, now):
        removed = account.bulk_remove_from_list(now, list_id, key, values)
    return answer({**OK, "errors": []}, headers={"X-Fakeshift-Removed": str(removed)})


@bp.put("/api/v1/custom_user_lists/overwrite_list/<int(signed=True):list_id>")
def overwrite_list(list_id: int):
    body = _body()
    only_fields(body, ("s3_file_path",))
    s3_file_path = string_field(body, "s3_file_path", required=True)
    with caller_account() as (account, now):
        account.overwrite_list(now, list_id, s3_file_path)
    return answer(OK)


@bp.get("/api/v1/custom_user_lists/seed_lists")
def seed_lists():
    with caller_account() as (account, _now):
        return answer([custom_list.to_seed_list_dict(account.number)
                       for custom_list in account.seed_lists()])


# The event fields Blueshift's export describes as text, besides the identifiers.
_EVENT_TEXT_FIELDS = ("device_type", "device_token", "device_idfa", "device_idfv",
                      "device_manufacturer", "os_name", "network_carrier", "ip", "latitude",
                      "longitude")
# An RFC 3339 date-time, as the document's `format: date-time` has it: fromisoformat alone
# also reads dates without a time, or times without an offset.
_DATE_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}"
                        r"(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})")


def _event(body: dict) -> tuple[dict, dict, datetime | None]:
    """An event's fields, its identifiers and the moment its `timestamp` names (or None)."""
    name = string_field(body, "event", required=True)
    found = identifiers(body, IDENTIFIER_KINDS)
    string_field(body, "event_uuid")
    text_fields(body, _EVENT_TEXT_FIELDS)
    groups = body.get("subscription_groups", [])
    if not isinstance(groups, list):
        raise InvalidField("subscription_groups", "must be an array of objects")
    for position, group in enumerate(groups):
        where = f"subscription_groups[{position}]"
        if not isinstance(group, dict):
            raise InvalidField(where, "must be an object")
        text_fields(group, ("id",), f"{where}.")
        if not isinstance(group.get("subscribed", False), bool):
            raise InvalidField(f"{where}.subscribed", "must be true or false")
    text = string_field(body, "timestamp")
    moment = None if text is None else _event_moment(text)
    if name == IDENTIFY_EVENT:
        for field in event_attributes(body):
            if field in RESERVED_FIELDS:
                raise InvalidField(field, "is set by Blueshift and cannot be written")
    return body, found, moment


def _event_moment(text: str) -> datetime:
    if _DATE_TIME.fullmatch(text):
        try:
            # Not clock.parse_iso: an event may be older or newer than the clock's range.
            return datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
        except ValueError:  # a month 13, a 25th hour, a leap second
            pass
    raise InvalidField("timestamp", "must be an RFC 3339 date-time, e.g. 2025-09-17T10:26:54Z")


@bp.post("/api/v1/event")
@_errors_as(EventFieldError)
def send_event():
    fields, found, moment = _event(_body())
    with caller_account() as (account, now):
        recorded = account.record_event(now, fields, found, moment)
    # The export's example answers "OK" here, and "ok" for bulk events.
    return answer({"status": "OK"}, headers={"X-Fakeshift-Recorded": "1" if recorded else "0"})


@bp.post("/api/v1/bulkevents")
@_errors_as(EventFieldError)
def send_bulk_events():
    body = _body()
    only_fields(body, ("events",))
    events = body.get("events")
    if not isinstance(events, list) or not events:
        raise InvalidField("events", "must be a non-empty array of event objects")
    check_bulk_events(len(events))
    parsed = []
    for position, event in enumerate(events):
        if not isinstance(event, dict):
            raise InvalidField(f"events[{position}]", "must be an object")
        try:
            parsed.append(_event(event))
        except InvalidField as exc:
            raise InvalidField(f"events[{position}].{exc.field}", exc.message) from exc
    with caller_account() as (account, now):
        recorded = sum(account.record_event(now, *event) is not None for event in parsed)
    return answer({**OK, "count": len(parsed)}, headers={"X-Fakeshift-Recorded": str(recorded)})


@bp.get("/api/v1/customer_search/show_events")
def show_events():
    only_fields(request.args, ("uuid",))
    profile_uuid = string_field(request.args, "uuid", required=True)
    with caller_account() as (account, _now):
        events = account.events_of(profile_uuid)
    # The export types timestamp_epoch as a string here (and as an integer in the history).
    return answer([{"_bsft_doc_type": "events", **record,
                    "timestamp_epoch": str(record["timestamp_epoch"])} for record in events])


@bp.get("/api/v1/event/history")
def event_history():
    only_fields(request.args, ("event_name", "limit"))
    name = string_field(request.args, "event_name", required=True)
    limit = request.args.get("limit", str(EVENT_HISTORY_LIMIT))
    # isascii: str.isdigit also takes digits int() cannot read, such as "²".
    if not (limit.isascii() and limit.isdigit()) or not 1 <= int(limit) <= EVENT_HISTORY_LIMIT:
        raise InvalidField("limit", f"must be an integer from 1 to {EVENT_HISTORY_LIMIT}")
    with caller_account() as (account, _now):
        return answer({name: account.event_history(name, int(limit))})


def _list_identifier(body: dict) -> tuple[str, str]:
    only_fields(body, _LIST_FIELDS)
    key = string_field(body, "identifier_key", required=True)
    value = string_field(body, "identifier_value", required=True)
    if key not in ("email", "customer_id"):
        raise InvalidField("identifier_key", "must be one of: email, customer_id")
    return key, value


# ---- the rest of Blueshift's published API, answered from the document ----------------------

surface.register(bp, load_document("blueshift"), caller_account)
