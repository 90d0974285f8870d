"""Patterns, filters and limits that any client may send: linear time, bounded, and a 400 for
anything the server cannot use."""

from __future__ import annotations

import fnmatch
import time

import pytest

from fakeshift.clock import VirtualClock
from fakeshift.faults import (HEADER_RULE_CACHE_BYTES, MAX_HEADER_LATENCY_SECONDS,
                              MAX_HEADER_LENGTH, FaultRules)
from fakeshift.patterns import MAX_PATTERN_LENGTH, PatternError, compile_glob, compile_regex

# Backtracking engines take time exponential in the zeros: about 1.6x per extra character, so
# Python's `re` needs hours for this one. The group path is routed, so the rule is consulted.
CATASTROPHIC = r".*(0|00)+x"
ZEROS_PATH = "/api/v1/customer_group/" + "0" * 60


def test_a_catastrophic_regex_in_the_fault_header_answers_at_once(api):
    started = time.monotonic()
    response = api.delete(ZEROS_PATH, headers={"X-Fakeshift-Fault":
                                               f"status=503,path_regex={CATASTROPHIC}"})
    assert time.monotonic() - started < 1.0
    # The rule did not match (no x), so the request reached the handler: an unknown group.
    assert response.status_code == 404


def test_a_catastrophic_regex_in_a_control_plane_rule_answers_at_once(client, api):
    added = client.post("/_fakeshift/faults", json={"path_regex": CATASTROPHIC, "status": 503})
    assert added.status_code == 200
    started = time.monotonic()
    assert api.delete(ZEROS_PATH).status_code == 404
    assert api.delete(ZEROS_PATH[:-1] + "x").status_code == 503
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize("pattern", [r"(a)\1", r"(?=a)b", r"(?<!a)b"])
def test_constructs_that_need_backtracking_are_refused_with_a_400(client, api, pattern):
    response = client.post("/_fakeshift/faults", json={"path_regex": pattern, "status": 503})
    assert response.status_code == 400
    assert "not a valid RE2 regular expression" in response.json["errors"]["fault"][0]
    header = api.get("/api/v1/customers?email=a@example.com",
                     headers={"X-Fakeshift-Fault": f"status=503,path_regex={pattern}"})
    assert header.status_code == 400 and "X-Fakeshift-Fault" in header.json["errors"]
    assert client.get("/_fakeshift/faults").json["count"] == 0


def test_patterns_longer_than_the_bound_are_refused(client):
    long_pattern = "a" * (MAX_PATTERN_LENGTH + 1)
    for field in ("path", "path_regex"):
        response = client.post("/_fakeshift/faults", json={field: long_pattern, "status": 503})
        assert response.status_code == 400, field
    with pytest.raises(PatternError):
        compile_regex(long_pattern)


@pytest.mark.parametrize("glob", ["/api/*/x", "*a*b*", "[!ab]?x", "a[b-d]*", "[]a]*", "[!]]x",
                                  "[a", "x[^]y", "a\\b", "[[]x", "*.*"])
def test_globs_match_what_fnmatch_matches(glob):
    compiled = compile_glob(glob)
    for path in ["/api/v1/x", "ab", "cx", "cax", "abd", "ab]x", "zx", "]x", "[a", "x^y",
                 "a\\b", "[x", "xay", "a.b", "", "a\nb"]:
        assert (compiled.fullmatch(path) is not None) == fnmatch.fnmatchcase(path, glob), path


def test_a_journal_glob_that_backtracks_in_python_answers_at_once(client, api):
    api.delete(ZEROS_PATH)
    started = time.monotonic()
    response = client.get("/_fakeshift/journal", query_string={"path": "*" * 200 + "x"})
    assert time.monotonic() - started < 1.0
    assert response.status_code == 200 and response.json["count"] == 0
    found = client.get("/_fakeshift/journal", query_string={"path": "/api/v1/customer_group/*"})
    assert found.json["count"] == 1


@pytest.mark.parametrize("name,value", [
    ("limit", "²"), ("limit", "1" * 5000), ("after", "٣"), ("limit", "-1"),
    ("status", "²²²"), ("status", "5²x"), ("status", "600"), ("path", "[" * 2000),
])
def test_journal_filters_that_int_cannot_read_are_a_400(client, name, value):
    response = client.get("/_fakeshift/journal", query_string={name: value})
    assert response.status_code == 400
    assert name in response.json["errors"]


@pytest.mark.parametrize("limit,expected", [(0, 0), (5, 5), (14, 14), (15, 14), (20, 14)])
def test_journal_limit_keeps_the_newest_matches_below_and_above_their_number(
        client, api, limit, expected):
    for number in range(14):
        api.get(f"/api/v1/customers?email=n{number}@example.com")
    found = client.get("/_fakeshift/journal", query_string={"limit": limit}).json
    assert found["count"] == 14 and len(found["entries"]) == expected
    queries = [entry["query"] for entry in found["entries"]]
    assert queries == [f"email=n{number}@example.com" for number in range(14 - expected, 14)]


@pytest.mark.parametrize("document", [
    {"rate": 1e-320, "burst": 1, "retry_after": True},
    {"rate": 0.0001, "burst": 1},
    {"rate": 1e9, "burst": 1},
    {"rate": 1, "burst": 10 ** 12},
    {"operations": {"forget": {"rate": 1e-320, "burst": 1}}},
])
def test_rate_limits_outside_their_bounds_are_a_400(client, api, document):
    response = client.put("/_fakeshift/rate-limits", json=document)
    assert response.status_code == 400
    assert client.get("/_fakeshift/rate-limits").json["enabled"] is False
    assert api.post("/api/v1/customers/forget", json={"email": "a@example.com"}).status_code == 200


def test_the_slowest_rate_gives_a_retry_after_a_client_can_wait(client, api):
    assert client.put("/_fakeshift/rate-limits", json={"rate": 0.001, "burst": 1,
                                                       "retry_after": True}).status_code == 200
    forget = {"json": {"email": "a@example.com"}}
    assert api.post("/api/v1/customers/forget", **forget).status_code == 200
    limited = api.post("/api/v1/customers/forget", **forget)
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "1000"


def test_the_fault_header_may_ask_for_only_so_much_latency(api):
    search = "/api/v1/customers?email=a@example.com"
    too_slow = api.get(search, headers={
        "X-Fakeshift-Fault": f"latency={MAX_HEADER_LATENCY_SECONDS + 1:g}s"})
    assert too_slow.status_code == 400
    assert f"at most {MAX_HEADER_LATENCY_SECONDS:g}s" in too_slow.json["errors"][
        "X-Fakeshift-Fault"][0]
    assert api.get(search, headers={"X-Fakeshift-Fault": "latency=1ms"}).status_code == 200


def test_a_fault_header_longer_than_the_bound_is_a_400(api):
    value = "status=503,path=/" + "a" * MAX_HEADER_LENGTH
    response = api.get("/api/v1/customers?email=a@example.com",
                       headers={"X-Fakeshift-Fault": value})
    assert response.status_code == 400
    assert f"at most {MAX_HEADER_LENGTH} characters" in response.json["errors"][
        "X-Fakeshift-Fault"][0]


def test_the_header_rule_cache_forgets_the_least_recently_used_past_its_byte_budget():
    rules = FaultRules(VirtualClock())
    long_path = "/x" * 490  # about 100 KB once compiled: twice the budget needs this many
    sent = HEADER_RULE_CACHE_BYTES // 50_000
    kept_first = f"status=503,path={long_path}0"
    for number in range(sent):
        rules.decide_header(f"status=503,path={long_path}{number}", None, "GET", "/", "acct")
        rules.decide_header(kept_first, None, "GET", "/", "acct")  # recently used: kept
    assert rules._header_rule_bytes <= HEADER_RULE_CACHE_BYTES
    assert len(rules._header_rules) < sent * 0.6
    assert ("acct", kept_first) in rules._header_rules
    rules.clear()
    assert rules._header_rule_bytes == 0 and not rules._header_rules
