"""Overlapping deletes of the same duplicates from many threads, through a real server."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import requests

from conftest import basic

THREADS = 16


def hammer_deletes(url: str, key: str, email: str, all_matching: bool) -> list[tuple[int, int]]:
    """Each thread deletes until it sees 404; returns (status, scheduled) of every call."""
    outcomes: list[tuple[int, int]] = []
    lock = threading.Lock()
    start = threading.Barrier(THREADS)

    def worker():
        session = requests.Session()
        start.wait()
        for _ in range(500):  # bounded: far more than the duplicates need
            response = session.post(
                f"{url}/api/v1/customers/delete",
                params={"delete_all_matching_customers": str(all_matching).lower()},
                json={"email": email}, headers=basic(key), timeout=10)
            scheduled = int(response.headers.get("X-Fakeshift-Scheduled", 0))
            with lock:
                outcomes.append((response.status_code, scheduled))
            if response.status_code != 200:
                return

    with ThreadPoolExecutor(THREADS) as pool:
        for future in [pool.submit(worker) for _ in range(THREADS)]:
            future.result()
    return outcomes


def seed(url: str, key: str, email: str, count: int) -> None:
    response = requests.post(f"{url}/_fakeshift/accounts/{key}/seed",
                             json={"profiles": [{"email": email, "count": count}]}, timeout=10)
    assert response.status_code == 200


def stats(url: str, key: str) -> dict:
    return requests.get(f"{url}/_fakeshift/accounts/{key}", timeout=10).json()["stats"]


def test_racing_delete_all_schedules_each_duplicate_exactly_once(live_server):
    key, email = "race-all", "dup@example.com"
    seed(live_server.url, key, email, 1000)
    outcomes = hammer_deletes(live_server.url, key, email, all_matching=True)
    statuses = {status for status, _ in outcomes}
    assert statuses <= {200, 404}, statuses
    scheduled = [n for status, n in outcomes if status == 200]
    assert sum(scheduled) == 1000
    assert max(scheduled) <= 50
    assert sum(1 for status, _ in outcomes if status == 404) == THREADS
    assert stats(live_server.url, key)["pending_deletion"] == 1000


def test_racing_single_deletes_take_one_profile_each(live_server):
    key, email = "race-one", "one@example.com"
    seed(live_server.url, key, email, 300)
    outcomes = hammer_deletes(live_server.url, key, email, all_matching=False)
    assert [n for status, n in outcomes if status == 200] == [1] * 300
    assert {status for status, _ in outcomes} == {200, 404}
    after = stats(live_server.url, key)
    assert after["pending_deletion"] == 300 and after["active"] == 0
    health = requests.get(f"{live_server.url}/_fakeshift/health", timeout=5).json()
    assert health["internal_errors"] == 0
