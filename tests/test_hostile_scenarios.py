"""Hostile scenario documents: YAML that JSON cannot carry (dates, binary data, NaN, non-string
keys), nesting past the JSON depth cap, and aliases ("billion laughs") are refused with a
Blueshift-shaped 400 naming the entry, and change nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml
from conftest import ROOT, SCENARIOS, Blueshift, basic

from fakeshift import create_app
from fakeshift.parsing import MAX_JSON_DEPTH
from fakeshift.scenario import Scenario, ScenarioError

PROFILE = "accounts[0].profiles[0]"


def _profile_with(attributes: str) -> str:
    return f"accounts: [{{key: a, profiles: [{{email: a@example.com, attributes: {attributes}}}]}}]"


NOT_JSON = [
    ("{birthday: 2001-02-03}",
     f"{PROFILE}.attributes.birthday: a date is not a JSON value; quote it"),
    ("{seen: 2001-02-03T04:05:06Z}",
     f"{PROFILE}.attributes.seen: a timestamp is not a JSON value; quote it"),
    ("{blob: !!binary aGVsbG8=}",
     f"{PROFILE}.attributes.blob: binary data (!!binary) is not a JSON value"),
    ("{score: .nan}", f"{PROFILE}.attributes.score: .nan is not a JSON value"),
    ("{score: .inf}", f"{PROFILE}.attributes.score: .inf is not a JSON value"),
    ("{score: -.Inf}", f"{PROFILE}.attributes.score: -.Inf is not a JSON value"),
    ("{score: 1.0e+999}", f"{PROFILE}.attributes.score: 1.0e+999 is not a JSON value"),
    ("{2001-02-03: x}",
     f"{PROFILE}.attributes: the key '2001-02-03' is a date, not a string; quote it"),
    ("{1: x}", f"{PROFILE}.attributes: the key '1' is a number, not a string; quote it"),
    ("{yes: x}", f"{PROFILE}.attributes: the key 'yes' is a boolean, not a string; quote it"),
    ("{~: x}", f"{PROFILE}.attributes: the key '~' is null, not a string; quote it"),
    ("{[a]: x}", f"{PROFILE}.attributes: a key must be a string, not a sequence or mapping"),
    ("{tags: !!set {a, b}}", f"{PROFILE}.attributes.tags: a value tagged !!set is not a JSON"),
    ("{tags: !!omap [a: 1]}", f"{PROFILE}.attributes.tags: a value tagged !!omap is not a JSON"),
    ("{odd: !custom x}", f"{PROFILE}.attributes.odd: a value tagged !custom is not a JSON"),
    ("{plan: free, plan: pro}", f"{PROFILE}.attributes: the key 'plan' appears twice"),
    ("{n: " + "9" * 5000 + "}",
     f"{PROFILE}.attributes.n: the number {'9' * 40}... has too many digits"),
    ('{note: "a\\ud800b"}', f"{PROFILE}.attributes.note: contains a lone UTF-16 surrogate"),
    ("{base: &base {plan: pro}}",
     f"{PROFILE}.attributes.base: YAML anchors (&base) are not allowed in a scenario"),
]


@pytest.mark.parametrize("attributes, expected", NOT_JSON, ids=[c[0][:30] for c in NOT_JSON])
def test_yaml_that_json_cannot_carry_is_refused_naming_the_entry(attributes, expected):
    with pytest.raises(ScenarioError) as caught:
        Scenario.from_text(_profile_with(attributes), "hostile.yaml")
    assert str(caught.value).startswith(f"hostile.yaml: {expected}")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("attributes, expected", NOT_JSON[:4], ids=[c[0] for c in NOT_JSON[:4]])
def test_the_control_plane_refuses_them_with_a_400_and_keeps_the_state(attributes, expected):
    app = create_app({})
    client = app.test_client()
    api = Blueshift(client, "a")
    api.seed(profiles=[{"email": "kept@example.com"}])
    response = client.put("/_fakeshift/scenario", data=_profile_with(attributes),
                          headers={"Content-Type": "application/yaml"})
    assert response.status_code == 400
    (message,) = response.json["errors"]["scenario"]
    assert message.startswith(f"request body: {expected}")
    assert list(response.json) == ["errors"] and list(response.json["errors"]) == ["scenario"]
    assert [p["email"] for p in api.state()["profiles"]] == ["kept@example.com"]
    assert api.get("/api/v1/customers?email=kept@example.com").status_code == 200
    assert app.extensions["fakeshift"].internal_errors == 0


def test_a_scenario_file_with_a_date_stops_the_server_with_one_line(tmp_path):
    path = tmp_path / "dated.yaml"
    path.write_text(_profile_with("{birthday: 2001-02-03}"))
    result = subprocess.run([sys.executable, "-m", "fakeshift", "serve", "--port", "0",
                             "--scenario", str(path)], capture_output=True, text=True, check=False,
                            cwd=ROOT, timeout=60)
    assert result.returncode == 2
    assert result.stderr == (f"fakeshift: error: {path}: {PROFILE}.attributes.birthday: "
                             "a date is not a JSON value; quote it\n")


def test_quoted_dates_and_every_json_value_load_as_written():
    scenario = Scenario.from_text(_profile_with(
        '{birthday: "2001-02-03", n: 3, x: -1.5, ok: true, none: null, list: [1, "two"],'
        " nested: {deep: {deeper: [{}]}}, octal_looking: '012', hex: 0x1F}"))
    attributes = scenario.document["accounts"][0]["profiles"][0]["attributes"]
    assert attributes == {"birthday": "2001-02-03", "n": 3, "x": -1.5, "ok": True, "none": None,
                          "list": [1, "two"], "nested": {"deep": {"deeper": [{}]}},
                          "octal_looking": "012", "hex": 31}


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_scenarios_read_as_plain_yaml_reads_them(path: Path):
    assert Scenario.from_file(path).document == yaml.safe_load(path.read_text())


# ---- nesting ---------------------------------------------------------------------------------

# The top-level mapping, accounts, the account, profiles, the profile and its attributes.
ATTRIBUTES_DEPTH = 6


def _nested_document(depth: int) -> dict:
    """A scenario whose deepest list sits `depth` levels down, counted as JSON bodies count."""
    value: list = []
    for _ in range(depth - ATTRIBUTES_DEPTH - 1):
        value = [value]
    return {"accounts": [{"key": "a", "profiles": [{"email": "a@example.com",
                                                      "attributes": {"deep": value}}]}]}


def test_yaml_nesting_is_capped_where_json_bodies_are():
    client = create_app({}).test_client()
    for depth, status in ((MAX_JSON_DEPTH, 200), (MAX_JSON_DEPTH + 1, 400)):
        text = json.dumps(_nested_document(depth))
        as_json = client.put("/_fakeshift/scenario", data=text,
                             headers={"Content-Type": "application/json"})
        as_yaml = client.put("/_fakeshift/scenario", data=text,
                             headers={"Content-Type": "application/yaml"})
        assert (as_json.status_code, as_yaml.status_code) == (status, status), depth


def test_deep_yaml_is_a_400_naming_the_entry_not_a_recursion_error():
    app = create_app({})
    client = app.test_client()
    text = _profile_with("{deep: " + "[" * 500 + "]" * 500 + "}")
    response = client.put("/_fakeshift/scenario", data=text,
                          headers={"Content-Type": "application/yaml"})
    assert response.status_code == 400
    (message,) = response.json["errors"]["scenario"]
    deepest = "[0]" * (MAX_JSON_DEPTH - ATTRIBUTES_DEPTH)
    assert message == (f"request body: {PROFILE}.attributes.deep{deepest}: "
                       f"nested too deeply (at most {MAX_JSON_DEPTH} levels)")
    assert client.get("/_fakeshift/scenario").json == {"source": None, "scenario": None}
    assert app.extensions["fakeshift"].internal_errors == 0


# ---- aliases ---------------------------------------------------------------------------------

def _billion_laughs(levels: int = 9) -> str:
    lines = ['      l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for n in range(1, levels):
        lines.append(f"      l{n}: &l{n} [" + ",".join([f"*l{n - 1}"] * 9) + "]")
    return ("accounts:\n- key: laughs\n  profiles:\n  - email: lol@example.com\n"
            "    attributes:\n" + "\n".join(lines) + "\n")


def test_an_alias_is_refused_naming_the_entry():
    text = "accounts: [{key: a, profiles: [{email: a@example.com}, {email: *first}]}]"
    with pytest.raises(ScenarioError) as caught:
        Scenario.from_text(text.replace("{email: a@", "{email: &first a@"), "aliased.yaml")
    assert str(caught.value) == ("aliased.yaml: accounts[0].profiles[0].email: YAML anchors "
                                 "(&first) are not allowed in a scenario; write the value out")
    with pytest.raises(ScenarioError) as caught:
        Scenario.from_text("accounts: [{key: a, profiles: [{email: *nowhere}]}]", "alias.yaml")
    assert str(caught.value) == ("alias.yaml: accounts[0].profiles[0].email: YAML aliases "
                                 "(*nowhere) are not allowed in a scenario; write the value out")


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


RSS_BOUND = 300 << 20


def test_billion_laughs_is_a_400_and_the_server_stays_small(start_server):
    text = _billion_laughs()
    assert len(text.encode()) < 800
    server = start_server("--access-log", "false")
    response = requests.put(f"{server.url}/_fakeshift/scenario", data=text, timeout=30,
                            headers={"Content-Type": "application/yaml"})
    assert response.status_code == 400, response.text[:200]
    (message,) = response.json()["errors"]["scenario"]
    assert message.startswith(f"request body: {PROFILE}.attributes.l0: YAML anchors (&l0) "
                              "are not allowed")
    read = requests.get(f"{server.url}/api/v1/customers?email=lol@example.com",
                        headers=basic("laughs"), timeout=30)
    assert read.json() == {"users": []}
    assert _rss_bytes(server.process.pid) < RSS_BOUND
    health = requests.get(f"{server.url}/_fakeshift/health", timeout=5).json()
    assert health["internal_errors"] == 0
