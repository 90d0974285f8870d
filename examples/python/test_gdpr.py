"""Tests of gdpr.py against fakeshift, with the fixtures of fakeshift's pytest plugin."""

import pytest

from gdpr import BlueshiftGDPR, BlueshiftUnavailable


@pytest.fixture
def sleeps():
    return []


@pytest.fixture
def gdpr(fakeshift, sleeps):
    return BlueshiftGDPR(fakeshift.api_key, base_url=fakeshift.base_url, retries=3,
                         sleep=sleeps.append)


@pytest.mark.fakeshift_contract
def test_erase_deletes_every_duplicate_then_suppresses_the_email(fakeshift, gdpr):
    fakeshift.seed(profiles=[{"email": "dup@example.com", "count": 120},
                             {"email": "other@example.com"}])

    assert gdpr.erase("dup@example.com") == 3  # 50 + 50 + 20

    state = fakeshift.state()
    assert state["stats"]["pending_deletion"] == 120
    assert [(s["kind"], s["value"]) for s in state["suppressed"]] == [
        ("email", "dup@example.com")]
    fakeshift.control.advance(by="2h")
    assert fakeshift.state()["stats"] == {**state["stats"], "profiles": 1, "active": 1,
                                          "pending_deletion": 0, "purged": 120}


def test_erasing_someone_never_tracked_still_suppresses_them(fakeshift, gdpr):
    assert gdpr.erase("never@example.com") == 0
    assert fakeshift.state()["stats"]["suppressed"] == 1


def test_retries_through_injected_503s(fakeshift, gdpr, sleeps):
    fakeshift.control.add_fault({"account": fakeshift.api_key, "status": 503, "first": 2,
                                 "path": "/api/v1/customers/forget"})
    gdpr.forget("ann@example.com")
    assert sleeps == [0.2, 0.4]
    statuses = [e["status"] for e in fakeshift.journal(path="/api/v1/customers/forget")]
    assert statuses == [503, 503, 200]


def test_honours_retry_after_on_429(fakeshift, gdpr, sleeps):
    fakeshift.control.add_fault({"account": fakeshift.api_key, "status": 429, "first": 1,
                                 "retry_after": 3})
    gdpr.forget("ann@example.com")
    assert sleeps == [3.0]


def test_retries_a_dropped_connection(fakeshift, gdpr, sleeps):
    fakeshift.seed(profiles=[{"email": "ann@example.com"}])
    fakeshift.control.add_fault({"account": fakeshift.api_key, "drop": True, "first": 1,
                                 "path": "/api/v1/customers/delete"})
    assert gdpr.erase("ann@example.com") == 1
    assert len(sleeps) == 1
    assert fakeshift.state()["stats"]["pending_deletion"] == 1


def test_gives_up_after_its_retries(fakeshift, gdpr, sleeps):
    fakeshift.control.add_fault({"account": fakeshift.api_key, "status": 500})
    with pytest.raises(BlueshiftUnavailable):
        gdpr.forget("ann@example.com")
    assert len(fakeshift.journal()) == 4  # the first try and three retries
    assert fakeshift.state()["stats"]["suppressed"] == 0
