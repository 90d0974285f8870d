"""The README's promises: its opening commands (the ones CI runs), its size and links, and the
curl tour run against a real server. tests/test_docs.py checks the pages under docs/."""

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
    setup, tests, run = sh_blocks(README)[:3]
    # Set-up, tests and run are separate: starting the server never reinstalls anything.
    assert "pip install -e '.[test]'" in setup and "fakeshift serve" not in setup
    assert tests.strip() == "pytest"
    assert "fakeshift serve" in run and "pip" not in run
    assert run.strip().startswith(". .venv/bin/activate")  # works from any later shell
    # CI does what the set-up command does, step by step, in a fresh environment, then runs
    # the test command as its last line.
    ci = (ROOT / ".ci" / "run").read_text()
    for step in setup.strip().split(" && "):
        assert step.replace("pip install -e", "pip install --quiet -e") in ci.splitlines(), step
    assert ci.rstrip().splitlines()[-1] == tests.strip()


def test_readme_is_at_most_15000_bytes():
    size = len(README.encode())
    assert size <= 15_000, (
        f"README.md is {size} bytes; move detail into a page under docs/ and link it")


def test_readme_links_point_at_files_that_exist():
    for target in re.findall(r"\]\(([^)#\s]+)", README):
        if not re.match(r"[a-z]+://", target):
            assert (ROOT / target).exists(), target


def test_readme_links_the_docs_that_hold_what_moved_out_of_it():
    linked = set(re.findall(r"\]\((docs/[^)#\s]+\.md)", README))
    for name in ("index", "getting-started", "configuration-reference", "decisions", "limits",
                 "control-plane", "contract", "faults-and-drills", "magic-inputs",
                 "pytest-plugin", "docker-and-podman"):
        assert f"docs/{name}.md" in linked, name


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
