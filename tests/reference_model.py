"""A plain reference model of one emulated Blueshift account, written from docs/design.md alone.

It deliberately shares no code with `fakeshift.models`: lists and linear scans instead of indexes
and heaps, so that the state machine in test_state_machine.py compares two independent readings
of the same rules. Time is whatever the model is told (the emulator's clock is frozen in the
machine and only moved by explicit advances, so both sides agree on every timestamp).

Profiles carry a `ref` (their creation order) instead of a uuid; the machine binds each ref to the
uuid the emulator gave it the first time it sees the profile.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

KINDS = ("customer_id", "email", "cookie", "device_id")
# Identify looks for an existing profile by the first of these present in the request.
IDENTIFY_PRECEDENCE = ("customer_id", "email", "cookie", "device_id")
LIST_SOURCES = ("email", "customer_id")
DELETE_CAP = 50
BULK_CAP = 50
FIRST_LIST_ID = 1001


def timestamp(moment: datetime) -> str:
    return f"{moment:%Y-%m-%dT%H:%M:%S.%f}Z"


def _ascii_lower(text: str) -> str:
    return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in text)


def same_identifier(kind: str, a: str, b: str) -> bool:
    # Emails match with ASCII case folded (README, "Decisions"); the rest are exact.
    return _ascii_lower(a) == _ascii_lower(b) if kind == "email" else a == b


@dataclass
class Deletion:
    reason: str
    requested_at: datetime
    due_at: datetime


@dataclass
class Profile:
    ref: int
    created_at: datetime
    updated_at: datetime
    ids: dict
    attributes: dict
    uuid: str | None = None
    deletion: Deletion | None = None
    from_api: bool = True

    @property
    def active(self) -> bool:
        return self.deletion is None

    def matches(self, kind: str, value: str) -> bool:
        return kind in self.ids and same_identifier(kind, self.ids[kind], value)

    def age(self) -> tuple:
        return (self.created_at, self.ref)

    def view(self) -> dict:
        """The profile as the emulator shows it (GET, search, identify, account state)."""
        body = dict(self.attributes)
        body.update(self.ids)
        body["uuid"] = self.uuid
        body["created_at"] = timestamp(self.created_at)
        body["updated_at"] = timestamp(self.updated_at)
        if self.deletion is not None:
            body["deletion_pending"] = True
            body["deletion_reason"] = self.deletion.reason
            body["deletion_requested_at"] = timestamp(self.deletion.requested_at)
            body["deletion_due_at"] = timestamp(self.deletion.due_at)
            if self.deletion.reason == "forget":
                body["is_forgotten"] = True
                body["forgotten_at"] = timestamp(self.deletion.requested_at)
        return body


@dataclass
class CustomList:
    id: int
    name: str
    description: str
    source: str
    created_at: datetime
    updated_at: datetime
    members: list = field(default_factory=list)  # Profile objects, in the order added

    def view(self, with_members: bool) -> dict:
        """Blueshift's list object, without the uuid and the account's number (account_id and
        user_id), which the server makes up."""
        body = {"id": self.id, "filename": self.name, "description": self.description,
                "filesize": None, "user_count": len(self.members), "status": "ready",
                "created_at": timestamp(self.created_at), "updated_at": timestamp(self.updated_at),
                "is_exporting": False, "source": self.source, "is_seed_list": False,
                "deleted_at": None, "import_method": "api", "version": "v2", "author": "API"}
        if with_members:
            body["user_uuids"] = [p.uuid for p in self.members]
            body["last_overwrite"] = None  # the machine never overwrites a list
        return body


@dataclass
class Group:
    group_id: str
    attributes: dict
    created_at: datetime
    updated_at: datetime
    members: list = field(default_factory=list)

    def view(self, account_uuid: str) -> dict:
        body = {"account_uuid": account_uuid, "created_at": timestamp(self.created_at),
                "extended_attributes": dict(self.attributes), "group_id": self.group_id,
                "updated_at": timestamp(self.updated_at), "user_count": len(self.members),
                "user_uuids": [p.uuid for p in self.members], "version": "1"}
        body.update({k: v for k, v in self.attributes.items() if not k.startswith("_bsft")})
        return body


class Refused(Exception):
    """The call is answered with this status and changes nothing."""

    def __init__(self, status: int, message: str | None = None):
        super().__init__(status, message)
        self.status = status
        self.message = message


CUSTOMER_NOT_FOUND = "Customer not found"
GROUP_NOT_FOUND = "The specified group ID was not found."
LIST_NOT_FOUND = "The customer list you are looking for could not be found."


class Account:
    def __init__(self, now: datetime, deletion_delay: float, group_delete_users_default=True):
        self.now = now
        self.deletion_delay = deletion_delay
        self.group_delete_users_default = group_delete_users_default
        self.profiles: list[Profile] = []  # not yet purged, in creation order
        self.purged: list[Profile] = []
        self.suppressed: list[dict] = []
        self.lists: dict[int, CustomList] = {}
        self.groups: dict[str, Group] = {}
        self._refs = 0

    # ---- helpers ---------------------------------------------------------------------------

    def oldest_first(self, profiles) -> list[Profile]:
        return sorted(profiles, key=Profile.age)

    def active_matching_any(self, ids: dict) -> list[Profile]:
        return self.oldest_first(
            p for p in self.profiles
            if p.active and any(p.matches(kind, value) for kind, value in ids.items())
        )

    def with_identifier(self, kind: str, value: str) -> list[Profile]:
        return self.oldest_first(p for p in self.profiles if p.matches(kind, value))

    def is_suppressed(self, kind: str, value: str) -> bool:
        return any(s["kind"] == kind and same_identifier(kind, s["value"], value)
                   for s in self.suppressed)

    def by_uuid(self, profile_uuid: str) -> Profile | None:
        return next((p for p in self.profiles if p.uuid == profile_uuid), None)

    def _create(self, ids: dict, attributes: dict, created_at: datetime | None = None,
                from_api: bool = True) -> Profile:
        self._refs += 1
        moment = created_at or self.now
        profile = Profile(self._refs, moment, moment, dict(ids), dict(attributes or {}),
                          from_api=from_api)
        self.profiles.append(profile)
        return profile

    def _schedule(self, profile: Profile, reason: str) -> None:
        assert profile.deletion is None, "a profile must never be scheduled twice"
        profile.deletion = Deletion(reason, self.now,
                                    self.now + timedelta(seconds=self.deletion_delay))

    def purge(self) -> list[Profile]:
        due = [p for p in self.profiles if p.deletion and p.deletion.due_at <= self.now]
        for profile in due:
            self.profiles.remove(profile)
            self.purged.append(profile)
            for custom_list in self.lists.values():
                if profile in custom_list.members:
                    custom_list.members.remove(profile)
            for group in self.groups.values():
                if profile in group.members:
                    group.members.remove(profile)
        return due

    def advance(self, seconds: float) -> list[Profile]:
        self.now += timedelta(seconds=seconds)
        return self.purge()

    # ---- public Blueshift API --------------------------------------------------------------

    def identify(self, ids: dict, attributes: dict, profile_uuid: str | None = None):
        """Returns ("suppressed", None), ("created", profile) or ("updated", profile)."""
        if any(self.is_suppressed(kind, value) for kind, value in ids.items()):
            return "suppressed", None
        if profile_uuid is not None:
            target = self.by_uuid(profile_uuid)
            if target is None or not target.active:
                raise Refused(404, CUSTOMER_NOT_FOUND)
        else:
            target = None
            for kind in IDENTIFY_PRECEDENCE:
                if kind in ids:
                    candidates = self.active_matching_any({kind: ids[kind]})
                    target = candidates[0] if candidates else None
                    break
        if target is None:
            return "created", self._create(ids, attributes)
        target.ids.update(ids)
        target.attributes.update(attributes)
        target.updated_at = self.now
        return "updated", target

    def forget(self, ids: dict) -> list[Profile]:
        matched = self.active_matching_any(ids)
        for profile in matched:
            self._schedule(profile, "forget")
        for kind, value in ids.items():
            if not self.is_suppressed(kind, value):
                self.suppressed.append({"kind": kind, "value": value,
                                        "since": timestamp(self.now)})
        self.purge()
        return matched

    def unforget(self, ids: dict) -> None:
        if not ids:
            raise Refused(400)
        self.suppressed = [
            s for s in self.suppressed
            if not any(s["kind"] == kind and same_identifier(kind, s["value"], value)
                       for kind, value in ids.items())
        ]

    def delete(self, ids: dict, all_matching: bool) -> list[Profile]:
        matched = self.active_matching_any(ids)
        if not matched:
            raise Refused(404, CUSTOMER_NOT_FOUND)
        chosen = matched[:DELETE_CAP] if all_matching else matched[:1]
        for profile in chosen:
            self._schedule(profile, "delete")
        self.purge()
        return chosen

    def create_list(self, name: str, source: str) -> CustomList:
        if source not in LIST_SOURCES:
            raise Refused(400)
        if any(existing.name.lower() == name.lower() for existing in self.lists.values()):
            raise Refused(400)
        list_id = max(self.lists, default=FIRST_LIST_ID - 1) + 1
        custom_list = CustomList(list_id, name, "", source, self.now, self.now)
        self.lists[list_id] = custom_list
        return custom_list

    def _list_for(self, list_id: int, key: str) -> CustomList:
        if key not in LIST_SOURCES:
            raise Refused(400)
        custom_list = self.lists.get(list_id)
        if custom_list is None:
            raise Refused(404, LIST_NOT_FOUND)
        if key != custom_list.source:
            raise Refused(400)
        return custom_list

    def add_to_list(self, list_id: int, key: str, value: str) -> Profile:
        custom_list = self._list_for(list_id, key)
        candidates = self.active_matching_any({key: value})
        if not candidates:
            raise Refused(404, CUSTOMER_NOT_FOUND)
        if candidates[0] not in custom_list.members:
            custom_list.members.append(candidates[0])
        custom_list.updated_at = self.now
        return candidates[0]

    def remove_from_list(self, list_id: int, key: str, value: str) -> int:
        custom_list = self._list_for(list_id, key)
        leaving = [p for p in custom_list.members if p.matches(key, value)]
        for profile in leaving:
            custom_list.members.remove(profile)
        if leaving:
            custom_list.updated_at = self.now
        return len(leaving)

    def delete_group(self, group_id: str, delete_users: bool | None):
        """Returns the group as it was and the profiles it scheduled."""
        group = self.groups.get(group_id)
        if group is None:
            raise Refused(404, GROUP_NOT_FOUND)
        if delete_users is None:
            delete_users = self.group_delete_users_default
        scheduled = []
        if delete_users:
            for profile in group.members:
                if profile.active:
                    self._schedule(profile, "group_delete")
                    scheduled.append(profile)
        del self.groups[group_id]
        self.purge()
        return group, scheduled

    def remove_group_user(self, group_id: str, profile_uuid: str) -> None:
        group = self.groups.get(group_id)
        if group is None:
            raise Refused(404, GROUP_NOT_FOUND)
        member = next((p for p in group.members if p.uuid == profile_uuid), None)
        if member is None:
            raise Refused(404)
        group.members.remove(member)
        group.updated_at = self.now

    # ---- control plane ---------------------------------------------------------------------

    def seed_profiles(self, ids: dict, count: int, created_at: datetime | None) -> list[Profile]:
        """Seeding bypasses suppression: it states what an account already holds."""
        return [self._create(ids, {}, created_at, from_api=False) for _ in range(count)]

    def seed_group(self, group_id: str, attributes: dict, members: list[tuple[str, str]]) -> Group:
        """members: ("uuid", u) picks that profile (pending ones too); (kind, v) the oldest
        active match. Anything that resolves to nothing refuses the whole seed."""
        chosen: list[Profile] = []
        for kind, value in members:
            if kind == "uuid":
                profile = self.by_uuid(value)
            else:
                candidates = self.active_matching_any({kind: value})
                profile = candidates[0] if candidates else None
            if profile is None:
                raise Refused(400)
            if profile not in chosen:
                chosen.append(profile)
        group = Group(group_id, dict(attributes), self.now, self.now, chosen)
        self.groups[group_id] = group
        return group

    # ---- the whole state, as GET /_fakeshift/accounts/<name> shows it ----------------------

    def state(self, account_uuid: str) -> dict:
        pending = sum(1 for p in self.profiles if not p.active)
        return {
            "settings": {"deletion_delay": self.deletion_delay,
                         "deletion_delay_overridden": True},
            "stats": {"profiles": len(self.profiles), "active": len(self.profiles) - pending,
                      "pending_deletion": pending, "purged": len(self.purged),
                      "suppressed": len(self.suppressed), "lists": len(self.lists),
                      "groups": len(self.groups),
                      # The machine sends no events (test_http_events_and_bulk_lists.py does).
                      "events": 0, "events_dropped": 0},
            "profiles": [p.view() for p in self.oldest_first(self.profiles)],
            "suppressed": list(self.suppressed),
            "lists": [lst.view(with_members=True) for lst in self.lists.values()],
            "groups": [g.view(account_uuid) for g in self.groups.values()],
        }
