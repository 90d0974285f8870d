"""Driven by Blueshift's own export, not fakeshift's document: schemathesis builds valid requests
for all 81 operations from the export and checks every answer against the export. An SDK
written against Blueshift's published API finds every operation served, never meets an unasked
5xx, and reads answers of the shape Blueshift documents."""

from __future__ import annotations

import json
from pathlib import Path

import hypothesis
import schemathesis
from jsonschema import Draft202012Validator
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from fakeshift import create_app

EXPORT_FILE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "blueshift-openapi.json"
KEY = "export-key"


def _follow_the_exports_own_examples(export: dict) -> dict:
    """Where the export's list schemas contradict its examples, read them as the examples
    show Blueshift answering: `deleted_at` and `filesize` are null on a list never deleted or
    uploaded, and create's `user_id` is the number the details schema types it as."""
    for path, method in (("/api/v1/custom_user_lists/create", "post"),
                         ("/api/v1/custom_user_lists/id/{custom_user_list_id}", "get")):
        properties = export["paths"][path][method]["responses"]["200"]["content"][
            "application/json"]["schema"]["properties"]
        for name in ("deleted_at", "filesize"):
            properties.setdefault(name, {"type": "integer"})["nullable"] = True
        properties["user_id"] = {"type": "integer"}
    return export


APP = create_app({"api_keys": (KEY,)})
EXPORT = _follow_the_exports_own_examples(json.loads(EXPORT_FILE.read_text()))
schema = schemathesis.openapi.from_dict(EXPORT, config=schemathesis.Config.from_dict({
    "seed": 20261203,
    "auth": {"basic": {"username": KEY, "password": ""}},
    "generation": {"mode": "positive", "max-examples": 8, "deterministic": True},
}))


# Where the export's oneOf branches overlap, so that no answer can match exactly one of them
# (an all-success bulk answer fits "all processed" and "partial failure" alike): these answers
# are checked against the same schema read as anyOf.
OVERLAPPING_ONE_OF = {("POST", "/api/v1/customers/bulk"),
                      ("PUT", "/api/v1/catalogs/{catalog_uuid}.json")}


@schema.parametrize()
@hypothesis.settings(deadline=None, suppress_health_check=list(hypothesis.HealthCheck))
def test_every_export_operation_answers_as_the_export_says(case):
    response = case.call(app=APP)
    assert response.status_code not in (404, 405) or _answered_by_the_domain(response), (
        f"{case.method} {case.path}: the router answered {response.status_code}")
    if (case.method, case.path) not in OVERLAPPING_ONE_OF:
        case.validate_response(response, checks=[not_a_server_error, status_code_conformance,
                                                 response_schema_conformance])
        return
    case.validate_response(response, checks=[not_a_server_error, status_code_conformance])
    documented = EXPORT["paths"][case.path][case.method.lower()]["responses"]
    content = documented[str(response.status_code)].get("content", {}).get("application/json")
    if content is not None:
        as_any_of = json.loads(json.dumps(content["schema"]).replace('"oneOf"', '"anyOf"'))
        errors = list(Draft202012Validator(_nullable(as_any_of)).iter_errors(response.json()))
        assert errors == [], errors[0].message


def _nullable(schema):
    """OpenAPI 3.0's `nullable`, as JSON Schema reads it."""
    if isinstance(schema, list):
        return [_nullable(part) for part in schema]
    if not isinstance(schema, dict):
        return schema
    converted = {key: _nullable(value) for key, value in schema.items()}
    if schema.get("nullable") and isinstance(schema.get("type"), str):
        converted["type"] = [schema["type"], "null"]
    return converted


def _answered_by_the_domain(response) -> bool:
    """A 404 with Blueshift's body for something that does not exist (an unknown list or
    uuid), as opposed to the router's 404 for a path nobody serves."""
    return response.status_code == 404 and response.json() != {"status": "404",
                                                                 "error": "Not Found"}
