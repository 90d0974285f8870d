"""Objects that SDKs create through the rest of Blueshift's API: templates, catalogs, campaigns.

This is storage, not Blueshift's business logic: an object is the fields that were sent, under a
new uuid, kept per account so that a later read finds it. Plain Python; the caller holds the
store lock (every account is reached through `Store.open`).
"""

from __future__ import annotations

from .errors import LimitReached, NotFound
from .ids import new_uuid

DEFAULT_MAX_OBJECTS = 10_000


class StoredObjects:
    """One account's objects: kind ("catalog", "email_template", ...) -> uuid -> fields."""

    def __init__(self, max_objects: int = DEFAULT_MAX_OBJECTS):
        self.max_objects = max_objects
        self._by_kind: dict[str, dict[str, dict]] = {}

    def __len__(self) -> int:
        return sum(len(objects) for objects in self._by_kind.values())

    def create(self, kind: str, fields: dict) -> dict:
        if len(self) >= self.max_objects:
            raise LimitReached(f"Too many stored objects in this account: the limit is "
                               f"{self.max_objects}")
        object_uuid = new_uuid()
        stored = {**fields, "uuid": object_uuid}
        self._by_kind.setdefault(kind, {})[object_uuid] = stored
        return dict(stored)

    def get(self, kind: str, object_uuid: str) -> dict:
        stored = self._by_kind.get(kind, {}).get(object_uuid)
        if stored is None:
            raise NotFound(f"No {kind.replace('_', ' ')} has the uuid {object_uuid}")
        return dict(stored)

    def update(self, kind: str, object_uuid: str, fields: dict) -> dict:
        self.get(kind, object_uuid)
        stored = self._by_kind[kind][object_uuid]
        stored.update({name: value for name, value in fields.items() if name != "uuid"})
        return dict(stored)

    def list(self, kind: str) -> list[dict]:
        return [dict(stored) for stored in self._by_kind.get(kind, {}).values()]

    def copy(self) -> "StoredObjects":
        """A copy that later changes to this one do not reach (a save builds from it)."""
        twin = StoredObjects(self.max_objects)
        twin.restore(self.to_state())
        return twin

    def to_state(self) -> dict:
        return {kind: list(objects.values()) for kind, objects in self._by_kind.items()}

    def restore(self, state: dict) -> None:
        self._by_kind = {kind: {stored["uuid"]: dict(stored) for stored in objects}
                         for kind, objects in state.items()}
