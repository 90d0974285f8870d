"""What a client sends cannot grow the server's memory past its configured bounds.

Each test sends, from an ordinary HTTP client, traffic that once grew a real server by hundreds
of megabytes, and asserts that the server's resident memory grew by less than a stated bound.
"""

from __future__ import annotations

from pathlib import Path

import requests

from conftest import basic

GROWTH_BOUND = 100 << 20


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS line")


def test_long_paths_and_queries_are_kept_only_in_part(start_server):
    """1,500 requests with 200 KB paths once added 1.1 GB (both were kept whole) to the journal and violation log."""
    server = start_server("--access-log", "false")
    before = rss_bytes(server.process.pid)
    long_text = "a" * 60_000
    with requests.Session() as session:
        for number in range(800):
            # No credentials: recorded in the journal and, as a violation, in the log.
            response = session.delete(f"{server.url}/api/v1/customer_group/{number}{long_text}"
                                   f"?q={long_text}", timeout=10)
            assert response.status_code == 401
        growth = rss_bytes(server.process.pid) - before
        violations = session.get(f"{server.url}/_fakeshift/violations", timeout=10).json()
        entry = session.get(f"{server.url}/_fakeshift/journal?limit=1", timeout=10).json()
    assert growth < GROWTH_BOUND, f"grew {growth >> 20} MiB"
    assert len(entry["entries"][0]["path"]) < 2100 and len(entry["entries"][0]["query"]) < 2100
    assert all(len(v["path"]) < 2100 for v in violations["violations"])


def test_distinct_fault_headers_are_cached_within_a_byte_budget(start_server):
    """Each distinct header value is kept compiled; 10,000 long ones once took gigabytes."""
    server = start_server("--access-log", "false")
    before = rss_bytes(server.process.pid)
    pattern = "(a|b)*c" * 140
    with requests.Session() as session:
        session.headers.update(basic("memory-key"))
        for number in range(1500):
            response = session.get(
                f"{server.url}/api/v1/customers?email=a@example.com", timeout=10,
                headers={"X-Fakeshift-Fault": f"status=503,path_regex=/{number}{pattern}"})
            assert response.status_code == 200
    growth = rss_bytes(server.process.pid) - before
    assert growth < GROWTH_BOUND, f"grew {growth >> 20} MiB"


def test_distinct_journal_globs_are_not_kept(start_server):
    """fnmatch cached every distinct glob, up to 32,768 of them."""
    server = start_server("--access-log", "false")
    before = rss_bytes(server.process.pid)
    with requests.Session() as session:
        for number in range(1500):
            glob = f"/{number}" + "*a?[bc]" * 140
            response = session.get(f"{server.url}/_fakeshift/journal",
                                   params={"path": glob}, timeout=10)
            assert response.status_code == 200
    growth = rss_bytes(server.process.pid) - before
    assert growth < GROWTH_BOUND // 2, f"grew {growth >> 20} MiB"


def test_a_tiny_scenario_cannot_build_more_profiles_than_the_server_holds(start_server):
    """A 138-byte scenario once built a million profiles (481 MB): the server-wide cap stops it
    before it is built, and the scenario in place stays."""
    server = start_server("--access-log", "false", "--max-profiles-total", "50000")
    before = rss_bytes(server.process.pid)
    scenario = {"accounts": [{"key": f"k{n}", "profiles": [{"email": "p@example.com",
                                                           "count": 40_000}]}
                             for n in range(25)]}
    response = requests.put(f"{server.url}/_fakeshift/scenario", json=scenario, timeout=60)
    assert response.status_code == 400
    assert "max_profiles_total" in response.text
    growth = rss_bytes(server.process.pid) - before
    assert growth < GROWTH_BOUND, f"grew {growth >> 20} MiB"
    assert requests.get(f"{server.url}/_fakeshift/accounts", timeout=10).json()["accounts"] == []
