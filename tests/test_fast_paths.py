"""The domain's fast paths (made for bench/'s targets) keep the behaviour they replaced: random
uuids are real version-4 UUIDs, and the identifier index (a bare profile while an identifier has
one owner, a list once it has duplicates) matches, orders and forgets exactly as before."""

from __future__ import annotations

import threading
import uuid
from datetime import datetime, timedelta, timezone

from fakeshift.models import Account, Settings, new_uuid

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_new_uuid_is_a_random_rfc4122_version_4_uuid():
    made = [new_uuid() for _ in range(5000)]
    assert len(set(made)) == len(made)
    for text in made:
        parsed = uuid.UUID(text)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        assert str(parsed) == text


def test_new_uuid_from_many_threads_never_repeats():
    made: list[list[str]] = [[] for _ in range(8)]

    def make(bucket: list[str]) -> None:
        bucket.extend(new_uuid() for _ in range(2000))

    threads = [threading.Thread(target=make, args=(bucket,)) for bucket in made]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    every = [text for bucket in made for text in bucket]
    assert len(every) == 16000 and len(set(every)) == 16000


def _account() -> Account:
    return Account("fast-paths", Settings())


def test_one_owner_then_duplicates_then_one_owner_again():
    account = _account()
    first = account.new_profile(NOW, {"email": "Dup@Example.com", "customer_id": "c1"})
    assert account.lookup("email", "dup@example.com") == [first]
    second = account.new_profile(NOW, {"email": "dup@example.com"},
                                 created_at=NOW - timedelta(days=1))
    third = account.new_profile(NOW, {"email": "DUP@example.com"})
    # Oldest first, whatever order they were indexed in.
    assert account.lookup("email", "dup@example.com") == [second, first, third]
    assert account.active_matches({"email": "dup@example.com", "customer_id": "c1"}) == [
        second, first, third]
    # Changing an identifier moves the profile out of the duplicates.
    account.identify(NOW, {"email": "other@example.com"}, {}, profile_uuid=second.uuid)
    assert account.lookup("email", "dup@example.com") == [first, third]
    assert account.lookup("email", "other@example.com") == [second]
    account.identify(NOW, {"email": "moved@example.com"}, {}, profile_uuid=third.uuid)
    assert account.lookup("email", "dup@example.com") == [first]
    account.identify(NOW, {"email": "gone@example.com"}, {}, profile_uuid=first.uuid)
    assert account.lookup("email", "dup@example.com") == []
    assert account.active_matches({"email": "dup@example.com"}) == []


def test_purging_removes_owners_and_duplicates_from_the_index():
    account = _account()
    account.deletion_delay = 0
    lone = account.new_profile(NOW, {"customer_id": "lone"})
    twins = [account.new_profile(NOW, {"email": "twin@example.com"}) for _ in range(3)]
    account.delete(NOW, {"customer_id": "lone"}, all_matching=False)
    assert account.lookup("customer_id", "lone") == []
    assert lone.uuid not in account.profiles
    account.delete(NOW, {"email": "twin@example.com"}, all_matching=False)
    assert account.lookup("email", "twin@example.com") == twins[1:]
    account.delete(NOW, {"email": "twin@example.com"}, all_matching=True)
    assert account.lookup("email", "twin@example.com") == []
    assert account.profiles == {}
