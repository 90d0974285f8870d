"""The shipped scenarios load and behave as their descriptions say; bad files are explained."""

from __future__ import annotations

import pytest

from fakeshift import create_app
from fakeshift.scenario import MAX_REPORTED_PROBLEMS, Scenario, ScenarioError, parse_duration
from conftest import SCENARIOS, Blueshift


def client_for(name: str):
    return create_app({"scenario": str(SCENARIOS / name)}).test_client()


def test_gdpr_scenario_needs_three_delete_all_calls_for_120_duplicates():
    demo = Blueshift(client_for("gdpr-duplicates.yaml"), "gdpr-demo")
    url = "/api/v1/customers/delete?delete_all_matching_customers=true"
    answers = [demo.post(url, json={"email": "duplicate@example.com"}) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 404]
    assert [a.headers.get("X-Fakeshift-Scheduled") for a in answers[:3]] == ["50", "50", "20"]
    # the already-forgotten address stays suppressed
    demo.post("/api/v1/customers", json={"email": "already-forgotten@example.com"})
    assert demo.get("/api/v1/customers?email=already-forgotten@example.com").json == {"users": []}


def test_retail_scenario_groups_and_lists_follow_the_seed_pages():
    client = client_for("retail.yaml")
    retail = Blueshift(client, "retail-demo")
    assert client.get("/_fakeshift/clock").json["now"].startswith("2026-03-10T08:00")
    group = retail.delete("/api/v1/customer_group/grp_veloxmedia?delete_users=false").json["group"]
    assert group["user_count"] == 5 and group["lastname"] == "Media"
    orion = retail.delete("/api/v1/customer_group/grp_orionretail").json["group"]
    assert orion["user_uuids"][0] == "062b6926-89d2-4dfd-945f-be61720b06ce"
    assert retail.get("/api/v1/custom_user_lists/id/41148").json["user_count"] == 4
    client.post("/_fakeshift/clock/advance", json={"by": "2h"})
    # Orion's four users were deleted with their group; two of them were VIPs
    assert retail.get("/api/v1/custom_user_lists/id/41148").json["user_count"] == 2
    assert retail.get("/api/v1/custom_user_lists/id/41149").json["user_count"] == 1


def test_midsize_scenario_has_ten_thousand_generated_profiles():
    client = client_for("midsize.yaml")
    state = Blueshift(client, "midsize-demo").state()
    assert state["stats"]["profiles"] == 10_025
    assert state["settings"]["deletion_delay"] == 1800


@pytest.mark.parametrize("text, expected", [
    ("accounts: [{key: a, profiles: [{firstname: x}]}]", "accounts[0].profiles[0]"),
    ("accounts: [{key: a, lists: [{name: L, source: phone}]}]", "accounts[0].lists[0].source"),
    ("settings: {deletion_delay: soon}", "settings.deletion_delay"),
    ("accounts: [{key: a, profiles: [{email: a@b.c, uuid: nope}]}]", "accounts[0].profiles[0].uuid"),
    ("accounts: [{kee: a}]", "accounts[0]"),
    ("accounts: [{key: a, lists: [{name: L, members: [ghost@x.io]}]}]",
     "accounts[0].lists[0].members[0]: Customer not found"),
    ("- just\n- a list", "(top level)"),
    ("accounts: [{key: a\n", "not valid YAML"),
])
def test_scenario_errors_name_the_file_the_entry_and_the_problem(tmp_path, text, expected):
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as caught:
        create_app({"scenario": str(path)})
    assert str(caught.value).startswith(f"{path}: ")
    assert expected in str(caught.value)


def test_missing_scenario_file_is_explained(tmp_path):
    with pytest.raises(ScenarioError, match="cannot read"):
        Scenario.from_file(tmp_path / "absent.yaml")


@pytest.mark.parametrize("text, seconds", [("90", 90), ("30s", 30), ("15m", 900), ("2h", 7200),
                                           ("1d", 86400), ("250ms", 0.25), (0, 0), (1.5, 1.5)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["-1", "2 hours", "", True, -3])
def test_bad_durations(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_a_scenario_failing_the_schema_lists_every_problem():
    text = ("settings: {deletion_delay: soon}\n"
            "accounts: [{key: a, profiles: [{firstname: x}], lists: [{name: L, source: phone}]},"
            " {kee: b}]\n")
    with pytest.raises(ScenarioError) as caught:
        Scenario.from_text(text, "broken.yaml")
    message = str(caught.value)
    assert message.startswith("broken.yaml: 6 problems: accounts[0].lists[0].source: ")
    for where in ("accounts[0].profiles[0]: Additional properties are not allowed",
                  "accounts[0].profiles[0]: {'firstname': 'x'} is not valid",
                  "accounts[1]: Additional properties are not allowed ('kee' was unexpected)",
                  "accounts[1]: 'key' is a required property", "settings.deletion_delay: "):
        assert f"; {where}" in message, where
    assert "more problems" not in message


def test_the_problems_listed_stop_at_a_cap():
    text = "accounts: [" + ", ".join(f"{{key: a{n}, lists: [{{name: L, source: phone}}]}}"
                                     for n in range(MAX_REPORTED_PROBLEMS + 5)) + "]"
    with pytest.raises(ScenarioError) as caught:
        Scenario.from_text(text, "many.yaml")
    message = str(caught.value)
    assert message.startswith(f"many.yaml: more than {MAX_REPORTED_PROBLEMS} problems, "
                              f"the first {MAX_REPORTED_PROBLEMS}: accounts[0].lists[0].source: ")
    assert message.count(".source: ") == MAX_REPORTED_PROBLEMS


def test_one_problem_is_reported_alone():
    with pytest.raises(ScenarioError) as caught:
        Scenario.from_text("settings: {deletion_delay: soon}", "one.yaml")
    assert str(caught.value).startswith("one.yaml: settings.deletion_delay: 'soon' is not valid")
