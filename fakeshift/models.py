"""The domain: accounts, profiles, custom lists, customer groups, suppression and pending deletion.

Plain Python, no HTTP. Every rule of the emulated Blueshift behaviour lives here, and only here:
first match is the oldest profile, one delete call schedules at most `DELETE_ALL_CAP` profiles,
deletion is asynchronous (pending until the account's deletion delay has passed on the virtual
clock), forgetting suppresses identifiers, unforgetting restores nothing.

Thread safety: a `Store` has one lock. Every read or write of an account goes through
`Store.open()`, which holds that lock, purges what has fallen due, and hands out the account with
the current virtual time.
"""

from __future__ import annotations

import heapq
import itertools
import string
import threading
import zlib
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable, Iterable, Iterator

from .clock import VirtualClock, iso, parse_iso
from .errors import (
    CUSTOMER_NOT_FOUND,
    GROUP_NOT_FOUND,
    LIST_NOT_FOUND,
    CapExceeded,
    InvalidField,
    LimitReached,
    NotFound,
    TooLarge,
)
from .ids import new_uuid
from .objects import StoredObjects

IDENTIFIER_KINDS = ("customer_id", "email", "cookie", "device_id")
LIST_SOURCES = ("email", "customer_id")
# One delete call with delete_all_matching_customers schedules at most this many profiles.
DELETE_ALL_CAP = 50
# One bulk create call carries at most this many customers.
BULK_CAP = 50
# One bulk add or remove of list members carries at most this many identifier values; with
# async=true, at most LIST_BULK_ASYNC_CAP (Blueshift's export).
LIST_BULK_CAP = 25
LIST_BULK_ASYNC_CAP = 500
# One bulk events call carries at most this many events (the export's 413 says 100).
BULK_EVENTS_CAP = 100
# An event history answers at most this many events, and this many when no limit is given.
EVENT_HISTORY_LIMIT = 50
# The event whose other fields are the customer's attributes, as POST /api/v1/customers sets them.
IDENTIFY_EVENT = "identify"
# Fields an event carries about itself rather than about its customer.
EVENT_OWN_FIELDS = frozenset({"event", "event_uuid", "timestamp"})
# The default cap on profiles held by all accounts together (pending deletions included): about
# 1 GB at ~480 bytes a profile, and room for one account at max_profiles_per_account's default
# (the benchmark seeds a million). Without it, max_accounts times that per-account cap is no bound.
MAX_PROFILES_TOTAL = 2_000_000
# Fields of a profile that identify calls cannot set as free attributes.
RESERVED_FIELDS = frozenset(
    {"uuid", "created_at", "updated_at", "deletion_pending", "deletion_due_at",
     "deletion_requested_at", "deletion_reason", "is_forgotten", "forgotten_at"}
)


# A-Z to a-z and nothing else. str.lower() also folds characters that merely look like ASCII
# letters into them (the Kelvin sign U+212A becomes "k"), so forgetting "\u212aim@example.com"
# would delete and suppress kim@example.com, and it folds fullwidth letters among themselves.
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def match_key(kind: str, value: str) -> str:
    """Emails match with ASCII letters folded to lower case (as mail addresses do in practice),
    every other character exactly; other ids match exactly."""
    if kind != "email":
        return value
    # For pure ASCII, lower() is the same fold and the faster one.
    return value.lower() if value.isascii() else value.translate(_ASCII_LOWER)


def check_list_bulk(count: int, in_background: bool, verb: str) -> None:
    """A bulk add or remove ("add", "remove") of `count` identifier values fits its cap, or
    CapExceeded with the message Blueshift's export gives."""
    if in_background and count > LIST_BULK_ASYNC_CAP:
        raise CapExceeded(
            f"You can {verb} maximum {LIST_BULK_ASYNC_CAP} users in one async api call")
    if not in_background and count > LIST_BULK_CAP:
        raise CapExceeded(f"You can {verb} maximum {LIST_BULK_CAP} users in one api call")


def check_bulk_events(count: int) -> None:
    if count > BULK_EVENTS_CAP:
        raise TooLarge(f"You can upload maximum {BULK_EVENTS_CAP} events in one api call")


def event_attributes(fields: dict) -> dict:
    """What an identify event sets on its customer: every field but the identifiers and the
    event's own."""
    return {name: value for name, value in fields.items()
            if name not in IDENTIFIER_KINDS and name not in EVENT_OWN_FIELDS}


@dataclass
class Settings:
    """Server-wide defaults; an account may override the deletion delay."""

    deletion_delay: float = 7200.0
    group_delete_users_default: bool = True
    max_accounts: int = 10_000
    max_profiles_per_account: int = 2_000_000
    max_profiles_total: int = MAX_PROFILES_TOTAL
    # Past it the oldest event goes: memory stays within max_accounts times this many events.
    max_events_per_account: int = 1_000


@dataclass(frozen=True)
class Deletion:
    reason: str  # "delete", "forget" or "group_delete"
    requested_at: datetime
    due_at: datetime


class Profile:
    __slots__ = ("uuid", "seq", "created_at", "updated_at", "email", "customer_id", "cookie",
                 "device_id", "attributes", "deletion")

    def __init__(self, uuid: str, seq: int, now: datetime):
        self.uuid = uuid
        self.seq = seq
        self.created_at = now
        self.updated_at = now
        self.email = self.customer_id = self.cookie = self.device_id = None
        self.attributes: dict | None = None
        self.deletion: Deletion | None = None

    @property
    def active(self) -> bool:
        return self.deletion is None

    def age_key(self) -> tuple:
        return (self.created_at, self.seq)

    def identifiers(self) -> dict[str, str]:
        return {k: getattr(self, k) for k in IDENTIFIER_KINDS if getattr(self, k) is not None}

    def to_state(self) -> dict:
        """Everything needed to rebuild this profile exactly (see Account.from_state).

        Times are written with isoformat(), five times faster than iso(): a save copies every
        profile while holding the store lock."""
        deletion = self.deletion
        return {
            "uuid": self.uuid, "seq": self.seq,
            "created_at": self.created_at.isoformat(), "updated_at": self.updated_at.isoformat(),
            **self.identifiers(),
            "attributes": self.attributes,
            "deletion": None if deletion is None else {
                "reason": deletion.reason, "requested_at": deletion.requested_at.isoformat(),
                "due_at": deletion.due_at.isoformat()},
        }

    def to_dict(self) -> dict:
        body = dict(self.attributes or {})
        body.update(self.identifiers())
        body["uuid"] = self.uuid
        body["created_at"] = iso(self.created_at)
        body["updated_at"] = iso(self.updated_at)
        if self.deletion is not None:
            body["deletion_pending"] = True
            body["deletion_reason"] = self.deletion.reason
            body["deletion_requested_at"] = iso(self.deletion.requested_at)
            body["deletion_due_at"] = iso(self.deletion.due_at)
            if self.deletion.reason == "forget":
                body["is_forgotten"] = True
                body["forgotten_at"] = iso(self.deletion.requested_at)
        return body


@dataclass
class CustomList:
    id: int
    uuid: str
    name: str
    description: str
    source: str
    is_seed_list: bool
    created_at: datetime
    updated_at: datetime
    members: dict[str, None] = field(default_factory=dict)  # profile uuids, in order added
    # The last overwrite_list call: {"s3_file_path", "requested_at"}. Replaced, never changed.
    last_overwrite: dict | None = None

    def to_dict(self, account_id: int, with_members: bool = False) -> dict:
        """Blueshift's list object, every field of its export and no other."""
        body = {
            "id": self.id,
            "account_id": account_id,
            # Blueshift answers the name a list was created with as its `filename`.
            "filename": self.name,
            "description": self.description,
            "filesize": None,  # no file: lists are created empty, through the API
            "user_count": len(self.members),
            "status": "ready",
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "is_exporting": False,
            # An account has one user here, the API itself, numbered like its account.
            "user_id": account_id,
            "source": self.source,
            "uuid": self.uuid,
            "is_seed_list": self.is_seed_list,
            "deleted_at": None,  # lists are never deleted
            "import_method": "api",
            "version": "v2",  # what the export's create example shows for API-made lists
            "author": "API",
        }
        if with_members:
            body["user_uuids"] = list(self.members)
            body["last_overwrite"] = self.last_overwrite
        return body

    def to_seed_list_dict(self, account_id: int) -> dict:
        """The entry of the seed-lists answer: the same object, but the export names its
        exporting flag `is_exported` there (and `is_exporting` on create and details)."""
        body = self.to_dict(account_id)
        body["is_exported"] = body.pop("is_exporting")
        return body

    def to_state(self) -> dict:
        return {"id": self.id, "uuid": self.uuid, "name": self.name,
                "description": self.description, "source": self.source,
                "is_seed_list": self.is_seed_list, "created_at": iso(self.created_at),
                "updated_at": iso(self.updated_at), "members": list(self.members),
                "last_overwrite": self.last_overwrite}

    @classmethod
    def from_state(cls, state: dict) -> "CustomList":
        # last_overwrite is absent from files saved before overwrite_list was served.
        return cls(state["id"], state["uuid"], state["name"], state["description"],
                   state["source"], state["is_seed_list"], parse_iso(state["created_at"]),
                   parse_iso(state["updated_at"]), dict.fromkeys(state["members"]),
                   state.get("last_overwrite"))


@dataclass
class Group:
    group_id: str
    uuid: str
    account_uuid: str
    created_at: datetime
    updated_at: datetime
    extended_attributes: dict
    user_uuids: dict[str, None] = field(default_factory=dict)

    def to_dict(self) -> dict:
        # Blueshift repeats the plain attributes (email, firstname, ...) at the top level.
        flat = {k: v for k, v in self.extended_attributes.items() if not k.startswith("_bsft")}
        return {
            "account_uuid": self.account_uuid,
            "created_at": iso(self.created_at),
            "extended_attributes": dict(self.extended_attributes),
            "group_id": self.group_id,
            "updated_at": iso(self.updated_at),
            "user_count": len(self.user_uuids),
            "user_uuids": list(self.user_uuids),
            "uuid": self.uuid,
            "version": "1",
            **flat,
        }

    def to_state(self) -> dict:
        return {"group_id": self.group_id, "uuid": self.uuid, "account_uuid": self.account_uuid,
                "created_at": iso(self.created_at), "updated_at": iso(self.updated_at),
                "extended_attributes": self.extended_attributes,
                "user_uuids": list(self.user_uuids)}

    @classmethod
    def from_state(cls, state: dict) -> "Group":
        return cls(state["group_id"], state["uuid"], state["account_uuid"],
                   parse_iso(state["created_at"]), parse_iso(state["updated_at"]),
                   dict(state["extended_attributes"]), dict.fromkeys(state["user_uuids"]))


class ProfileTally:
    """How many profiles the accounts of one store hold, against Settings.max_profiles_total.
    The store lock guards it, as it guards the accounts."""

    def __init__(self, settings: Settings, accounts: Callable[[], Iterable[Account]] = tuple,
                 now_of: Callable[[str], datetime] | None = None):
        self.count = 0
        self._settings = settings
        self._accounts = accounts
        # Each account's own time: accounts may run on clocks of their own (AccountClock).
        self._now_of = now_of

    def make_room(self) -> None:
        """Room for one more profile, or LimitReached."""
        cap = self._settings.max_profiles_total
        if self.count < cap:
            return
        # Profiles fallen due in accounts nobody has opened since are gone for every client
        # already; only their purge is pending.
        for account in self._accounts():
            account.purge_due(self._now_of(account.name))
        if self.count >= cap:
            raise LimitReached(
                f"Profile limit reached: the server holds {cap} profiles (max_profiles_total)")


class Account:
    """One tenant: everything one API key (or one configured account) can see and change."""

    def __init__(self, name: str, settings: Settings, account_uuid: str | None = None,
                 tally: ProfileTally | None = None):
        self.name = name
        self.uuid = account_uuid or new_uuid()
        self._settings = settings
        # Shared with the other accounts of the store; an account on its own counts alone.
        self._tally = tally if tally is not None else ProfileTally(settings)
        self.deletion_delay: float | None = None  # None: the server's default
        self.profiles: dict[str, Profile] = {}
        # kind -> match key -> profiles not yet purged, in creation order: the profile itself
        # while it is the only one, a list once there are duplicates. Most identifiers belong to
        # one profile, and a list each cost ~150 bytes and garbage-collector work per profile.
        self._index: dict[str, dict[str, Profile | list[Profile]]] = {
            k: {} for k in IDENTIFIER_KINDS}
        self._purge_queue: list[tuple[datetime, int, str]] = []
        self._seq = itertools.count()
        self.suppressed: dict[tuple[str, str], dict] = {}
        self.lists: dict[int, CustomList] = {}
        self._next_list_id = 1001
        self.groups: dict[str, Group] = {}
        self.purged_count = 0
        # What SDKs create through the rest of the API (templates, catalogs, campaigns).
        self.objects = StoredObjects()
        # Recorded events, oldest first, at most max_events_per_account of them (see
        # record_event); each a plain dict, replaced rather than changed once stored.
        self.events: deque[dict] = deque()
        self._event_uuids: set[str] = set()
        self.events_dropped = 0

    # ---- settings -------------------------------------------------------------------------

    @property
    def number(self) -> int:
        """Blueshift's integer `account_id`. A fakeshift account has only a uuid, so this is
        derived from it: stable for as long as the account lives, restarts included."""
        return zlib.crc32(self.uuid.encode())

    @property
    def effective_deletion_delay(self) -> float:
        if self.deletion_delay is not None:
            return self.deletion_delay
        return self._settings.deletion_delay

    # ---- profiles and matching ------------------------------------------------------------

    def new_profile(self, now: datetime, identifiers: dict, attributes: dict | None = None,
                    created_at: datetime | None = None, profile_uuid: str | None = None) -> Profile:
        if len(self.profiles) >= self._settings.max_profiles_per_account:
            raise LimitReached(
                f"Profile limit reached: this account holds "
                f"{self._settings.max_profiles_per_account} profiles (max_profiles_per_account)"
            )
        self._tally.make_room()
        profile = Profile(profile_uuid or new_uuid(), next(self._seq), created_at or now)
        if profile.uuid in self.profiles:
            raise InvalidField("uuid", f"{profile.uuid} already exists")
        if created_at is not None:
            profile.updated_at = created_at
        self.profiles[profile.uuid] = profile
        self._tally.count += 1
        self._set_identifiers(profile, identifiers)
        if attributes:
            profile.attributes = dict(attributes)
        return profile

    def _set_identifiers(self, profile: Profile, identifiers: dict) -> None:
        for kind, value in identifiers.items():
            old = getattr(profile, kind)
            if old == value:
                continue
            if old is not None:
                self._unindex(profile, kind, old)
            setattr(profile, kind, value)
            index = self._index[kind]
            key = match_key(kind, value)
            bucket = index.get(key)
            if bucket is None:
                index[key] = profile
            elif type(bucket) is list:
                bucket.append(profile)
            else:
                index[key] = [bucket, profile]

    def _unindex(self, profile: Profile, kind: str, value: str) -> None:
        index = self._index[kind]
        key = match_key(kind, value)
        bucket = index.get(key)
        if bucket is profile:
            del index[key]
        elif type(bucket) is list:
            bucket.remove(profile)
            if len(bucket) == 1:
                index[key] = bucket[0]

    def _indexed(self, kind: str, value: str) -> list[Profile] | tuple[Profile, ...]:
        bucket = self._index[kind].get(match_key(kind, value))
        if bucket is None:
            return ()
        return bucket if type(bucket) is list else (bucket,)

    def lookup(self, kind: str, value: str) -> list[Profile]:
        """Profiles not yet purged with this identifier, oldest first (pending ones included)."""
        return sorted(self._indexed(kind, value), key=Profile.age_key)

    def active_matches(self, identifiers: dict) -> list[Profile]:
        """Active profiles matching any of the identifiers, oldest first, each once."""
        found: dict[str, Profile] = {}
        for kind, value in identifiers.items():
            for profile in self._indexed(kind, value):
                if profile.active:
                    found[profile.uuid] = profile
        return sorted(found.values(), key=Profile.age_key)

    def get_profile(self, profile_uuid: str) -> Profile:
        profile = self.profiles.get(profile_uuid)
        if profile is None:
            raise NotFound(CUSTOMER_NOT_FOUND)
        return profile

    def is_suppressed(self, identifiers: dict) -> bool:
        return any((k, match_key(k, v)) in self.suppressed for k, v in identifiers.items())

    def identify(self, now: datetime, identifiers: dict, attributes: dict,
                 profile_uuid: str | None = None) -> Profile | None:
        """Create or update one customer. Returns None when an identifier is suppressed
        (forgotten): the call is accepted and changes nothing."""
        if self.is_suppressed(identifiers):
            return None
        profile = self._identify_target(identifiers, profile_uuid)
        if profile is None:
            return self.new_profile(now, identifiers, attributes)
        self._set_identifiers(profile, identifiers)
        if attributes:
            profile.attributes = {**(profile.attributes or {}), **attributes}
        profile.updated_at = now
        return profile

    def _identify_target(self, identifiers: dict, profile_uuid: str | None) -> Profile | None:
        if profile_uuid is not None:
            profile = self.profiles.get(profile_uuid)
            if profile is None or not profile.active:
                raise NotFound(CUSTOMER_NOT_FOUND)
            return profile
        # customer_id decides alone: a new customer_id makes a new profile even when its email
        # is taken, which is how duplicate emails arise in real accounts.
        for kind in IDENTIFIER_KINDS:
            if kind in identifiers:
                matches = self.active_matches({kind: identifiers[kind]})
                return matches[0] if matches else None
        return None

    # ---- deletion, forgetting, purging ----------------------------------------------------

    def _schedule_deletion(self, profile: Profile, reason: str, now: datetime) -> None:
        due = now + timedelta(seconds=self.effective_deletion_delay)
        profile.deletion = Deletion(reason, now, due)
        heapq.heappush(self._purge_queue, (due, profile.seq, profile.uuid))

    def delete(self, now: datetime, identifiers: dict, all_matching: bool) -> list[Profile]:
        """Schedule the first match, or with `all_matching` up to DELETE_ALL_CAP matches."""
        matches = self.active_matches(identifiers)
        if not matches:
            raise NotFound(CUSTOMER_NOT_FOUND)
        chosen = matches[:DELETE_ALL_CAP] if all_matching else matches[:1]
        for profile in chosen:
            self._schedule_deletion(profile, "delete", now)
        self.purge_due(now)
        return chosen

    def forget(self, now: datetime, identifiers: dict) -> list[Profile]:
        """Schedule every active match and suppress the identifiers, matched or not."""
        matches = self.active_matches(identifiers)
        for profile in matches:
            self._schedule_deletion(profile, "forget", now)
        for kind, value in identifiers.items():
            self.suppressed.setdefault(
                (kind, match_key(kind, value)), {"kind": kind, "value": value, "since": iso(now)}
            )
        self.purge_due(now)
        return matches

    def unforget(self, identifiers: dict) -> int:
        """Lift suppression. Restores nothing: the next identify makes a new profile."""
        lifted = 0
        for kind, value in identifiers.items():
            if self.suppressed.pop((kind, match_key(kind, value)), None) is not None:
                lifted += 1
        return lifted

    def purge_due(self, now: datetime) -> int:
        """Remove every pending profile whose due time has come, from everywhere, its events
        included."""
        purged = []
        queue = self._purge_queue
        while queue and queue[0][0] <= now:
            _, _, profile_uuid = heapq.heappop(queue)
            profile = self.profiles.get(profile_uuid)
            if profile is None:
                continue
            self._remove_profile(profile)
            purged.append(profile_uuid)
        if purged and self.events:
            gone = set(purged)
            self.events = deque(record for record in self.events
                                if record.get("user_uuid") not in gone)
            self._event_uuids = {record["event_uuid"] for record in self.events}
        self.purged_count += len(purged)
        self._tally.count -= len(purged)
        return len(purged)

    def _remove_profile(self, profile: Profile) -> None:
        """Take the profile out of the account, its indexes, lists and groups (the caller
        counts it off the tally)."""
        del self.profiles[profile.uuid]
        for kind, value in profile.identifiers().items():
            self._unindex(profile, kind, value)
        for custom_list in self.lists.values():
            custom_list.members.pop(profile.uuid, None)
        for group in self.groups.values():
            group.user_uuids.pop(profile.uuid, None)

    # ---- merging ---------------------------------------------------------------------------

    def merge(self, now: datetime, duplicate_id: str, survivor_id: str) -> list[Profile]:
        """Merge every active profile with customer_id `duplicate_id` into the oldest active
        profile with `survivor_id`, and return the merged ones, now gone. The survivor keeps
        its own identifiers and attributes and takes the duplicates' where it has none; their
        list and group memberships and their events become its own. A customer merged into
        itself is left as it is."""
        survivors = self.active_matches({"customer_id": survivor_id})
        if not survivors:
            raise NotFound(CUSTOMER_NOT_FOUND)
        if duplicate_id == survivor_id:
            return []
        duplicates = self.active_matches({"customer_id": duplicate_id})
        if not duplicates:
            raise NotFound(CUSTOMER_NOT_FOUND)
        survivor = survivors[0]
        absorbed = {profile.uuid for profile in duplicates}
        identifiers: dict[str, str] = {}
        attributes: dict = {}
        memberships = [custom_list.members for custom_list in self.lists.values()]
        memberships += [group.user_uuids for group in self.groups.values()]
        # Oldest first: where duplicates differ, the newest one's value is taken.
        for duplicate in duplicates:
            for kind, value in duplicate.identifiers().items():
                if kind != "customer_id" and getattr(survivor, kind) is None:
                    identifiers[kind] = value
            attributes.update(duplicate.attributes or {})
            for members in memberships:
                if duplicate.uuid in members:
                    del members[duplicate.uuid]
                    members.setdefault(survivor.uuid, None)
            self._remove_profile(duplicate)
        self._tally.count -= len(duplicates)
        self._set_identifiers(survivor, identifiers)
        # A new dict, not an update in place: a state save may be reading the old one.
        survivor.attributes = {**attributes, **(survivor.attributes or {})} or None
        survivor.updated_at = now
        if self.events:
            self.events = deque(
                {**record, "user_uuid": survivor.uuid}
                if record.get("user_uuid") in absorbed else record
                for record in self.events)
        return duplicates

    # ---- custom lists ----------------------------------------------------------------------

    def create_list(self, now: datetime, name: str, description: str, source: str = "email",
                    is_seed_list: bool = False, list_id: int | None = None) -> CustomList:
        if source not in LIST_SOURCES:
            raise InvalidField("source", "must be one of: email, customer_id")
        if any(existing.name.lower() == name.lower() for existing in self.lists.values()):
            raise InvalidField("name", "has already been taken")
        if list_id is None:
            list_id = self._next_list_id
        elif list_id in self.lists:
            raise InvalidField("id", f"list {list_id} already exists")
        self._next_list_id = max(self._next_list_id, list_id + 1)
        custom_list = CustomList(list_id, new_uuid(), name, description, source,
                                 is_seed_list, now, now)
        self.lists[list_id] = custom_list
        return custom_list

    def get_list(self, list_id: int) -> CustomList:
        custom_list = self.lists.get(list_id)
        if custom_list is None:
            raise NotFound(LIST_NOT_FOUND)
        return custom_list

    def _list_identifier(self, custom_list: CustomList, key: str) -> None:
        if key not in LIST_SOURCES:
            raise InvalidField("identifier_key", "must be one of: email, customer_id")
        if key != custom_list.source:
            raise InvalidField(
                "identifier_key", f"does not match the list's source ({custom_list.source})"
            )

    def add_to_list(self, now: datetime, list_id: int, key: str, value: str) -> Profile:
        """Adds the first active profile with that identifier."""
        custom_list = self.get_list(list_id)
        self._list_identifier(custom_list, key)
        matches = self.active_matches({key: value})
        if not matches:
            raise NotFound(CUSTOMER_NOT_FOUND)
        custom_list.members[matches[0].uuid] = None
        custom_list.updated_at = now
        return matches[0]

    def remove_from_list(self, now: datetime, list_id: int, key: str, value: str) -> int:
        """Removes every member with that identifier; removing a non-member is a no-op."""
        custom_list = self.get_list(list_id)
        self._list_identifier(custom_list, key)
        removed = 0
        for profile in self.lookup(key, value):
            if profile.uuid in custom_list.members:
                del custom_list.members[profile.uuid]
                removed += 1
        if removed:
            custom_list.updated_at = now
        return removed

    def bulk_add_to_list(self, now: datetime, list_id: int, key: str,
                         values: list[str]) -> tuple[int, list[str]]:
        """add_to_list for each value: how many profiles became members, and the values no
        active profile has (the others are still added)."""
        custom_list = self.get_list(list_id)
        self._list_identifier(custom_list, key)
        added, missing = 0, []
        for value in values:
            matches = self.active_matches({key: value})
            if not matches:
                missing.append(value)
            elif matches[0].uuid not in custom_list.members:
                custom_list.members[matches[0].uuid] = None
                added += 1
        if added:
            custom_list.updated_at = now
        return added, missing

    def bulk_remove_from_list(self, now: datetime, list_id: int, key: str,
                              values: list[str]) -> int:
        """remove_from_list for each value; how many members were removed."""
        custom_list = self.get_list(list_id)
        self._list_identifier(custom_list, key)
        return sum(self.remove_from_list(now, list_id, key, value) for value in values)

    def overwrite_list(self, now: datetime, list_id: int, s3_file_path: str) -> CustomList:
        """Record the request on the list. The members stay: the file is in the caller's S3
        bucket, which fakeshift cannot read."""
        custom_list = self.get_list(list_id)
        custom_list.last_overwrite = {"s3_file_path": s3_file_path, "requested_at": iso(now)}
        custom_list.updated_at = now
        return custom_list

    def seed_lists(self) -> list[CustomList]:
        return [custom_list for custom_list in self.lists.values() if custom_list.is_seed_list]

    # ---- customer groups -------------------------------------------------------------------

    def seed_group(self, now: datetime, group_id: str, extended_attributes: dict,
                   user_uuids: list[str]) -> Group:
        for user_uuid in user_uuids:
            if user_uuid not in self.profiles:
                raise InvalidField("user_uuids", f"no profile has uuid {user_uuid}")
        group = Group(group_id, new_uuid(), self.uuid, now, now,
                      dict(extended_attributes), dict.fromkeys(user_uuids))
        self.groups[group_id] = group
        return group

    def get_group(self, group_id: str) -> Group:
        group = self.groups.get(group_id)
        if group is None:
            raise NotFound(GROUP_NOT_FOUND)
        return group

    def delete_group(self, now: datetime, group_id: str, delete_users: bool | None) -> tuple[dict, int]:
        """Returns the group as it was, and how many users were scheduled for deletion."""
        group = self.get_group(group_id)
        snapshot = group.to_dict()
        if delete_users is None:
            delete_users = self._settings.group_delete_users_default
        scheduled = 0
        if delete_users:
            for user_uuid in group.user_uuids:
                profile = self.profiles.get(user_uuid)
                if profile is not None and profile.active:
                    self._schedule_deletion(profile, "group_delete", now)
                    scheduled += 1
        del self.groups[group_id]
        self.purge_due(now)
        return snapshot, scheduled

    def remove_group_user(self, now: datetime, group_id: str, user_uuid: str) -> None:
        group = self.get_group(group_id)
        if user_uuid not in group.user_uuids:
            raise NotFound("The specified user UUID was not found in the group.")
        del group.user_uuids[user_uuid]
        group.updated_at = now

    # ---- events ----------------------------------------------------------------------------

    def record_event(self, now: datetime, fields: dict, identifiers: dict,
                     moment: datetime | None) -> dict | None:
        """Record one event: `fields` as the client sent them, `identifiers` among them, and
        `moment` the time its `timestamp` names (None: now). An event with identifiers first
        identifies its customer, as POST /api/v1/customers does, an identify event with its
        other fields as attributes. Returns the record, or None when nothing was recorded: an
        identifier is suppressed (forgotten), so nothing is created either, or the event_uuid
        is recorded already (a retried call)."""
        if self.is_suppressed(identifiers) or fields.get("event_uuid") in self._event_uuids:
            return None
        record = dict(fields)
        # Blueshift's own fields win over a client's of the same name; user_uuid is its too.
        record.pop("user_uuid", None)
        if identifiers:
            attributes = event_attributes(fields) if fields["event"] == IDENTIFY_EVENT else {}
            record["user_uuid"] = self.identify(now, identifiers, attributes).uuid
        moment = moment or now
        record.update({
            "event_uuid": fields.get("event_uuid") or new_uuid(),
            "timestamp": fields.get("timestamp") or iso(now),
            "timestamp_epoch": int(moment.timestamp()),
            "_bsft_ts": iso(now),
            "account_uuid": self.uuid,
        })
        self._keep_event(record)
        return record

    def _keep_event(self, record: dict) -> None:
        """Store the record, dropping the oldest past max_events_per_account."""
        cap = self._settings.max_events_per_account
        if cap < 1:  # --max-events-per-account 0 keeps none
            self.events_dropped += 1
            return
        if len(self.events) >= cap:
            oldest = self.events.popleft()
            self._event_uuids.discard(oldest["event_uuid"])
            self.events_dropped += 1
        self.events.append(record)
        self._event_uuids.add(record["event_uuid"])

    def events_of(self, profile_uuid: str) -> list[dict]:
        """The profile's events, newest first (404 when there is no such profile)."""
        self.get_profile(profile_uuid)
        return [record for record in reversed(self.events)
                if record.get("user_uuid") == profile_uuid]

    def recorded_events(self, name: str | None = None,
                        user_uuid: str | None = None) -> list[dict]:
        """Every recorded event, oldest first; a name or a profile uuid narrows them."""
        return [record for record in self.events
                if (name is None or record["event"] == name)
                and (user_uuid is None or record.get("user_uuid") == user_uuid)]

    def event_history(self, name: str, limit: int) -> list[dict]:
        """The newest `limit` events named `name`, newest first."""
        named = (record for record in reversed(self.events) if record["event"] == name)
        return list(itertools.islice(named, limit))

    # ---- inspection ------------------------------------------------------------------------

    def stats(self) -> dict:
        pending = sum(1 for p in self.profiles.values() if not p.active)
        return {
            "profiles": len(self.profiles),
            "active": len(self.profiles) - pending,
            "pending_deletion": pending,
            "purged": self.purged_count,
            "suppressed": len(self.suppressed),
            "lists": len(self.lists),
            "groups": len(self.groups),
            "events": len(self.events),
            "events_dropped": self.events_dropped,
        }

    def to_state(self) -> dict:
        """A plain-data copy of everything in the account (the store lock must be held)."""
        return {
            "name": self.name,
            "uuid": self.uuid,
            "deletion_delay": self.deletion_delay,
            "next_list_id": self._next_list_id,
            "purged_count": self.purged_count,
            "profiles": [p.to_state() for p in sorted(self.profiles.values(), key=Profile.age_key)],
            "suppressed": [dict(entry) for entry in self.suppressed.values()],
            "lists": [lst.to_state() for lst in self.lists.values()],
            "groups": [g.to_state() for g in self.groups.values()],
            "objects": self.objects.to_state(),
            "events": list(self.events),
            "events_dropped": self.events_dropped,
        }

    @classmethod
    def from_state(cls, state: dict, settings: Settings,
                   tally: ProfileTally | None = None) -> "Account":
        """Rebuild an account written by to_state: indexes, purge queue and sequence included."""
        account = cls(state["name"], settings, state["uuid"], tally)
        account.deletion_delay = state["deletion_delay"]
        account.purged_count = state["purged_count"]
        for saved in state["profiles"]:
            if saved["uuid"] in account.profiles:
                raise ValueError(f"profile {saved['uuid']} appears twice")
            # What would otherwise load and then fail every request that touches the profile.
            attributes = saved["attributes"]
            if type(saved["seq"]) is not int or not isinstance(attributes, (dict, type(None))):
                raise ValueError(f"profile {saved['uuid']}: seq or attributes of the wrong type")
            profile = Profile(saved["uuid"], saved["seq"], parse_iso(saved["created_at"]))
            profile.updated_at = parse_iso(saved["updated_at"])
            profile.attributes = attributes
            account.profiles[profile.uuid] = profile
            account._set_identifiers(profile, {k: saved[k] for k in IDENTIFIER_KINDS if k in saved})
            deletion = saved["deletion"]
            if deletion is not None:
                profile.deletion = Deletion(deletion["reason"], parse_iso(deletion["requested_at"]),
                                            parse_iso(deletion["due_at"]))
                heapq.heappush(account._purge_queue,
                               (profile.deletion.due_at, profile.seq, profile.uuid))
        account._tally.count += len(account.profiles)
        last_seq = max((p.seq for p in account.profiles.values()), default=-1)
        account._seq = itertools.count(last_seq + 1)
        for entry in state["suppressed"]:
            key = (entry["kind"], match_key(entry["kind"], entry["value"]))
            account.suppressed[key] = dict(entry)
        for saved in state["lists"]:
            custom_list = CustomList.from_state(saved)
            account.lists[custom_list.id] = custom_list
        account._next_list_id = state["next_list_id"]
        for saved in state["groups"]:
            group = Group.from_state(saved)
            account.groups[group.group_id] = group
        # Absent from files saved before the rest of the API was served.
        account.objects.restore(state.get("objects", {}))
        # Events are absent from files saved before they were recorded.
        for record in state.get("events", ()):
            if record["event_uuid"] in account._event_uuids:
                raise ValueError(f"event {record['event_uuid']} appears twice")
            account._keep_event(record)
        account.events_dropped += state.get("events_dropped", 0)
        return account

    def state(self) -> dict:
        return {
            "account": self.name,
            "uuid": self.uuid,
            "settings": {"deletion_delay": self.effective_deletion_delay,
                         "deletion_delay_overridden": self.deletion_delay is not None},
            "stats": self.stats(),
            "profiles": [p.to_dict() for p in sorted(self.profiles.values(), key=Profile.age_key)],
            "suppressed": list(self.suppressed.values()),
            "lists": [lst.to_dict(self.number, with_members=True)
                      for lst in self.lists.values()],
            "groups": [g.to_dict() for g in self.groups.values()],
        }


class Store:
    """All accounts of one server, the virtual clock (with the accounts' own clocks on it), and
    the one lock."""

    def __init__(self, clock: VirtualClock | None = None, settings: Settings | None = None):
        self.clock = clock or VirtualClock()
        self.settings = settings or Settings()
        self._lock = threading.RLock()
        self._accounts: dict[str, Account] = {}
        self._tally = self._new_tally()

    @contextmanager
    def open(self, name: str, create: bool = True) -> Iterator[tuple[Account, datetime]]:
        """Hold the lock, bring the account up to date with the clock, and hand it out."""
        with self._lock:
            account = self._accounts.get(name)
            if account is None:
                if not create:
                    raise NotFound(f"No account named {name!r}")
                account = self._add_account(name)
            now = self.clock.now_for(name)
            account.purge_due(now)
            yield account, now

    @contextmanager
    def read(self, name: str) -> Iterator[tuple[Account, datetime]]:
        """open(), for calls that only read: an unknown account is shown as an empty one and
        is not created. Otherwise reads with ever-new keys would fill the store up to
        max_accounts, and every later key that writes would be refused for good."""
        with self._lock:
            account = self._accounts.get(name) or Account(name, self.settings)
            now = self.clock.now_for(name)
            account.purge_due(now)
            yield account, now

    def _add_account(self, name: str, account_uuid: str | None = None) -> Account:
        if len(self._accounts) >= self.settings.max_accounts:
            raise LimitReached(
                f"Account limit reached: the server holds {self.settings.max_accounts} "
                f"accounts (max_accounts)"
            )
        account = Account(name, self.settings, account_uuid, self._tally)
        self._accounts[name] = account
        return account

    def _new_tally(self) -> ProfileTally:
        # The accounts looked up when needed: restore() replaces the dictionary.
        return ProfileTally(self.settings, lambda: self._accounts.values(), self.clock.now_for)

    def account_names(self) -> list[str]:
        with self._lock:
            return list(self._accounts)

    def drop_account(self, name: str) -> bool:
        with self._lock:
            account = self._accounts.pop(name, None)
            if account is None:
                return False
            self._tally.count -= len(account.profiles)
            return True

    def clear(self) -> None:
        with self._lock:
            self._accounts.clear()
            self._tally.count = 0

    def accounts(self) -> list[Account]:
        """Every account as it is, purging nothing: a save must not change what it saves. Use
        them under exclusive()."""
        with self._lock:
            return list(self._accounts.values())

    def to_state(self) -> list[dict]:
        """Every account as plain data, copied under the lock so the snapshot is consistent."""
        with self._lock:
            return [account.to_state() for account in self._accounts.values()]

    def restore(self, accounts: list[dict]) -> None:
        """Replace every account with ones rebuilt from `to_state` data, honouring max_accounts
        and max_profiles_total."""
        tally = self._new_tally()
        rebuilt = [Account.from_state(saved, self.settings, tally) for saved in accounts]
        if len(rebuilt) > self.settings.max_accounts:
            raise LimitReached(f"Account limit reached: the state holds {len(rebuilt)} accounts, "
                               f"more than max_accounts ({self.settings.max_accounts})")
        if tally.count > self.settings.max_profiles_total:
            raise LimitReached(f"Profile limit reached: the state holds {tally.count} profiles, "
                               f"more than max_profiles_total ({self.settings.max_profiles_total})")
        with self._lock:
            self._accounts = {account.name: account for account in rebuilt}
            self._tally = tally

    @contextmanager
    def exclusive(self) -> Iterator["Store"]:
        """Hold the lock across several steps (loading a scenario must look atomic)."""
        with self._lock:
            yield self
