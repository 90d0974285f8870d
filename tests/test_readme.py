"""The README's promises: its opening commands, and the curl tour run against a real server."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from conftest import ROOT

README = (ROOT / "README.md").read_text()


def sh_blocks(text: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", text, flags=re.S)


def test_readme_opens_with_set_up_and_test_commands_that_ci_runs():
    setup, tests = sh_blocks(README)[:2]
    assert "pip install -e '.[test]'" in setup and "fakeshift serve" in setup
    assert tests.strip() == "pytest"
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip install --quiet -e '.[test]'" in ci
    assert ci.rstrip().splitlines()[-1] == "pytest"


@pytest.mark.skipif(shutil.which("curl") is None, reason="the tour is written for curl")
def test_curl_tour_reproduces_the_documented_behaviour(start_server):
    tour = README.split("## A curl tour", 1)[1].split("\n## ", 1)[0]
    blocks = sh_blocks(tour)
    server = start_server("--scenario", str(ROOT / "scenarios" / "gdpr-duplicates.yaml"))
    # The first block starts the server in the background; use the one started above instead.
    setup = blocks[0].replace("fakeshift serve --scenario scenarios/gdpr-duplicates.yaml &", "")
    setup = setup.replace("http://127.0.0.1:8080", server.url)
    script = "set -eu\n" + setup + "\n".join(blocks[1:3])
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60,
                            cwd=ROOT)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.count("X-Fakeshift-Scheduled: 50") == 2
    assert '{"message":"Customer not found"}' in out
    assert '"is_forgotten":true' in out
    assert "X-Fakeshift-Suppressed: true" in out
    assert '"_bsft_delete_status":"success"' in out
    assert out.rstrip().endswith('{"users":[]}')
