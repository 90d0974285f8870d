"""The docs site under docs/: it builds strictly with no network, its generated configuration
reference matches `fakeshift serve`'s parser, its limit table matches the server, and the
examples it shares with the README are the README's, word for word (the README's are run by
tests/test_readme.py, test_faults.py and test_pytest_plugin.py)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT
from fakeshift import docs_reference

DOCS = ROOT / "docs"
README = (ROOT / "README.md").read_text()
STRICT = os.environ.get("FAKESHIFT_CI") == "1"

# Run mkdocs with every connection to anything but this machine refused, and reported: the
# build must need no network (no fonts, no social cards, no downloads).
OFFLINE_MKDOCS = r"""
import ipaddress, socket, sys

def local(host):
    if host in (None, "", "localhost") or isinstance(host, int):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False

def refuse(what, host):
    print(f"NETWORK ACCESS REFUSED: {what} {host!r}", file=sys.stderr, flush=True)
    raise OSError(f"no network in the docs build ({what} {host!r})")

real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect

def getaddrinfo(host, *args, **kwargs):
    if not local(host):
        refuse("getaddrinfo", host)
    return real_getaddrinfo(host, *args, **kwargs)

def connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and not local(address[0]):
        refuse("connect", address[0])
    return real_connect(self, address)

socket.getaddrinfo = getaddrinfo
socket.socket.connect = connect
socket.socket.connect_ex = lambda self, address: connect(self, address) or 0

from mkdocs.__main__ import cli
sys.argv = ["mkdocs", *sys.argv[1:]]
cli()
"""


def mkdocs_available() -> bool:
    found = (importlib.util.find_spec("mkdocs") is not None
             and importlib.util.find_spec("material") is not None)
    if not found and STRICT:
        pytest.fail("mkdocs and mkdocs-material are missing: pip install -e '.[test]'")
    return found


def sh_blocks(text: str, language: str = "sh") -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def readme_section(marker: str) -> str:
    return README.split(f"<!-- section: {marker} -->", 1)[1].split("<!-- section:", 1)[0]


def page(name: str) -> str:
    return (DOCS / name).read_text()


def nav_files(nav) -> list[str]:
    files = []
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        files += nav_files(value) if isinstance(value, list) else [value]
    return files


def test_docs_build_strictly_without_network(tmp_path):
    if not mkdocs_available():
        pytest.skip("mkdocs is not installed: pip install -e '.[docs]'")
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1",
           "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}
    done = subprocess.run(
        [sys.executable, "-c", OFFLINE_MKDOCS, "build", "--strict", "--config-file",
         str(ROOT / "mkdocs.yml"), "--site-dir", str(site)],
        capture_output=True, text=True, timeout=240, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "NETWORK ACCESS REFUSED" not in done.stderr, done.stderr[-3000:]
    assert "WARNING" not in done.stderr, done.stderr[-3000:]
    for name in nav_files(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]):
        built = site / ("index.html" if name == "index.md" else f"{name[:-3]}/index.html")
        assert built.is_file(), name
    reference = (site / "configuration-reference" / "index.html").read_text()
    assert "--max-body-bytes" in reference and "FAKESHIFT_MAX_BODY_BYTES" in reference
    assert (site / "images" / "dashboard.png").is_file()


def test_mkdocs_config_is_strict_and_offline():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    assert config["strict"] is True and config["theme"]["name"] == "material"
    plugins = [p if isinstance(p, str) else next(iter(p)) for p in config.get("plugins", [])]
    assert set(plugins) <= {"search"}, plugins  # social, privacy, ... need the network
    assert config["theme"]["font"] is False  # no web fonts fetched by the pages either


def test_every_page_under_docs_is_in_the_nav():
    listed = set(nav_files(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]))
    pages = {path.relative_to(DOCS).as_posix() for path in DOCS.rglob("*.md")}
    assert pages == listed, (pages - listed, listed - pages)


def test_configuration_reference_matches_the_serve_parser():
    committed = (DOCS / "configuration-reference.md").read_text()
    assert committed == docs_reference.render(), (
        "docs/configuration-reference.md is out of date with `fakeshift serve`'s flags "
        "(fakeshift/cli.py). Regenerate it and commit the result:\n"
        f"    {docs_reference.COMMAND}")


def test_configuration_reference_lists_every_serve_flag_with_its_variable():
    serve = docs_reference.serve_parser()
    flags = {option for action in serve._actions for option in action.option_strings
             if option.startswith("--") and option != "--help"}
    rows = {row["flag"].strip("`"): row for row in docs_reference.rows()}
    assert set(rows) == flags
    # The command's promise (fakeshift/cli.py): every serve flag has a FAKESHIFT_ variable.
    assert [flag for flag, row in rows.items() if row["environment"] == "none"] == []


def test_configuration_reference_ignores_the_callers_environment(monkeypatch):
    plain = docs_reference.render()
    monkeypatch.setenv("FAKESHIFT_PORT", "9999")
    monkeypatch.setenv("FAKESHIFT_JOURNAL_SIZE", "5")
    assert docs_reference.render() == plain
    assert os.environ["FAKESHIFT_PORT"] == "9999"


def limit_rows(text: str) -> list[tuple[str, str]]:
    return [(default.strip(), flag) for default, flag in
            re.findall(r"^\| [^|]+ \| ([^|]+) \| `(--[a-z-]+)` \|", text, flags=re.M)]


def test_the_limit_table_in_docs_matches_the_server():
    """docs/limits.md: its flags exist and its defaults are the parser's (as test_limits.py
    checks the README's short table)."""
    text = page("limits.md")
    options = {option: action for action in docs_reference.serve_parser()._actions
               for option in action.option_strings}
    rows = limit_rows(text)
    assert len(rows) >= 8
    for default, flag in rows:
        assert flag in options, flag
        assert str(options[flag].default) == default, (flag, options[flag].default)
    for flag in set(re.findall(r"`(--[a-z-]+)", text)):
        assert flag in options, flag


def test_the_readme_limit_table_is_the_docs_table_in_short():
    docs_rows = set(limit_rows(page("limits.md")))
    readme_rows = limit_rows(readme_section("reliability"))
    assert readme_rows and set(readme_rows) <= docs_rows, set(readme_rows) - docs_rows


def test_getting_started_has_the_readme_commands_and_tour():
    text = page("getting-started.md")
    assert sh_blocks(text)[:3] == sh_blocks(README)[:3]
    tour = README.split("## A curl tour", 1)[1].split("\n## ", 1)[0]
    docs_tour = text.split("## A curl tour", 1)[1].split("\n## ", 1)[0]
    assert sh_blocks(docs_tour) == sh_blocks(tour)


def test_the_faults_page_opens_with_the_readme_faults_example():
    (readme_block,) = sh_blocks(readme_section("faults"))
    assert sh_blocks(page("faults-and-drills.md"))[0] == readme_block


def test_the_pytest_page_has_the_readme_python_examples():
    assert sh_blocks(page("pytest-plugin.md"), "python") == sh_blocks(
        readme_section("pytest"), "python")


def test_the_readme_magic_inputs_are_the_docs_table():
    rows = re.findall(r"^\| `[^`]+` \|.*\|$", readme_section("magic"), flags=re.M)
    assert len(rows) >= 5 and set(rows) <= set(page("magic-inputs.md").splitlines())


def test_docs_link_only_to_pages_and_images_under_docs():
    """MkDocs cannot link outside docs/ (strict mode fails on it): such files are named as
    code instead. The build checks the rest; this gives the page and the link at once."""
    for path in DOCS.rglob("*.md"):
        for target in re.findall(r"\]\(([^)#\s]+)", path.read_text()):
            if re.match(r"[a-z]+://", target):
                continue
            assert (path.parent / target).resolve().is_relative_to(DOCS), (path.name, target)
            assert (path.parent / target).exists(), (path.name, target)
