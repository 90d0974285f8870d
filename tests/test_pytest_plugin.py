"""The pytest plugin (fakeshift.pytest_plugin), exercised the way users meet it: inner pytest runs
with pytester, where the plugin is loaded through its `pytest11` entry point."""

from __future__ import annotations

import json
import re
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from fakeshift.pytest_plugin import LiveServer

pytest_plugins = ("pytester",)

RECORD = '''
import json, os
from pathlib import Path

def record(fakeshift, **extra):
    line = {"key": fakeshift.api_key, "url": fakeshift.base_url,
            "worker": os.environ.get("PYTEST_XDIST_WORKER", "main"), **extra}
    with (Path(__file__).parent / "seen.jsonl").open("a") as seen:
        seen.write(json.dumps(line) + "\\n")
'''


def seen(pytester) -> list[dict]:
    return [json.loads(line) for line in (pytester.path / "seen.jsonl").read_text().splitlines()]


def test_plugin_is_registered_through_its_entry_point(pytester):
    result = pytester.runpytest("--fixtures")
    for fixture in ("fakeshift_config", "make_fakeshift_server", "fakeshift_server",
                    "fakeshift_app", "fakeshift"):
        result.stdout.fnmatch_lines([f"{fixture} *-- *fakeshift*pytest_plugin.py:*"])
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.fakeshift_contract*"])


def test_two_tests_get_different_accounts_that_do_not_see_each_other(pytester):
    pytester.makepyfile(helpers=RECORD)
    pytester.makepyfile(test_accounts='''
        import requests
        from helpers import record

        def test_first_creates_a_customer(fakeshift):
            record(fakeshift)
            answer = requests.post(f"{fakeshift.base_url}/api/v1/customers",
                                   json={"email": "ann@example.com"}, auth=fakeshift.auth)
            assert answer.status_code == 200
            assert fakeshift.state()["stats"]["profiles"] == 1

        def test_second_sees_nothing_of_it(fakeshift):
            record(fakeshift)
            answer = requests.get(f"{fakeshift.base_url}/api/v1/customers",
                                  params={"email": "ann@example.com"}, headers=fakeshift.headers)
            assert answer.status_code == 200
            assert answer.json() == {"users": []}
    ''')
    result = pytester.runpytest()
    result.assert_outcomes(passed=2)
    first, second = seen(pytester)
    assert first["key"] != second["key"]
    assert first["url"] == second["url"]  # one server for the session


def test_under_xdist_each_worker_has_its_own_server_and_every_test_its_own_account(pytester):
    pytester.makepyfile(helpers=RECORD)
    pytester.makepyfile(test_many='''
        import pytest
        from helpers import record

        @pytest.mark.parametrize("n", range(6))
        def test_seed_and_count(fakeshift, n):
            record(fakeshift)
            fakeshift.seed(profiles=[{"email": "same@example.com", "count": n + 1}])
            assert fakeshift.state()["stats"]["profiles"] == n + 1
    ''')
    # Heavy plugins this run does not use would triple their start-up cost over the workers.
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:schemathesis",
                                           "-p", "no:hypothesispytest")
    result.assert_outcomes(passed=6)
    lines = seen(pytester)
    assert len({line["key"] for line in lines}) == 6
    workers = {line["worker"] for line in lines}
    assert workers == {"gw0", "gw1"}
    assert len({line["url"] for line in lines}) == 2


def test_contract_marker_fails_a_test_whose_client_broke_the_contract(pytester):
    pytester.makepyfile(test_contract='''
        import pytest, requests

        def forget(fakeshift, body):
            return requests.post(f"{fakeshift.base_url}/api/v1/customers/forget", json=body,
                                 auth=fakeshift.auth)

        @pytest.mark.fakeshift_contract
        def test_broken_client(fakeshift):
            forget(fakeshift, {"email": 42})

        @pytest.mark.fakeshift_contract
        def test_good_client(fakeshift):
            assert forget(fakeshift, {"email": "ann@example.com"}).status_code == 200

        def test_broken_but_unchecked(fakeshift):
            forget(fakeshift, {"email": 42})
    ''')
    result = pytester.runpytest()
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*Blueshift contract violation(s) by this test's client:*",
                                 "*POST /api/v1/customers/forget*",
                                 "FAILED test_contract.py::test_broken_client*"])


def test_ini_option_turns_the_contract_check_on_for_every_test(pytester):
    pytester.makeini("[pytest]\nfakeshift_contract = true\n")
    pytester.makepyfile(test_contract='''
        import requests

        def test_broken_client(fakeshift):
            requests.post(f"{fakeshift.base_url}/api/v1/customers/forget", json={"email": 42},
                          auth=fakeshift.auth)
    ''')
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)


def test_a_frozen_clock_does_not_leak_into_the_next_test(pytester):
    pytester.makepyfile(test_clock='''
        def test_freezes(fakeshift):
            fakeshift.control.freeze()
            assert fakeshift.control.clock()["frozen"] is True

        def test_runs_after(fakeshift):
            assert fakeshift.control.clock()["frozen"] is False
    ''')
    pytester.runpytest().assert_outcomes(passed=2)


SHARED_CLOCK_TESTS = '''
    import time
    import pytest, requests
    from helpers import record

    def pending(fakeshift):
        return fakeshift.state()["stats"]["pending_deletion"]

    @pytest.mark.parametrize("n", range(4))
    def test_own_time(fakeshift, n):
        record(fakeshift)
        fakeshift.seed(profiles=[{"email": "same@example.com"}])
        requests.post(f"{fakeshift.base_url}/api/v1/customers/delete",
                      json={"email": "same@example.com"}, auth=fakeshift.auth)
        assert pending(fakeshift) == 1
        time.sleep(0.3)  # the other worker's tests advance their clocks meanwhile
        assert pending(fakeshift) == 1
        moved = fakeshift.advance(by="2h")
        assert moved["own"] is True and moved["offset_from_server_seconds"] >= 7200
        assert fakeshift.state()["stats"]["purged"] == 1
        assert fakeshift.freeze()["frozen"] is True
        assert fakeshift.set_clock("2030-01-01T00:00:00Z")["now"] == "2030-01-01T00:00:00.000000Z"
        assert fakeshift.clock()["frozen"] is True
        server = fakeshift.control.clock()
        assert server["frozen"] is False and abs(server["offset_seconds"]) < 60
        assert fakeshift.unfreeze()["frozen"] is False
'''


def test_the_fixtures_clock_moves_only_the_tests_account_on_a_server_shared_by_workers(
        pytester, monkeypatch):
    """Two xdist workers on one server (as CI jobs sharing FAKESHIFT_URL): each test advances,
    freezes and sets its own account's clock; no other test's, nor another job's, deletion is
    purged, and the server clock never moves."""
    with LiveServer({"access_log": False}, threads=4) as server:
        control = server.control
        control.seed("other-job", profiles=[{"email": "o@example.com"}])
        requests.post(f"{server.url}/api/v1/customers/delete", json={"email": "o@example.com"},
                      auth=("other-job", ""), timeout=10).raise_for_status()
        monkeypatch.setenv("FAKESHIFT_URL", server.url)
        pytester.makepyfile(helpers=RECORD)
        pytester.makepyfile(test_shared_clock=SHARED_CLOCK_TESTS)
        result = pytester.runpytest_subprocess("-n", "2", "-p", "no:schemathesis",
                                               "-p", "no:hypothesispytest")
        result.assert_outcomes(passed=4)
        lines = seen(pytester)
        assert {line["worker"] for line in lines} == {"gw0", "gw1"}
        assert {line["url"] for line in lines} == {server.url}
        assert control.account("other-job")["stats"]["pending_deletion"] == 1
        assert [a["account"] for a in control.accounts()] == ["other-job"]
        for line in lines:  # each test's clock went with its account
            assert control.account_clock(line["key"])["own"] is False
        clock = control.clock()
        assert clock["frozen"] is False and abs(clock["offset_seconds"]) < 60


def test_a_tests_own_clock_does_not_reach_the_next_test(pytester):
    pytester.makepyfile(test_clock_order='''
        import requests

        def created_at(fakeshift):
            requests.post(f"{fakeshift.base_url}/api/v1/customers",
                          json={"email": "t@example.com"}, auth=fakeshift.auth)
            return fakeshift.state()["profiles"][0]["created_at"]

        def test_lives_in_2030(fakeshift):
            fakeshift.freeze("2030-01-01T00:00:00Z")
            assert created_at(fakeshift) == "2030-01-01T00:00:00.000000Z"

        def test_lives_now(fakeshift):
            assert fakeshift.clock()["own"] is False
            assert not created_at(fakeshift).startswith("2030")
    ''')
    pytester.runpytest().assert_outcomes(passed=2)


def test_fakeshift_config_override_in_conftest(pytester):
    pytester.makeconftest('''
        import pytest

        @pytest.fixture(scope="session")
        def fakeshift_config():
            return {"deletion_delay": 0, "access_log": False}
    ''')
    pytester.makepyfile(test_immediate='''
        import requests

        def test_delete_purges_at_once(fakeshift):
            fakeshift.seed(profiles=[{"email": "gone@example.com"}])
            answer = requests.post(f"{fakeshift.base_url}/api/v1/customers/delete",
                                   json={"email": "gone@example.com"}, auth=fakeshift.auth)
            assert answer.status_code == 200
            assert fakeshift.state()["stats"]["purged"] == 1

        def test_in_process_app_uses_the_same_config(fakeshift_app):
            assert fakeshift_app.extensions["fakeshift"].config.deletion_delay == 0
    ''')
    pytester.runpytest().assert_outcomes(passed=2)


# A conftest.py that points every fakeshift fixture at a server started elsewhere.
EXTERNAL_SERVER_CONFTEST = '''
    import os
    import pytest
    from fakeshift.pytest_plugin import ExternalServer

    @pytest.fixture(scope="session")
    def make_fakeshift_server():
        return ExternalServer(os.environ["ELSEWHERE_URL"])
'''


def test_make_fakeshift_server_override_points_the_fixtures_at_another_server(
        pytester, monkeypatch):
    with LiveServer({"access_log": False}) as elsewhere:
        monkeypatch.setenv("ELSEWHERE_URL", elsewhere.url)
        pytester.makeconftest(EXTERNAL_SERVER_CONFTEST)
        pytester.makepyfile(test_elsewhere='''
            import os

            def test_uses_the_external_server(fakeshift):
                assert fakeshift.base_url == os.environ["ELSEWHERE_URL"]
                fakeshift.control.seed("proof", profiles=[{"email": "p@example.com"}])
        ''')
        pytester.runpytest().assert_outcomes(passed=1)
        assert elsewhere.control.account("proof")["stats"]["profiles"] == 1


def test_fakeshift_url_points_the_fixtures_at_a_running_server(pytester, monkeypatch):
    with LiveServer({"access_log": False}) as elsewhere:
        monkeypatch.setenv("FAKESHIFT_URL", elsewhere.url)
        pytester.makepyfile(test_env='''
            import os

            def test_uses_it(fakeshift, fakeshift_server):
                assert fakeshift.base_url == os.environ["FAKESHIFT_URL"]
                assert fakeshift_server.app is None
                fakeshift.control.seed("via-env", profiles=[{"email": "e@example.com"}])
        ''')
        pytester.runpytest().assert_outcomes(passed=1)
        assert elsewhere.control.account("via-env")["stats"]["profiles"] == 1


def test_an_unreachable_fakeshift_url_ends_the_run_at_once_with_one_message(
        pytester, monkeypatch):
    with socket.socket() as probe:  # a port nothing listens on once the socket is closed
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    monkeypatch.setenv("FAKESHIFT_URL", url)
    pytester.makepyfile(test_nowhere='''
        import pytest

        @pytest.mark.parametrize("n", range(3))
        def test_needs_the_server(fakeshift, n):
            pass
    ''')
    started = time.monotonic()
    result = pytester.runpytest()
    assert time.monotonic() - started < 10
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stdout.fnmatch_lines([f"*FAKESHIFT_URL={url} cannot be reached (Connection refused)*"])
    assert result.stdout.str().count("cannot be reached") == 1


def test_a_fakeshift_url_that_is_not_fakeshift_ends_the_run_with_one_message(
        pytester, monkeypatch):
    with LiveServer({"access_log": False}) as elsewhere:
        # A server that answers, but not as fakeshift does: every path is a 404.
        monkeypatch.setenv("FAKESHIFT_URL", elsewhere.url + "/api/v1")
        pytester.makepyfile(test_wrong='''
            def test_needs_the_server(fakeshift):
                pass
        ''')
        result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stdout.fnmatch_lines(["*FAKESHIFT_URL=* answered 404 to /_fakeshift/health*"])


def test_fakeshift_app_is_a_fresh_wsgi_app_per_test(pytester):
    pytester.makepyfile(test_wsgi='''
        import base64

        AUTH = {"Authorization": "Basic " + base64.b64encode(b"k:").decode()}

        def test_one(fakeshift_app):
            client = fakeshift_app.test_client()
            assert client.post("/api/v1/customers", json={"email": "a@x.io"},
                               headers=AUTH).status_code == 200
            assert len(client.get("/api/v1/customers?email=a@x.io", headers=AUTH).json["users"]) == 1

        def test_two(fakeshift_app):
            client = fakeshift_app.test_client()
            assert client.get("/api/v1/customers?email=a@x.io", headers=AUTH).json == {"users": []}
    ''')
    pytester.runpytest().assert_outcomes(passed=2)


def test_the_test_account_and_its_violations_are_dropped_after_the_test(pytester, monkeypatch):
    with LiveServer({"access_log": False}) as server:
        monkeypatch.setenv("ELSEWHERE_URL", server.url)
        pytester.makeconftest(EXTERNAL_SERVER_CONFTEST)
        pytester.makepyfile(test_drop='''
            import requests

            def test_leaves_data_and_a_violation(fakeshift):
                fakeshift.seed(profiles=[{"email": "a@example.com", "count": 5}])
                requests.post(f"{fakeshift.base_url}/api/v1/customers/forget",
                              json={"email": 42}, auth=fakeshift.auth)
                assert len(fakeshift.control.accounts()) == 1
                assert len(fakeshift.violations()) >= 1
        ''')
        pytester.runpytest().assert_outcomes(passed=1)
        assert server.control.accounts() == []
        assert server.control.violations()["count"] == 0


def test_live_server_serves_concurrent_requests_and_stops_promptly():
    server = LiveServer({"access_log": False}, threads=4)
    try:
        def seed(_):
            return server.control.seed("busy", profiles=[{"email": "b@example.com"}])["created"]

        with ThreadPoolExecutor(max_workers=8) as pool:
            assert sum(pool.map(seed, range(64))) == 64
        assert server.control.account("busy")["stats"]["profiles"] == 64
    finally:
        started = time.monotonic()
        server.stop()
        took = time.monotonic() - started
    assert took < 1.5
    assert server.control.is_ready() is False


def readme_python_blocks() -> list[str]:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("<!-- section: pytest -->", 1)[1].split("<!-- section:", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_readme_example_test_and_conftest_override_pass(pytester):
    example, override, _client = readme_python_blocks()
    pytester.makeconftest(override)
    # Not test_readme.py: in-process runs would clash with the suite's module of that name.
    pytester.makepyfile(test_example_from_the_readme=example)
    pytester.runpytest().assert_outcomes(passed=1)


def test_readme_control_client_example_runs(capsys):
    *_, client_example = readme_python_blocks()
    with LiveServer({"access_log": False}) as server:
        exec(client_example.replace("http://127.0.0.1:8080", server.url), {})
        assert server.control.accounts() == []  # the example ends with a reset to empty
    stats, journal = capsys.readouterr().out.splitlines()
    assert "'profiles': 3" in stats
    assert journal.startswith("0 {")
