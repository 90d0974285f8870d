"""The domain rules alone, without HTTP: each test pins one rule of design.md."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from fakeshift.clock import VirtualClock
from fakeshift.errors import InvalidField, LimitReached, NotFound
from fakeshift.models import DELETE_ALL_CAP, Settings, Store

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


@pytest.fixture
def clock():
    clock = VirtualClock()
    clock.freeze(T0)
    return clock


@pytest.fixture
def store(clock):
    return Store(clock, Settings(deletion_delay=3600))


def seed_duplicates(store, email="dup@example.com", count=120, account="acme"):
    with store.open(account) as (acct, now):
        return [acct.new_profile(now, {"email": email}).uuid for _ in range(count)]


def active_uuids(store, account="acme"):
    with store.open(account) as (acct, _now):
        return {p.uuid for p in acct.profiles.values() if p.active}


def test_first_match_is_the_oldest_created_profile(store, clock):
    with store.open("acme") as (acct, now):
        newer = acct.new_profile(now, {"email": "a@example.com"})
        older = acct.new_profile(now, {"email": "a@example.com"}, created_at=now - timedelta(days=3))
        same_time_first = acct.new_profile(now, {"email": "b@example.com"})
        same_time_second = acct.new_profile(now, {"email": "b@example.com"})
        assert [p.uuid for p in acct.delete(now, {"email": "a@example.com"}, False)] == [older.uuid]
        assert acct.delete(now, {"email": "b@example.com"}, False)[0] is same_time_first
    assert newer.active and not older.active
    assert same_time_second.active


def test_delete_all_schedules_at_most_fifty_then_404(store):
    seed_duplicates(store, count=120)
    scheduled_per_call = []
    for _ in range(3):
        with store.open("acme") as (acct, now):
            scheduled_per_call.append(len(acct.delete(now, {"email": "dup@example.com"}, True)))
    assert scheduled_per_call == [DELETE_ALL_CAP, DELETE_ALL_CAP, 20] == [50, 50, 20]
    with store.open("acme") as (acct, now), pytest.raises(NotFound):
        acct.delete(now, {"email": "dup@example.com"}, True)


def test_hundred_duplicates_need_two_delete_calls(store):
    seed_duplicates(store, count=100)
    for expected in (50, 50):
        with store.open("acme") as (acct, now):
            assert len(acct.delete(now, {"email": "dup@example.com"}, True)) == expected
    assert active_uuids(store) == set()


def test_delete_without_flag_schedules_one(store):
    seed_duplicates(store, count=3)
    with store.open("acme") as (acct, now):
        assert len(acct.delete(now, {"email": "dup@example.com"}, False)) == 1
    assert len(active_uuids(store)) == 2


def test_pending_profiles_are_not_matched_again(store):
    uuids = seed_duplicates(store, count=2)
    with store.open("acme") as (acct, now):
        first = acct.delete(now, {"email": "dup@example.com"}, False)[0]
        second = acct.delete(now, {"email": "dup@example.com"}, False)[0]
        assert first.uuid != second.uuid and {first.uuid, second.uuid} == set(uuids)
        with pytest.raises(NotFound):
            acct.delete(now, {"email": "dup@example.com"}, False)
        assert acct.forget(now, {"email": "dup@example.com"}) == []
        # still readable while pending, with the marker
        assert acct.get_profile(first.uuid).to_dict()["deletion_pending"] is True


def test_purge_happens_exactly_at_the_due_time(store, clock):
    (profile_uuid,) = seed_duplicates(store, count=1)
    with store.open("acme") as (acct, now):
        acct.delete(now, {"email": "dup@example.com"}, False)
    clock.advance(3599.999)
    with store.open("acme") as (acct, _now):
        assert profile_uuid in acct.profiles
    clock.advance(0.001)
    with store.open("acme") as (acct, _now):
        assert profile_uuid not in acct.profiles
        assert acct.lookup("email", "dup@example.com") == []
        assert acct.purged_count == 1


def test_zero_deletion_delay_purges_immediately(store):
    seed_duplicates(store, count=2)
    with store.open("acme") as (acct, now):
        acct.deletion_delay = 0
        acct.delete(now, {"email": "dup@example.com"}, True)
        assert acct.profiles == {}


def test_account_deletion_delay_overrides_the_server_default(store, clock):
    seed_duplicates(store, count=1, account="fast")
    seed_duplicates(store, count=1, account="slow")
    for name, delay in (("fast", 60), ("slow", None)):
        with store.open(name) as (acct, now):
            acct.deletion_delay = delay
            acct.delete(now, {"email": "dup@example.com"}, False)
    clock.advance(61)
    assert active_uuids(store, "fast") == set()
    with store.open("fast") as (acct, _now):
        assert acct.profiles == {}
    with store.open("slow") as (acct, _now):
        assert len(acct.profiles) == 1


def test_purged_profiles_vanish_from_lists_and_groups(store, clock):
    with store.open("acme") as (acct, now):
        profile = acct.new_profile(now, {"email": "x@example.com"})
        keeper = acct.new_profile(now, {"email": "y@example.com"})
        custom_list = acct.create_list(now, "L", "", "email")
        acct.add_to_list(now, custom_list.id, "email", "x@example.com")
        acct.add_to_list(now, custom_list.id, "email", "y@example.com")
        acct.seed_group(now, "g1", {}, [profile.uuid, keeper.uuid])
        acct.delete(now, {"email": "x@example.com"}, False)
        # pending: still a member until purged
        assert profile.uuid in custom_list.members
    clock.advance(3600)
    with store.open("acme") as (acct, _now):
        assert list(acct.get_list(custom_list.id).members) == [keeper.uuid]
        assert list(acct.get_group("g1").user_uuids) == [keeper.uuid]


def test_forget_suppresses_someone_never_seen(store):
    with store.open("acme") as (acct, now):
        assert acct.forget(now, {"email": "ghost@example.com"}) == []
        assert acct.identify(now, {"email": "Ghost@Example.com"}, {"firstname": "G"}) is None
        assert acct.identify(now, {"email": "ghost@example.com", "customer_id": "C9"}, {}) is None
        assert acct.profiles == {}


# Characters that str.lower() or casefold() turn into, or out of, ASCII letters: Kelvin sign,
# dotless i, capital I with dot, long s, and fullwidth letters (which lower() folds among
# themselves).
CONFUSABLE_EMAILS = [
    ("\u212aim@example.com", "kim@example.com"),
    ("k\u0131m@example.com", "kim@example.com"),
    ("k\u0130m@example.com", "kim@example.com"),
    ("\u017fam@example.com", "sam@example.com"),
    ("\uff2bim@example.com", "\uff4bim@example.com"),
    ("\uff2bim@example.com", "kim@example.com"),
]


@pytest.mark.parametrize("confusable, plain", CONFUSABLE_EMAILS)
def test_emails_fold_ascii_case_only(store, confusable, plain):
    with store.open("acme") as (acct, now):
        kept = acct.new_profile(now, {"email": plain})
        assert acct.forget(now, {"email": confusable}) == []
        assert kept.active
        assert acct.identify(now, {"email": plain}, {"seen": True}) is kept
        ascii_upper = "".join(c.upper() if c.isascii() else c for c in plain)
        assert acct.lookup("email", ascii_upper) == [kept]
        assert not acct.is_suppressed({"email": plain})
        assert acct.is_suppressed({"email": confusable})


def test_forget_marks_every_match_and_suppresses_each_identifier(store):
    with store.open("acme") as (acct, now):
        a = acct.new_profile(now, {"email": "p@example.com"})
        b = acct.new_profile(now, {"customer_id": "C1"})
        forgotten = acct.forget(now, {"email": "p@example.com", "customer_id": "C1"})
        assert {p.uuid for p in forgotten} == {a.uuid, b.uuid}
        assert a.to_dict()["is_forgotten"] is True
        assert acct.identify(now, {"customer_id": "C1"}, {}) is None


def test_unforget_restores_nothing_and_the_next_identify_gets_a_new_uuid(store, clock):
    with store.open("acme") as (acct, now):
        old = acct.identify(now, {"email": "back@example.com"}, {"firstname": "Old"})
        acct.forget(now, {"email": "back@example.com"})
        assert acct.unforget({"email": "back@example.com"}) == 1
        assert acct.unforget({"email": "never@example.com"}) == 0  # harmless
        new = acct.identify(now, {"email": "back@example.com"}, {})
    assert new.uuid != old.uuid
    assert new.attributes is None  # nothing carried over
    assert not old.active


def test_identify_with_a_new_customer_id_makes_a_duplicate_email(store):
    with store.open("acme") as (acct, now):
        first = acct.identify(now, {"email": "d@example.com", "customer_id": "C1"}, {})
        second = acct.identify(now, {"email": "d@example.com", "customer_id": "C2"}, {})
        by_email = acct.identify(now, {"email": "d@example.com"}, {"tier": "gold"})
        assert first.uuid != second.uuid
        assert by_email is first  # no customer_id: the oldest active profile with that email
        assert len(acct.lookup("email", "d@example.com")) == 2


def test_group_delete_cascades_by_default_and_the_setting_flips_it(clock):
    for default, expect_deleted in ((True, True), (False, False)):
        store = Store(clock, Settings(group_delete_users_default=default))
        with store.open("acme") as (acct, now):
            users = [acct.new_profile(now, {"email": f"u{i}@example.com"}).uuid for i in range(3)]
            acct.seed_group(now, "grp", {"firstname": "Orion"}, users)
            snapshot, scheduled = acct.delete_group(now, "grp", None)
            assert snapshot["user_uuids"] == users and snapshot["user_count"] == 3
            assert scheduled == (3 if expect_deleted else 0)
            assert all(acct.profiles[u].active is not expect_deleted for u in users)
            with pytest.raises(NotFound):
                acct.get_group("grp")


def test_group_delete_explicit_flag_beats_the_default(store):
    with store.open("acme") as (acct, now):
        user = acct.new_profile(now, {"email": "u@example.com"})
        acct.seed_group(now, "keep", {}, [user.uuid])
        assert acct.delete_group(now, "keep", False)[1] == 0
        acct.seed_group(now, "drop", {}, [user.uuid])
        assert acct.delete_group(now, "drop", True)[1] == 1


def test_list_removal_is_idempotent_and_checks_the_source(store):
    with store.open("acme") as (acct, now):
        acct.new_profile(now, {"email": "m@example.com", "customer_id": "C1"})
        custom_list = acct.create_list(now, "Members", "", "email")
        acct.add_to_list(now, custom_list.id, "email", "m@example.com")
        assert acct.remove_from_list(now, custom_list.id, "email", "m@example.com") == 1
        assert acct.remove_from_list(now, custom_list.id, "email", "m@example.com") == 0
        assert acct.remove_from_list(now, custom_list.id, "email", "nobody@example.com") == 0
        with pytest.raises(InvalidField):
            acct.remove_from_list(now, custom_list.id, "customer_id", "C1")
        with pytest.raises(NotFound):
            acct.remove_from_list(now, 999999, "email", "m@example.com")


def test_list_names_are_unique_per_account(store):
    with store.open("acme") as (acct, now):
        acct.create_list(now, "VIP", "", "email")
        with pytest.raises(InvalidField):
            acct.create_list(now, "vip", "", "email")
    with store.open("other") as (acct, now):
        acct.create_list(now, "VIP", "", "email")


def test_accounts_are_isolated(store):
    seed_duplicates(store, count=2, account="a")
    seed_duplicates(store, count=2, account="b")
    with store.open("a") as (acct, now):
        acct.delete(now, {"email": "dup@example.com"}, True)
        acct.forget(now, {"email": "shared@example.com"})
    assert active_uuids(store, "a") == set()
    assert len(active_uuids(store, "b")) == 2
    with store.open("b") as (acct, now):
        assert acct.identify(now, {"email": "shared@example.com"}, {}) is not None


def test_profile_limit_is_a_clear_refusal(clock):
    store = Store(clock, Settings(max_profiles_per_account=2))
    with store.open("acme") as (acct, now):
        acct.new_profile(now, {"email": "1@example.com"})
        acct.new_profile(now, {"email": "2@example.com"})
        with pytest.raises(LimitReached, match="max_profiles_per_account"):
            acct.new_profile(now, {"email": "3@example.com"})


def test_clock_freeze_advance_set_and_unfreeze():
    clock = VirtualClock()
    frozen = clock.freeze(T0)
    assert clock.now() == frozen == T0
    assert clock.advance(7200) == T0 + timedelta(hours=2)
    clock.set(T0)
    assert clock.now() == T0
    clock.unfreeze()
    assert abs((clock.now() - T0).total_seconds()) < 1  # runs on from where it was
    assert clock.snapshot()["frozen"] is False


def test_reading_an_unknown_account_shows_it_empty_without_creating_it(store):
    with store.read("nobody") as (acct, _now):
        assert acct.lookup("email", "a@example.com") == []
        with pytest.raises(NotFound):
            acct.get_list(1001)
    assert store.account_names() == []
    with store.open("somebody") as (acct, now):
        made = acct.new_profile(now, {"email": "a@example.com"})
    with store.read("somebody") as (acct, _now):
        assert acct.lookup("email", "a@example.com") == [made]
