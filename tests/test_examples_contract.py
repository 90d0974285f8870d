"""The "Check your client" examples (examples/contract/) run against a real server: they pass for
a client that keeps the contract and name the broken rule for one that does not."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid

import pytest
import requests

from conftest import ROOT, basic

STRICT = os.environ.get("FAKESHIFT_CI") == "1"


def node() -> str:
    found = shutil.which("node")
    if found is None:
        if STRICT:
            pytest.fail("node is required in CI (.ci/run installs it)")
        pytest.skip("node is not installed")
    return found


COMMANDS = {
    "python": lambda: [sys.executable, "examples/contract/check_client.py"],
    "node": lambda: [node(), "examples/contract/check_client.mjs"],
}


def run_example(language: str, base_url: str, key: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "BLUESHIFT_BASE_URL": base_url, "BLUESHIFT_API_KEY": key}
    return subprocess.run(COMMANDS[language](), capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=60)


@pytest.mark.parametrize("language", sorted(COMMANDS))
def test_a_conforming_client_passes(language, live_server):
    key = f"check-{language}-{uuid.uuid4().hex[:8]}"
    result = run_example(language, live_server.url, key)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        "identify: 200", "delete: 200", f"0 contract violations for {key}"]


@pytest.mark.parametrize("language", sorted(COMMANDS))
def test_a_violation_by_the_client_fails_the_check(language, live_server):
    key = f"check-{language}-{uuid.uuid4().hex[:8]}"
    # The client under test misspells a field once, somewhere before the check runs.
    typo = requests.post(f"{live_server.url}/api/v1/customers/forget", headers=basic(key),
                         json={"emial": "jane@example.com"}, timeout=10)
    assert typo.status_code == 400
    result = run_example(language, live_server.url, key)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert ("VIOLATION POST /api/v1/customers/forget: body.emial broke additionalProperties: "
            "is not a recognised field") in lines
    assert lines[-1] == f"2 contract violations for {key}"
