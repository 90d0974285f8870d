"""The examples under examples/ run (or, for the CI and compose files, are checked against the
Dockerfile) so they cannot rot."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fakeshift.pytest_plugin import LiveServer

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
STRICT = os.environ.get("FAKESHIFT_CI") == "1"


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the final stage, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    instructions = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, rest = line.strip().partition(" ")
            if keyword.upper() == "FROM":
                instructions = []  # a new stage: only the last one ships
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def dockerfile_port() -> int:
    (port,) = [int(args.split("/")[0]) for kw, args in dockerfile_instructions() if kw == "EXPOSE"]
    return port


def dockerfile_healthcheck() -> list[str]:
    (args,) = [args for kw, args in dockerfile_instructions() if kw == "HEALTHCHECK"]
    return ["CMD", *json.loads(args.split(" CMD ", 1)[1])]


def dockerfile_health_path() -> str:
    return re.search(r"'(/_fakeshift/\w+)'", dockerfile_healthcheck()[-1]).group(1)


def run(command: list[str], env: dict | None = None, timeout: float = 120):
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env={**os.environ, **(env or {})})


def test_python_example_tests_pass_with_the_plugin():
    # The example's own suite uses only the plugin's fixtures; skip unrelated heavy plugins.
    result = run([sys.executable, "-m", "pytest", "examples/python", "-q", "-p", "no:cacheprovider",
                  "-p", "no:schemathesis", "-p", "no:hypothesispytest"],
                 env={"FAKESHIFT_URL": ""})
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"\b6 passed\b", result.stdout), result.stdout


def test_python_example_command_line_erases_duplicates(fakeshift):
    fakeshift.seed(profiles=[{"email": "dup@example.com", "count": 120}])
    result = run([sys.executable, "examples/python/gdpr.py", "erase", "dup@example.com"],
                 env={"BLUESHIFT_BASE_URL": fakeshift.base_url,
                      "BLUESHIFT_API_KEY": fakeshift.api_key})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"erased": "dup@example.com", "delete_calls": 3}
    assert fakeshift.state()["stats"]["pending_deletion"] == 120


def test_node_example_erases_through_fetch(fakeshift):
    node = shutil.which("node")
    if node is None:
        if STRICT:
            pytest.fail("node is required in CI (.ci/run installs it)")
        pytest.skip("node is not installed")
    fakeshift.seed(profiles=[{"email": "dup@example.com", "count": 60},
                             {"email": "keep@example.com"}])
    result = run([node, "examples/node/erase.mjs", "dup@example.com"],
                 env={"BLUESHIFT_BASE_URL": fakeshift.base_url,
                      "BLUESHIFT_API_KEY": fakeshift.api_key})
    assert result.returncode == 0, result.stderr
    calls = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(c["call"], c["status"]) for c in calls] == [
        ("delete", 200), ("delete", 200), ("delete", 404), ("forget", 200)]
    assert calls[2]["body"] == {"message": "Customer not found"}
    stats = fakeshift.state()["stats"]
    assert (stats["pending_deletion"], stats["active"], stats["suppressed"]) == (60, 1, 1)


def test_docker_compose_service_matches_the_dockerfile():
    compose = yaml.safe_load((EXAMPLES / "docker-compose.yml").read_text())
    sidecar = compose["services"]["fakeshift"]
    context = (EXAMPLES / sidecar["build"]["context"]).resolve()
    assert context == ROOT and (context / sidecar["build"]["dockerfile"]).is_file()
    assert any(port.endswith(f":{dockerfile_port()}") for port in sidecar["ports"])
    assert sidecar["healthcheck"]["test"] == dockerfile_healthcheck()

    host_dir, mount = sidecar["volumes"][0].split(":")[:2]
    scenario = sidecar["environment"]["FAKESHIFT_SCENARIO"]
    assert scenario.startswith(mount + "/")
    assert (EXAMPLES / host_dir / scenario.removeprefix(mount + "/")).is_file()

    app = compose["services"]["app"]
    assert app["depends_on"]["fakeshift"]["condition"] == "service_healthy"
    assert app["environment"]["BLUESHIFT_BASE_URL"] == f"http://fakeshift:{dockerfile_port()}"
    app_dir, app_mount = app["volumes"][0].split(":")[:2]
    script = app["command"][1]
    assert (EXAMPLES / app_dir / script.removeprefix(app_mount + "/")).is_file()


def test_github_actions_job_uses_the_same_port_and_health_url():
    workflow = yaml.safe_load((EXAMPLES / "github-actions.yml").read_text())
    job = workflow["jobs"]["integration"]
    service = job["services"]["fakeshift"]
    port = dockerfile_port()
    assert f"{port}:{port}" in service["ports"]
    ready_url = f"http://127.0.0.1:{port}{dockerfile_health_path()}"
    assert any(ready_url in step.get("run", "") for step in job["steps"])
    assert job["env"]["FAKESHIFT_URL"] == f"http://127.0.0.1:{port}"
    assert any(step.get("run") == "pytest examples/python" for step in job["steps"])


def test_docker_compose_app_command_works_against_the_composed_scenario():
    """What `docker compose up` would do, without an engine: the sidecar's scenario in a live
    server, then the app's command with the app's environment."""
    compose = yaml.safe_load((EXAMPLES / "docker-compose.yml").read_text())
    sidecar, app = compose["services"]["fakeshift"], compose["services"]["app"]
    host_dir, mount = sidecar["volumes"][0].split(":")[:2]
    scenario = EXAMPLES / host_dir / sidecar["environment"]["FAKESHIFT_SCENARIO"].removeprefix(
        mount + "/")
    app_dir, app_mount = app["volumes"][0].split(":")[:2]
    command = [sys.executable if part == "python" else part for part in app["command"]]
    command = [str(EXAMPLES / app_dir / part.removeprefix(app_mount + "/"))
               if part.startswith(app_mount + "/") else part for part in command]

    with LiveServer({"scenario": str(scenario), "access_log": False}) as server:
        env = {**app["environment"], "BLUESHIFT_BASE_URL": server.url}
        result = run(command, env=env)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["delete_calls"] == 3  # 120 duplicates, 50 per call
        stats = server.control.account(env["BLUESHIFT_API_KEY"])["stats"]
        assert stats["pending_deletion"] == 120
