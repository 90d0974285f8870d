"""The rest of Blueshift's published API: every operation of the export is served, answers what
the export says it answers, and what an SDK creates is found again in its own account."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from fakeshift.contract import load_document
from fakeshift.models import Account, Settings
from fakeshift.samples import sample

from conftest import Blueshift

EXPORT = json.loads((Path(__file__).resolve().parents[2] / "shared" / "reference" /
                     "blueshift-openapi.json").read_text())
DOCUMENT = load_document("blueshift")
METHODS = ("get", "post", "put", "patch", "delete")
# The export's two answers for adding catalog items overlap ({"status": "ok"} fits both), so no
# value satisfies its oneOf; the project document says anyOf.
OVERLAPPING_ONE_OF = {("put", "/api/v1/catalogs/{catalog_uuid}.json")}
UNKNOWN_UUID = "00000000-0000-4000-8000-00000000dead"


def _canonical(path: str) -> str:
    return re.sub(r"\{[^{}]+\}", "{}", path)


def _export_operations() -> list[tuple[str, str, dict]]:
    return [(method, path, operation) for path, item in EXPORT["paths"].items()
            for method, operation in item.items() if method in METHODS]


def _ours(method: str, path: str) -> dict:
    """The project document's operation for an export operation ({} if it has none)."""
    for template, item in DOCUMENT["paths"].items():
        if _canonical(template) == _canonical(path) and method in item:
            return item[method]
    return {}


ANSWERED_FROM_DOCUMENT = [(method, path, operation) for method, path, operation
                          in _export_operations() if "x-fakeshift" in _ours(method, path)]


def test_the_project_document_covers_every_operation_of_the_export():
    ours = {(method, _canonical(path)) for path, item in DOCUMENT["paths"].items()
            for method in item if method in METHODS}
    theirs = {(method, _canonical(path)) for method, path, _ in _export_operations()}
    assert len(theirs) == 81
    assert theirs - ours == set()
    assert len(ANSWERED_FROM_DOCUMENT) > 50


def _export_request(method: str, path: str, operation: dict, object_uuid: str | None) -> dict:
    """A request built from the export alone, from its parameters' and body's examples."""
    url = path
    query = {}
    path_names = re.findall(r"\{([^{}]+)\}", path)
    for parameter in operation.get("parameters", ()):
        value = sample(parameter.get("schema", {}))
        if parameter["in"] == "path":
            if object_uuid is not None and parameter["name"] == path_names[-1]:
                value = object_uuid
            url = url.replace("{" + parameter["name"] + "}", str(value))
        elif parameter["in"] == "query" and parameter.get("required"):
            query[parameter["name"]] = value
    content = operation.get("requestBody", {}).get("content", {}).get("application/json")
    request = {"method": method.upper(), "path": url, "query_string": query}
    if content:
        request["json"] = sample(content["schema"])
    return request


@pytest.mark.parametrize("method,path,operation", ANSWERED_FROM_DOCUMENT,
                         ids=[f"{m.upper()} {p}" for m, p, _ in ANSWERED_FROM_DOCUMENT])
def test_every_operation_answers_a_request_built_from_the_export(api, emulator, method, path,
                                                                operation):
    spec = _ours(method, path)["x-fakeshift"]
    object_uuid = None
    if spec.get("action") in ("read", "update"):
        object_uuid = _create(api, spec["kind"])
    response = api.call(**_export_request(method, path, operation, object_uuid))
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    assert emulator.internal_errors == 0
    assert "X-Fakeshift-Violation" not in response.headers
    content = operation["responses"]["200"].get("content", {}).get("application/json")
    if content and (method, path) not in OVERLAPPING_ONE_OF:
        schema = _openapi_30(content["schema"])
        errors = list(Draft202012Validator(schema).iter_errors(response.json))
        assert errors == [], errors[0].message[:300]


def _openapi_30(schema):
    """The export's schema as JSON Schema reads it: OpenAPI 3.0's `nullable` allows null."""
    if isinstance(schema, list):
        return [_openapi_30(part) for part in schema]
    if not isinstance(schema, dict):
        return schema
    converted = {key: _openapi_30(value) if key not in ("example", "enum", "default") else value
                 for key, value in schema.items()}
    if schema.get("nullable") and isinstance(schema.get("type"), str):
        converted["type"] = [schema["type"], "null"]
        if "enum" in converted:
            converted["enum"] = [*converted["enum"], None]
    return converted


def _creates() -> dict[str, tuple[str, dict]]:
    """kind -> (path, operation) of the call that creates one."""
    found = {}
    for template, item in DOCUMENT["paths"].items():
        for operation in item.values():
            spec = operation.get("x-fakeshift", {}) if isinstance(operation, dict) else {}
            if spec.get("action") == "create":
                found[spec["kind"]] = (template, operation)
    return found


CREATES = _creates()


def _create(api, kind: str, **fields) -> str:
    template, operation = CREATES[kind]
    body = sample(operation["requestBody"]["content"]["application/json"]["schema"])
    wrapper = operation["x-fakeshift"].get("wrapper")
    (body[wrapper] if wrapper else body).update(fields)
    path = template.replace("{campaign_type}", "one_time")
    response = api.post(path, json=body)
    assert response.status_code == 200, response.json
    answer = response.json
    uuid_field = operation["x-fakeshift"].get("uuid_field", "uuid")
    holder = answer if uuid_field in answer else next(iter(answer.values()))
    return holder[uuid_field]


def test_a_created_catalog_is_read_updated_and_listed_in_its_own_account_only(client, api):
    catalog_uuid = _create(api, "catalog", name="Winter Collection")
    read = api.get(f"/api/v1/catalogs/{catalog_uuid}.json")
    assert read.status_code == 200
    assert (read.json["uuid"], read.json["name"]) == (catalog_uuid, "Winter Collection")
    listed = api.get("/api/v1/catalogs").json["catalogs"]
    assert [(c["uuid"], c["name"]) for c in listed] == [(catalog_uuid, "Winter Collection")]

    other = Blueshift(client, "another-key")
    assert other.get(f"/api/v1/catalogs/{catalog_uuid}.json").status_code == 404
    assert other.get("/api/v1/catalogs").json["catalogs"] == []


def test_a_template_update_merges_into_what_was_created(api):
    template_uuid = _create(api, "email_template", name="Welcome")
    updated = api.put(f"/api/v1/email_templates/{template_uuid}.json",
                      json={"name": "Welcome back"})
    assert updated.status_code == 200
    read = api.get(f"/api/v1/email_templates/{template_uuid}.json").json
    assert (read["uuid"], read["name"]) == (template_uuid, "Welcome back")
    assert read["author"] == sample(
        CREATES["email_template"][1]["requestBody"]["content"]["application/json"]["schema"]
    )["author"]


def test_a_campaign_created_answers_its_uuid_inside_the_campaign_and_is_found(api):
    campaign_uuid = _create(api, "campaign", name="Spring sale")
    read = api.get(f"/api/v1/campaigns/{campaign_uuid}.json")
    assert (read.status_code, read.json["uuid"], read.json["name"]) == (
        200, campaign_uuid, "Spring sale")
    assert api.patch(f"/api/v1/campaigns/{campaign_uuid}/pause").status_code == 200


def test_reading_or_updating_an_unknown_uuid_is_a_404(api):
    missing = api.get(f"/api/v1/catalogs/{UNKNOWN_UUID}.json")
    assert missing.status_code == 404 and "No catalog has the uuid" in missing.json["message"]
    template, operation = next((t, item["put"]) for t, item in DOCUMENT["paths"].items()
                               if t == "/api/v1/sms_templates/{template_uuid}")
    body = sample(operation["requestBody"]["content"]["application/json"]["schema"])
    assert api.put(template.replace("{template_uuid}", UNKNOWN_UUID),
                   json=body).status_code == 404


def test_a_request_that_breaks_the_document_is_a_400_and_stores_nothing(api):
    response = api.post("/api/v1/catalogs", json={"catalog": {"name": 42}})
    assert response.status_code == 400
    assert any("catalog" in location for location in response.json["errors"])
    assert api.get("/api/v1/catalogs").json["catalogs"] == []


def test_auth_faults_and_the_journal_apply_to_the_rest_of_the_api(client, api):
    assert client.get("/api/v1/segments/list").status_code == 401
    client.post("/_fakeshift/faults", json={"operation": "get_list_of_segments",
                                            "status": 503})
    assert api.get("/api/v1/segments/list").status_code == 503
    entries = client.get("/_fakeshift/journal",
                         query_string={"operation": "get_list_of_segments"}).json["entries"]
    assert [entry["status"] for entry in entries] == [401, 503]


def test_stored_objects_survive_a_state_round_trip():
    account = Account("saved", Settings())
    created = account.objects.create("catalog", {"name": "Winter"})
    restored = Account.from_state(account.to_state(), Settings())
    assert restored.objects.get("catalog", created["uuid"]) == created


@pytest.mark.parametrize("method, path, allow", [
    # A concrete path is not a template's value: its methods only (HEAD and OPTIONS are none).
    ("OPTIONS", "/api/v1/email_templates/test_send.json", "POST"),
    ("GET", "/api/v1/email_templates/test_send.json", "POST"),
    ("PUT", "/api/v1/sms_templates/test_send.json", "POST"),
    ("PUT", "/api/v1/push_templates/test_push.json", "POST"),
    # An enum path parameter takes its values only: x.json is a campaign uuid, bulk_archive an
    # action, neither a campaign type.
    ("POST", f"/api/v1/campaigns/{UNKNOWN_UUID}.json", "GET, HEAD"),
    ("POST", "/api/v1/campaigns/bulk_archive", "PUT"),
])
def test_a_wrong_method_is_405_allowing_exactly_the_methods_of_its_path(api, method, path,
                                                                        allow):
    response = api.call(method, path)
    assert (response.status_code, response.headers["Allow"]) == (405, allow)


def test_a_template_still_takes_every_other_value(api):
    assert api.get("/api/v1/email_templates/test_sendx.json").status_code == 404
    assert api.get("/api/v1/subscription_groups/index_lite").status_code == 200
    assert api.get(f"/api/v1/subscription_groups/{UNKNOWN_UUID}").status_code == 200
    created = api.post("/api/v1/campaigns/event_triggered",
                       json={"name": "Spring sale", "startdate": "2026-03-15T12:00:00Z"})
    assert created.status_code == 200


@pytest.mark.parametrize("method, path, body, location, message", [
    # Formats are rules of the document.
    ("GET", "/api/v1/tag_contexts/list?resource_uuid=", None, "query.resource_uuid",
     "must be a valid uuid, not '' (rule: format)"),
    ("POST", "/api/v1/campaigns/one_time", {"name": "n", "startdate": "tomorrow"},
     "body.startdate", "must be a valid date-time, not 'tomorrow' (rule: format)"),
    # Every value of an array parameter is checked.
    ("GET", "/api/v1/shared_assets.json?asset_type[]=html&asset_type[]=htm", None,
     "query.asset_type[][1]",
     "must be one of: html, rich_text, visual_editor, subject; not 'htm' (rule: enum)"),
    # JSON that only a lenient reader takes.
    ("PUT", "/api/v1/campaigns/bulk_archive", b'{"uuid": ["a"], "uuid": ["b"]}', "body",
     "is not valid JSON: duplicate key 'uuid' (rule: json)"),
])
def test_what_breaks_the_document_is_named_once_in_the_400(api, method, path, body, location,
                                                          message):
    data = body if isinstance(body, bytes) else None if body is None else json.dumps(body)
    response = api.call(method, path, data=data, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json["errors"][location] == [message]


def test_each_missing_field_is_named_once(api):
    response = api.post("/api/v1/campaigns/one_time", json={})
    assert response.json == {"errors": {"body.name": ["is required (rule: required)"],
                                        "body.startdate": ["is required (rule: required)"]}}


def test_an_array_parameter_with_valid_values_is_accepted(api):
    response = api.get("/api/v1/shared_assets.json?asset_type[]=html&asset_type[]=subject")
    assert response.status_code == 200 and "X-Fakeshift-Violation" not in response.headers
