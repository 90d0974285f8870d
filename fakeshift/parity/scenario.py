"""The one scripted scenario `fakeshift parity` plays: the behaviour Blueshift's reference pages
describe, step by step, on identifiers made for this run alone.

Every identifier holds the run id (`parity-<10 hex digits>`), so a run touches nothing it did
not create, and two runs never meet. The steps are played on every server in turn, step by
step, so both sides see the same time pass between a delete and the reads after it.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from .outcomes import Outcome
from .transport import Server

# Seed page "Delete a customer": "A single request can delete up to 50 profiles." This is
# Blueshift's documented cap, not fakeshift's constant: the scenario checks the emulator
# against the documentation, so it must not follow the emulator if that drifts.
DELETE_ALL_CAP = 50
# Blueshift's export: a bulk call carries at most 50 customers.
BULK_CAP = 50
# No account holds this many lists: the largest id a 32-bit serial column gives out. The
# "unknown list" step sends a removal of the run's own email, so even a list that did exist
# would lose nobody.
UNKNOWN_LIST_ID = 2**31 - 1
# The tags of the run's emails (parity-<run>-<tag>@example.com); cleanup deletes them all.
EMAIL_TAGS = ("dup", "cap", "pair", "forget", "list", "group")
# The most profiles the scenario gives one email (the cap's worth plus one), so the most
# delete-all calls cleanup needs on a server that deletes only one per call, plus the 404.
MOST_PROFILES_PER_EMAIL = DELETE_ALL_CAP + 1
GROUP_ATTRIBUTES = {"firstname": "Parity", "lastname": "Check"}

# What steps capture for later ones, named as a skipped step's reason names them.
FIRST_DUPLICATE = "uuid of the first duplicate"
FORGOTTEN = "uuid of the forgotten customer"
GROUP_MEMBER = "uuid of the group's member"
LIST_ID = "list id"
GROUP = "group"

CUSTOMERS = "/api/v1/customers"
DELETE = "/api/v1/customers/delete"
FORGET = "/api/v1/customers/forget"
UNFORGET = "/api/v1/customers/unforget"
BULK = "/api/v1/customers/bulk"
DELETE_ALL = {"delete_all_matching_customers": "true"}


@dataclass(frozen=True)
class Run:
    id: str

    @classmethod
    def new(cls) -> Run:
        return cls(f"parity-{secrets.token_hex(5)}")

    def email(self, tag: str) -> str:
        return f"{self.id}-{tag}@example.com"

    def customer_id(self, tag: str, number: int = 1) -> str:
        return f"{self.id}-{tag}-{number}"

    @property
    def list_name(self) -> str:
        return f"{self.id}-list"

    @property
    def group_id(self) -> str:
        return f"{self.id}-group"

    @property
    def unknown_group_id(self) -> str:
        return f"{self.id}-no-such-group"


class Unavailable(Exception):
    """A step needs something an earlier step on this server did not give."""


class Captured(dict):
    """What earlier steps on one server answered that later steps need (uuids, a list id)."""

    def need(self, name: str):
        if name not in self:
            raise Unavailable(f"needs the {name} an earlier step did not answer")
        return self[name]


@dataclass
class Side:
    role: str  # "reference" or "candidate"
    server: Server
    is_fakeshift: bool
    captured: Captured = field(default_factory=Captured)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict | None = None
    body: dict | None = None


@dataclass(frozen=True)
class Step:
    id: str
    title: str
    request: Callable[[Run, Captured], Request]
    capture: Callable[[object, Captured], None] | None = None
    observe: Callable[[object, Captured], dict] | None = None
    # Done before the request through fakeshift's control plane; answers why the step cannot be
    # played on this server, or None.
    setup: Callable[[Run, Side], str | None] | None = None


# ---- what steps capture and observe (defensive: any server may answer anything) -------------

def _uuid_in(body) -> str | None:
    customer = body.get("customer") if isinstance(body, dict) else None
    uuid = customer.get("uuid") if isinstance(customer, dict) else None
    return uuid if isinstance(uuid, str) else None


def _uuid_as(name: str):
    def capture(body, captured: Captured) -> None:
        if _uuid_in(body) is not None:
            captured[name] = _uuid_in(body)
    return capture


def _new_profile_versus(name: str):
    """Whether the answer is another profile than the one captured as `name`: a boolean, so the
    uuids themselves are never compared or recorded."""
    def observe(body, captured: Captured) -> dict:
        if _uuid_in(body) is None or name not in captured:
            return {}
        return {"new_profile": _uuid_in(body) != captured[name]}
    return observe


def _count_users(body, _captured) -> dict:
    users = body.get("users") if isinstance(body, dict) else None
    return {"users": len(users)} if isinstance(users, list) else {}


def _the_list(body):
    # Blueshift's export shows the created list inside an array; take it from either form.
    if isinstance(body, list) and len(body) == 1:
        body = body[0]
    return body if isinstance(body, dict) else {}


def _capture_list_id(body, captured: Captured) -> None:
    list_id = _the_list(body).get("id")
    if isinstance(list_id, int) and not isinstance(list_id, bool):
        captured[LIST_ID] = list_id


def _count_list_users(body, _captured) -> dict:
    count = _the_list(body).get("user_count")
    return {"user_count": count} if isinstance(count, int) and not isinstance(count, bool) else {}


def _seed_group(run: Run, side: Side) -> str | None:
    """Blueshift has no public call that creates a group, so only a fakeshift server, through its
    control plane, can hold one for the run to delete."""
    if not side.is_fakeshift:
        return ("no public API creates a customer group, and this server has no fakeshift "
                "control plane")
    member = side.captured.need(GROUP_MEMBER)
    answer = side.server.control("POST", side.server.account_path + "/seed", {"groups": [
        {"group_id": run.group_id, "attributes": GROUP_ATTRIBUTES, "members": [{"uuid": member}]}]})
    if answer.status == 200:
        side.captured[GROUP] = run.group_id
        return None
    if answer.status == 401:
        return f"the control plane needs the server's admin token (--{side.role}-admin-token)"
    if answer.status == 400:
        # The member is checked in the account named after the key: it is not there when the
        # server maps keys to accounts of other names (--api-key KEY@ACCOUNT).
        return "could not seed a group: the key's account is not named after the key"
    return f"could not seed a group: the control plane answered {answer.status or answer.failure}"


def _by_email(tag: str, **extra):
    return lambda run, _got: Request("POST", DELETE, body={"email": run.email(tag), **extra})


def _delete_all(tag: str):
    return lambda run, _got: Request("POST", DELETE, query=DELETE_ALL,
                                     body={"email": run.email(tag)})


def _identify(tag: str, number: int | None = 1):
    def request(run: Run, _got) -> Request:
        body = {"email": run.email(tag)}
        if number is not None:
            body["customer_id"] = run.customer_id(tag, number)
        return Request("POST", CUSTOMERS, body=body)
    return request


def _bulk(tag: str, count: int):
    return lambda run, _got: Request("POST", BULK, body={"customers": [
        {"email": run.email(tag), "customer_id": run.customer_id(tag, n)}
        for n in range(1, count + 1)]})


def _search(tag: str):
    return lambda run, _got: Request("GET", CUSTOMERS, query={"email": run.email(tag)})


def _read(name: str, after: str | None = None):
    """GET the customer captured as `name`; with `after`, only once that was captured too."""
    def request(_run, got: Captured) -> Request:
        if after is not None:
            got.need(after)
        return Request("GET", f"{CUSTOMERS}/{got.need(name)}")
    return request


def _list_call(verb: str, tag: str = "list", list_id: int | None = None):
    def request(run: Run, got: Captured) -> Request:
        target = got.need(LIST_ID) if list_id is None else list_id
        return Request("PUT", f"/api/v1/custom_user_lists/{verb}/{target}",
                       body={"identifier_key": "email", "identifier_value": run.email(tag)})
    return request


def _list_details(_run, got: Captured) -> Request:
    return Request("GET", f"/api/v1/custom_user_lists/id/{got.need(LIST_ID)}")


def _create_list(run: Run, _got) -> Request:
    return Request("POST", "/api/v1/custom_user_lists/create", body={
        "name": run.list_name, "description": "fakeshift parity run", "source": "email",
        "is_seed_list": 0})


def _delete_group(run: Run, got: Captured) -> Request:
    # delete_users left out on purpose: what an omitted flag means is what the seed page
    # contradicts itself about, so it is what parity must watch.
    return Request("DELETE", f"/api/v1/customer_group/{got.need(GROUP)}")


IMMEDIATE_STEPS: tuple[Step, ...] = (
    # Duplicates, and delete taking the first match only.
    Step("identify", "identify a new customer", _identify("dup", 1),
         capture=_uuid_as(FIRST_DUPLICATE)),
    Step("identify-duplicate", "identify the same email with a new customer_id (a duplicate)",
         _identify("dup", 2), observe=_new_profile_versus(FIRST_DUPLICATE)),
    Step("search", "search the email: both duplicates", _search("dup"), observe=_count_users),
    Step("delete-first-match", "delete by email: the first match only", _by_email("dup")),
    Step("read-after-delete", "read the deleted customer at once", _read(FIRST_DUPLICATE)),
    Step("search-after-delete", "search the email at once after the delete", _search("dup"),
         observe=_count_users),
    Step("delete-second-match", "delete again: the duplicate still matches", _by_email("dup")),
    Step("delete-no-match", "delete a third time: no match left", _by_email("dup")),
    # The 50 cap of delete_all_matching_customers.
    Step("bulk-identify-cap", f"bulk identify {BULK_CAP} customers with one email",
         _bulk("cap", BULK_CAP)),
    Step("identify-past-cap", f"identify customer {DELETE_ALL_CAP + 1} with that email",
         _identify("cap", DELETE_ALL_CAP + 1)),
    Step("search-cap", f"search the {DELETE_ALL_CAP + 1} duplicates", _search("cap"),
         observe=_count_users),
    Step("delete-all-cap", f"delete all matching (query flag): {DELETE_ALL_CAP} at most",
         _delete_all("cap")),
    Step("delete-all-rest", "delete all matching again: the one left", _delete_all("cap")),
    Step("delete-all-no-match", "delete all matching a third time: none left", _delete_all("cap")),
    Step("bulk-identify-pair", "bulk identify two customers with one email", _bulk("pair", 2)),
    Step("delete-all-body-flag", "delete all matching (flag in the body, as the seed page shows)",
         _by_email("pair", delete_all_matching_customers=True)),
    Step("delete-after-body-flag", "delete: none left after the body flag", _by_email("pair")),
    # Forget, a suppressed identify, unforget and a new profile.
    Step("identify-to-forget", "identify a customer to forget", _identify("forget", 1),
         capture=_uuid_as(FORGOTTEN)),
    Step("forget", "forget (stop tracking) by email",
         lambda run, _got: Request("POST", FORGET, body={"email": run.email("forget")})),
    Step("read-after-forget", "read the forgotten customer at once", _read(FORGOTTEN)),
    Step("identify-suppressed", "identify the forgotten email again (suppressed)",
         _identify("forget", None)),
    Step("search-suppressed", "search the forgotten email", _search("forget"),
         observe=_count_users),
    Step("unforget", "unforget (start tracking) by email",
         lambda run, _got: Request("POST", UNFORGET, body={"email": run.email("forget")})),
    Step("identify-after-unforget", "identify after unforget: a new profile",
         _identify("forget", None), observe=_new_profile_versus(FORGOTTEN)),
    # Lists.
    Step("list-create", "create a custom list", _create_list, capture=_capture_list_id),
    Step("identify-list-member", "identify the list's member", _identify("list", 1)),
    Step("list-add", "add the member to the list", _list_call("add_user_to_list")),
    Step("list-details", "list details after the add", _list_details, observe=_count_list_users),
    Step("list-remove", "remove the member from the list", _list_call("remove_user_from_list")),
    Step("list-remove-non-member", "remove again: not a member any more",
         _list_call("remove_user_from_list")),
    Step("list-details-after-remove", "list details after the remove", _list_details,
         observe=_count_list_users),
    Step("list-remove-unknown-list", "remove from a list that does not exist",
         _list_call("remove_user_from_list", list_id=UNKNOWN_LIST_ID)),
    # Groups.
    Step("group-delete-unknown", "delete a group that does not exist",
         lambda run, _got: Request("DELETE", f"/api/v1/customer_group/{run.unknown_group_id}",
                                   query={"delete_users": "false"})),
    Step("identify-group-member", "identify the group's member", _identify("group", 1),
         capture=_uuid_as(GROUP_MEMBER)),
    Step("group-delete", "delete the group, delete_users left out", _delete_group,
         setup=_seed_group),
    Step("group-delete-member-read", "read the group's member after the group delete",
         _read(GROUP_MEMBER, after=GROUP)),
    # Errors.
    Step("delete-missing-identifier", "delete with no identifier",
         lambda _run, _got: Request("POST", DELETE, body={})),
    Step("forget-missing-identifier", "forget with no identifier",
         lambda _run, _got: Request("POST", FORGET, body={})),
)

# Played once the settle wait has passed: what the same reads show later (eventual consistency).
SETTLED_STEPS: tuple[Step, ...] = (
    Step("read-after-delete-settled", "read the deleted customer after the settle wait",
         _read(FIRST_DUPLICATE)),
    Step("search-after-delete-settled", "search the deleted email after the settle wait",
         _search("dup"), observe=_count_users),
    Step("read-after-forget-settled", "read the forgotten customer after the settle wait",
         _read(FORGOTTEN)),
    Step("search-cap-settled", "search the delete-all email after the settle wait",
         _search("cap"), observe=_count_users),
)

STEPS = IMMEDIATE_STEPS + SETTLED_STEPS


def play(step: Step, run: Run, side: Side) -> Outcome:
    try:
        if step.setup is not None:
            why_not = step.setup(run, side)
            if why_not is not None:
                return Outcome(skipped=why_not)
        request = step.request(run, side.captured)
    except Unavailable as missing:
        return Outcome(skipped=str(missing))
    answer = side.server.call(request.method, request.path, request.query, request.body)
    outcome = Outcome.from_answer(answer)
    if answer.status == 200:
        body = answer.json()
        if step.capture is not None:
            step.capture(body, side.captured)
        if step.observe is not None:
            outcome.observed = step.observe(body, side.captured)
    return outcome


def clean_up(run: Run, side: Side) -> list[str]:
    """Undo what the run made on one server, through the same public API; say what is left."""
    server, notes = side.server, []

    def failed(what: str, answer) -> None:
        notes.append(f"could not {what}: {answer.status or answer.failure}")

    # First, so that a run stopped between forget and unforget leaves no suppression behind.
    answer = server.call("POST", UNFORGET, body={"email": run.email("forget")})
    if answer.status != 200:
        failed(f"unforget {run.email('forget')}", answer)
    if GROUP in side.captured:
        answer = server.call("DELETE", f"/api/v1/customer_group/{run.group_id}",
                             {"delete_users": "false"})
        if answer.status not in (200, 404):  # 404: the scenario deleted it already
            failed(f"delete group {run.group_id}", answer)
    if LIST_ID in side.captured:
        answer = server.call("PUT", "/api/v1/custom_user_lists/remove_user_from_list/"
                             f"{side.captured[LIST_ID]}",
                             body={"identifier_key": "email",
                                   "identifier_value": run.email("list")})
        if answer.status != 200:
            failed(f"empty list {run.list_name}", answer)
        notes.append(f"left behind: the empty list {run.list_name} (Blueshift's API has no call "
                     "that deletes a list)")
    cleared = 0
    for tag in EMAIL_TAGS:
        email = run.email(tag)
        for _ in range(MOST_PROFILES_PER_EMAIL + 1):
            answer = server.call("POST", DELETE, DELETE_ALL, {"email": email})
            if answer.status != 200:
                break
        if answer.status == 404:  # nothing of that email is left to delete
            cleared += 1
        else:
            failed(f"delete every profile of {email}", answer)
    notes.append(f"scheduled for deletion: every profile of {cleared} of the run's "
                 f"{len(EMAIL_TAGS)} emails")
    return notes
