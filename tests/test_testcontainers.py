"""FakeshiftContainer (fakeshift.testcontainers): the image run by testcontainers-python.

In CI the Docker API is podman's (`podman system service`, started here with the environment
../shared/tools/container-env prepares); with docker installed, docker's own. The engine and
the image build are tests/test_container.py's fixtures, so a missing engine fails in CI
(FAKESHIFT_CI=1) and skips elsewhere, as there; a second build of the image is a cache hit.
Ryuk (testcontainers' reaper) is off: its image cannot be pulled without a registry, so each
test removes its container itself, and checks that it is gone.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest
import requests
from testcontainers.core.config import ConnectionMode, testcontainers_config

from fakeshift.testcontainers import DEFAULT_IMAGE, FakeshiftContainer, fakeshift_environment

from test_container import IMAGE, engine, image  # noqa: F401  (fixtures, shared with that module)

ADMIN_TOKEN = "tc-admin-token"
SCENARIO_KEY = "tc-shop"
SEARCH = "/api/v1/customers?email=ann@example.com"


def test_the_default_image_is_the_one_the_tests_build():
    assert DEFAULT_IMAGE == IMAGE


def test_arguments_become_fakeshift_variables():
    environment = fakeshift_environment(
        scenario="tests/shop.yaml", admin_token="t",
        faults=["delete_customer:status=503,first=2", {"operation": "forget", "drop": True}],
        rate_limits=["rate=5,burst=10"],
        settings={"deletion_delay": "0", "strict-contract": True, "access_log": False,
                  "journal_size": 500})
    assert environment == {
        "FAKESHIFT_SCENARIO": "/scenarios/shop.yaml", "FAKESHIFT_ADMIN_TOKEN": "t",
        "FAKESHIFT_FAULTS": 'delete_customer:status=503,first=2;{"operation": "forget", '
                            '"drop": true}',
        "FAKESHIFT_RATE_LIMITS": "rate=5,burst=10", "FAKESHIFT_DELETION_DELAY": "0",
        "FAKESHIFT_STRICT_CONTRACT": "true", "FAKESHIFT_ACCESS_LOG": "false",
        "FAKESHIFT_JOURNAL_SIZE": "500"}
    assert fakeshift_environment() == {}


def test_a_spec_holding_the_separator_is_refused():
    with pytest.raises(ValueError, match="FAKESHIFT_FAULTS separates its specs with ';'"):
        fakeshift_environment(faults=[{"path_regex": "/a;b", "status": 503}])


def test_a_missing_scenario_file_is_named_before_any_engine_is_asked(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.yaml does not exist"):
        FakeshiftContainer(scenario=tmp_path / "nowhere.yaml")


@pytest.fixture(scope="module")
def docker_api(engine, tmp_path_factory):  # noqa: F811  (the imported fixture)
    """testcontainers pointed at the engine's Docker API for this module."""
    service = None
    with pytest.MonkeyPatch.context() as patch:
        if engine.name == "podman":
            directory = tmp_path_factory.mktemp("podman")
            socket_path, log_path = directory / "docker.sock", directory / "service.log"
            # Its log goes to a file: a pipe nobody reads would fill and stall the service.
            with log_path.open("w") as log:
                service = subprocess.Popen(
                    ["podman", "system", "service", "--time=0", f"unix://{socket_path}"],
                    env=engine.env, stdout=log, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + 30
            while not socket_path.exists():
                assert service.poll() is None, \
                    f"podman system service exited: {log_path.read_text()}"
                assert time.monotonic() < deadline, "podman's API socket never appeared"
                time.sleep(0.05)
            patch.setenv("DOCKER_HOST", f"unix://{socket_path}")
        patch.setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
        # testcontainers reads TC_HOST and TESTCONTAINERS_CONNECTION_MODE when it is imported,
        # so they are set on its configuration. This machine may itself be a container
        # (/.dockerenv), where testcontainers would look for the ports behind a gateway
        # address; the engine publishes them on this machine's own loopback.
        patch.setattr(testcontainers_config, "tc_host_override", "127.0.0.1")
        patch.setattr(testcontainers_config, "connection_mode_override",
                      ConnectionMode.docker_host)
        yield engine
    if service is not None:
        service.terminate()
        service.wait(timeout=30)


@pytest.fixture
def scenario_file(tmp_path):
    path = tmp_path / "shop.yaml"
    path.write_text(f"accounts:\n  - key: {SCENARIO_KEY}\n"
                    "    profiles:\n      - {email: ann@example.com, count: 2}\n")
    path.chmod(0o644)  # the container's uid 10001 reads it
    return path


def assert_removed(engine, container_id: str) -> None:
    listed = engine.run("ps", "--all", "--quiet", "--no-trunc", "--filter", f"id={container_id}")
    assert listed.stdout.strip() == "", f"container {container_id} was left behind"


def test_a_started_container_is_ready_configured_and_controlled(docker_api, image,  # noqa: F811
                                                               scenario_file):
    started = time.monotonic()
    with FakeshiftContainer(image, scenario=scenario_file, admin_token=ADMIN_TOKEN,
                            faults=["search_customers:status=503,first=1"],
                            settings={"deletion_delay": "1h", "access_log": False}) as fakeshift:
        print(f"FakeshiftContainer ready in {time.monotonic() - started:.2f} s")
        container_id = fakeshift.get_container_id()
        assert fakeshift.base_url.startswith("http://127.0.0.1:")
        control = fakeshift.control
        assert control.scenario()["source"] == "/scenarios/shop.yaml"
        assert control.account(SCENARIO_KEY)["stats"]["active"] == 2
        refused = requests.get(f"{fakeshift.base_url}/_fakeshift/journal", timeout=5)
        assert refused.status_code == 401  # the admin token is in force

        def blueshift(method: str, path: str, **kwargs) -> requests.Response:
            return requests.request(method, f"{fakeshift.base_url}{path}",
                                    auth=(SCENARIO_KEY, ""), timeout=5, **kwargs)

        # The start-up fault rule, once; the second search is served.
        assert [blueshift("GET", SEARCH).status_code for _ in range(2)] == [503, 200]
        assert fakeshift.journal(status="5xx")["count"] == 1
        assert blueshift("POST", "/api/v1/customers/forget",
                         json={"email": "ann@example.com", "colour": "red"}).status_code == 400
        assert fakeshift.violations(SCENARIO_KEY)["count"] == 1

        # The deletion delay from settings, then the virtual clock past it.
        assert blueshift("POST", "/api/v1/customers/delete",
                         json={"email": "ann@example.com"}).status_code == 200
        assert control.account(SCENARIO_KEY)["stats"]["pending_deletion"] == 1
        assert fakeshift.advance_clock(by="2h")["offset_seconds"] == pytest.approx(7200, abs=1)
        assert control.account(SCENARIO_KEY)["stats"]["purged"] == 1

        fakeshift.reset()
        assert control.account(SCENARIO_KEY)["stats"]["active"] == 2
        assert fakeshift.journal(path="/api/v1/*")["count"] == 0
        assert blueshift("GET", SEARCH).status_code == 503  # the rule again, counters fresh
    assert_removed(docker_api, container_id)


def test_a_server_that_cannot_start_times_out_with_its_logs_and_is_removed(docker_api, image,  # noqa: F811
                                                                          tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text(json.dumps({"accounts": [{"key": "x", "profiles": "not a list"}]}))
    broken.chmod(0o644)
    container = FakeshiftContainer(image, scenario=broken, startup_timeout=5)
    with pytest.raises(TimeoutError) as raised:
        with container:
            pytest.fail("a container with a broken scenario became ready")
    # testcontainers adds the container's output to the error: fakeshift says what is wrong.
    assert "broken.yaml" in "\n".join(getattr(raised.value, "__notes__", []))
    assert_removed(docker_api, container.get_container_id())
